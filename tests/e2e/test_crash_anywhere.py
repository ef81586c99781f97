"""kill -9 of `canary deploy` at random, seeded moments of a real rollout (real HAProxy and
demo apps, real Prometheus, a command hook, an HTTP hook, the local Slack receiver), resumed
each time: it ends promoted, every stage reached once, no hook idempotency key new on a
rerun, exactly one alert per ending, no event lost. Then the two endings a kill used to
break: an alert whose delivery was interrupted, and a CI retry after the promotion.

The seed is printed; ``CANARY_CRASH_SEED=N`` replays a run's kill moments.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from canary.store.sqlite import SQLiteStore
from lab.proc import wait_until
from lab.slack_receiver import Reply, SlackReceiver
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
KILLS = 30
NO_METRICS = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: time-only
spec:
  interval: 1s
"""


@pytest.fixture()
def hook_endpoint() -> Iterator[SlackReceiver]:
    with SlackReceiver(echo=None) as r:
        yield r


def db_path(stack: Stack) -> str:
    return stack.store.removeprefix("sqlite:///")


def lease_pid(stack: Stack) -> int | None:
    """The pid holding the rollout's lease: a deploy has read the store and ticked."""
    if not os.path.exists(db_path(stack)):
        return None
    con = sqlite3.connect(f"file:{db_path(stack)}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT pid FROM leases WHERE name = 'checkout'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return None if row is None else int(row[0])


def ticked(stack: Stack, proc: subprocess.Popen[bytes]) -> bool:
    return lease_pid(stack) == proc.pid or proc.poll() is not None


def store_view(stack: Stack) -> tuple[str, list[str], int]:
    """(phase, event kinds, rollouts of that name) as the store has them."""
    store = SQLiteStore(db_path(stack))
    try:
        state = store.get("checkout")
        return (state.phase.value, [e.kind for e in store.events(state.id)],
                len(store.history("checkout")))
    finally:
        store.close()


def spawn(stack: Stack, rollout: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(canary_cmd("deploy", "-f", str(rollout)), env=canary_env(stack),
                            cwd=str(stack.dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill9(proc: subprocess.Popen[bytes]) -> bool:
    """kill -9; True if it was still running (the kill interrupted something)."""
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


def hooked_rollout(stack: Stack, policy: Path, endpoint: SlackReceiver, keys: Path) -> Path:
    # Pauses long enough that 30 kill cycles fit in the rollout on an idle machine too.
    f = write_rollout(stack, version="2.0.0", policy=policy, pause="15s")
    f.write_text(f.read_text() + f"""\
  hooks:
    preStage:
      - name: warm-cache
        command: ["/bin/sh", "-c", "echo \\"$CANARY_IDEMPOTENCY_KEY\\" >> {keys}"]
        timeout: 10s
    postStage:
      - name: smoke
        http: {{url: "{endpoint.url('/hooks/smoke')}"}}
        timeout: 5s
""")
    return f


def test_kill_9_anywhere_then_resume_ends_promoted_exactly_once(
        lab: Lab, stack_for: MakeStack, hook_endpoint: SlackReceiver) -> None:
    seed = int(os.environ.get("CANARY_CRASH_SEED") or random.randrange(10**6))
    print(f"crash seed {seed} (CANARY_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    stack = stack_for("2.0.0", rps=30)
    keys = stack.dir / "command-hook-keys.log"
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = hooked_rollout(stack, policy, hook_endpoint, keys)
    kills, started = 0, time.monotonic()
    while kills < KILLS:
        proc = spawn(stack, rollout)
        try:
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 0.6))  # during start-up, before or at a tick
            else:
                wait_until(functools.partial(ticked, stack, proc), timeout=60, interval=0.02,
                           what="the deploy's first tick")
                time.sleep(rng.uniform(0.0, 0.8))
        finally:
            killed = kill9(proc)
        if not killed:
            break  # it finished before its kill: the rollout ended too soon for KILLS
        kills += 1
    assert kills == KILLS, f"the rollout ended after {kills} kills (seed {seed})"
    assert store_view(stack)[0] != "succeeded"
    res = run_canary(stack, "deploy", "-f", str(rollout))
    assert res.returncode == 0, res.stdout + res.stderr
    print(f"{kills} kills, promoted {time.monotonic() - started:.0f}s after the first deploy")

    phase, kinds, rollouts = store_view(stack)
    assert phase == "succeeded" and rollouts == 1 and stack.all_on("canary-1")
    # no event lost, none repeated: the journal of the rollout, in order
    milestones = [k for k in kinds if k in ("created", "stage-started", "stage-reached",
                                            "promoting", "promoted")]
    assert milestones == ["created", *["stage-started", "stage-reached"] * 4, "promoting",
                          "promoted"], milestones
    # hooks: one key per stage each; a rerun may repeat a key, never invent one
    command_keys = keys.read_text().split()
    assert len(set(command_keys)) == 4, command_keys
    http_keys = [r.headers["Idempotency-Key"] for r in hook_endpoint.requests]
    assert len(set(http_keys)) == 4, http_keys
    # exactly one alert for the ending
    alerts = stack.slack.payloads
    assert len(alerts) == 1 and "promoted" in json.dumps(alerts[0]).lower(), alerts

    # A CI retry of the very same deploy: a no-op reporting the promotion, traffic kept.
    again = run_canary(stack, "deploy", "-f", str(rollout))
    assert again.returncode == 0 and "promoted" in again.stdout, again.stdout + again.stderr
    assert store_view(stack)[2] == 1 and stack.all_on("canary-1")
    assert len(stack.slack.payloads) == 1


def test_alert_interrupted_by_kill_9_is_sent_once_by_the_rerun(lab: Lab,
                                                                stack_for: MakeStack) -> None:
    stack = stack_for("3.0.0", rps=30)
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="3.0.0", policy=policy, pause="30s")
    stack.slack.script(Reply(503, "unavailable"), Reply(503, "unavailable"))
    proc = spawn(stack, rollout)
    try:
        wait_until(lambda: len(stack.slack.requests) >= 1, timeout=90, interval=0.01,
                   what="the rolled-back alert's first POST")
    finally:
        assert kill9(proc), "the deploy ended before its alert was delivered"
    assert stack.slack.payloads == []  # answered 503: nothing delivered yet
    assert store_view(stack)[0] in ("rolling-back", "failed")  # the alert goes with the rollback
    res = run_canary(stack, "deploy", "-f", str(rollout))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rolled back" in res.stdout
    alerts = stack.slack.payloads
    assert len(alerts) == 1 and "3.0.0" in json.dumps(alerts[0]), alerts
    assert store_view(stack)[2] == 1 and stack.all_on("stable-1")  # nothing started again
    again = run_canary(stack, "deploy", "-f", str(rollout))
    assert again.returncode == 1 and len(stack.slack.payloads) == 1


def test_kill_after_promotion_saved_then_ci_retry_is_a_no_op(stack_for: MakeStack) -> None:
    stack = stack_for("2.0.0", rps=20)
    policy = stack.dir / "policy.yaml"
    policy.write_text(NO_METRICS)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, stages="[50, 100]",
                            pause="1s")
    # The promoted alert is answered 503 twice: the process is still delivering it, after
    # the promotion was saved, when it is killed.
    stack.slack.script(Reply(503, "unavailable"), Reply(503, "unavailable"))
    proc = spawn(stack, rollout)
    try:
        wait_until(lambda: store_view(stack)[0] == "succeeded", timeout=60, interval=0.01,
                   what="the promotion to be saved")
    finally:
        assert kill9(proc), "the deploy exited before it could be killed"
    assert stack.all_on("canary-1")
    weights: list[int] = []
    retry = subprocess.Popen(canary_cmd("deploy", "-f", str(rollout)), env=canary_env(stack),
                             cwd=str(stack.dir), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    while retry.poll() is None:  # traffic watched all along the retry
        weights.append(stack.weight("canary-1"))
        time.sleep(0.02)
    out, _ = retry.communicate()
    assert retry.returncode == 0 and "promoted" in out, out
    assert weights and all(w > 0 for w in weights) and stack.all_on("canary-1")
    phase, kinds, rollouts = store_view(stack)
    assert (phase, rollouts) == ("succeeded", 1) and kinds.count("stage-started") == 2
    assert len(stack.slack.payloads) == 1  # the owed promotion alert, delivered once
