"""An interval's counter increments, checked and turned into the arrays the engine takes.

Apart from run.py for size: whether a version's counts are usable at all, which latency
bucket bounds the test uses, and requests per bin from cumulative bucket counts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from canary.analysis.sequential import evidence as ev

if TYPE_CHECKING:
    from canary.analysis.sequential.core import IntervalCounts, SequentialJudge, VersionCounts

Arr = ev.FloatArray
INF = math.inf


def sane(v: VersionCounts) -> bool:
    return (math.isfinite(v.requests) and math.isfinite(v.errors)
            and 0 <= v.errors <= v.requests)


def bin_bounds(judge: SequentialJudge, iv: IntervalCounts) -> tuple[float, ...] | None:
    """The latency bin bounds, from the first interval where both versions have buckets:
    the configured edges if any (those present), else every finite bound."""
    if iv.canary is None or iv.stable is None:
        return None
    common = {b for b in iv.stable.latency if math.isfinite(b)} & set(iv.canary.latency)
    if judge.spec.latency_edges:
        common &= set(judge.spec.latency_edges)
    return tuple(sorted(common)) if common else None


def cumulative(v: VersionCounts, bounds: tuple[float, ...]) -> list[float]:
    """A version's cumulative bucket counts at ``bounds`` and +Inf (NaN where missing)."""
    return [v.latency.get(b, math.nan) for b in bounds] + [v.latency.get(INF, v.requests)]


def stable_bins(iv: IntervalCounts, bounds: tuple[float, ...]) -> Arr:
    """The stable version's requests per bin in the interval that showed the bounds: the
    latency test's first estimate of the stable distribution, so the next interval is
    already judged (zeros when unusable)."""
    width = len(bounds) + 1
    if iv.stable is None or not sane(iv.stable):
        return np.zeros(width)
    rows = np.array([[0.0] * width, cumulative(iv.stable, bounds)], dtype=np.float64)[None]
    return np.asarray(bins_of(rows)[0, 1], dtype=np.float64)


def bins_of(cumulative: Arr) -> Arr:
    """Requests per bin (T, 2, B) from cumulative bucket counts; an interval where either
    version's buckets are missing, not finite or not cumulative counts nothing."""
    bins = np.diff(cumulative, prepend=0.0, axis=-1)
    with np.errstate(invalid="ignore"):
        bad = ~np.all(np.isfinite(bins) & (bins >= 0), axis=(-2, -1))
    bins[bad] = 0.0
    return bins
