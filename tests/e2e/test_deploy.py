"""`canary deploy` end to end on real servers: HAProxy routes real requests to real demo
apps, Prometheus scrapes them, the Slack receiver gets the alerts over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from canary.store.sqlite import SQLiteStore
from lab.proc import free_port, wait_until
from tests.e2e.conftest import (
    Lab,
    Stack,
    canary_cmd,
    canary_env,
    run_canary,
    write_policy,
    write_rollout,
)

MakeStack = Callable[..., Stack]


def events_of(stack: Stack) -> list[str]:
    store = SQLiteStore(stack.store.removeprefix("sqlite:///"))
    try:
        return [e.kind for e in store.events(store.get("checkout").id)]
    finally:
        store.close()


def test_healthy_canary_is_promoted(lab: Lab, stack_for: MakeStack) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="3s")
    started = time.monotonic()
    res = run_canary(stack, "deploy", "-f", str(rollout))
    took = time.monotonic() - started
    assert res.returncode == 0, res.stdout + res.stderr
    assert "promoted" in res.stdout
    assert stack.all_on("canary-1")  # all traffic on the new version
    status = json.loads(run_canary(stack, "status", "checkout", "-o", "json").stdout)
    assert status["phase"] == "succeeded" and status["canaryWeight"] == 100
    assert status["analysis"]["error-rate"]["outcome"] == "passed"
    assert status["analysis"]["error-rate"]["value"] < 0.05
    kinds = events_of(stack)
    assert kinds.count("stage-reached") == 4 and "promoted" in kinds
    messages = stack.slack.payloads
    assert len(messages) == 1 and "promoted" in json.dumps(messages[0])
    # The next rollout knows 2.0.0 is stable now.
    store = SQLiteStore(stack.store.removeprefix("sqlite:///"))
    assert store.last_stable_version("checkout") == "2.0.0"
    store.close()
    print(f"healthy rollout promoted in {took:.1f}s")


def test_faulty_canary_rolls_back_at_first_stage_with_alert(lab: Lab,
                                                            stack_for: MakeStack) -> None:
    stack = stack_for("3.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="3.0.0", policy=policy, pause="30s")
    started = time.monotonic()
    res = run_canary(stack, "deploy", "-f", str(rollout))
    took = time.monotonic() - started
    assert res.returncode == 1, res.stdout + res.stderr
    assert stack.all_on("stable-1")
    status = json.loads(run_canary(stack, "status", "checkout", "-o", "json").stdout)
    assert status["phase"] == "failed" and status["stage"] == 1
    assert status["analysis"]["error-rate"]["outcome"] == "failed"
    assert 0.25 < status["analysis"]["error-rate"]["value"] < 0.55
    alert = json.dumps(stack.slack.payloads)
    assert len(stack.slack.payloads) == 1
    for words in ("checkout", "3.0.0", "1.0.0", "error-rate", "http_requests_total"):
        assert words in alert, words
    assert stack.slack.url() not in res.stdout + res.stderr  # the webhook is a secret
    print(f"faulty canary rolled back {took:.1f}s after deploy started")


def test_kill_9_during_25_percent_then_resume(lab: Lab, stack_for: MakeStack) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="6s")
    proc = subprocess.Popen(canary_cmd("deploy", "-f", str(rollout)), env=canary_env(stack),
                            cwd=str(stack.dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: "stage-reached" in events_of(stack)
                   and events_of(stack).count("stage-reached") >= 2, timeout=90,
                   what="the 25% stage")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = time.monotonic()
    status = json.loads(run_canary(stack, "status", "checkout", "-o", "json").stdout)
    assert status["stage"] == 2 and status["phase"] == "progressing"
    res = run_canary(stack, "deploy", "-f", str(rollout))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming rollout checkout" in res.stdout
    kinds = events_of(stack)
    assert kinds.count("stage-started") == 4  # 5% was not started again
    assert kinds.count("stage-reached") == 4
    print(f"resumed and promoted {time.monotonic() - killed_at:.1f}s after kill -9")


def test_second_deploy_of_the_same_rollout_is_refused(lab: Lab, stack_for: MakeStack) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="20s")
    first = subprocess.Popen(canary_cmd("deploy", "-f", str(rollout)), env=canary_env(stack),
                             cwd=str(stack.dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: "stage-reached" in events_of(stack), timeout=60, what="stage 1")
        second = run_canary(stack, "deploy", "-f", str(rollout), timeout=30)
        assert second.returncode == 2
        assert "being driven by another controller" in second.stderr
        assert first.poll() is None  # the first one is untouched
        abort = run_canary(stack, "abort", "checkout")
        assert abort.returncode == 0
        assert first.wait(timeout=30) == 3  # aborted: traffic back on stable
    finally:
        if first.poll() is None:
            first.kill()
    assert stack.all_on("stable-1")


def test_failing_migration_sends_no_traffic_to_the_canary(lab: Lab,
                                                          stack_for: MakeStack) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    script = stack.dir / "migrate.py"
    script.write_text("import sys\nprint('applying 0042_add_column')\n"
                      "print('ERROR: relation missing', file=sys.stderr)\nsys.exit(3)\n")
    migration = f"""  migration:
    command: ["python3", "{script}"]
    timeout: 30s
