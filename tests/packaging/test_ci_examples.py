"""examples/ci/ run for real: the shell steps are read from the YAML and run with bash
against the lab (HAProxy, demo apps, Prometheus) and a real PostgreSQL store.

A CI runner keeps nothing: each run of a job gets a fresh working directory (a fresh
checkout), and the only state is the PostgreSQL store. A job that times out (exit 5) or is
killed mid-rollout (the runner vanishes: kill -9 of the whole step) is re-run and resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from canary.store.postgres import PostgresStore
from lab.proc import wait_until
from tests.e2e.conftest import Lab, Stack, write_policy, write_rollout
from tests.packaging.ci import GITLAB, WORKFLOW, Job, github_step, load

pytestmark = pytest.mark.servers
MakeStack = Callable[..., Stack]
BIN = str(Path(sys.executable).parent)  # the installed `canary` console script


def checkout(stack: Stack, lab: Lab, where: Path, *, version: str) -> Path:
    """A fresh clone of the service's repository: deploy/rollout.yaml and its policy."""
    (where / "deploy").mkdir(parents=True)
    write_policy(where / "deploy" / "e2e-policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version=version, policy=Path("e2e-policy.yaml"),
                            pause="4s")
    shutil.move(rollout, where / "deploy" / "rollout.yaml")
    return where


def job(tmp_path: Path, name: str, stack: Stack, lab: Lab, dsn: str, version: str) -> Job:
    workdir = checkout(stack, lab, tmp_path / name, version=version)
    return Job(workdir=workdir, path=f"{BIN}:{os.environ['PATH']}",
               secrets={"CANARY_STORE": dsn, "SLACK_WEBHOOK_URL": stack.slack.url()},
               inputs={"version": version})


def stages_reached(dsn: str) -> int:
    store = PostgresStore(dsn)
    try:
        return [e.kind for e in store.events(store.get("checkout").id)].count("stage-reached")
    finally:
        store.close()


def history(j: Job) -> list[dict[str, Any]]:
    step = j.github("history")
    out, _ = step.communicate(timeout=120)
    assert step.returncode == 0, out
    data = json.loads((j.workdir / "canary-history.json").read_text())
    assert isinstance(data, list)
    return data


def test_workflow_declares_what_the_steps_need() -> None:
    wf = load(WORKFLOW)
    steps = wf["jobs"]["deploy"]["steps"]
    install = next(s for s in steps if s.get("id") == "install")
    assert "canary[postgres]" in install["run"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-art"))
    assert upload["with"]["path"] == "canary-history.json" and upload["if"] == "always()"
    for step_id in ("deploy", "history"):
        _, env = github_step(step_id)
        assert env["CANARY_STORE"] == "${{ secrets.CANARY_STORE }}"
    gitlab = load(GITLAB)["deploy"]
    assert "canary[postgres]" in " ".join(gitlab["before_script"])
    assert gitlab["artifacts"] == {"when": "always", "paths": ["canary-history.json"],
                                   "expire_in": "30 days"}


def test_github_timeout_then_cancelled_then_rerun_resumes_from_postgres(
        lab: Lab, stack_for: MakeStack, postgres_dsn: str, tmp_path: Path) -> None:
    stack = stack_for("2.0.0")
    # Run 1: --timeout expires mid-rollout: exit 5, the mapping says re-run.
    first = job(tmp_path, "run-1", stack, lab, postgres_dsn, "2.0.0")
    step = first.github("deploy", CANARY_TIMEOUT="3s")
    out, _ = step.communicate(timeout=120)
    assert step.returncode == 5, out
    assert "::warning::canary: still running at --timeout; re-run this job to resume" in out
    assert first.outputs() == {"exit-code": "5"}
    reached = stages_reached(postgres_dsn)
    assert reached >= 1
    shutil.rmtree(first.workdir)  # the runner is gone, and its disk

    # Run 2: cancelled mid-rollout, the hard way: the whole step is killed.
    second = job(tmp_path, "run-2", stack, lab, postgres_dsn, "2.0.0")
    step = second.github("deploy")
    try:
        wait_until(lambda: stages_reached(postgres_dsn) >= reached + 1, timeout=90,
                   what="the next stage")
    finally:
        os.killpg(step.pid, signal.SIGKILL)
        out, _ = step.communicate(timeout=30)
    assert "resuming rollout checkout" in out
    shutil.rmtree(second.workdir)

    # Run 3: a re-run on a fresh working directory resumes from PostgreSQL and promotes,
    # while someone follows it from elsewhere with `canary status --watch`.
    third = job(tmp_path, "run-3", stack, lab, postgres_dsn, "2.0.0")
    step = third.github("deploy")
    watcher = subprocess.run(
        [f"{BIN}/canary", "status", "checkout", "--watch", "--poll", "0.2"], cwd=tmp_path,
        env={**os.environ, "CANARY_STORE": postgres_dsn}, capture_output=True, text=True,
        timeout=180, check=False)
    out, _ = step.communicate(timeout=180)
    assert watcher.returncode == 0, watcher.stdout + watcher.stderr
    assert watcher.stdout.splitlines()[-1].startswith("checkout: promoted")
    assert "100% on 2.0.0" in watcher.stdout
    assert step.returncode == 0, out
    assert "resuming rollout checkout" in out and "canary: promoted 2.0.0" in out
    assert third.outputs() == {"exit-code": "0"}
    assert stack.all_on("canary-1")
    [rollout] = history(third)
    assert rollout["phase"] == "succeeded" and rollout["version"] == "2.0.0"
    kinds = [e["kind"] for e in rollout["events"]]
    assert kinds.count("stage-started") == 4 and kinds.count("stage-reached") == 4
    assert stack.slack.url() not in out  # the secret never shows


def test_github_rollback_is_exit_1_with_the_history_artifact(
        lab: Lab, stack_for: MakeStack, postgres_dsn: str, tmp_path: Path) -> None:
    stack = stack_for("3.0.0")
    j = job(tmp_path, "run", stack, lab, postgres_dsn, "3.0.0")
    step = j.github("deploy")
    out, _ = step.communicate(timeout=180)
    assert step.returncode == 1, out
    assert "::error::canary: rolled back; traffic is back on stable" in out
    assert stack.all_on("stable-1")
    [rollout] = history(j)
    assert rollout["phase"] == "failed" and rollout["analysis"]["error-rate"]["outcome"] \
        == "failed"


def test_gitlab_job_bad_input_then_rollback(lab: Lab, stack_for: MakeStack, postgres_dsn: str,
                                            tmp_path: Path) -> None:
    stack = stack_for("3.0.0")
    j = job(tmp_path, "run", stack, lab, postgres_dsn, "3.0.0")
    # A typo in the pipeline's store variable: exit 2, nothing changed.
    bad = j.gitlab("script", {"CI_COMMIT_TAG": "3.0.0", "CANARY_STORE": "postgress://x"})
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "canary: invalid input; nothing was changed" in bad.stdout
    res = j.gitlab("script", {"CI_COMMIT_TAG": "3.0.0"})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "canary: rolled back; traffic is back on stable" in res.stdout
    after = j.gitlab("after_script", {"CI_COMMIT_TAG": "3.0.0"})
    assert after.returncode == 0, after.stderr
    [rollout] = json.loads((j.workdir / "canary-history.json").read_text())
    assert rollout["phase"] == "failed" and rollout["version"] == "3.0.0"

