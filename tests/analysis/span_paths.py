"""Seeded scenario rollouts (bench/scenarios.py, 15-second intervals) stepped through the
sequential judge, check by check with the memory through JSON: the combined log e-value
and the decision after every interval.

tests/data/sequential/main-paths.json holds these paths as main computed them before the
judge's cap followed each interval's length (written by ``write``); the judge with a
nominal interval of 15 s must reproduce them bit for bit
(tests/analysis/test_sequential_span.py).

    .venv/bin/python -m tests.analysis.span_paths   # rewrite the file (main's judge only)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.scenarios import BAD, BOUNDS, DT, HEALTHY, STAGE_WEIGHTS, Simulation, seed_of
from canary.analysis.sequential.core import (
    IntervalCounts,
    JudgeTuning,
    SequentialJudge,
    VersionCounts,
)
from canary.specs import SequentialSpec

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "sequential" / "main-paths.json"
SCENARIOS = ("noise", "bursty", "warm-up", "err+5", "err+1-from-25%", "latency-x1.5",
             "tail-p99+50%")
RUNS = 2
STAGE_STEPS = 20  # 5 minutes per stage here, to see both stage changes
STEPS = STAGE_STEPS * len(STAGE_WEIGHTS)


def spec(early: bool) -> SequentialSpec:
    """bench/judge.py's judge: alpha 0.02, tolerance 1, early promotion after 500."""
    return SequentialSpec(alpha=0.02, tolerance=1.0, early_promotion=early,
                          min_stage_requests=500.0)


def rollouts(name: str) -> list[list[IntervalCounts]]:
    """RUNS rollouts of the scenario ``name``, as the judge takes them."""
    sc = next(s for s in (*HEALTHY, *BAD) if s.name == name)
    sim = Simulation(sc, RUNS, seed_of(sc))
    out: list[list[IntervalCounts]] = [[] for _ in range(RUNS)]
    for k in range(STEPS):
        stage = k // STAGE_STEPS
        n = sim.step(k, np.full(RUNS, stage))
        for r in range(RUNS):
            def version(req: float, err: float, cum: np.ndarray) -> VersionCounts:
                return VersionCounts(float(req), float(err), {
                    float(b): float(v) for b, v in zip(BOUNDS, cum, strict=True)})
            out[r].append(IntervalCounts(stable=version(n.s[r], n.y[r], n.sl[r]),
                                         canary=version(n.c[r], n.x[r], n.cl[r]),
                                         seconds=DT, stage=stage))
    return out


def paths(make: Callable[[bool], SequentialJudge]) -> dict[str, Any]:
    """Per scenario, run and judge (``make(early)``, early promotion off and on): the log
    e-value and decision after each interval, up to a rollback."""
    out: dict[str, Any] = {}
    for name in SCENARIOS:
        for r, intervals in enumerate(rollouts(name)):
            for early in (False, True):
                judge = make(early)
                memory: dict[str, Any] | None = None
                log_e, decisions = [], []
                for iv in intervals:
                    step = judge.update(memory, iv)
                    memory = json.loads(json.dumps(step.memory))
                    log_e.append(step.log_e)
                    decisions.append(step.decision)
                    if step.decision == "rollback":
                        break
                whole = judge.run(intervals)
                out[f"{name}/{r}/{'early' if early else 'fixed'}"] = {
                    "logE": log_e, "decisions": decisions,
                    "run": [whole.decision, whole.index, whole.log_e]}
    return out


def write(make: Callable[[bool], SequentialJudge]) -> None:
    data = paths(make)
    assert all(math.isfinite(v) for p in data.values() for v in p["logE"])
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(data, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    write(lambda early: SequentialJudge(spec(early), tuning=JudgeTuning()))
