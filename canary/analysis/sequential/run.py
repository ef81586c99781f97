"""The sequential judge's engine: intervals in, evidence paths out, first decision found.

Apart from core.py for size. Intervals are first screened one by one in plain
Python (missing data, counter resets, warm-up, the latency bins), which is cheap; the
arithmetic then runs on whole stretches of intervals at once with numpy, cut where the
state changes shape: at a new stage (promotion evidence restarts) and where the latency
test starts. ``errors_paths`` and ``latency_paths`` take any leading batch dimensions, so
the benchmark runs thousands of rollouts through the very same functions; a single check
is a stretch of length one, so the controller and ``canary backtest`` agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from canary.analysis.sequential import evidence as ev
from canary.analysis.sequential.counts import (
    bin_bounds,
    bins_of,
    cumulative,
    sane,
    stable_bins,
)
from canary.analysis.sequential.memory import JudgeState
from canary.analysis.sequential.spans import cap_scale, judged_part

if TYPE_CHECKING:
    from canary.analysis.sequential.core import (
        Decision,
        IntervalCounts,
        SequentialJudge,
    )

Arr = ev.FloatArray
NO_STABLE = ("; no stable traffic to compare with (100% stage?): the evidence stays where"
             " it is and only absolute guards apply")


def errors_paths(judge: SequentialJudge, rollback: Arr, promote: Arr, counts: Arr,
                 data: Arr, live: npt.NDArray[np.bool_], span: Arr | None = None
                 ) -> tuple[Arr, Arr, Arr]:
    """Errors over T intervals: ``data`` (..., T, 4) = canary requests, errors, stable
    requests, errors; state: rollback (..., E, 1, J), promote (..., 1, J), counts (..., 10),
    ``live`` (..., E) the epochs started; ``span`` (..., T) each interval's length in
    nominal intervals, which scales its cap (None: 1). Returns the paths of the rollback
    sums (..., E, 1, T, J), the promotion sums (..., 1, T, J) and the counts (..., T, 10)."""
    c, x, s, y = (data[..., i] for i in range(4))
    rho, n = ev.share_of(c, s), x + y
    totals = ev.paths(counts[..., :4], data)
    terms = ev.dispersion_terms(_before(counts[..., :4], totals), x, n, rho)
    sums = ev.paths(counts[..., 4:6], terms)
    previous = _before(counts[..., 6:8], data[..., 2:4])
    stable_sums = ev.paths(counts[..., 8:10], ev.stable_terms(previous, data[..., 2:4]))
    tune = judge.tuning
    phi = None
    if tune.dispersion_prior > 0:
        phi = ev.phi(_before(counts[..., 4:6], sums), pseudo=tune.dispersion_prior)
    if tune.stable_dispersion > 0:
        from_stable = ev.phi(_before(counts[..., 8:10], stable_sums),
                             pseudo=tune.stable_dispersion)
        phi = from_stable if phi is None else np.maximum(phi, from_stable)

    cap = judge.cap if span is None else judge.cap * span[..., None]

    def lr(mix: ev.Mixture) -> Arr:
        return ev.increments(x, n, rho, mix, cap=cap, phi=phi,
                             count_cap=judge.spec.min_errors_per_interval_cap)

    inc = lr(judge.mix["errors"])
    # promotion evidence costs as much again and only early promotion reads it
    pinc = lr(judge.pmix["errors"]) if judge.spec.early_promotion else np.zeros_like(inc)
    return (_epochs(rollback, inc[..., None, :, :], live),
            ev.paths(promote, pinc[..., None, :, :]),
            np.concatenate([totals, sums, data[..., 2:4], stable_sums], axis=-1))


def latency_paths(judge: SequentialJudge, rollback: Arr, promote: Arr, bins: Arr,
                  data: Arr, live: npt.NDArray[np.bool_],
                  warm: npt.NDArray[np.bool_] | None = None, span: Arr | None = None
                  ) -> tuple[Arr, Arr, Arr]:
    """Latency over T intervals: ``data`` (..., T, 2, B) = canary and stable requests per
    bin; state: rollback (..., E, S, J), promote (..., S, J), running bins (..., 2, B),
    ``live`` (..., E). Returns the paths of the rollback sums (..., E, S, T, J), the
    promotion sums (..., S, T, J) and the bins (..., T, 2, B). ``warm`` (..., T) marks the
    intervals of the latency warm-up: they are judged against a null slower by the tilt
    ``warmup_beta`` (only the alternatives beyond it gain), and never towards promotion.
    ``span`` (..., T) scales each interval's cap, as for errors."""
    path = ev.paths(bins, data, axis=-3)
    stable = _before(bins[..., 1, :], path[..., 1, :])
    width = stable.shape[-1]
    seen = np.sum(stable, axis=-1)
    q = (stable + 0.5) / (seen + 0.5 * width)[..., None]
    scores = ev.bin_scores(q, tail_from=judge.tuning.tail_from)
    x, n = data[..., 0, :], data[..., 0, :] + data[..., 1, :]
    rho = ev.share_of(np.sum(x, axis=-1), np.sum(data[..., 1, :], axis=-1))
    ready = (seen >= judge.tuning.latency_min_stable)[..., None, None]
    cap = judge.lat_cap if span is None else judge.lat_cap * span[..., None, None]
    inc = ev.tilt_increments(x, n, rho, q, scores, judge.betas, cap=cap)
    if judge.spec.early_promotion:
        pscores = ev.bin_scores(q, tail_from=judge.tuning.promote_tail_from)
        pinc = ev.tilt_increments(x, n, rho, q, pscores, judge.promote_betas,
                                  null=judge.promote_beta, cap=cap)
    else:
        pinc = np.zeros_like(inc)
    if warm is not None and np.any(warm):
        beta0 = judge.tuning.warmup_beta
        winc = ev.tilt_increments(x, n, rho, q, scores, judge.betas, null=beta0,
                                  cap=cap)
        # an alternative at or below the null is no evidence against it, and only the
        # shift shape: a whole distribution slower within the allowance is a tail slower
        # by more than the same tilt, so the tail shape waits for the warm-up's end
        shift = np.arange(winc.shape[-2])[:, None] == 0
        winc = np.where((judge.betas > beta0) & shift, winc, 0.0)
        w = warm[..., None, None]
        inc, pinc = np.where(w, winc, inc), np.where(w, 0.0, pinc)
    inc, pinc = np.moveaxis(inc * ready, -3, -2), np.moveaxis(pinc * ready, -3, -2)
    return _epochs(rollback, inc, live), ev.paths(promote, pinc), path


