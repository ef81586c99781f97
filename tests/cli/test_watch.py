"""`canary status NAME --watch` follows a rollout another process drives, to its end.

The watcher runs as its own process (`python -m canary`), the test drives the rollout in
the same SQLite store the way a controller does (compare-and-set saves), and the watcher
must print each move and exit with the outcome's code.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.model import Phase
from canary.state import AttemptProgress, RolloutState
from canary.store.sqlite import SQLiteStore
from lab.proc import wait_until
from tests.cli.conftest import rollout

REPO = Path(__file__).resolve().parents[2]


def watcher(url: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), CANARY_STORE=url)
    return subprocess.Popen([sys.executable, "-m", "canary", "status", "checkout", "--watch",
                             "--poll", "0.1", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("last", "code", "verdict"), [
    ({"phase": Phase.SUCCEEDED, "stage_index": 1, "desired_weight": 100}, 0, "promoted"),
    ({"phase": Phase.FAILED, "desired_weight": 0,
      "run": AttemptProgress(reason="error-rate 0.4 > 0.05")}, 1,
     "rolled back: error-rate 0.4 > 0.05"),
    ({"phase": Phase.ABORTED, "desired_weight": 0,
      "run": AttemptProgress(reason="aborted by operator")}, 3,
     "aborted"),
    ({"phase": Phase.ROLLING_BACK,
      "run": AttemptProgress(needs_human=True, reason="router unreachable")}, 4,
     "needs a human"),
])
def test_watch_follows_until_the_end(db: tuple[str, SQLiteStore], last: dict[str, object],
                                     code: int, verdict: str) -> None:
    url, store = db
    state = store.create(rollout("checkout", age=1, phase=Phase.PROGRESSING, stage_index=0,
                                 desired_weight=5, message="pausing at 5%"))
    proc = watcher(url)
    try:
        # It is following: the first state is printed and the process still runs.
        assert proc.stdout is not None
        assert "checkout: progressing, stage 1, 5% on 2.0.0: pausing at 5%" in \
            proc.stdout.readline()
        time.sleep(0.5)
        assert proc.poll() is None
        state = store.save(dataclasses.replace(state, stage_index=1, desired_weight=50,
                                               message="at 50%"))
        time.sleep(0.5)
        assert proc.poll() is None
        store.save(dataclasses.replace(state, **last))
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, out + err
    assert "stage 2, 50% on 2.0.0: at 50%" in out
    assert out.splitlines()[-1].startswith(f"checkout: {verdict}")


def test_watch_of_a_finished_rollout_exits_at_once(db: tuple[str, SQLiteStore]) -> None:
    url, store = db
    store.create(rollout("checkout", phase=Phase.FAILED, run=AttemptProgress(reason="latency")))
    res = CliRunner().invoke(app, ["status", "checkout", "--watch", "--store", url])
    assert res.exit_code == 1
    assert res.output.splitlines()[-1] == "checkout: rolled back: latency"


def test_watch_timeout_is_exit_5_and_leaves_the_rollout(db: tuple[str, SQLiteStore]) -> None:
    url, store = db
    state = store.create(rollout("checkout", phase=Phase.PAUSED, stage_index=0))
    started = time.monotonic()
    res = CliRunner().invoke(app, ["status", "checkout", "--watch", "--timeout", "1s",
                                   "--poll", "0.1", "--store", url])
    assert res.exit_code == 5, res.output
    assert time.monotonic() - started < 15
    assert "still running" in res.output.splitlines()[-1]
    assert store.get("checkout") == state  # following never writes


def test_watch_json_prints_the_final_status(db: tuple[str, SQLiteStore]) -> None:
    url, store = db
    store.create(rollout("checkout", phase=Phase.SUCCEEDED, desired_weight=100))
    res = CliRunner().invoke(app, ["status", "checkout", "-w", "-o", "json", "--store", url])
    assert res.exit_code == 0
    assert '"phase": "succeeded"' in res.output


def test_watch_bad_input_is_exit_2(db: tuple[str, SQLiteStore]) -> None:
    url, store = db
    store.create(rollout("checkout", phase=Phase.PROGRESSING))
    runner = CliRunner()
    assert runner.invoke(app, ["status", "nope", "-w", "--store", url]).exit_code == 2
    assert runner.invoke(app, ["status", "checkout", "-w", "--timeout", "soon",
                               "--store", url]).exit_code == 2


def test_watch_sees_a_retry_start_over(db: tuple[str, SQLiteStore]) -> None:
    """A rollout that failed, was retried and then promoted: follows the new attempt."""
    url, store = db
    state: RolloutState = store.create(rollout("checkout", phase=Phase.PROGRESSING))
    proc = watcher(url, "--timeout", "30s")
    try:
        assert proc.stdout is not None and "progressing" in proc.stdout.readline()
        state = store.save(dataclasses.replace(state, attempt=2, stage_index=0, message="retry"))
        wait_until(lambda: proc.poll() is None, timeout=5, what="the watcher to run")
        store.save(dataclasses.replace(state, phase=Phase.SUCCEEDED, desired_weight=100))
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "retry" in out
