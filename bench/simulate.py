"""Runs every judge over one scenario's simulated rollouts and keeps what scoring needs.

Two simulations per scenario: a fixed stage schedule (5/25/50%, 10 minutes each) seen by
the oracle, the Flagger-style, Kayenta-style and canary judges side by side on the same
counts; and an interactive one where canary's judge promotes stages early, so each run's
traffic follows its own decisions. A sample of runs is replayed through the real
``SequentialJudge`` (one call per run, and one ``update`` per interval with the memory
through JSON) to check that the vectorised copy decides exactly as the controller would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from bench.judges import Flagger, Kayenta, Oracle, Sequential, TwoSample, flagger_name
from bench.scenarios import (
    BOUNDS,
    DT,
    STAGE_STEPS,
    STAGE_WEIGHTS,
    STEPS,
    Counts,
    Scenario,
    Simulation,
)
from canary.analysis.sequential.core import IntervalCounts, SequentialJudge, VersionCounts

CHECK_RUNS = 20  # replayed through the real judge: whole-series run (fixed schedule)
CHECK_EARLY = 10  # and update per interval with JSON memory (early promotion), slower


@dataclass
class Outcome:
    """Per judge configuration: the step of the first rollback per run (-1: none)."""

    first: dict[str, np.ndarray] = field(default_factory=dict)
    start: np.ndarray | None = None  # regression start per run, seconds
    excess: np.ndarray | None = None  # (runs, steps) cumulative extra canary errors
    promoted_at: np.ndarray | None = None  # early variant: seconds to full promotion
    mismatches: int = 0
    checked: int = 0


def run_fixed(sc: Scenario, runs: int, seed: int, judge: SequentialJudge, *,
              alphas: tuple[float, ...], flagger: list[tuple[float, int]],
              kayenta: tuple[float, ...]) -> Outcome:
    sim = Simulation(sc, runs, seed)
    oracle = Oracle(runs, bad=sc.bad, alphas=alphas)
    two = TwoSample(runs, bad=sc.bad, alpha=judge.spec.alpha)
    flag = Flagger(runs, error_rate=sc.error_rate, configs=flagger)
    kay = Kayenta(runs, ps=kayenta)
    seq = Sequential(judge, runs, alphas=alphas)
    excess = np.zeros((runs, STEPS))
    kept: list[Counts] = []
    total = np.zeros(runs)
    for k in range(STEPS):
        stage = np.full(runs, k // STAGE_STEPS)
        n = sim.step(k, stage)
        oracle.observe(k, n)
        two.observe(k, n)
        flag.observe(k, n)
        kay.observe(k, n)
        seq.observe(k, n, stage)
        total += n.c * (n.pc - n.ps)
        excess[:, k] = total
        kept.append(_head(n))
    out = Outcome(excess=excess, start=np.full(runs, sc.from_stage * STAGE_STEPS * DT))
    for a in alphas:
        out.first[f"oracle@{a}"] = oracle.first[a]
        out.first[f"sequential@{a}"] = seq.first[a]
    out.first[f"twosample@{judge.spec.alpha}"] = two.first
    for cfg in flagger:
        out.first[flagger_name(cfg)] = flag.first[cfg]
    for p in kayenta:
        out.first[f"kayenta@{p}"] = kay.first[p]
    stages = [np.full(CHECK_RUNS, k // STAGE_STEPS) for k in range(STEPS)]
    out.checked, out.mismatches = _check(judge, kept, stages, seq.first[judge.spec.alpha],
                                         None)
    return out


def run_early(sc: Scenario, runs: int, seed: int, judge: SequentialJudge) -> Outcome:
    """Interactive: a stage ends when the judge promotes it or after 10 minutes."""
    sim = Simulation(sc, runs, seed)
    seq = Sequential(judge, runs)
    stage = np.zeros(runs, dtype=int)
    since = np.zeros(runs, dtype=int)  # steps in the current stage
    first = np.full(runs, -1)
    promoted = np.full(runs, np.nan)
    start = np.where(sc.from_stage == 0, 0.0, np.nan) * np.ones(runs)
    excess = np.zeros((runs, STEPS))
    total = np.zeros(runs)
    kept, stages, promos = [], [], []
    for k in range(STEPS):
        live = (first < 0) & np.isnan(promoted)
        n = sim.step(k, np.minimum(stage, len(STAGE_WEIGHTS) - 1))
        rollback, promote = seq.observe(k, n, stage)
        total += np.where(live, n.c * (n.pc - n.ps), 0.0)
        excess[:, k] = total
        kept.append(_head(n))
        stages.append(stage[:CHECK_RUNS].copy())
        first[live & rollback & (first < 0)] = k
        since += 1
        advance = live & ~rollback & (promote | (since >= STAGE_STEPS))
        promos.append(promote[:CHECK_RUNS] & live[:CHECK_RUNS])
        stage[advance] += 1
        since[advance] = 0
        reached = advance & (stage == sc.from_stage) & np.isnan(start)
        start[reached] = (k + 1) * DT
        done = advance & (stage >= len(STAGE_WEIGHTS))
        promoted[done] = (k + 1) * DT
    out = Outcome(excess=excess, start=np.nan_to_num(start, nan=np.inf), promoted_at=promoted)
    out.first["sequential+early"] = first
    out.checked, out.mismatches = _check(judge, kept, stages, first, promos,
                                         runs=CHECK_EARLY)
    return out


def _head(n: Counts) -> Counts:
    h = slice(0, CHECK_RUNS)
    return Counts(n.c[h], n.x[h], n.s[h], n.y[h], n.cl[h], n.sl[h], n.pc[h], n.ps[h],
                  n.qc[h], n.qs[h])


def _intervals(kept: list[Counts], stages: list[np.ndarray], r: int) -> list[IntervalCounts]:
    def version(req: float, err: float, cum: np.ndarray) -> VersionCounts:
        return VersionCounts(req, err, {float(b): float(v) for b, v in zip(BOUNDS, cum,
                                                                           strict=True)})

    return [IntervalCounts(stable=version(n.s[r], n.y[r], n.sl[r]),
                           canary=version(n.c[r], n.x[r], n.cl[r]),
                           seconds=DT, stage=int(st[r]))
            for n, st in zip(kept, stages, strict=True)]


def _check(judge: SequentialJudge, kept: list[Counts], stages: list[np.ndarray],
           first: np.ndarray, promos: list[np.ndarray] | None, *,
           runs: int = CHECK_RUNS) -> tuple[int, int]:
    """Replay the first runs through the real judge; count disagreements."""
    runs = min(runs, CHECK_RUNS, len(first))
    bad = 0
    for r in range(runs):
        ivs = _intervals(kept, stages, r)
        if promos is None:
            step = judge.run(ivs)
            got = step.index if step.decision == "rollback" else -1
            bad += got != first[r]
            continue
        memory = None
        for k, iv in enumerate(ivs):
            if iv.stage >= len(STAGE_WEIGHTS):  # promoted at the last stage's time limit
                bad += first[r] != -1
                break
            step = judge.update(memory, iv)
            memory = json.loads(json.dumps(step.memory))
            if step.decision == "rollback":
                bad += first[r] != k
                break
            if (step.decision == "promote") != bool(promos[k][r]):
                bad += 1
                break
            if step.decision == "promote" and iv.stage == len(STAGE_WEIGHTS) - 1:
                bad += first[r] != -1
                break
        else:
            bad += first[r] != -1
    return runs, int(bad)
