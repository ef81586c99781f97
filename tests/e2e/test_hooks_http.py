"""HTTP hooks over real HTTP: context and Idempotency-Key, the same key after kill -9,
a hanging hook hitting its timeout and rolling back, secrets kept out of everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.proc import wait_until
from lab.slack_receiver import Reply, SlackReceiver
from tests.e2e.conftest import Stack, canary_cmd, canary_env, run_canary, write_rollout

MakeStack = Callable[..., Stack]
NO_METRICS = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: time-only
spec:
  interval: 1s
"""


@pytest.fixture()
def endpoint() -> Iterator[SlackReceiver]:
    with SlackReceiver(echo=None) as r:
        yield r


def hooked(stack: Stack, endpoint: SlackReceiver, *, timeout: str = "5s",
           pause: str = "1s") -> Path:
    policy = stack.dir / "policy.yaml"
    policy.write_text(NO_METRICS)
    f = write_rollout(stack, version="2.0.0", policy=policy, stages="[50, 100]", pause=pause)
    f.write_text(f.read_text() + f"""\
  hooks:
    preRollout:
      - name: provision
        http:
          url: {endpoint.url('/hooks/provision')}
          headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
        timeout: {timeout}
        retries: 0
        compensate:
          http: {{url: "{endpoint.url('/hooks/deprovision')}", method: DELETE}}
    postRollout:
      - name: announce
        http: {{url: "{endpoint.url('/hooks/announce')}"}}
""")
    return f


def env_with_token(stack: Stack) -> dict[str, str]:
    return {**canary_env(stack), "HOOK_TOKEN": "s3cr3t-hook-token"}


def run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(canary_cmd(*args), capture_output=True, text=True, timeout=120,
                          env=env_with_token(stack), cwd=str(stack.dir), check=False)


def test_http_hooks_get_context_key_and_secret_header(stack_for: MakeStack,
                                                      endpoint: SlackReceiver) -> None:
    stack = stack_for("2.0.0", rps=20)
    res = run(stack, "deploy", "-f", str(hooked(stack, endpoint)))
    assert res.returncode == 0, res.stdout + res.stderr
    paths = [r.path for r in endpoint.requests]
    assert paths == ["/hooks/provision", "/hooks/announce"]
    first = endpoint.requests[0]
    assert first.headers["Authorization"] == "Bearer s3cr3t-hook-token"
    assert first.payload["rollout"] == "checkout" and first.payload["version"] == "2.0.0"
    assert first.headers["Idempotency-Key"] == first.payload["idempotencyKey"]
    # the secret is in no output, status, history or stored byte
    status = run_canary(stack, "status", "checkout", "-o", "json").stdout
    history = run_canary(stack, "history", "-o", "json").stdout
    db = Path(stack.store.removeprefix("sqlite:///")).read_bytes()
    for text in (res.stdout, res.stderr, status, history, json.dumps(stack.slack.payloads)):
        assert "s3cr3t-hook-token" not in text
    assert b"s3cr3t-hook-token" not in db
    slack_token = stack.slack.url().split("/services/")[1]
    for text in (res.stdout, res.stderr, status, history):
        assert slack_token not in text
    assert slack_token.encode() not in db


def test_same_idempotency_key_after_kill_9(stack_for: MakeStack,
                                           endpoint: SlackReceiver) -> None:
    stack = stack_for("2.0.0", rps=20)
    f = hooked(stack, endpoint, timeout="60s")
    endpoint.script(Reply(200, "ok", delay=60))  # the first call hangs ...
    proc = subprocess.Popen(canary_cmd("deploy", "-f", str(f)), env=env_with_token(stack),
                            cwd=str(stack.dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(endpoint.requests) == 1, timeout=30, what="the hook call")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # ... and the controller dies during it
        proc.wait()
    res = run(stack, "deploy", "-f", str(f))
    assert res.returncode == 0, res.stdout + res.stderr
    provision = [r for r in endpoint.requests if r.path == "/hooks/provision"]
    assert len(provision) == 2
    assert provision[0].headers["Idempotency-Key"] == provision[1].headers["Idempotency-Key"]


def test_hanging_hook_times_out_rolls_back_and_compensates_nothing_unfinished(
        stack_for: MakeStack, endpoint: SlackReceiver) -> None:
    stack = stack_for("2.0.0", rps=20)
    endpoint.script(Reply(200, "ok", delay=30))
    res = run(stack, "deploy", "-f", str(hooked(stack, endpoint, timeout="1s")))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "timed out after 1s" in res.stdout
    assert stack.canary_sessions() == 0  # the hook was before any traffic
    # the hook never completed, so there is nothing to compensate
    assert [r.path for r in endpoint.requests] == ["/hooks/provision"]
    assert "preRollout hook provision failed" in json.dumps(stack.slack.payloads)
