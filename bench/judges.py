"""The judges compared by the benchmark, each fed one interval of every run at a time.

* ``Oracle``: a one-sided SPRT that knows the true rates of both versions (the yardstick).
* ``Flagger``: the canary alone against absolute thresholds every minute, rollback after
  ``threshold`` failed checks (cumulative, as Flagger counts them); no data is a failure.
* ``Kayenta``: Mann-Whitney of per-minute canary vs stable values at each stage's end.
* ``Sequential``: canary's judge, vectorised over runs with the very arrays and functions
  of canary/analysis (bench/judge.py checks it against ``SequentialJudge`` run by run).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import mannwhitneyu

from bench.scenarios import BOUNDS, DT, STAGE_STEPS, Counts, bin_probs
from canary.analysis.sequential import evidence as ev
from canary.analysis.sequential.core import SHAPES, SequentialJudge
from canary.analysis.sequential.memory import EPOCHS, ERROR_COUNTS
from canary.analysis.sequential.run import (
    errors_paths,
    family_log_e,
    family_log_promote,
    latency_paths,
)

MINUTE = int(60 / DT)


def _total(window: list[Counts], name: str) -> np.ndarray:
    """One field of ``Counts`` summed over the intervals of a window."""
    return np.asarray(np.sum([getattr(n, name) for n in window], axis=0), dtype=float)


def quantile(cum: np.ndarray, q: float) -> np.ndarray:
    """histogram_quantile over cumulative bucket counts (..., bins); NaN without data."""
    total = cum[..., -1]
    rank = q * total
    idx = np.argmax(cum >= rank[..., None], axis=-1)
    idx = np.minimum(idx, len(BOUNDS) - 2)  # the +Inf bucket answers the last finite bound
    upper = BOUNDS[idx]
    lower = np.where(idx > 0, BOUNDS[np.maximum(idx - 1, 0)], 0.0)
    below = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None],
                                                 axis=-1)[..., 0], 0.0)
    inside = np.take_along_axis(cum, idx[..., None], axis=-1)[..., 0] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((rank - below) / inside, 0.0, 1.0)
        out = lower + (upper - lower) * np.nan_to_num(frac)
    return np.where(total > 0, out, np.nan)


class Oracle:
    """Knows both versions' true rates; the alternative for healthy runs is +1 point of
    errors and 10% slower latency, which it never sees, so it stays quiet."""

    def __init__(self, runs: int, *, bad: bool, alphas: tuple[float, ...]) -> None:
        self.bad, self.alphas = bad, alphas
        self.llr = np.zeros(runs)
        self.first = {a: np.full(runs, -1) for a in alphas}
        self.slow_q = bin_probs(np.array([1.1]), 0.0)[0]

    def observe(self, k: int, n: Counts) -> None:
        if self.bad:
            p0, p1, q0, q1 = n.ps, n.pc, n.qs, n.qc
        else:
            p0, p1, q0, q1 = n.pc, np.minimum(n.pc + 0.01, 1.0), n.qc, self.slow_q
        with np.errstate(divide="ignore", invalid="ignore"):
            err = n.x * np.log(p1 / p0) + (n.c - n.x) * np.log((1 - p1) / (1 - p0))
            bins = np.diff(n.cl, prepend=0.0, axis=-1)
            lat = np.sum(np.where(bins > 0, bins * np.log(q1 / q0), 0.0), axis=-1)
        self.llr += np.nan_to_num(err) + np.nan_to_num(lat)
        for a in self.alphas:
            hit = (self.first[a] < 0) & (self.llr >= math.log(0.95 / a))
            self.first[a][hit] = k


def share(n: Counts) -> np.ndarray:
    """The canary's observed share of requests per run, 0 without traffic."""
    total = n.c + n.s
    return np.divide(n.c, total, out=np.zeros_like(total), where=total > 0)


def errors_llr(n: Counts, r: np.ndarray | float) -> np.ndarray:
    """The canary's share of the interval's errors: log LR of an error-rate ratio ``r``
    against 1 (what the two-sample SPRT sums)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = n.x * np.log(r) - (n.x + n.y) * np.log1p(share(n) * (r - 1))
    return np.nan_to_num(np.asarray(llr))


def latency_llr(n: Counts, q1: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """Each latency bin's canary share: log LR of bin probabilities q1 against q0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(q0 > 0, q1 / q0, 1.0)
        xb = np.diff(n.cl, prepend=0.0, axis=-1)
        nb = xb + np.diff(n.sl, prepend=0.0, axis=-1)
        per_bin = xb * np.log(r) - nb * np.log1p(share(n)[:, None] * (r - 1))
    return np.nan_to_num(np.sum(np.where(nb > 0, per_bin, 0.0), axis=-1))


