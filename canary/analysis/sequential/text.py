"""How the sequential judge puts numbers into words: rates, quantiles, e-values.

Apart from the judge (core.py) so it reads as decisions; these only format.
"""

from __future__ import annotations

import math

import numpy as np

from canary.analysis.sequential.evidence import FloatArray

MAX_LOG = 700.0  # exp() of more than this overflows a float; reported values are capped
QUANTILES = (0.5, 0.9, 0.99)


def rates(c: float, x: float, s: float, y: float) -> str:
    """E.g. ``canary 4.1% errors vs stable 1% over 1,240 canary requests (51 failed) and
    23,560 stable (236)``: both rates, and how many requests they come from."""
    if c <= 0 or s <= 0:
        return "not enough traffic on both versions to compare yet"
    return (f"canary {pct(x / c)} errors vs stable {pct(y / s)} over {num(c)} canary "
            f"requests ({num(x)} failed) and {num(s)} stable ({num(y)})")


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


def latency(qc: list[float], qs: list[float], *, nc: float = 0.0, ns: float = 0.0) -> str:
    """E.g. ``canary p99 0.41s vs stable 0.3s (p50 0.1s vs 0.1s, p90 0.2s vs 0.19s) over
    1,240 canary requests and 23,560 stable``: the quantile where the canary is furthest
    behind first, then the others."""
    if not qc or not qs:
        return "not enough traffic on both versions to compare yet"
    pairs = list(zip(QUANTILES, qc, qs, strict=True))

    def ratio(pair: tuple[float, float, float]) -> float:
        return pair[1] / pair[2] if pair[2] > 0 else (1.0 if pair[1] <= 0 else math.inf)
    lead = max(pairs, key=ratio)
    rest = ", ".join(f"p{round(q * 100)} {num(a)}s vs {num(b)}s" for q, a, b in pairs
                     if q != lead[0])
    counted = f" over {num(nc)} canary requests and {num(ns)} stable" if nc > 0 else ""
    return (f"canary p{round(lead[0] * 100)} {num(lead[1])}s vs stable {num(lead[2])}s "
            f"({rest}){counted}")


def pct(v: float) -> str:
    return f"{100 * v:.3g}%"


def num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def e_value(log_e: float) -> str:
    return num(math.exp(min(log_e, MAX_LOG)))
