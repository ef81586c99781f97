"""The sequential judge's engine: intervals in, evidence paths out, first decision found.

Split from sequential.py for size. Intervals are first screened one by one in plain
Python (missing data, counter resets, warm-up, automatic latency edges), which is cheap;
the arithmetic then runs on whole stretches of intervals at once with numpy, cut where
the state changes shape: at a new stage (promotion evidence restarts) and where the
latency edges are fixed. A single check is the stretch of length one, so the controller
and ``canary backtest`` compute the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from canary.analysis import evidence as ev
from canary.analysis.judge_state import JudgeState

if TYPE_CHECKING:
    from canary.analysis.sequential import (
        Decision,
        IntervalCounts,
        SequentialJudge,
        VersionCounts,
    )

INF = math.inf
NO_STABLE = ("; no stable traffic to compare with (100% stage?): the evidence stays where"
             " it is and only absolute guards apply")


@dataclass
class _Snap:
    intervals: int
    skipped: int
    canary_seconds: float
    stage_requests: float
    warm: dict[float, float] | None
    warm_total: float


def feed(judge: SequentialJudge, state: JudgeState,
         intervals: Sequence[IntervalCounts]) -> tuple[JudgeState, Decision, int, str]:
    """Advance ``state`` over ``intervals`` up to the first decision; mutates ``state``."""
    i, n, note = 0, len(intervals), ""
    while i < n:
        if intervals[i].stage != state.stage:
            state.stage, state.stage_requests = intervals[i].stage, 0.0
            for fam in (state.errors, state.latency):
                if fam is not None:
                    fam.promote[:] = 0.0
        errors, latency, snaps, notes = [], [], [], []
        edges_now: tuple[float, ...] | None = None
        j = i
        while j < n and intervals[j].stage == state.stage:
            e_row, l_row, why = _screen(judge, state, intervals[j])
            errors.append(e_row)
            latency.append(l_row)
            notes.append(why)
            snaps.append(_Snap(state.intervals, state.skipped, state.canary_seconds,
                               state.stage_requests,
                               None if state.edges is not None else dict(state.warm),
                               state.warm_total))
            j += 1
            if (state.edges is None and judge.latency_wanted
                    and state.warm_total >= judge.tuning.auto_edge_requests):
                edges_now = _choose_edges(state.warm, state.warm_total,
                                          judge.tuning.auto_quantiles)
                break
        decision, k = _advance(judge, state, np.array(errors, dtype=np.float64),
                               np.array(latency, dtype=np.float64).reshape(
                                   len(latency), len(state.edges or ()), 4),
                               np.array([s.stage_requests for s in snaps]))
        note = notes[k]
        if decision != "continue":
            _restore(state, snaps[k])
            return state, decision, i + k, note
        if edges_now is not None:
            judge.freeze_edges(state, edges_now)
        i = j
    return state, "continue", n - 1, note


def _screen(judge: SequentialJudge, state: JudgeState,
            iv: IntervalCounts) -> tuple[list[float], list[list[float]], str]:
    """The usable counts of one interval (zeros when unusable) and why, if unusable."""
    state.intervals += 1
    k = len(state.edges or ())
    zeros_e, zeros_l = [0.0] * 4, [[0.0] * 4 for _ in range(k)]
    can, sta = iv.canary, iv.stable
    if can is None or sta is None:
        state.skipped += 1
        return zeros_e, zeros_l, "; interval skipped: no data for one version"
    if not (_sane(can) and _sane(sta)):
        state.skipped += 1
        return zeros_e, zeros_l, ("; interval skipped: negative or inconsistent counts"
                                  " (a counter reset?)")
    state.stage_requests += can.requests
    if can.requests > 0 or state.canary_seconds > 0:
        state.canary_seconds += iv.seconds
    if judge.tuning.warmup > 0 and state.canary_seconds <= judge.tuning.warmup:
        return zeros_e, zeros_l, "; canary warming up: interval not judged"
    if state.edges is None and judge.latency_wanted:
        _accumulate(state, sta.latency)
    row_e = [can.requests, can.errors, sta.requests, sta.errors] if judge.spec.errors \
        else zeros_e
    row_l = [_exceed(can, sta, edge) for edge in (state.edges or ())]
    note = NO_STABLE if sta.requests <= 0 < can.requests else ""
    return row_e, row_l, note


def _advance(judge: SequentialJudge, state: JudgeState, errors: ev.FloatArray,
             latency: ev.FloatArray, stage_requests: ev.FloatArray) -> tuple[Decision, int]:
    """Run the arithmetic over T screened intervals; leave ``state`` at the decision."""
    t = len(errors)
    parts = [] if state.log_idle is None else [np.full(t, state.log_idle)]
    promote_ok = np.full(t, judge.spec.early_promotion)
    out = {}
    active = False
    for name, fam, data in (("errors", state.errors, errors[:, None, :]),
                            ("latency", state.latency, latency)):
        if fam is None:
            continue
        active = True
        d = np.moveaxis(data, 0, 1)  # (K, T, 4)
        c, x, s, y = d[..., 0], d[..., 1], d[..., 2], d[..., 3]
        rho, events = ev.share_of(c, s), x + y
        tot = ev.paths(fam.totals, d)
        terms = ev.dispersion_terms(_before(fam.totals, tot), x, events, rho)
        sums = ev.paths(fam.dispersion, terms)
        phi = ev.phi(_before(fam.dispersion, sums), pseudo=judge.tuning.dispersion_prior) \
            if judge.tuning.dispersion_prior > 0 else None
        inc, pinc = (ev.increments(x, events, rho, m[name], cap=judge.cap, phi=phi,
                                   count_cap=judge.spec.min_errors_per_interval_cap)
                     for m in (judge.mix, judge.pmix))
        rb, pr = ev.paths(fam.rollback, inc), ev.paths(fam.promote, pinc)
        per = ev.log_evidence(rb, judge.mix[name])  # (K, T)
        parts.append(fam.log_alloc + ev.logsumexp(per, axis=0) - math.log(len(per)))
        promote_ok &= np.min(ev.log_evidence(pr, judge.pmix[name]), axis=0) \
            >= judge.log_threshold
        out[name] = (fam, rb, pr, tot, sums)
    total = ev.logsumexp(np.stack(parts), axis=0) if parts else np.zeros(t)
    promote_ok &= active & (stage_requests > 0)
    promote_ok &= stage_requests >= judge.spec.min_stage_requests
    rollback_at = np.flatnonzero(total >= judge.log_threshold)
    promote_at = np.flatnonzero(promote_ok)
    k, decision = t - 1, "continue"
    if len(promote_at):
        k, decision = int(promote_at[0]), "promote"
    if len(rollback_at) and rollback_at[0] <= k:
        k, decision = int(rollback_at[0]), "rollback"
    for fam, rb, pr, tot, sums in out.values():
        fam.rollback, fam.promote = rb[:, k].copy(), pr[:, k].copy()
        fam.totals, fam.dispersion = tot[:, k].copy(), sums[:, k].copy()
    return decision, k  # type: ignore[return-value]


def _before(start: ev.FloatArray, path: ev.FloatArray) -> ev.FloatArray:
    """The running values before each interval: ``start`` then ``path`` minus its last."""
    return np.concatenate([start[:, None, :], path[:, :-1, :]], axis=1)


def _sane(v: VersionCounts) -> bool:
    return (math.isfinite(v.requests) and math.isfinite(v.errors)
            and 0 <= v.errors <= v.requests)


def _exceed(can: VersionCounts, sta: VersionCounts, edge: float) -> list[float]:
    """[canary total, canary slower than edge, stable total, stable slower], or zeros."""
    row = []
    for v in (can, sta):
        total = v.latency.get(INF, v.requests)
        below = v.latency.get(edge)
        if below is None or not (math.isfinite(total) and 0 <= below <= total):
            return [0.0] * 4
        row += [total, total - below]
    return row


def _accumulate(state: JudgeState, buckets: Mapping[float, float]) -> None:
    """Add one interval of the stable version's buckets to the edge-choosing histogram."""
    total = buckets.get(INF)
    if total is None or not math.isfinite(total) or total <= 0:
        return
    usable = {b: c for b, c in buckets.items()
              if b != INF and math.isfinite(b) and math.isfinite(c) and 0 <= c <= total}
    if state.warm_total > 0:
        usable = {b: c for b, c in usable.items() if b in state.warm}
    if not usable:
        return
    state.warm = {b: state.warm.get(b, 0.0) + c for b, c in sorted(usable.items())}
    state.warm_total += total


def _choose_edges(warm: Mapping[float, float], total: float,
                  quantiles: Sequence[float]) -> tuple[float, ...]:
    """For each target quantile, the bucket bound whose stable CDF is nearest to it."""
    cdf = {b: c / total for b, c in warm.items() if 0 < c < total}
    if not cdf:
        return ()
    return tuple(sorted({min(cdf, key=lambda b: abs(cdf[b] - q)) for q in quantiles}))


def _restore(state: JudgeState, snap: _Snap) -> None:
    state.intervals, state.skipped = snap.intervals, snap.skipped
    state.canary_seconds, state.stage_requests = snap.canary_seconds, snap.stage_requests
    if snap.warm is not None:
        state.warm, state.warm_total = snap.warm, snap.warm_total
