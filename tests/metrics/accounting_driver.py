"""A live judge loop as its own process, journaling like the controller: kill -9 it anywhere.

Each check runs ``LiveSequential.check`` against a real Prometheus (optionally through the
batching hub `canary serve` uses), then persists the returned memory atomically (the
controller's "save, then act") and appends one JSON line to a log. Checks come due
``interval`` after the previous one started and start then (as `canary deploy` sleeps
until due), or on the next ``--tick`` after that (as `canary serve`'s scheduler notices
them). A restarted process resumes from the persisted memory; the log keeps counting.
Each log line also holds what the judge was fed (the span's seconds, both versions'
counts) and the combined log e-value after it, so a live decision can be replayed and
compared with the backtest's (bench/accounting.py, bench/accounting_replay.py).

    python -m tests.metrics.accounting_driver --prometheus URL --policy FILE \\
        --canary 2.0.0 --stable 1.0.0 --memory mem.json --log checks.jsonl --checks 20
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from canary.analysis.sequential.core import (
    IntervalCounts,
    JudgeStep,
    SequentialJudge,
    VersionCounts,
)
from canary.analysis.sequential.live import LiveSequential
from canary.config.spec import load_policy
from canary.metrics.base import MetricsProvider
from canary.metrics.batching import BatchedProvider, BatchHub
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Outcome


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _save(path: Path, memory: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(memory, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Spy(SequentialJudge):
    """The judge the live check builds, noting the last interval it was fed and its step."""

    last: tuple[IntervalCounts, JudgeStep] | None = None

    def update(self, memory: Mapping[str, Any] | None, interval: IntervalCounts
               ) -> JudgeStep:
        step = super().update(memory, interval)
        self.last = (interval, step)
        return step


def counts_json(v: VersionCounts | None) -> dict[str, Any] | None:
    """One version's counts as a recording writes them (latency bounds as strings)."""
    if v is None:
        return None
    return {"requests": v.requests, "errors": v.errors,
            "latency": {("+Inf" if b == float("inf") else repr(b)): c
                        for b, c in sorted(v.latency.items())}}


def fed_json(spy: _Spy) -> dict[str, Any]:
    """What the judge was fed at the last check and where its evidence stood after it."""
    if spy.last is None:
        return {}
    iv, step = spy.last
    return {"seconds": iv.seconds, "canary": counts_json(iv.canary),
            "stable": counts_json(iv.stable), "logE": step.log_e,
            "logEBy": {m.name: m.log_e for m in step.metrics}}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--service", default="checkout")
    ap.add_argument("--canary", required=True)
    ap.add_argument("--stable", required=True)
    ap.add_argument("--memory", required=True, type=Path)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--checks", type=int, default=20)
    ap.add_argument("--tick", type=float, default=0.0,
                    help="start a due check on the next multiple of this (0: when due)")
    ap.add_argument("--batch-max-age", type=float, default=0.0)
    ap.add_argument("--keep-going", action="store_true",
                    help="keep checking after a rollback (accounting runs)")
    args = ap.parse_args(argv)
    policy = load_policy(args.policy)
    provider: MetricsProvider
    if args.batch_max_age > 0:
        hub = BatchHub(lambda: PrometheusProvider(args.prometheus), max_age=args.batch_max_age)
        provider = BatchedProvider(hub, labels={})
    else:
        provider = PrometheusProvider(args.prometheus)
    live = LiveSequential(policy, provider)
    spy = _Spy(live.judge.spec, tuning=live.judge.tuning, interval=live.judge.interval)
    live.judge = spy
    done = len(args.log.read_text().splitlines()) if args.log.exists() else 0
    due = time.time()
    while done < args.checks:
        now = time.time()
        if now < due:  # when due, or on the next tick after it
            late = (args.tick - (due % args.tick)) % args.tick if args.tick > 0 else 0.0
            time.sleep(due - now + late)
        started = time.time()
        spy.last = None
        memory = _load(args.memory)
        results, new, _early = live.check(memory, service=args.service, version=args.canary,
                                          stable_version=args.stable, stage=0)
        if new is not None:
            _save(args.memory, new)
        head = results[0]
        line = {"at": None if new is None else new["live"]["at"], "started": started,
                "outcome": head.outcome.value, "message": head.message, **fed_json(spy)}
        with open(args.log, "a") as f:
            f.write(json.dumps(line) + "\n")
        done += 1
        if head.outcome is Outcome.FAILED and not args.keep_going:
            break
        due = started + policy.interval


if __name__ == "__main__":
    main()
