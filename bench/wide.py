"""A wide benchmark: many shapes of traffic, judged by the real CLI over A.5 recordings.

bench/judge.py tunes on one shape of service (10 req/s, lognormal latency, 15 buckets);
a policy tuned there can still fail a service whose latency, error rate, traffic or
buckets look nothing like it (issue 12: an absolute p99 backstop rolled back 78.6% of
healthy services with a 0.5% slow path). This generator covers what the default must
survive: heavy and bimodal tails, services with a normal p99 of 3-10 s and others under
10 ms, baseline errors 0-5%, 0.05-500 req/s, the Prometheus client's default buckets,
exponential buckets and millisecond-unit buckets, canary counter resets, missing scrapes
and overdispersed counts; and regressions of each kind to be caught before full promotion.

``.venv/bin/python -m bench.wide OUTDIR [--runs N] [--bad-runs M]`` writes
``OUTDIR/<category>-<run>.json`` (stages 5/25/50/100% of 10 minutes, 15 s intervals;
the 100% stage has no stable data) and ``OUTDIR/expected.json.txt``. ``--policy P``
(repeatable) then runs ``canary backtest --policy P --data OUTDIR -o json`` (the real
CLI, a subprocess) and writes per-category figures to ``--report``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import ndtr

DT = 15.0
WEIGHTS = (0.05, 0.25, 0.50, 1.0)
STAGE_STEPS = 40
STEPS = STAGE_STEPS * len(WEIGHTS)
FULL = STAGE_STEPS * 3 * DT  # seconds: full promotion starts here
SEED = 12012

PROM = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # client defaults
EXP = tuple(0.0005 * 2.0 ** k for k in range(16))  # ExponentialBuckets(0.5 ms, 2, 16)
MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
FINE = (0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


@dataclass(frozen=True)
class Profile:
    """One kind of service; a regression changes the canary from ``start`` seconds on."""

    name: str
    bad: bool = False
    rps: float = 20.0  # whole service, requests per second
    err: float = 0.01
    median: float = 0.05  # latency body (seconds, or the buckets' unit)
    sigma: float = 0.5
    slow: float = 0.0  # share of requests on a slow path
    slow_median: float = 2.0
    buckets: tuple[float, ...] = PROM
    unit: float = 1.0  # latency values are multiplied by this (1000: milliseconds)
    drift: bool = False  # daily cycle of load and errors (phase random per run)
    incident: bool = False  # both versions 1% -> 5% errors for 10 minutes
    bursty: bool = False  # shared bursts x8 in 3% of intervals, retry clusters
    slowdown: bool = False  # both versions x2 latency for 5 minutes
    dispersion: float = 0.0  # > 0: gamma(1/d) load multiplier per interval
    restarts: int = 0  # canary counter resets during the rollout
    missing: float = 0.0  # share of intervals with a version's scrape missing
    # the regression (canary only)
    add_err: float = 0.0
    err_factor: float = 1.0
    latency_factor: float = 1.0
    slow_factor: float = 1.0
    start: float = 0.0
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


ISSUE = Profile("issue-shape", slow=0.005, slow_median=2.0, drift=True)

HEALTHY = (
    ISSUE,
    replace(ISSUE, name="issue-incident", incident=True),
    replace(ISSUE, name="issue-bursty", bursty=True),
    replace(ISSUE, name="issue-slowdown", slowdown=True),
    replace(ISSUE, name="issue-2rps", rps=2.0),
    Profile("heavy-tail", sigma=1.3, median=0.03),
    Profile("bimodal", median=0.004, sigma=0.3, slow=0.4, slow_median=0.2),
    Profile("bimodal-at-p99", slow=0.01, slow_median=3.0),
    Profile("slow-p99-5s", median=0.8, sigma=0.8, buckets=PROM),
    Profile("slow-p99-10s", median=1.5, sigma=0.85, buckets=EXP),
    Profile("fast-p99-5ms", median=0.002, sigma=0.4, buckets=EXP),
    Profile("fast-prom-buckets", median=0.001, sigma=0.5, buckets=PROM),
    Profile("ms-buckets", median=0.08, sigma=0.6, buckets=MS, unit=1000.0),
    Profile("fine-buckets", median=0.1, buckets=FINE),
    Profile("errors-0", err=0.0),
    Profile("errors-5pct", err=0.05),
    Profile("errors-5pct-bursty", err=0.05, bursty=True),
    Profile("rps-0.05", rps=0.05),
    Profile("rps-500", rps=500.0, slow=0.005),
    Profile("restarts", restarts=2),
    Profile("missing-scrapes", missing=0.05),
    Profile("overdispersed", dispersion=0.3, bursty=True),
)
BAD = (
    replace(ISSUE, name="bad-issue-err+2", bad=True, add_err=0.02),
    replace(ISSUE, name="bad-issue-slowpath-x4", bad=True, slow_factor=4.0),
    replace(ISSUE, name="bad-issue-latency-x1.5", bad=True, latency_factor=1.5),
    replace(ISSUE, name="bad-issue-err+2-from-25%", bad=True, add_err=0.02, start=600.0),
    Profile("bad-errors-0-to-1pct", bad=True, err=0.0, add_err=0.01),
    Profile("bad-errors-5pct-x2", bad=True, err=0.05, err_factor=2.0),
    Profile("bad-heavy-tail-x1.5", bad=True, sigma=1.3, median=0.03, latency_factor=1.5),
    Profile("bad-slow-p99-x1.3", bad=True, median=0.8, sigma=0.8, latency_factor=1.3),
    Profile("bad-fast-x2", bad=True, median=0.002, sigma=0.4, buckets=EXP, latency_factor=2.0),
    Profile("bad-ms-buckets-x1.5", bad=True, median=0.08, sigma=0.6, buckets=MS, unit=1000.0,
            latency_factor=1.5),
    Profile("bad-rps-500-err+0.5", bad=True, rps=500.0, add_err=0.005),
    Profile("bad-rps-2-err+5", bad=True, rps=2.0, add_err=0.05),
    Profile("bad-restarts-err+2", bad=True, restarts=2, add_err=0.02),
    Profile("bad-missing-latency-x1.5", bad=True, missing=0.05, latency_factor=1.5),
    Profile("bad-overdispersed-err+3", bad=True, dispersion=0.3, bursty=True, add_err=0.03),
)


def _cdf(p: Profile, bounds: np.ndarray, scale: np.ndarray, slow_share: np.ndarray
         ) -> np.ndarray:
    """P(latency <= bound) per run, (runs, bounds): a lognormal body plus a slow path."""
    x = np.log(bounds / p.unit)[None, :] - np.log(scale)[:, None]
    with np.errstate(divide="ignore"):
        body = ndtr((x - np.log(p.median)) / p.sigma)
        slow = ndtr((x - np.log(p.slow_median)) / 0.4)
    f = slow_share[:, None]
    return np.asarray((1 - f) * body + f * slow)


def simulate(p: Profile, runs: int, seed: int) -> list[list[dict[str, Any]]]:
    """``runs`` recordings of ``p``: per run, the list of A.5 points."""
    r = np.random.default_rng(seed)
    bounds = np.array(p.buckets + (np.inf,))
    phase = r.uniform(0, 2 * np.pi, runs)
    incident_at = r.uniform(60.0, 1800.0, runs)
    slowdown_at = r.uniform(60.0, 2000.0, runs)
    restart_steps = [set(r.choice(np.arange(2, STEPS), p.restarts, replace=False).tolist())
                     for _ in range(runs)] if p.restarts else [set() for _ in range(runs)]
    cum_c = np.zeros((runs, 2 + len(bounds)))  # canary counters since its last restart
    out: list[list[dict[str, Any]]] = [[] for _ in range(runs)]
    for k in range(STEPS):
        t = (k + 0.5) * DT
        w = WEIGHTS[k // STAGE_STEPS]
        rate = np.full(runs, p.rps * DT)
        err = np.full(runs, p.err)
        if p.drift:
            day = 2 * np.pi * t / 86400 + phase
            rate *= 1 + 0.5 * np.sin(day)
            err *= 1 + 0.4 * np.sin(day + 1.0)
        if p.incident:
            err = np.where((t >= incident_at) & (t < incident_at + 600), 0.05, err)
        if p.bursty:
            err = np.where(r.random(runs) < 0.03, np.minimum(8 * err + 0.02, 0.5), err)
        if p.dispersion:
            rate *= r.gamma(1 / p.dispersion, p.dispersion, runs)
        total = r.poisson(rate)
        c = r.binomial(total, w)
        s = total - c
        hit = t >= p.start
        pc = np.clip(np.where(hit, err * p.err_factor + p.add_err, err), 0, 1)
        scale = np.where((t >= slowdown_at) & (t < slowdown_at + 300), 2.0, 1.0) \
            if p.slowdown else np.ones(runs)
        sc = scale * np.where(hit, p.latency_factor, 1.0)
        fs = np.full(runs, p.slow)
        fc = np.where(hit, np.minimum(p.slow * p.slow_factor, 1.0), fs)
        xc, ys = _errors(r, c, pc, p.bursty), _errors(r, s, err, p.bursty)
        lc = _buckets(r, c, _cdf(p, bounds, sc, fc))
        ls = _buckets(r, s, _cdf(p, bounds, scale, fs))
        miss_c = r.random(runs) < p.missing
        miss_s = r.random(runs) < p.missing
        inc_c = np.concatenate([c[:, None], xc[:, None], lc], axis=1).astype(float)
        for i in range(runs):
            row_c = inc_c[i]
            if k in restart_steps[i]:
                # The canary restarted: its counters start again from what this interval
                # saw, so the increment a scraper computes is new minus old (negative).
                row_c = inc_c[i] - cum_c[i]
                cum_c[i] = inc_c[i]
            else:
                cum_c[i] += inc_c[i]
            point: dict[str, Any] = {"t": round((k + 1) * DT, 3)}
            point["canary"] = None if miss_c[i] else _version(row_c, bounds)
            point["stable"] = None if (miss_s[i] or w >= 1.0) else \
                _version(np.concatenate([[s[i], ys[i]], ls[i]]), bounds)
            out[i].append(point)
    return out


def _errors(r: np.random.Generator, n: np.ndarray, p: np.ndarray, clustered: bool
            ) -> np.ndarray:
    if not clustered:
        return np.asarray(r.binomial(n, p))
    failures = r.binomial(n, p / 2)
    extra = r.negative_binomial(np.maximum(failures, 1), 0.5)
    return np.asarray(np.minimum(failures + np.where(failures > 0, extra, 0), n))


def _buckets(r: np.random.Generator, n: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    cdf = cdf.copy()
    cdf[:, -1] = 1.0
    probs = np.clip(np.diff(cdf, prepend=0.0, axis=1), 0, None)
    probs /= probs.sum(axis=1, keepdims=True)
    return np.cumsum(r.multinomial(n, probs), axis=1)


def _version(row: np.ndarray, bounds: np.ndarray) -> dict[str, Any]:
    latency = {("+Inf" if np.isinf(b) else f"{b:g}"): int(v)
               for b, v in zip(bounds, row[2:], strict=True)}
    return {"requests": int(row[0]), "errors": int(row[1]), "latency": latency}


def write(out: str, *, runs: int, bad_runs: int) -> dict[str, str]:
    os.makedirs(out, exist_ok=True)
    expected = {}
    for i, p in enumerate(HEALTHY + BAD):
        n = bad_runs if p.bad else runs
        for j, series in enumerate(simulate(p, n, SEED + 1000 * i)):
            name = f"{p.name}-{j}"
            with open(os.path.join(out, f"{name}.json"), "w") as f:
                json.dump({"name": name, "service": "svc", "interval": f"{DT:g}s",
                           "series": series}, f, separators=(",", ":"))
            expected[name] = "rollback" if p.bad else "promote"
    with open(os.path.join(out, "expected.json.txt"), "w") as f:
        json.dump(expected, f, indent=1)
    return expected


def backtest(policy: str, data: str, *, code: str | None = None) -> list[dict[str, Any]]:
    """The real CLI, as a user runs it; ``code``: a directory holding another version of
    the ``canary`` package (e.g. ``git archive REV canary | tar -x -C DIR``)."""
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code
    done = subprocess.run([sys.executable, "-m", "canary", "backtest", "--policy", policy,
                           "--data", data, "-o", "json"], capture_output=True, text=True,
                          check=False, env=env, cwd=code)  # its own policies/ too
    if done.returncode not in (0, 1):
        raise SystemExit(f"canary backtest failed ({done.returncode}): {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def score(answers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per category: runs, rollbacks, rollbacks before full promotion, median minutes."""
    start = {p.name: p.start for p in HEALTHY + BAD}
    rows: dict[str, dict[str, Any]] = {}
    for a in answers:
        cat = a["scenario"].rsplit("-", 1)[0]
        row = rows.setdefault(cat, {"runs": 0, "rollback": 0, "before_full": 0, "times": [],
                                    "reasons": {}, "held": 0})
        row["runs"] += 1
        row["held"] += a["decision"] == "inconclusive"  # live: never promoted
        if a["decision"] == "rollback":
            row["rollback"] += 1
            key = a["reason"].split(" = ")[0].split(":")[0][:60]
            row["reasons"][key] = row["reasons"].get(key, 0) + 1
            if a["decidedAt"] <= FULL + 1e-9:
                row["before_full"] += 1
                row["times"].append((a["decidedAt"] - start[cat]) / 60)
    return rows


