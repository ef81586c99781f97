"""Labelled, seeded canary scenarios: per-interval counts for thousands of rollouts at once.

Each scenario says how traffic, errors and latency behave on both versions over a rollout
(stages 5/25/50%, 10 minutes each, 15-second intervals; the 100% stage has no stable
traffic to compare with and is not simulated). ``Simulation.step`` draws one interval for
every run given each run's current canary weight, so a judge that promotes stages early
changes the traffic it sees next, as in a real rollout. Ground truth (the true rates) is
kept beside the counts for the oracle and for counting extra failed requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

DT = 15.0  # seconds per interval
STAGE_WEIGHTS = (0.05, 0.25, 0.50)
STAGE_STEPS = 40  # 10 minutes
STEPS = STAGE_STEPS * len(STAGE_WEIGHTS)
BOUNDS = np.array([0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
                   1.0, 2.5, np.inf])
MEDIAN, SIGMA = 0.1, 0.5  # lognormal latency of a healthy version (p99 about 0.32 s)
EDGES = (0.15, 0.2, 0.3)  # bucket bounds nearest the stable p75 / p90 / p99


@dataclass(frozen=True)
class Scenario:
    name: str
    bad: bool
    canary_rps: float = 10.0  # canary requests per second at the 5% stage
    error_rate: float = 0.01
    add_points: float = 0.0  # canary error rate minus stable's, in points
    from_stage: int = 0  # the regression starts with this stage
    latency_scale: float = 1.0  # whole distribution slower by this factor
    tail: float = 0.0  # p99 slower by this fraction, the body untouched
    drift: bool = False  # daily cycle of traffic and error rate
    bursts: bool = False  # shared error bursts plus retry clusters per version
    incident: bool = False  # both versions 1% -> 5% for 10 minutes
    warmup: bool = False  # canary errors x3 and latency x1.3 at start, fading (20 s)
    warmup_latency: float = 0.3  # the warm-up's latency: x(1 + this) at the start
    pause: bool = False  # one canary-only stall a rollout: 1/5 of an interval 10x slower
    note: str = ""
    params: dict[str, float] = field(default_factory=dict)


FIRST_HEALTHY = (
    Scenario("noise", False, note="steady traffic, 1% errors on both"),
    Scenario("daily-drift", False, drift=True, note="traffic and errors follow a daily cycle"),
    Scenario("bursty", False, bursts=True,
             note="3% of intervals x8 errors on both; errors come in retry clusters (mean 2)"),
    Scenario("incident", False, incident=True, note="both versions 1% -> 5% for 10 min"),
    Scenario("warm-up", False, warmup=True, note="canary x3 errors, x1.3 latency, fading in 20 s"),
    Scenario("low-1rps", False, canary_rps=1.0, note="1 req/s on the canary at 5%"),
    Scenario("low-0.1rps", False, canary_rps=0.1, note="0.1 req/s on the canary at 5%"),
    Scenario("high-baseline", False, error_rate=0.10, note="10% errors on both"),
)
# Added after the first eight: seeded after BAD (seed_of), so no earlier scenario's data moves.
LATER_HEALTHY = (
    Scenario("slow-warm-up", False, warmup=True, warmup_latency=1.0,
             note="canary x3 errors, x2 latency, fading in 20 s (a JIT warm-up)"),
    Scenario("pause", False, pause=True,
             note="once per rollout, a 5th of one interval's canary requests 10x slower"),
)
BAD = (
    Scenario("err+0.5", True, add_points=0.005),
    Scenario("err+1", True, add_points=0.01),
    Scenario("err+5", True, add_points=0.05),
    Scenario("err+1-from-25%", True, add_points=0.01, from_stage=1),
    Scenario("err+1@1rps", True, add_points=0.01, canary_rps=1.0),
    Scenario("err+5@1rps", True, add_points=0.05, canary_rps=1.0),
    Scenario("latency-x1.1", True, latency_scale=1.1),
    Scenario("latency-x1.5", True, latency_scale=1.5),
    Scenario("tail-p99+10%", True, tail=0.10),
    Scenario("tail-p99+50%", True, tail=0.50),
    Scenario("err+1-in-incident", True, add_points=0.01, incident=True),
)
HEALTHY = FIRST_HEALTHY + LATER_HEALTHY


SEED = 20260520  # the benchmark's; every tool that reads its data derives seeds from it


def seed_of(sc: Scenario) -> int:
    """The seed of ``sc``'s simulation in bench/judge.py (and the tools that reuse its
    data: bench/sweep.py, bench/floors.py)."""
    return SEED + 1000 * (FIRST_HEALTHY + BAD + LATER_HEALTHY).index(sc)


def _cdf(x: np.ndarray, scale: np.ndarray | float = 1.0) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.asarray(ndtr(np.log(x / (MEDIAN * scale)) / SIGMA))


def bin_probs(scale: np.ndarray, tail: float) -> np.ndarray:
    """Latency bin probabilities (..., bins) for a canary slower by ``scale`` and ``tail``."""
    cdf = _cdf(BOUNDS, np.asarray(scale)[..., None])
    if tail:
        q90, q99 = MEDIAN * np.exp(SIGMA * 1.2816), MEDIAN * np.exp(SIGMA * 2.3263)
        m = ((1 + tail) * q99 - q90) / (q99 - q90)
        pre = np.where(q90 >= BOUNDS, BOUNDS, q90 + (BOUNDS - q90) / m)
        cdf = _cdf(pre, np.asarray(scale)[..., None])
    cdf[..., -1] = 1.0
    return np.diff(cdf, prepend=0.0, axis=-1)


@dataclass
class Counts:
    """One interval for every run: requests, errors, cumulative latency buckets."""

    c: np.ndarray
    x: np.ndarray
    s: np.ndarray
    y: np.ndarray
    cl: np.ndarray  # (runs, bins) cumulative canary bucket counts
    sl: np.ndarray
    pc: np.ndarray  # true canary error probability
    ps: np.ndarray  # true stable error probability
    qc: np.ndarray  # true canary latency bin probabilities (runs, bins)
    qs: np.ndarray


class Simulation:
    """Draws intervals for ``runs`` rollouts of one scenario, reproducibly from ``seed``."""

    def __init__(self, scenario: Scenario, runs: int, seed: int) -> None:
        self.sc, self.runs = scenario, runs
        self.rng = np.random.default_rng(seed)
        r = self.rng
        self.phase = r.uniform(0, 2 * np.pi, runs)  # daily drift
        self.incident_start = r.uniform(120.0, 1080.0, runs)  # seconds
        self.q_stable = bin_probs(np.ones(1), 0.0)[0]
        # drawn only where used, so the other scenarios' streams stay as they were
        self.pause_at = r.integers(1, STEPS, runs) if scenario.pause else None

    def step(self, k: int, stage: np.ndarray) -> Counts:
        """Interval ``k`` (ending at (k + 1) x DT) for runs at stage index ``stage``."""
        sc, r, n = self.sc, self.rng, self.runs
        t = (k + 0.5) * DT
        weight = np.asarray(STAGE_WEIGHTS)[np.minimum(stage, len(STAGE_WEIGHTS) - 1)]
        rps = np.full(n, sc.canary_rps / STAGE_WEIGHTS[0])
        err = np.full(n, sc.error_rate)
        if sc.drift:
            day = 2 * np.pi * t / 86400 + self.phase
            rps *= 1 + 0.5 * np.sin(day)
            err *= 1 + 0.4 * np.sin(day + 1.0)
        if sc.incident:
            hit = (t >= self.incident_start) & (t < self.incident_start + 600)
            err = np.where(hit, 0.05, err)
        if sc.bursts:
            err = np.where(r.random(n) < 0.03, np.minimum(8 * err, 0.5), err)
        ps = err
        regressed = stage >= sc.from_stage
        pc = err + np.where(regressed, sc.add_points, 0.0)
        scale = np.where(regressed, sc.latency_scale, 1.0)
        if sc.warmup:
            fade = np.exp(-t / 20.0)
            pc = np.minimum(pc * (1 + 2 * fade), 1.0)
            scale = scale * (1 + sc.warmup_latency * fade)
        c = r.poisson(rps * weight * DT).astype(float)
        s = r.poisson(rps * (1 - weight) * DT).astype(float)
        x, y = self._errors(c, pc), self._errors(s, ps)
        slower = bool(sc.tail) or bool(np.any(scale != 1.0))
        qc = bin_probs(scale, sc.tail) if slower \
            else np.broadcast_to(self.q_stable, (n, len(BOUNDS)))
        if self.pause_at is not None:  # a stall: a 5th of the interval's requests wait
            stalled = 0.8 * qc + 0.2 * bin_probs(np.full(n, 10.0), 0.0)
            qc = np.where((k == self.pause_at)[:, None], stalled, qc)
        qs = np.broadcast_to(self.q_stable, (n, len(BOUNDS)))
        cl = np.cumsum(r.multinomial(c.astype(np.int64), qc), axis=-1).astype(float)
        sl = np.cumsum(r.multinomial(s.astype(np.int64), qs), axis=-1).astype(float)
        return Counts(c, x, s, y, cl, sl, pc, ps, qc, qs)

    def _errors(self, requests: np.ndarray, p: np.ndarray) -> np.ndarray:
        if not self.sc.bursts:
            return np.asarray(self.rng.binomial(requests.astype(np.int64), p), dtype=float)
        # Retry clusters: each failure shows up as a geometric number of errors (mean 2).
        failures = self.rng.binomial(requests.astype(np.int64), p / 2)
        extra = self.rng.negative_binomial(np.maximum(failures, 1), 0.5)
        return np.asarray(np.minimum(failures + np.where(failures > 0, extra, 0), requests),
                          dtype=float)