class TwoSample:
    """The best a comparison with the stable version can do: an SPRT on the canary's share
    of each interval's errors and of each latency bin's requests (the split canary's
    judge uses), knowing the true rate ratios; for healthy runs the alternative is the
    oracle's (+1 point of errors, 10% slower). What separates it from the oracle is the
    information lost by not knowing the stable version's rates."""

    def __init__(self, runs: int, *, bad: bool, alpha: float) -> None:
        self.bad, self.alpha = bad, alpha
        self.llr = np.zeros(runs)
        self.first = np.full(runs, -1)
        self.slow_q = bin_probs(np.array([1.1]), 0.0)[0]

    def observe(self, k: int, n: Counts) -> None:
        if self.bad:
            r_err, q1 = n.pc / n.ps, n.qc
        else:
            r_err, q1 = np.minimum(n.pc + 0.01, 1.0) / n.pc, self.slow_q
        self.llr += errors_llr(n, r_err) + latency_llr(n, q1, n.qs)
        hit = (self.first < 0) & (self.llr >= math.log(0.95 / self.alpha))
        self.first[hit] = k


class Flagger:
    """Every minute: canary error rate over the last minute <= max, p99 <= max. A
    multiplier of 0 is Flagger's documented defaults (flagger_name: ``flagger-defaults``):
    request-success-rate >= 99%, request-duration p99 <= 500 ms, threshold 5 failed checks."""

    def __init__(self, runs: int, *, error_rate: float, configs: list[tuple[float, int]]):
        self.configs = configs  # (threshold multiplier, failed checks to roll back)
        self.base_err, self.base_p99 = error_rate, float(quantile_true(0.99))
        self.fails = {cfg: np.zeros(runs, dtype=int) for cfg in configs}
        self.first = {cfg: np.full(runs, -1) for cfg in configs}
        self.win: list[Counts] = []

    def observe(self, k: int, n: Counts) -> None:
        self.win.append(n)
        if (k + 1) % MINUTE:
            return
        c = _total(self.win, 'c')
        x = _total(self.win, 'x')
        cl = _total(self.win, 'cl')
        self.win = []
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = x / c
        p99 = quantile(cl, 0.99)
        for cfg in self.configs:
            mult, limit = cfg
            if mult == 0:  # Flagger's documented defaults: success rate >= 99%, p99 <= 500 ms
                bad = (c == 0) | (rate > 0.01) | (p99 > 0.5)
            else:
                bad = (c == 0) | (rate > mult * self.base_err) \
                    | (p99 > (1 + (mult - 1) / 2) * self.base_p99)
            self.fails[cfg] += bad
            hit = (self.first[cfg] < 0) & (self.fails[cfg] >= limit)
            self.first[cfg][hit] = k


def flagger_name(cfg: tuple[float, int]) -> str:
    return "flagger-defaults" if cfg == (0.0, 5) else f"flagger@{cfg[0]}x/{cfg[1]}"


def quantile_true(q: float) -> float:
    from scipy.stats import norm

    from bench.scenarios import MEDIAN, SIGMA
    return float(MEDIAN * math.exp(SIGMA * norm.ppf(q)))


class Kayenta:
    """At each stage's end, per-minute canary vs stable values through Mann-Whitney
    (one-sided); a metric fails below ``p``; a failing metric makes the score 50 < 75."""

    def __init__(self, runs: int, *, ps: tuple[float, ...]) -> None:
        self.ps = ps
        self.first = {p: np.full(runs, -1) for p in ps}
        self.win: list[Counts] = []
        self.minutes: list[tuple[np.ndarray, ...]] = []

    def observe(self, k: int, n: Counts) -> None:
        self.win.append(n)
        if (k + 1) % MINUTE == 0:
            c, x = _total(self.win, 'c'), _total(self.win, 'x')
            s, y = _total(self.win, 's'), _total(self.win, 'y')
            cl, sl = _total(self.win, 'cl'), _total(self.win, 'sl')
            with np.errstate(invalid="ignore", divide="ignore"):
                self.minutes.append((np.nan_to_num(x / c), np.nan_to_num(y / s),
                                     np.nan_to_num(quantile(cl, 0.99)),
                                     np.nan_to_num(quantile(sl, 0.99))))
            self.win = []
        if (k + 1) % STAGE_STEPS:
            return
        cols = [np.stack(col, axis=-1) for col in zip(*self.minutes, strict=True)]
        self.minutes = []
        worst = np.ones(len(cols[0]))
        for can, sta in ((cols[0], cols[1]), (cols[2], cols[3])):
            with np.errstate(invalid="ignore", divide="ignore"):
                p = mannwhitneyu(can, sta, alternative="greater", axis=-1,
                                 method="asymptotic").pvalue
            worst = np.minimum(worst, np.nan_to_num(p, nan=1.0))
        for a in self.ps:
            hit = (self.first[a] < 0) & (worst < a)
            self.first[a][hit] = k