def table(policy: str, rows: dict[str, dict[str, Any]]) -> str:
    lines = [f"### `{policy}`", "", "| category | runs | rolled back | before full promotion "
             "| median minutes to detect | held | main reason |",
             "|---|---|---|---|---|---|---|"]
    bad = {p.name for p in BAD}
    for p in HEALTHY + BAD:
        row = rows.get(p.name)
        if row is None:
            continue
        n = row["runs"]
        times = sorted(row["times"])
        med = f"{float(np.median(times)):.2f}" if p.name in bad and \
            len(times) * 2 > n else ("miss" if p.name in bad else "")
        reason = max(row["reasons"], key=row["reasons"].get) if row["reasons"] else ""
        lines.append(f"| {p.name} | {n} | {100 * row['rollback'] / n:.1f}% | "
                     f"{100 * row['before_full'] / n:.1f}% | {med} | "
                     f"{100 * row['held'] / n:.1f}% | {reason} |")
    healthy = [rows[p.name] for p in HEALTHY if p.name in rows]
    regress = [rows[p.name] for p in BAD if p.name in rows]
    fr = sum(r["rollback"] for r in healthy) / max(sum(r["runs"] for r in healthy), 1)
    det = sum(r["before_full"] for r in regress) / max(sum(r["runs"] for r in regress), 1)
    worst = max((r["rollback"] / r["runs"] for r in healthy), default=0.0)
    held = sum(r["held"] for r in healthy)
    least = min((r["before_full"] / r["runs"] for r in regress), default=0.0)
    lines += ["", f"All healthy: {100 * fr:.1f}% rolled back (worst category "
              f"{100 * worst:.1f}%); all regressions: {100 * det:.1f}% caught before full "
              f"promotion (least caught category {100 * least:.1f}%); healthy held, never "
              f"promoted (`inconclusive`): {held} of {sum(r['runs'] for r in healthy)}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--runs", type=int, default=200, help="recordings per healthy category")
    ap.add_argument("--bad-runs", type=int, default=60, help="per regression category")
    ap.add_argument("--policy", action="append", default=[])
    ap.add_argument("--report", help="append the tables to this Markdown file")
    ap.add_argument("--no-write", action="store_true", help="reuse OUTDIR's recordings")
    ap.add_argument("--code", help="run this copy of the canary package (the 'before')")
    a = ap.parse_args()
    if not a.no_write:
        t0 = time.perf_counter()
        expected = write(a.out, runs=a.runs, bad_runs=a.bad_runs)
        print(f"wrote {len(expected)} recordings to {a.out} in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    parts = []
    for policy in a.policy:
        t0 = time.perf_counter()
        rows = score(backtest(policy, os.path.abspath(a.out), code=a.code))
        text = table(policy + (f" (code from {a.code})" if a.code else ""), rows)
        parts.append(text + f"\n(`canary backtest` took {time.perf_counter() - t0:.0f} s)\n")
        print(parts[-1], flush=True)
    if a.report and parts:
        with open(a.report, "a") as f:
            f.write("\n".join(parts))


if __name__ == "__main__":
    main()
