"""How an interval's length enters the sequential judge, so that the same traffic counts
the same however the checks cut it.

Live checks do not measure the nominal interval exactly: a check that starts late (a
scheduler's tick, the batching hub's grid) measures a longer span, the next one a shorter
one, while ``canary record`` cuts the same traffic at ``start + k x interval``. Two parts
of the judge used to count per interval whatever its length (docs/accounting.md, measured
with bench/accounting.py):

* The cap on each interval's evidence: now a cap per nominal interval, scaled by the
  interval's length. The scale is known before the interval's counts, so the capped
  process stays an e-process (evidence.py).
* The warm-up: an interval ending after it was judged whole, so a long live span that
  straddles its end judged seconds the recording's grid still ignores. Now the warm-up
  ends on the nominal grid (the last multiple of the nominal interval not after
  ``warmup``: exactly what the whole-interval rule gives intervals of nominal length) and
  a straddling interval is judged for its part after that end, its counts scaled by the
  share (a likelihood ratio raised to a known power in [0, 1] is still an e-value).

Without a nominal interval (``SequentialJudge(interval=None)``), or when every interval
has the nominal length, both are what they were, bit for bit.
"""

from __future__ import annotations

import math

# float sums of nominal lengths land within rounding of the grid's points
_SLACK = 1e-9


def cap_scale(nominal: float | None, seconds: float) -> float:
    """The interval's length in nominal intervals: its caps' multiple (1 when unknown)."""
    if nominal is None or seconds <= 0:
        return 1.0
    return seconds / nominal


def judged_part(nominal: float | None, warmup: float, *, canary_seconds: float,
                seconds: float) -> float:
    """The share of an interval judged after the warm-up: 0 inside it, 1 after it.

    ``canary_seconds`` counts the canary's seconds up to the interval's end, this one
    included. Without a nominal interval, an interval is judged whole once
    ``canary_seconds`` passes ``warmup``.
    """
    if warmup <= 0:
        return 1.0
    if nominal is None or seconds <= 0:
        return 0.0 if canary_seconds <= warmup else 1.0
    end = math.floor(warmup / nominal) * nominal
    slack = _SLACK * nominal
    if canary_seconds <= end + slack:
        return 0.0
    if canary_seconds - seconds >= end - slack:
        return 1.0
    return min(1.0, (canary_seconds - end) / seconds)