class Sequential:
    """canary's judge over ``runs`` rollouts at once, through the engine's own functions
    (``errors_paths``/``latency_paths`` with the runs as a leading dimension). As in the
    engine, latency starts after the first interval with buckets and takes half of the
    wealth then; promotion evidence restarts with each stage."""

    def __init__(self, judge: SequentialJudge, runs: int, *,
                 alphas: tuple[float, ...] = ()) -> None:
        self.j = judge
        pts, width = judge.tuning.points, len(BOUNDS)
        self.err = [np.zeros((runs, EPOCHS, 1, pts)), np.zeros((runs, 1, pts)),
                    np.zeros((runs, ERROR_COUNTS))]
        self.lat = [np.zeros((runs, EPOCHS, SHAPES, pts)), np.zeros((runs, SHAPES, pts)),
                    np.zeros((runs, 2, width))]
        self.epochs = np.ones(runs, dtype=int)  # both families change stage together
        self.err_alloc = np.zeros(runs)
        self.lat_alloc: np.ndarray | None = None
        self.stage = np.zeros(runs, dtype=int)
        self.stage_req = np.zeros(runs)
        self.seconds = np.zeros(runs)
        self.alphas = alphas or (judge.spec.alpha,)
        self.first = {a: np.full(runs, -1) for a in self.alphas}
        self.log_e = np.zeros(runs)

    def observe(self, k: int, n: Counts, stage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed interval ``k``; returns (rollback now, promote now) masks at the spec's alpha."""
        j = self.j
        new = stage != self.stage
        self.stage = stage.copy()
        for fam in (self.err, self.lat):
            fam[1][new] = 0.0
        if j.tuning.refit_per_stage:
            self.err[2][new, :4] = 0.0
        self.epochs = np.where(new, np.minimum(self.epochs + 1, EPOCHS), self.epochs)
        live = np.arange(EPOCHS)[None, :] < self.epochs[:, None]
        self.stage_req[new] = 0.0
        self.stage_req += n.c
        self.seconds += np.where((n.c > 0) | (self.seconds > 0), DT, 0.0)
        warm = ~(self.seconds <= j.tuning.warmup) if j.tuning.warmup > 0 else np.ones(
            len(n.c), dtype=bool)
        warm_lat = self.seconds > j.tuning.warmup * j.tuning.latency_warmup_factor
        allow = warm & ~warm_lat if j.tuning.warmup_beta > 0 else np.zeros_like(warm)
        err = np.stack([n.c, n.x, n.s, n.y], axis=-1) * warm[:, None]
        rb, pr, counts = errors_paths(j, self.err[0], self.err[1], self.err[2], err[:, None],
                                      live)
        self.err = [rb[..., 0, :], pr[:, :, 0], counts[:, 0]]
        parts = [self.err_alloc
                 + family_log_e(rb, j.mix["errors"].log_prior, j.log_epochs)[:, 0]]
        ok = np.full(len(n.c), j.spec.early_promotion)
        ok &= family_log_promote(pr, j.pmix["errors"].log_prior)[:, 0] >= j.log_threshold
        if self.lat_alloc is not None:
            bins = np.stack([np.diff(n.cl, prepend=0.0, axis=-1),
                             np.diff(n.sl, prepend=0.0, axis=-1)], axis=1) \
                * (warm_lat | allow)[:, None, None]
            rb, pr, counts = latency_paths(j, self.lat[0], self.lat[1], self.lat[2],
                                           bins[:, None], live, allow[:, None])
            self.lat = [rb[..., 0, :], pr[:, :, 0], counts[:, 0]]
            parts.append(self.lat_alloc + family_log_e(rb, j.lat_prior, j.log_epochs)[:, 0])
            ok &= family_log_promote(pr, j.lat_prior)[:, 0] >= j.log_threshold
        self.log_e = ev.logsumexp(np.stack(parts, axis=-1))
        if self.lat_alloc is None and j.latency_wanted:  # as start_latency does
            self.lat[2][:, 1, :] = np.diff(n.sl, prepend=0.0, axis=-1)  # first stable bins
            share = j.tuning.latency_share
            self.lat_alloc = self.log_e + math.log(share)
            self.err_alloc = self.err_alloc + math.log1p(-share)
        for a in self.alphas:
            hit = (self.first[a] < 0) & (self.log_e >= math.log(1 / a))
            self.first[a][hit] = k
        ok &= (self.stage_req > 0) & (self.stage_req >= j.spec.min_stage_requests)
        rollback = self.log_e >= j.log_threshold
        return rollback, ok & ~rollback
