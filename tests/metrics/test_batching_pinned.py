"""Batched pinned readings on a real Prometheus: the grouped answer hands each rollout the
samples a direct query gives, and answers are shared only for the same evaluation time."""

from __future__ import annotations

import time

from canary.analysis.queries import increment_queries
from canary.analysis.sequential.live import raw_selector
from canary.metrics.batching import BatchedProvider, BatchHub
from canary.metrics.prometheus import PrometheusProvider
from canary.specs import PolicySpec, SequentialSpec
from tests.metrics.lab import Lab


def test_pinned_readings_shared_only_for_the_same_time(lab: Lab,
                                                       provider: PrometheusProvider) -> None:
    policy = PolicySpec(name="p", prometheus_url=lab.prometheus_url, interval=2, window=2,
                        metrics=(), sequential=SequentialSpec())
    hub = BatchHub(lambda: PrometheusProvider(lab.prometheus_url), max_age=2.0)
    batched = {v: BatchedProvider(hub, labels={}) for v in ("1.0.0", "2.0.0")}
    at = hub.pin(time.time() - 1)
    assert at % 2.0 == 0 and hub.pin(at + 1.9) == at  # one grid step, one time
    for version, bp in batched.items():
        q = increment_queries(policy, side="canary", service="checkout", version=version,
                              stable_version="1.0.0", seconds=2)
        for promql in (q.requests, q.errors, q.buckets):
            assert promql is not None
            selector = raw_selector(promql)
            assert selector is not None
            mine = bp.series_at(selector, at=at, window=30)
            direct = provider.series_at(selector, at=at, window=30)
            assert mine, selector
            assert {tuple(sorted(s.labels.items())): s.points for s in mine} == {
                tuple(sorted((k, v) for k, v in s.labels.items()
                             if k not in ("service", "version"))): s.points for s in direct}
            assert all(t <= at for s in mine for t, _v in s.points)
    # 3 shapes, each fetched once for both versions
    assert hub.flights == 3
    later = batched["2.0.0"]
    q = increment_queries(policy, side="canary", service="checkout", version="2.0.0",
                          stable_version="1.0.0", seconds=2)
    selector = raw_selector(q.requests)
    assert selector is not None
    later.series_at(selector, at=at + 2.0, window=30)  # another time: its own flight
    later.series_at(selector, at=at, window=40)  # another window: its own flight
    assert hub.flights == 5