def _epochs(start: Arr, inc: Arr, live: npt.NDArray[np.bool_]) -> Arr:
    """Rollback paths per epoch (..., E, K, T, J): started epochs add ``inc``."""
    mask = live[..., :, None, None, None]
    return ev.paths(start, np.where(mask, inc[..., None, :, :, :], 0.0))


def family_log_e(paths: Arr, log_prior: Arr, log_epochs: Arr) -> Arr:
    """A family's rollback e-value (..., T) from (..., E, K, T, J): the mean over shapes,
    then the mixture over epochs (an epoch not started yet counts as its weight x 1)."""
    per = ev.log_evidence(paths, log_prior)
    shapes = ev.logsumexp(per, axis=-2) - math.log(per.shape[-2])
    return np.asarray(ev.logsumexp(shapes + log_epochs[:, None], axis=-2), dtype=np.float64)


def family_log_promote(paths: Arr, log_prior: Arr) -> Arr:
    """A family's promotion e-value (..., T): every shape must be rejected, so the min."""
    return np.asarray(np.min(ev.log_evidence(paths, log_prior), axis=-2), dtype=np.float64)


@dataclass
class _Snap:
    intervals: int
    skipped: int
    canary_seconds: float
    stage_requests: float


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
                    fam.epochs = min(fam.epochs + 1, len(fam.rollback))
            if state.errors is not None and judge.tuning.refit_per_stage:
                state.errors.counts[:4] = 0.0  # the canary/stable ratio is fitted anew
        errors, latency, snaps, notes, warms, spans = [], [], [], [], [], []
        start_latency: tuple[float, ...] | None = None
        j = i
        while j < n and intervals[j].stage == state.stage:
            e_row, l_row, why, warm, part = _screen(judge, state, intervals[j])
            errors.append(e_row)
            latency.append(l_row)
            warms.append(warm)
            # the caps follow the judged seconds (spans.py)
            spans.append(cap_scale(judge.interval, intervals[j].seconds) * part)
            notes.append(why)
            snaps.append(_Snap(state.intervals, state.skipped, state.canary_seconds,
                               state.stage_requests))
            j += 1
            if state.bounds is None and judge.latency_wanted:
                start_latency = bin_bounds(judge, intervals[j - 1])
                if start_latency is not None:
                    break
        width = len(state.bounds) + 1 if state.bounds is not None else 0
        decision, k = _advance(judge, state, np.array(errors, dtype=np.float64),
                               bins_of(np.array(latency, dtype=np.float64).reshape(
                                   len(latency), 2, width)),
                               np.array([s.stage_requests for s in snaps]),
                               np.array(warms, dtype=bool),
                               None if judge.interval is None else np.array(spans))
        note = notes[k]
        if decision != "continue":
            snap = snaps[k]
            state.intervals, state.skipped = snap.intervals, snap.skipped
            state.canary_seconds, state.stage_requests = snap.canary_seconds, \
                snap.stage_requests
            return state, decision, i + k, note
        if start_latency is not None:
            judge.start_latency(state, start_latency)
            assert state.latency is not None
            state.latency.counts[1] = stable_bins(intervals[j - 1], start_latency)
        i = j
    return state, "continue", n - 1, note