"""
    rollout = write_rollout(stack, version="2.0.0", policy=policy, migration=migration)
    res = run_canary(stack, "deploy", "-f", str(rollout))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "applying 0042_add_column" in res.stdout  # output streamed
    assert stack.canary_sessions() == 0  # not one request reached the canary
    status = json.loads(run_canary(stack, "status", "checkout", "-o", "json").stdout)
    assert status["gate"]["status"] == "failed" and "status 3" in status["gate"]["message"]
    assert "migration" in json.dumps(stack.slack.payloads)


def test_prometheus_unreachable_never_promotes(lab: Lab, stack_for: MakeStack) -> None:
    stack = stack_for("2.0.0")
    dead = f"http://127.0.0.1:{free_port()}"
    policy = write_policy(stack.dir / "policy.yaml", dead)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="2s")
    refused = run_canary(stack, "deploy", "-f", str(rollout))
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "preflight could not run; nothing was changed" in refused.stderr
    assert run_canary(stack, "status", "checkout").returncode == 2  # no rollout stored
    res = run_canary(stack, "deploy", "-f", str(rollout), "--no-preflight")
    assert res.returncode == 1, res.stdout + res.stderr
    status = json.loads(run_canary(stack, "status", "checkout", "-o", "json").stdout)
    assert status["phase"] == "failed" and status["stage"] == 1
    assert "could not be measured" in status["reason"]
    assert stack.all_on("stable-1")


def test_invalid_rollout_exits_2_and_changes_nothing(lab: Lab, stack_for: MakeStack,
                                                     tmp_path: Path) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy)
    rollout.write_text(rollout.read_text().replace("backend: checkout", "backend: checkout\n"
                                                   "    weight: 3"))
    res = run_canary(stack, "deploy", "-f", str(rollout))
    assert res.returncode == 2
    assert "spec.router.weight: unknown field" in res.stderr
    assert ":13:" in res.stderr  # the line
    assert "Traceback" not in res.stderr + res.stdout
    assert stack.all_on("stable-1")
    assert run_canary(stack, "status", "checkout").returncode == 2


def test_weights_changed_by_hand_are_reapplied(lab: Lab, stack_for: MakeStack) -> None:
    from lab.haproxy import runtime_command

    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="60s",
                            stages="[25, 100]")
    proc = subprocess.Popen(canary_cmd("deploy", "-f", str(rollout)), env=canary_env(stack),
                            cwd=str(stack.dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: "stage-reached" in events_of(stack), timeout=60, what="stage 1")
        before = stack.weight("canary-1")
        sock = str(stack.haproxy.info["socket"])
        runtime_command(sock, "set weight checkout/canary-1 0")  # an operator's mistake,
        assert stack.weight("canary-1") == 0  # or a HAProxy restart forgetting weights
        wait_until(lambda: stack.weight("canary-1") == before, timeout=10,
                   what="the rollout to re-apply 25%")
        assert "drift" in events_of(stack)
        assert run_canary(stack, "abort", "checkout").returncode == 0
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3
    assert "the router reports stable 75% / canary 25%" in out  # split read back
    assert "re-applying" in out


SEQUENTIAL_ONLY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: sequential
spec:
  prometheus:
    url: {url}
  interval: 2s
  window: 10s
  sequential:
    alpha: 0.02
    tolerance: 1.0
    warmup: 6s
"""


def test_sequential_judge_live_rolls_back_and_promotes(lab: Lab, stack_for: MakeStack) -> None:
    bad = stack_for("3.0.0")
    policy = bad.dir / "sequential.yaml"
    policy.write_text(SEQUENTIAL_ONLY.format(url=lab.prometheus_url))
    rollout = write_rollout(bad, version="3.0.0", policy=policy, pause="60s", stages="[25, 100]")
    res = run_canary(bad, "deploy", "-f", str(rollout))
    assert res.returncode == 1, res.stdout + res.stderr
    status = json.loads(run_canary(bad, "status", "checkout", "-o", "json").stdout)
    assert status["analysis"]["sequential"]["outcome"] == "failed"
    assert "worse than stable" in status["reason"]
    assert bad.all_on("stable-1")
    # the judge's evidence was persisted with the rollout
    store = SQLiteStore(bad.store.removeprefix("sqlite:///"))
    assert store.get("checkout").judge_memory
    store.close()


def test_sequential_judge_live_promotes_a_healthy_canary(lab: Lab,
                                                        stack_for: MakeStack) -> None:
    good = stack_for("2.0.0")
    policy = good.dir / "sequential.yaml"
    policy.write_text(SEQUENTIAL_ONLY.format(url=lab.prometheus_url))
    rollout = write_rollout(good, version="2.0.0", policy=policy, pause="8s", stages="[25, 100]")
    res = run_canary(good, "deploy", "-f", str(rollout))
    assert res.returncode == 0, res.stdout + res.stderr
    assert good.all_on("canary-1")
