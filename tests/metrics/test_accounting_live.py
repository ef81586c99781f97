"""Exact live accounting on real servers: the requests fed to the sequential judge over a
rollout sum to what the apps themselves counted - with checks run by a process that is
killed -9 and resumed, and across a canary restart (its counters reset to zero).

The truth is each app's own counter, read from its /metrics; Prometheus only feeds the
judge. The old feeding (``increase(...[interval])`` at whatever time the query ran)
overlaps and gaps between checks; here the spans must tile the rollout exactly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.load import Load

from .accounting_lab import (
    AccountingLab,
    app_requests,
    checks_of,
    memory_of,
    running_accounting_lab,
    settle,
    start_driver,
    wait_checks,
)

pytestmark = pytest.mark.servers  # a real Prometheus and lab apps

TOLERANCE = 0.02  # the brief's bar; exact accounting should land at 0


@pytest.fixture(scope="module")
def acct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountingLab]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed")
    with running_accounting_lab(tmp_path_factory.mktemp("acct"),
                                {"1.0.0": 0.0, "2.0.0": 0.05}) as lab:
        yield lab


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)


def _finish(run: Path, proc: subprocess.Popen[bytes], *, after: float) -> None:
    """Wait for a check evaluated after ``after`` (everything scraped is in), then stop."""
    try:
        wait_checks(run, 1, timeout=5)
        deadline = time.time() + 30
        while time.time() < deadline:
            done = [c for c in checks_of(run) if c["at"] is not None and c["at"] >= after]
            if done:
                return
            time.sleep(0.2)
        raise AssertionError("no check evaluated after the load stopped")
    finally:
        _stop(proc)


def _loads(lab: AccountingLab, rps: float = 40) -> dict[str, Load]:
    return {v: Load(f"{a.info['url']}/", rps=rps).start() for v, a in lab.apps.items()}


@pytest.mark.parametrize("batch", [0.0, 2.0], ids=["direct", "batched"])
def test_fed_requests_sum_to_the_apps_own_counts(acct: AccountingLab, tmp_path: Path,
                                                 batch: float) -> None:
    """Checks every 2 s, started on a 0.5 s tick; with ``batched`` through the hub
    `canary serve --batch-max-age 2s` uses (evaluation times on its 2 s grid)."""
    run = tmp_path / "plain"
    # The first check's evaluation time is the baseline; batched, it is rounded down to the
    # 2 s grid, so traffic of an earlier test still being scraped (1 s) could fall after
    # it and be counted here: let that traffic be scraped and left behind first.
    time.sleep(batch + 1.5)
    proc = start_driver(acct, run, canary="2.0.0", stable="1.0.0", checks=10_000,
                        keep_going=True, batch_max_age=batch, tick=0.5)
    try:
        wait_checks(run, 1, timeout=30)  # the first check sets the baseline
        before = {v: app_requests(a) for v, a in acct.apps.items()}
        loads = _loads(acct)
        time.sleep(12)
        for load in loads.values():
            load.stop()
        settle()
        after = {v: app_requests(a) for v, a in acct.apps.items()}
        stopped = time.time()
    except BaseException:
        _stop(proc)
        raise
    _finish(run, proc, after=stopped)
    live = memory_of(run)["live"]
    for side, version in (("canary", "2.0.0"), ("stable", "1.0.0")):
        truth = after[version] - before[version]
        assert truth > 300
        fed = live["fed"][side]
        print(f"{side}: fed {fed:g}, app counted {truth:g} ({(fed - truth) / truth:+.3%})")
        assert abs(fed - truth) <= TOLERANCE * truth
    assert live["fed"]["spans"] >= 6


def test_kill_9_and_a_canary_restart_lose_and_double_nothing(acct: AccountingLab,
                                                             tmp_path: Path) -> None:
    run = tmp_path / "killed"
    proc = start_driver(acct, run, canary="2.0.0", stable="1.0.0", checks=10_000,
                        keep_going=True)
    try:
        wait_checks(run, 1, timeout=30)
        before = {v: app_requests(a) for v, a in acct.apps.items()}
        loads = _loads(acct)
        time.sleep(5)
        os.kill(proc.pid, signal.SIGKILL)  # the checker dies mid-rollout
        proc.wait()
        checked_before_kill = len(checks_of(run))
        time.sleep(3)  # more than an interval without any check
        loads.pop("2.0.0").stop()  # the canary instance restarts: its counters reset
        settle()
        counted_by_old = app_requests(acct.apps["2.0.0"]) - before["2.0.0"]
        acct.restart_app("2.0.0")
        loads["2.0.0"] = Load(f"{acct.apps['2.0.0'].info['url']}/", rps=40).start()
        proc = start_driver(acct, run, canary="2.0.0", stable="1.0.0", checks=10_000,
                        keep_going=True)
        time.sleep(8)
        for load in loads.values():
            load.stop()
        settle()
        after = {v: app_requests(a) for v, a in acct.apps.items()}
        stopped = time.time()
    except BaseException:
        _stop(proc)
        raise
    _finish(run, proc, after=stopped)
    live = memory_of(run)["live"]
    assert checked_before_kill >= 2 and len(checks_of(run)) > checked_before_kill
    truths = {"canary": counted_by_old + after["2.0.0"],
              "stable": after["1.0.0"] - before["1.0.0"]}
    for side, truth in truths.items():
        fed = live["fed"][side]
        print(f"{side}: fed {fed:g}, app counted {truth:g} ({(fed - truth) / truth:+.3%})")
        assert abs(fed - truth) <= TOLERANCE * truth
    # the reset really happened: the new instance counted less than the old one had
    assert after["2.0.0"] < counted_by_old + before["2.0.0"]