def _screen(judge: SequentialJudge, state: JudgeState, iv: IntervalCounts
            ) -> tuple[list[float], list[list[float]], str, bool, float]:
    """The usable counts of one interval (zeros when unusable), why, if unusable,
    whether its latency is judged against the warm-up's slower null, and the share of
    the interval judged (its part after the warm-up; the counts are scaled by it)."""
    state.intervals += 1
    width = len(state.bounds) + 1 if state.bounds is not None else 0
    zeros_e, zeros_l = [0.0] * 4, [[0.0] * width, [0.0] * width]
    can, sta = iv.canary, iv.stable
    if can is None or sta is None:
        state.skipped += 1
        return zeros_e, zeros_l, "; interval skipped: no data for one version", False, 0.0
    if not (sane(can) and sane(sta)):
        state.skipped += 1
        return zeros_e, zeros_l, ("; interval skipped: negative or inconsistent counts"
                                  " (a counter reset?)"), False, 0.0
    state.stage_requests += can.requests
    if can.requests > 0 or state.canary_seconds > 0:
        state.canary_seconds += iv.seconds
    warmup = judge.tuning.warmup
    part = judged_part(judge.interval, warmup, canary_seconds=state.canary_seconds,
                       seconds=iv.seconds)
    if part <= 0:
        return zeros_e, zeros_l, "; canary warming up: interval not judged", False, 0.0
    row_e = [can.requests, can.errors, sta.requests, sta.errors]
    rows_l = zeros_l
    warm = state.canary_seconds <= warmup * judge.tuning.latency_warmup_factor
    if warm and judge.tuning.warmup_beta <= 0:
        pass  # latency still warming up: errors only
    elif state.bounds is not None:  # cumulative here; turned into bins, or zeros, by bins_of
        rows_l = [cumulative(v, state.bounds) for v in (can, sta)]
    if part < 1:  # straddles the warm-up's end: its share after it, as if spread evenly
        row_e = [v * part for v in row_e]
        rows_l = [[v * part for v in row] for row in rows_l]
    note = NO_STABLE if sta.requests <= 0 < can.requests else ""
    return row_e, rows_l, note, warm, part


def _advance(judge: SequentialJudge, state: JudgeState, errors: Arr, latency: Arr,
             stage_requests: Arr, warm: npt.NDArray[np.bool_],
             span: Arr | None) -> tuple[Decision, int]:
    """Run the arithmetic over T screened intervals; leave ``state`` at the decision."""
    t = len(errors)
    parts = [] if state.log_idle is None else [np.full(t, state.log_idle)]
    promote_ok = np.full(t, judge.spec.early_promotion)
    out = []
    for fam, prior in ((state.errors, judge.mix["errors"].log_prior),
                       (state.latency, judge.lat_prior)):
        if fam is None:
            continue
        data = errors if fam is state.errors else latency
        live = np.arange(len(fam.rollback)) < fam.epochs
        if fam is state.errors:
            rb, pr, counts = errors_paths(judge, fam.rollback, fam.promote, fam.counts,
                                          data, live, span)
        else:
            rb, pr, counts = latency_paths(judge, fam.rollback, fam.promote, fam.counts,
                                           data, live, warm, span)
        parts.append(fam.log_alloc + family_log_e(rb, prior, judge.log_epochs))
        pprior = judge.pmix["errors"].log_prior if fam is state.errors else judge.lat_prior
        promote_ok &= family_log_promote(pr, pprior) >= judge.log_threshold
        out.append((fam, rb, pr, counts))
    total = ev.logsumexp(np.stack(parts), axis=0) if parts else np.zeros(t)
    promote_ok &= bool(out) & (stage_requests > 0)
    promote_ok &= stage_requests >= judge.spec.min_stage_requests
    rollback_at = np.flatnonzero(total >= judge.log_threshold)
    promote_at = np.flatnonzero(promote_ok)
    k, decision = t - 1, "continue"
    if len(promote_at):
        k, decision = int(promote_at[0]), "promote"
    if len(rollback_at) and rollback_at[0] <= k:
        k, decision = int(rollback_at[0]), "rollback"
    for fam, rb, pr, counts in out:
        fam.rollback, fam.promote = rb[..., k, :].copy(), pr[:, k].copy()
        fam.counts = counts[k].copy()
    return decision, k  # type: ignore[return-value]


def _before(start: Arr, path: Arr) -> Arr:
    """The running values before each interval: ``start`` then ``path`` minus its last."""
    return np.concatenate([start[..., None, :], path[..., :-1, :]], axis=-2)
