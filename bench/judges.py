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

from bench.scenarios import BOUNDS, DT, EDGES, STAGE_STEPS, Counts, bin_probs
from canary.analysis import evidence as ev
from canary.analysis.sequential import SequentialJudge

MINUTE = int(60 / DT)


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


class Flagger:
    """Every minute: canary error rate over the last minute <= max, p99 <= max."""

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
        c = sum(w.c for w in self.win)
        x = sum(w.x for w in self.win)
        cl = sum(w.cl for w in self.win)
        self.win = []
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = x / c
        p99 = quantile(cl, 0.99)
        for cfg in self.configs:
            mult, limit = cfg
            bad = (c == 0) | (rate > mult * self.base_err) \
                | (p99 > (1 + (mult - 1) / 2) * self.base_p99)
            self.fails[cfg] += bad
            hit = (self.first[cfg] < 0) & (self.fails[cfg] >= limit)
            self.first[cfg][hit] = k


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
            c, x = sum(w.c for w in self.win), sum(w.x for w in self.win)
            s, y = sum(w.s for w in self.win), sum(w.y for w in self.win)
            cl, sl = sum(w.cl for w in self.win), sum(w.sl for w in self.win)
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
    """canary's judge over ``runs`` rollouts at once: explicit latency edges (so half of
    the wealth is on latency from the start), promotion evidence reset per stage."""

    def __init__(self, judge: SequentialJudge, runs: int, *,
                 alphas: tuple[float, ...] = ()) -> None:
        self.j = judge
        pts = judge.tuning.points
        k = len(EDGES)
        self.edge_idx = [int(np.flatnonzero(BOUNDS == e)[0]) for e in EDGES]
        self.err = np.zeros((runs, 1, pts))
        self.lat = np.zeros((runs, k, pts))
        self.perr = np.zeros((runs, 1, pts))
        self.plat = np.zeros((runs, k, pts))
        self.tot = {"errors": np.zeros((runs, 1, 4)), "latency": np.zeros((runs, k, 4))}
        self.disp = {"errors": np.zeros((runs, 1, 2)), "latency": np.zeros((runs, k, 2))}
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
        self.perr[new] = 0.0
        self.plat[new] = 0.0
        self.stage_req[new] = 0.0
        self.stage_req += n.c
        self.seconds += np.where((n.c > 0) | (self.seconds > 0), DT, 0.0)
        live = ~(self.seconds <= j.tuning.warmup) if j.tuning.warmup > 0 else np.ones(
            len(n.c), dtype=bool)
        err = np.stack([n.c, n.x, n.s, n.y], axis=-1)[:, None, :] * live[:, None, None]
        ct, st = n.cl[:, -1:], n.sl[:, -1:]
        lat = np.stack([np.broadcast_to(ct, (len(ct), len(EDGES))),
                        ct - n.cl[:, self.edge_idx],
                        np.broadcast_to(st, (len(st), len(EDGES))),
                        st - n.sl[:, self.edge_idx]], axis=-1) * live[:, None, None]
        cc = j.spec.min_errors_per_interval_cap
        fam_e = []
        ok = np.full(len(n.c), j.spec.early_promotion)
        for name, data, acc, pacc in (("errors", err, self.err, self.perr),
                                      ("latency", lat, self.lat, self.plat)):
            c, x, s, y = (data[..., i] for i in range(4))
            rho, events = ev.share_of(c, s), x + y
            before = self.tot[name]
            self.tot[name] = before + data
            terms = ev.dispersion_terms(before, x, events, rho)
            phi = ev.phi(self.disp[name], pseudo=j.tuning.dispersion_prior) \
                if j.tuning.dispersion_prior > 0 else None
            self.disp[name] = self.disp[name] + terms
            acc += ev.increments(x, events, rho, j.mix[name], cap=j.cap, count_cap=cc, phi=phi)
            pacc += ev.increments(x, events, rho, j.pmix[name], cap=j.cap, count_cap=cc,
                                  phi=phi)
            per = ev.log_evidence(acc, j.mix[name])
            fam_e.append(-math.log(2) + ev.logsumexp(per) - math.log(per.shape[-1]))
            ok &= np.min(ev.log_evidence(pacc, j.pmix[name]), axis=-1) >= j.log_threshold
        self.log_e = ev.logsumexp(np.stack(fam_e, axis=-1))
        for a in self.alphas:
            hit = (self.first[a] < 0) & (self.log_e >= math.log(1 / a))
            self.first[a][hit] = k
        ok &= (self.stage_req > 0) & (self.stage_req >= j.spec.min_stage_requests)
        rollback = self.log_e >= j.log_threshold
        return rollback, ok & ~rollback
