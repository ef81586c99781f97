"""`canary serve` and its API end to end: a real controller process drives rollouts on a real
HAProxy, judged by a real Prometheus scraping real demo apps; `canary deploy --server`
follows them with the local mode's lines and exit codes."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.proc import wait_until
from tests.e2e.conftest import Lab, Stack, canary_cmd, canary_env, write_policy, write_rollout
from tests.server.conftest import (
    OPERATOR_TOKEN,
    READ_TOKEN,
    Controller,
    StartServe,
    run,
    wait_phase,
)

MakeStack = Callable[..., Stack]


def kinds(ctl: Controller, name: str) -> list[str]:
    r = ctl.call("GET", f"/api/v1/rollouts/{name}/events", token=READ_TOKEN)
    r.raise_for_status()
    return [e["kind"] for e in r.json()["events"]]


def metric(ctl: Controller, name: str, **labels: str) -> float:
    text = ctl.call("GET", "/metrics", token=None).text
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def serve_for(stack: Stack, start_serve: StartServe, **kw: str) -> Controller:
    return start_serve(stack.store, env={"SLACK_WEBHOOK_URL": stack.slack.url()}, **kw)


def test_submitted_rollout_progresses_and_is_promoted(lab: Lab, stack_for: MakeStack,
                                                      start_serve: StartServe) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="3s")
    ctl = serve_for(stack, start_serve)
    r = ctl.submit(rollout.read_text(), file=str(rollout))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["resumed"] is False and body["stages"] == [5, 25, 50, 100]
    assert body["rollout"]["phase"] == "pending"
    again = ctl.submit(rollout.read_text(), file=str(rollout))  # same rollout: resumed
    assert again.status_code == 200 and again.json()["resumed"] is True
    # While it runs, /metrics shows the last value measured per rollout and metric.
    def measured() -> bool:
        text = ctl.call("GET", "/metrics", token=None).text
        return any(x.startswith("canary_analysis_value{") and 'rollout="checkout"' in x
                   and 'metric="error-rate"' in x for x in text.splitlines())

    wait_until(measured, timeout=60,
               what="the last measured error rate on /metrics")
    status = wait_phase(ctl, "checkout", {"succeeded", "failed", "aborted"}, timeout=120)
    assert status["phase"] == "succeeded", status
    assert stack.all_on("canary-1")
    assert status["analysis"]["error-rate"]["outcome"] == "passed"
    events = kinds(ctl, "checkout")
    assert events.count("stage-started") == 4 and events.count("stage-reached") == 4
    # Journal first: the state says succeeded a moment before the alert goes out.
    wait_until(lambda: len(stack.slack.payloads) >= 1, timeout=10, what="the Slack alert")
    assert len(stack.slack.payloads) == 1 and "promoted" in json.dumps(stack.slack.payloads)
    # What the controller measured of itself.
    assert metric(ctl, "canary_rollouts_finished_total", phase="succeeded") == 1
    assert metric(ctl, "canary_analysis_checks_total", metric="error-rate",
                  outcome="passed") >= 4
    assert metric(ctl, "canary_tick_duration_seconds_count", result="ok") > 10
    assert metric(ctl, "canary_rollout_duration_seconds_count", phase="succeeded") == 1
    assert metric(ctl, "canary_notifications_total", channel="slack", result="sent") == 1
    assert metric(ctl, "canary_build_info") == 1
    assert metric(ctl, "process_resident_memory_bytes") > 0
    assert metric(ctl, "python_info") == 1
    listed = ctl.call("GET", "/api/v1/rollouts", token=READ_TOKEN).json()["rollouts"]
    assert [(x["name"], x["phase"]) for x in listed] == [("checkout", "succeeded")]


def test_operator_abort_through_the_api_rolls_back(lab: Lab, stack_for: MakeStack,
                                                   start_serve: StartServe) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="60s")
    ctl = serve_for(stack, start_serve)
    assert ctl.submit(rollout.read_text(), file=str(rollout)).status_code == 201
    wait_until(lambda: "stage-reached" in kinds(ctl, "checkout"), timeout=60, what="stage 1")
    assert metric(ctl, "canary_rollout_canary_weight", rollout="checkout") == 5
    assert metric(ctl, "canary_rollouts", phase="progressing") == 1
    r = ctl.call("POST", "/api/v1/rollouts/checkout/abort")
    assert r.status_code == 202, r.text
    started = time.monotonic()
    status = wait_phase(ctl, "checkout", {"aborted", "failed", "succeeded"}, timeout=30)
    took = time.monotonic() - started
    assert status["phase"] == "aborted" and status["reason"] == "aborted by an operator"
    assert stack.all_on("stable-1")
    assert metric(ctl, "canary_rollbacks_total", reason="abort") == 1
    wait_until(lambda: "aborted" in json.dumps(stack.slack.payloads), timeout=10,
               what="the Slack alert")
    again = ctl.call("POST", "/api/v1/rollouts/checkout/abort")
    assert again.status_code == 409 and "already ended" in again.json()["error"]
    print(f"abort acted on {took:.2f}s after the API call")


def test_tokens_scopes_and_openapi(lab: Lab, stack_for: MakeStack,
                                   start_serve: StartServe) -> None:
    stack = stack_for("2.0.0")
    ctl = serve_for(stack, start_serve)
    assert ctl.call("GET", "/api/v1/rollouts", token=None).status_code == 401
    bad = ctl.call("GET", "/api/v1/rollouts", token="nope")
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"].startswith("Bearer")
    assert ctl.call("GET", "/api/v1/rollouts", token=READ_TOKEN).status_code == 200
    assert ctl.call("GET", "/api/v1/rollouts", token=OPERATOR_TOKEN).status_code == 200
    for path in ("/api/v1/rollouts", "/api/v1/rollouts/checkout/abort"):
        assert ctl.call("POST", path, token=None, json={}).status_code == 401
        assert ctl.call("POST", path, token=READ_TOKEN, json={}).status_code == 403
    assert ctl.call("POST", "/api/v1/rollouts/nothing/abort").status_code == 404
    assert ctl.call("POST", "/api/v1/rollouts/nothing/explode").status_code == 404
    assert ctl.call("DELETE", "/api/v1/rollouts").status_code == 405
    spec = ctl.call("GET", "/api/v1/openapi.json", token=None).json()
    assert spec["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    for method, path in (("GET", "/api/v1/rollouts"), ("POST", "/api/v1/rollouts"),
                         ("GET", "/api/v1/rollouts/{name}"),
                         ("GET", "/api/v1/rollouts/{name}/events"),
                         *(("POST", f"/api/v1/rollouts/{{name}}/{c}")
                           for c in ("pause", "resume", "abort", "promote", "retry"))):
        assert (method, path) in documented
    ctl.terminate()
    log = ctl.log()
    assert READ_TOKEN not in log and OPERATOR_TOKEN not in log
    assert "POST /api/v1/rollouts/checkout/abort 403" in log  # writes are logged, tokens not


def test_invalid_rollout_is_refused_with_the_local_message(lab: Lab, stack_for: MakeStack,
                                                           start_serve: StartServe) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy)
    rollout.write_text(rollout.read_text().replace("backend: checkout", "backend: checkout\n"
                                                   "    weight: 3"))
    ctl = serve_for(stack, start_serve)
    r = ctl.submit(rollout.read_text(), file=str(rollout))
    assert r.status_code == 400
    assert r.json()["line"] == 13 and r.json()["field"] == "spec.router.weight"
    env = canary_env(stack)
    local = run(["deploy", "-f", "rollout.yaml"], env=env, cwd=stack.dir)
    env.update(CANARY_SERVER=ctl.url, CANARY_TOKEN=OPERATOR_TOKEN)
    remote = run(["deploy", "-f", "rollout.yaml"], env=env, cwd=stack.dir)
    assert local.returncode == remote.returncode == 2
    assert "rollout.yaml:13: spec.router.weight: unknown field" in local.stderr
    assert remote.stderr == local.stderr
    env["CANARY_TOKEN"] = READ_TOKEN
    refused = run(["deploy", "-f", "rollout.yaml"], env=env, cwd=stack.dir)
    assert refused.returncode == 2 and "403" in refused.stderr
    assert ctl.call("GET", "/api/v1/rollouts", token=READ_TOKEN).json()["rollouts"] == []


@pytest.mark.parametrize(("version", "code", "verdict"), [("2.0.0", 0, "promoted"),
                                                          ("3.0.0", 1, "rolled back")])
def test_deploy_server_prints_progress_and_exits_like_local_mode(
        lab: Lab, stack_for: MakeStack, start_serve: StartServe, version: str, code: int,
        verdict: str) -> None:
    stack = stack_for(version)
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version=version, policy=policy, pause="3s")
    ctl = serve_for(stack, start_serve)
    env = canary_env(stack)
    env.update(CANARY_TOKEN=OPERATOR_TOKEN)
    res = run(["deploy", "--server", ctl.url, "-f", str(rollout)], env=env, cwd=stack.dir)
    assert res.returncode == code, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"starting rollout checkout: checkout 1.0.0 -> {version} via ")
    assert re.fullmatch(r"\d\d:\d\d:\d\d checkout stage-started: stage 1/4: setting 5%",
                        lines[1]), lines[1]
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d checkout analysis error-rate: \w+ value=\S+ "
                            r"threshold <= 0.05", x) for x in lines)
    assert lines[-1].startswith(f"checkout: {verdict}: ")


def test_ctrl_c_stops_following_not_the_rollout(lab: Lab, stack_for: MakeStack,
                                                start_serve: StartServe) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="60s")
    ctl = serve_for(stack, start_serve)
    env = canary_env(stack)
    env.update(CANARY_TOKEN=OPERATOR_TOKEN, CANARY_SERVER=ctl.url)
    follower = subprocess.Popen(canary_cmd("deploy", "-f", str(rollout)), env=env,
                                cwd=str(stack.dir), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "stage-reached" in kinds(ctl, "checkout"), timeout=60,
                   what="stage 1")
        time.sleep(1.5)  # the follower printed it
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=20)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 5, out + err
    assert "stage-reached: 5% of traffic on 2.0.0" in out
    assert "stopped following checkout" in err
    time.sleep(1.5)
    assert ctl.status("checkout")["phase"] == "progressing"
    assert stack.weight("canary-1") > 0


def test_sigterm_finishes_ticks_and_releases_leases(lab: Lab, stack_for: MakeStack,
                                                    start_serve: StartServe,
                                                    tmp_path: Path) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="60s")
    first = serve_for(stack, start_serve, name="first")
    assert first.submit(rollout.read_text(), file=str(rollout)).status_code == 201
    wait_until(lambda: "stage-reached" in kinds(first, "checkout"), timeout=60, what="stage 1")
    assert first.terminate() == 0
    assert "released rollout checkout" in first.log()
    db = sqlite3.connect(stack.store.removeprefix("sqlite:///"))
    assert db.execute("SELECT count(*) FROM leases").fetchone() == (0,)
    db.close()
    second = serve_for(stack, start_serve, name="second")
    wait_until(lambda: "driving rollout checkout" in second.log(), timeout=10,
               what="the second controller to take the rollout")
    assert second.call("POST", "/api/v1/rollouts/checkout/promote?full=true").status_code == 202
    assert wait_phase(second, "checkout", {"succeeded"}, timeout=30)["stage"] == 4
    assert kinds(second, "checkout").count("stage-started") == 1
