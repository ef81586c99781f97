"""How the sequential judge puts numbers into words: rates, quantiles, e-values.

Split from sequential.py so the judge reads as decisions; these only format.
"""

from __future__ import annotations

import math

import numpy as np

from canary.analysis.evidence import FloatArray

MAX_LOG = 700.0  # exp() of more than this overflows a float; reported values are capped
QUANTILES = (0.5, 0.9, 0.99)


def rates(c: float, x: float, s: float, y: float) -> str:
    if c <= 0 or s <= 0:
        return "not enough traffic on both versions to compare yet"
    return (f"canary {pct(x / c)} ({num(x)} of {num(c)}) vs stable {pct(y / s)} "
            f"({num(y)} of {num(s)})")


def quantiles(bounds: tuple[float, ...], bins: FloatArray) -> list[float]:
    """p50/p90/p99 by linear interpolation inside buckets, as histogram_quantile does."""
    total = float(np.sum(bins))
    if total <= 0:
        return []
    cum, out = np.cumsum(bins), []
    for q in QUANTILES:
        b = int(np.searchsorted(cum, q * total))
        if b >= len(bounds):
            out.append(bounds[-1] if bounds else math.inf)
            continue
        lower = bounds[b - 1] if b > 0 else 0.0
        below = float(cum[b - 1]) if b > 0 else 0.0
        inside = float(bins[b])
        frac = (q * total - below) / inside if inside > 0 else 1.0
        out.append(lower + (bounds[b] - lower) * frac)
    return out


def latency(qc: list[float], qs: list[float]) -> str:
    if not qc or not qs:
        return "not enough traffic on both versions to compare yet"

    def show(qv: list[float]) -> str:
        return " ".join(f"p{round(q * 100)} {num(v)}s" for q, v in zip(QUANTILES, qv,
                                                                         strict=True))
    return f"canary {show(qc)} vs stable {show(qs)}"


def pct(v: float) -> str:
    return f"{100 * v:.3g}%"


def num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def e_value(log_e: float) -> str:
    return num(math.exp(min(log_e, MAX_LOG)))
