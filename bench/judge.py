"""Benchmark of canary judges: false rollbacks, detection, time to detect, cost.

Run ``.venv/bin/python -m bench.judge`` (add ``--quick`` for a smoke run). It simulates
every scenario of bench/scenarios.py, runs the judges of bench/judges.py side by side,
and writes bench/results/judge.md, bench/results/judge.png and bench/results/manifest.json
(each scenario's parameters, seed, run count and correct answer).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

import numpy as np

from bench.report import write_report
from bench.scenarios import BAD, DT, HEALTHY, STEPS, Scenario, seed_of
from bench.simulate import Outcome, run_early, run_fixed
from canary.analysis.sequential.core import JudgeTuning, SequentialJudge
from canary.specs import SequentialSpec

ALPHA = 0.02
ALPHAS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
FLAGGER = [(m, t) for m in (1.5, 2.0, 3.0) for t in (1, 2, 3, 5, 10)] + [(0.0, 5)]
FLAGGER_DEFAULT = "flagger@2.0x/5"
KAYENTA = (0.001, 0.01, 0.05)
OUT = os.path.join(os.path.dirname(__file__), "results")
CONFIG = f"""Judges (the settings shown in the tables; the sweep at the end covers the rest):

- **oracle SPRT**: knows both versions' true error rates and latency distributions per
  interval; one-sided SPRT on the canary's requests, rollback at log((1 - 0.05) / alpha).
- **two-sample SPRT**: knows the true effect (the error-rate ratio, the latency bin
  ratios) but, like canary's judge, sees only the canary's share of each interval's
  errors and of each latency bin's requests; same threshold as the oracle.
- **Flagger-style**: every minute, the canary's error rate over the last minute must be
  <= m x the healthy baseline and its p99 (histogram_quantile) <= (1 + (m - 1) / 2) x the
  healthy p99; no data is a failed check; rollback after t failed checks (cumulative).
  Shown: {FLAGGER_DEFAULT} (m = 2, t = 5); thresholds use the true healthy baseline.
- **Kayenta-style**: at each stage's end, one-sided Mann-Whitney of the 10 per-minute
  canary values against the stable's (error rate, p99); a metric fails at p < 0.01, one
  failing metric gives score 50 < 75: rollback.
- **canary sequential**: `SequentialJudge` with alpha = {ALPHA}, tolerance 1.0 (no worse
  than stable), errors and latency (all buckets), JudgeTuning defaults (the policy
  `default` runs these).
- **canary + early promotion**: the same with early_promotion on and
  min_stage_requests 500; a stage ends when promoted or after 10 minutes."""


def judge_for(*, early: bool) -> SequentialJudge:
    spec = SequentialSpec(alpha=ALPHA, tolerance=1.0, early_promotion=early,
                          min_stage_requests=500.0)
    return SequentialJudge(spec, tuning=JudgeTuning())


def one(args: tuple[Scenario, int, int, int]) -> tuple[str, dict[str, Any]]:
    sc, runs, early_runs, seed = args
    fixed = run_fixed(sc, runs, seed, judge_for(early=False), alphas=ALPHAS,
                      flagger=FLAGGER, kayenta=KAYENTA)
    early = run_early(sc, early_runs, seed + 1, judge_for(early=True))
    return sc.name, {"fixed": score(sc, fixed), "early": score(sc, early)}


def score(sc: Scenario, out: Outcome) -> dict[str, Any]:
    """Per judge configuration: rollback rate, times to detect, extra errors, promotion."""
    assert out.excess is not None and out.start is not None
    res: dict[str, Any] = {"checked": out.checked, "mismatches": out.mismatches}
    runs = out.excess.shape[0]
    for name, first in out.first.items():
        hit = first >= 0
        t = np.where(hit, (first + 1) * DT - out.start, np.inf)
        t = np.where(hit, np.maximum(t, 0.0), np.inf)
        idx = np.where(hit, first, STEPS - 1)
        extra = out.excess[np.arange(runs), idx]
        entry = {"rate": float(hit.mean()), "rolled": int(hit.sum()), "runs": runs,
                 "median": _q(t, 0.5), "p90": _q(t, 0.9), "extra": float(extra.mean())}
        if out.promoted_at is not None:
            ok = ~hit & ~np.isnan(out.promoted_at)
            entry["promote"] = float(np.median(out.promoted_at[ok])) if ok.any() else None
        res[name] = entry
    return res


def _q(t: np.ndarray, q: float) -> float | None:
    v = float(np.quantile(t, q, method="inverted_cdf"))
    return v if math.isfinite(v) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    ap.add_argument("--healthy-runs", type=int, default=4000)
    ap.add_argument("--bad-runs", type=int, default=500)
    ap.add_argument("--early-runs", type=int, default=1000,
                    help="runs per scenario with early promotion (at most the others)")
    ap.add_argument("--only", nargs="*", default=None, help="scenario names")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    if a.quick:
        a.healthy_runs, a.bad_runs, a.early_runs = 400, 200, 200
    scenarios = [s for s in HEALTHY + BAD if a.only is None or s.name in a.only]
    jobs = []
    for sc in scenarios:
        runs = a.bad_runs if sc.bad else a.healthy_runs
        jobs.append((sc, runs, min(runs, a.early_runs), seed_of(sc)))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        results = dict(pool.map(one, sorted(jobs, key=lambda j: -j[1])))
    elapsed = time.perf_counter() - t0
    os.makedirs(a.out, exist_ok=True)
    manifest = [{"scenario": sc.name, "expected": "rollback" if sc.bad else "promote",
                 "runs": runs, "seed": seed, "early_runs": early, "early_seed": seed + 1,
                 "params": {k: v for k, v in asdict(sc).items() if k not in ("name",)}}
                for sc, runs, early, seed in jobs]
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump({"alpha": ALPHA, "interval_seconds": DT, "steps": STEPS,
                   "scenarios": manifest}, f, indent=1)
    with open(os.path.join(a.out, "raw.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_report(results, scenarios, out=a.out, elapsed=elapsed, alpha=ALPHA,
                 alphas=ALPHAS, flagger_default=FLAGGER_DEFAULT, workers=a.workers,
                 config=CONFIG)
    print(f"wrote {a.out}/judge.md in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
