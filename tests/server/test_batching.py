"""The benchmark's batched queries answer what one query per rollout answers, from a real
Prometheus, with one flight per query shape instead of one per rollout."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from canary.analysis.queries import render_metric_query, request_count_query
from canary.config.spec import load_policy
from canary.metrics.base import Sample
from canary.metrics.batching import BatchedProvider, BatchHub, grouped
from canary.metrics.prometheus import PrometheusProvider, parse_result
from lab.haproxy import runtime_command
from tests.e2e.conftest import Lab, Stack, write_policy


class PinnedProvider(PrometheusProvider):
    """Evaluates every instant query at one fixed time, so a batched and a direct answer
    read the same samples however long the machine takes between the two requests."""

    def __init__(self, url: str, *, at: float) -> None:
        super().__init__(url)
        self.at = at

    def query(self, promql: str) -> list[Sample]:
        return parse_result(self._raw(promql, call=lambda wait: self._client.custom_query(
            promql, params={"time": f"{self.at:.3f}"}, timeout=cast(int, wait))),
            source="pinned Prometheus")


def value(samples: list[Sample]) -> float:
    assert len(samples) == 1, samples
    return float(samples[0].value)


def test_grouped_answers_match_single_queries(lab: Lab, stack_for: Callable[..., Stack],
                                              tmp_path: Path) -> None:
    stack = stack_for("3.0.0")  # load through HAProxy to 1.0.0 and 3.0.0 (40% errors)
    runtime_command(str(stack.haproxy.info["socket"]), "set weight checkout/canary-1 100")
    policy = load_policy(str(write_policy(tmp_path / "policy.yaml", lab.prometheus_url)))
    time.sleep(5)  # a few scrapes of that traffic
    at = time.time()
    direct = PinnedProvider(lab.prometheus_url, at=at)
    hub = BatchHub(lambda: PinnedProvider(lab.prometheus_url, at=at), max_age=60)
    batched = BatchedProvider(hub, labels=policy.labels)
    asked = 0
    for version in ("1.0.0", "3.0.0", "9.9.9"):  # 9.9.9 has no series at all
        queries = [render_metric_query(m, policy, service="checkout", version=version)
                   for m in policy.metrics]
        queries.append(request_count_query(policy, service="checkout", version=version))
        for q in queries:
            assert grouped(q, service="service", version="version") is not None, q
            asked += 1
            mine, theirs = batched.query(q), direct.query(q)
            if version == "9.9.9":
                assert mine == [] and theirs == []
                continue
            a, b = value(mine), value(theirs)
            assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6), q
    assert asked == 9 and hub.flights == 3  # one flight per shape, fanned out
    error_rate = render_metric_query(policy.metrics[0], policy, service="checkout",
                                     version="3.0.0")
    assert 0.3 < value(batched.query(error_rate)) < 0.5
    custom = 'max(up{job="lab"})'  # not a built-in shape: passed through unchanged
    assert grouped(custom, service="service", version="version") is None
    assert value(batched.query(custom)) == 1.0


def test_grouped_increments_feed_the_sequential_judge_like_single_queries(
        lab: Lab, stack_for: Callable[..., Stack], tmp_path: Path) -> None:
    from canary.analysis.sequential.live import version_counts

    stack = stack_for("3.0.0")
    runtime_command(str(stack.haproxy.info["socket"]), "set weight checkout/canary-1 100")
    policy = load_policy(str(write_policy(tmp_path / "policy.yaml", lab.prometheus_url)))
    time.sleep(5)
    at = time.time()
    direct = PinnedProvider(lab.prometheus_url, at=at)
    hub = BatchHub(lambda: PinnedProvider(lab.prometheus_url, at=at), max_age=60)
    batched = BatchedProvider(hub, labels=policy.labels)
    for version in ("1.0.0", "3.0.0"):
        a = version_counts(batched, policy, side="canary", service="checkout",
                           version=version, stable_version="1.0.0", seconds=10)
        b = version_counts(direct, policy, side="canary", service="checkout",
                           version=version, stable_version="1.0.0", seconds=10)
        assert a is not None and b is not None
        assert math.isclose(a.requests, b.requests, rel_tol=1e-6)
        assert set(a.latency) == set(b.latency) and len(a.latency) > 3  # `le` survives
        assert math.isclose(a.latency[math.inf], b.latency[math.inf], rel_tol=1e-6)
    assert hub.flights == 3  # requests, errors, buckets: one flight each for both versions
