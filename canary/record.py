"""`canary record`: a past window of real traffic, pulled from Prometheus into the
recorded-traffic format (DESIGN A.5), so last week's rollout can be replayed under a new
policy with `canary backtest`.

It reads exactly the series the live sequential judge reads (the policy's family: the
conventional app series by default), as counter increments per interval.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from canary.analysis.queries import increment_queries
from canary.errors import InputError
from canary.metrics.prometheus import PrometheusProvider
from canary.model import PolicySpec
from canary.recording import Recording, from_prometheus


def record(policy: PolicySpec, *, service: str, canary: str, stable: str, start: datetime,
           end: datetime, interval: float, name: str,
           prometheus_url: str | None = None) -> Recording:
    if end <= start:
        raise InputError("--end must be after --start", field="--end")
    if interval <= 0 or (end - start).total_seconds() / interval > 11_000:
        raise InputError("--interval must be positive and give at most 11,000 points "
                         "(Prometheus's limit per query)", field="--interval")
    provider = PrometheusProvider(prometheus_url or policy.prometheus_url, timeout=30.0)
    series: dict[str, list[dict[str, Any]]] = {"requests": [], "errors": [], "buckets": []}
    try:
        for side, version in (("canary", canary), ("stable", stable)):
            q = increment_queries(policy, side=side, service=service, version=version,
                                  stable_version=stable, seconds=interval)
            for what, promql in (("requests", q.requests), ("errors", q.errors),
                                 ("buckets", q.buckets)):
                if promql is None:
                    continue
                for item in provider.query_range(promql, start=start, end=end, step=interval):
                    labels = dict(item.get("metric", {}))
                    labels["version"] = version  # the side, whatever the family's labels
                    if q.ms and "le" in labels and labels["le"] != "+Inf":
                        labels["le"] = repr(float(labels["le"]) / 1000.0)
                    series[what].append({"metric": labels, "values": item.get("values", [])})
    finally:
        provider.close()
    return from_prometheus(name=name, service=service, interval=interval, canary=canary,
                           stable=stable, requests=series["requests"], errors=series["errors"],
                           buckets=series["buckets"])
