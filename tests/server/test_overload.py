"""A controller that falls behind holds, it does not roll back: a query that cannot get one
of the controller's query slots within its check's budget is INCONCLUSIVE (the controller's
own lateness), while a Prometheus that cannot answer stays ERROR. In-process: the provider
behind the slots is a real PrometheusProvider, never reached while the slots are busy."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from canary.analysis import threshold
from canary.analysis.analyzer import PolicyAnalyzer
from canary.config.policyfile import load_policy
from canary.metrics.base import Sample
from canary.metrics.prometheus import PrometheusProvider
from canary.metrics.slots import QuerySlots, SlottedProvider
from canary.model import Outcome
from canary.specs import PolicySpec
from canary.state import MetricCounts, RolloutState
from tests.e2e.conftest import write_policy

DEAD = "http://127.0.0.1:9"  # the discard port: connection refused at once


def policy_at(tmp_path: Path, url: str = DEAD) -> PolicySpec:
    return load_policy(str(write_policy(tmp_path / "policy.yaml", url)))


def test_busy_slots_make_every_metric_inconclusive(tmp_path: Path) -> None:
    late: list[int] = []
    slots = QuerySlots(1, on_late=lambda: late.append(1))
    assert slots.take(0)  # another rollout's query holds the only slot
    provider = SlottedProvider(PrometheusProvider(DEAD, timeout=1), slots, timeout=1)
    verdict = threshold.measure(policy_at(tmp_path), provider, service="shop",
                                version="2.0.0", stable_version="1.0.0",
                                at=datetime.now(UTC), budget=0.3)
    assert [r.outcome for r in verdict.results] == [Outcome.INCONCLUSIVE] * 2
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "query slots stayed busy" in verdict.results[0].message
    assert late  # counted for canary_checks_late_total
    slots.give()


def test_prometheus_down_is_still_an_error(tmp_path: Path) -> None:
    provider = SlottedProvider(PrometheusProvider(DEAD, timeout=1), QuerySlots(4), timeout=1)
    verdict = threshold.measure(policy_at(tmp_path), provider, service="shop",
                                version="2.0.0", stable_version="1.0.0",
                                at=datetime.now(UTC), budget=2)
    assert {r.outcome for r in verdict.results} == {Outcome.ERROR}


def test_inconclusive_checks_never_count_toward_the_error_limit() -> None:
    counts = MetricCounts()
    for outcome in (Outcome.ERROR, Outcome.ERROR, Outcome.INCONCLUSIVE, Outcome.ERROR,
                    Outcome.INCONCLUSIVE, Outcome.INCONCLUSIVE):
        counts = counts.after(outcome)
    assert counts.consecutive_errors == 0 and counts.inconclusive == 3


def test_slots_bound_concurrent_queries(tmp_path: Path) -> None:
    """Eight analyzers at once through two slots: never more than two queries running."""
    slots = QuerySlots(2)
    seen: list[int] = []
    release = threading.Event()

    class Watching(PrometheusProvider):
        def query_within(self, promql: str, timeout: float) -> list[Sample]:
            seen.append(slots.in_use)
            release.wait(0.05)
            return super().query_within(promql, timeout)

    policy = policy_at(tmp_path)
    threads = [threading.Thread(target=PolicyAnalyzer(policy, SlottedProvider(
        Watching(DEAD, timeout=1), slots, timeout=5), budget=5).measure,
        args=(_state(), datetime.now(UTC))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen and max(seen) <= 2 and slots.in_use == 0


def _state() -> RolloutState:
    now = datetime.now(UTC)
    return RolloutState(id="r1", name="shop", service="shop", version="2.0.0",
                        stable_version="1.0.0", document="", source="test", created_at=now,
                        updated_at=now)


def test_a_failure_while_every_slot_is_busy_is_the_controllers_lateness(
        tmp_path: Path) -> None:
    slots = QuerySlots(2)
    provider = SlottedProvider(PrometheusProvider(DEAD, timeout=1), slots, timeout=1)
    policy = policy_at(tmp_path)

    def outcomes() -> set[Outcome]:
        verdict = threshold.measure(policy, provider, service="shop", version="2.0.0",
                                    stable_version="1.0.0", at=datetime.now(UTC), budget=2)
        return {r.outcome for r in verdict.results}

    assert slots.take(0)  # another rollout's query holds the other slot: all are busy
    assert outcomes() == {Outcome.INCONCLUSIVE}
    slots.give()  # the controller is quiet again: the same failure is an error
    assert outcomes() == {Outcome.ERROR}
