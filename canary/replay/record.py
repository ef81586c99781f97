"""`canary record`: a past window of real traffic, pulled from Prometheus into the
recorded-traffic format (docs/contract.md), so last week's rollout can be replayed under a new
policy with `canary backtest`.

It reads exactly the series the live sequential judge reads (the policy's family: the
conventional app series by default), as counter increments per interval, and counts them
exactly as the live judge does (canary/metrics/counters.py): the raw samples, resets
included, split at ``start + k * interval``. So the intervals sum to the counters' whole
growth over the window, and a recording of a live rollout holds what its checks were fed
(up to where the checks fell inside each interval).
"""

from __future__ import annotations

import math
from datetime import datetime

from canary.analysis.queries import increment_queries
from canary.analysis.sequential.core import VersionCounts
from canary.analysis.sequential.live import MARGIN, raw_selector
from canary.errors import InputError
from canary.metrics.counters import Growth, grid_growth
from canary.metrics.prometheus import PrometheusProvider
from canary.replay.recording import Point, Recording
from canary.specs import PolicySpec


def record(policy: PolicySpec, *, service: str, canary: str, stable: str, start: datetime,
           end: datetime, interval: float, name: str,
           prometheus_url: str | None = None) -> Recording:
    if end <= start:
        raise InputError("--end must be after --start", field="--end")
    if interval <= 0 or (end - start).total_seconds() / interval > 11_000:
        raise InputError("--interval must be positive and give at most 11,000 points "
                         "(Prometheus's limit per query)", field="--interval")
    t0, t1 = start.timestamp(), end.timestamp()
    steps = int((t1 - t0) // interval)
    grid = [t0 + k * interval for k in range(steps + 1)]
    provider = PrometheusProvider(prometheus_url or policy.prometheus_url, timeout=30.0)
    sides: dict[str, list[VersionCounts | None]] = {}
    try:
        for side, version in (("canary", canary), ("stable", stable)):
            q = increment_queries(policy, side=side, service=service, version=version,
                                  stable_version=stable, seconds=interval)
            growth: dict[str, list[Growth]] = {}
            for what, promql in (("requests", q.requests), ("errors", q.errors),
                                 ("buckets", q.buckets)):
                if promql is None:
                    continue
                selector = raw_selector(promql)
                if selector is None:
                    raise InputError(f"cannot record {promql!r}: not a counter increase",
                                     field="policy")
                found = provider.series_at(selector, at=grid[-1],
                                           window=grid[-1] - t0 + MARGIN)
                growth[what] = grid_growth(found, grid)
            sides[side] = [_counts(growth, k, ms=q.ms) for k in range(steps)]
    finally:
        provider.close()
    points = tuple(Point(t=(k + 1) * interval, stable=sides["stable"][k],
                         canary=sides["canary"][k]) for k in range(steps)
                   if sides["stable"][k] is not None or sides["canary"][k] is not None)
    return Recording(name=name, service=service, interval=interval, series=points)


def _counts(growth: dict[str, list[Growth]], k: int, *, ms: bool) -> VersionCounts | None:
    requests = growth["requests"][k]
    if not requests.fresh:
        return None
    total = requests.total
    latency: dict[float, float] = {}
    if "buckets" in growth:
        for le, count in growth["buckets"][k].by_label("le").items():
            latency[math.inf if le == "+Inf" else float(le) / (1000.0 if ms else 1.0)] = count
    return VersionCounts(requests=total, errors=min(growth["errors"][k].total, total),
                         latency=latency)
