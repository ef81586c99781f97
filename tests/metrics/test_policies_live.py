"""Outcomes of whole policies on real traffic: relative rules against absolute ones, an
incident on both versions, and the haproxy family reading HAProxy's own exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import pytest

from canary.analysis.threshold import measure
from canary.metrics.prometheus import PrometheusProvider
from canary.model import MetricResult, Outcome, Phase, Weights
from canary.rollout.machine import MetricLimits, Observation, decide
from canary.rollout.preflight import UNKNOWN_LABEL, preflight
from canary.specs import LabelMatch, MetricSpec, PolicySpec
from canary.state import StageProgress
from lab.proc import wait_until
from tests.rollout.helpers import at, new_state, plan

from .scenarios import SHOP_RPS, WINDOW, Scenarios

pytestmark = pytest.mark.servers

AT = datetime(2026, 1, 1, tzinfo=UTC)
SHOP: Mapping[str, Mapping[str, LabelMatch]] = {
    "canary": {"proxy": ("=", ("{{ service }}",)), "server": ("=", ("canary-1",))},
    "stable": {"proxy": ("=", ("{{ service }}",)), "server": ("=", ("stable-1", "stable-2"))},
}
ABSOLUTE = MetricSpec(name="errors-absolute", builtin="error-rate", max=0.05)
RELATIVE = MetricSpec(name="errors-vs-stable", builtin="error-rate", relative_ratio=1.5)
RELATIVE_POINTS = MetricSpec(name="errors-minus-stable", builtin="error-rate", relative_max=0.02)


@pytest.fixture()
def provider(scenarios: Scenarios) -> Iterator[PrometheusProvider]:
    with PrometheusProvider(scenarios.prometheus_url, timeout=5.0) as p:
        yield p


def policy(scenarios: Scenarios, *metrics: MetricSpec, **kw: object) -> PolicySpec:
    return PolicySpec(name="scenario", prometheus_url=scenarios.prometheus_url,
                      interval=WINDOW, window=WINDOW, metrics=metrics, **kw)  # type: ignore[arg-type]


def judge(scenarios: Scenarios, provider: PrometheusProvider, service: str,
          *metrics: MetricSpec, **kw: object) -> dict[str, MetricResult]:
    verdict = measure(policy(scenarios, *metrics, **kw), provider, service=service,
                      version="2.0.0", stable_version="1.0.0", at=AT)
    for r in verdict.results:
        print(f"{service} {r.name}: {r.outcome.value} value={r.value}")
    return {r.name: r for r in verdict.results}


def test_startup(scenarios: Scenarios) -> None:
    print("scenario lab startup (s): " + ", ".join(f"{k} {v:.1f}"
                                                   for k, v in scenarios.startup.items()))


def test_relative_rule_catches_a_canary_worse_than_stable_under_the_absolute_limit(
        scenarios: Scenarios, provider: PrometheusProvider) -> None:
    r = judge(scenarios, provider, "payments", ABSOLUTE, RELATIVE)
    absolute, relative = r["errors-absolute"], r["errors-vs-stable"]
    assert absolute.outcome is Outcome.PASSED  # 4% is under the 5% ceiling...
    assert absolute.value == pytest.approx(0.04, abs=0.008)
    assert relative.outcome is Outcome.FAILED  # ...but four times stable's 1%
    assert "times the stable version's" in relative.message
    assert 'version="2.0.0"' in relative.query


def test_an_incident_on_both_versions_fails_the_absolute_rule_not_the_relative_ones(
        scenarios: Scenarios, provider: PrometheusProvider) -> None:
    r = judge(scenarios, provider, "search", ABSOLUTE, RELATIVE, RELATIVE_POINTS)
    assert r["errors-absolute"].outcome is Outcome.FAILED
    assert r["errors-absolute"].value == pytest.approx(0.2, abs=0.02)
    assert r["errors-vs-stable"].outcome is Outcome.PASSED
    assert r["errors-minus-stable"].outcome is Outcome.PASSED


@pytest.mark.parametrize(("metric", "rolled_back"), [(ABSOLUTE, True), (RELATIVE, False),
                                                     (RELATIVE_POINTS, False)])
def test_during_an_incident_only_the_absolute_rule_rolls_back(
        scenarios: Scenarios, provider: PrometheusProvider, metric: MetricSpec,
        rolled_back: bool) -> None:
    """Three real checks of ``search`` fed to the machine, as the runner would."""
    p = plan(limits={metric.name: MetricLimits(failure_limit=metric.failure_limit)})
    state = new_state(phase=Phase.PROGRESSING, stage_index=0, desired_weight=5,
                      actual_weight=5, stage=StageProgress(started_at=at(0)))
    for i in range(1, 4):
        verdict = measure(policy(scenarios, metric), provider, service="search",
                          version="2.0.0", stable_version="1.0.0", at=at(i))
        state = decide(state, Observation(now=at(i), weights=Weights(5), verdict=verdict),
                       p).state
    assert (state.phase is Phase.ROLLING_BACK) is rolled_back
    if rolled_back:
        assert "errors-absolute" in state.reason and "above the maximum 0.05" in state.reason


def haproxy_or_skip(scenarios: Scenarios) -> None:
    if not scenarios.haproxy_metrics:
        pytest.skip("this haproxy was built without its Prometheus exporter (haproxy -vv)")


def test_haproxy_family_judges_from_the_proxys_own_series(
        scenarios: Scenarios, provider: PrometheusProvider) -> None:
    haproxy_or_skip(scenarios)
    metrics = (MetricSpec(name="errors", builtin="error-rate", max=0.05),
               MetricSpec(name="errors-vs-stable", builtin="error-rate", relative_max=0.05),
               MetricSpec(name="rps", builtin="request-rate", min=1, min_requests=50))
    r = judge(scenarios, provider, "shop", *metrics, family="haproxy", select=SHOP)
    assert r["errors"].outcome is Outcome.FAILED
    assert r["errors"].value == pytest.approx(0.4, abs=0.04)
    assert 'server="canary-1"' in r["errors"].query and 'code="5xx"' in r["errors"].query
    assert r["errors-vs-stable"].outcome is Outcome.FAILED
    assert "stable version's 0 " in r["errors-vs-stable"].message  # stable-1/2: no errors
    assert r["rps"].outcome is Outcome.PASSED
    assert r["rps"].value == pytest.approx(SHOP_RPS, rel=0.2)  # a third of the load


def test_haproxy_mean_latency_waits_for_the_average_to_warm_up(
        scenarios: Scenarios, provider: PrometheusProvider) -> None:
    """HAProxy's per-server average starts at 0 and reads low for its first ~512 answers:
    before 1024 the latency is "no value" (inconclusive), after it the 20 ms are seen."""
    haproxy_or_skip(scenarios)
    latency = MetricSpec(name="mean-latency", builtin="latency", max=0.015)
    answered = 'sum(haproxy_server_http_responses_total{proxy="shop",server="canary-1"})'
    reported = 'haproxy_server_response_time_average_seconds{server="canary-1"}'
    early = judge(scenarios, provider, "shop", latency, family="haproxy", select=SHOP)
    count = provider.query(answered)[0].value
    raw = provider.query(reported)[0].value
    print(f"canary-1 after {count:.0f} answers: HAProxy reports {raw * 1000:.0f} ms; "
          f"check: {early['mean-latency'].outcome.value}")
    if count < 1000:  # still warming up when the lab became ready
        assert early["mean-latency"].outcome is Outcome.INCONCLUSIVE
        assert "no value before a server answered 1024" in early["mean-latency"].message
    wait_until(lambda: provider.query(answered)[0].value >= 1100, timeout=60, interval=0.5,
               what="1100 answers from canary-1")
    time.sleep(1.5)  # one more scrape of the average itself
    late = judge(scenarios, provider, "shop", latency, family="haproxy", select=SHOP)
    result = late["mean-latency"]
    print(f"canary-1 warm: {result.value}")
    assert result.outcome is Outcome.FAILED  # canary-1 sleeps 20 ms per request
    assert result.value == pytest.approx(0.02, abs=0.003)


def test_haproxy_family_passes_the_stable_servers(
        scenarios: Scenarios, provider: PrometheusProvider) -> None:
    """The stable side as if it were the canary: both servers, judged together."""
    haproxy_or_skip(scenarios)
    swapped = {"canary": SHOP["stable"], "stable": SHOP["canary"]}
    metrics = (MetricSpec(name="errors", builtin="error-rate", max=0.05),
               MetricSpec(name="rps", builtin="request-rate", min=1))
    r = judge(scenarios, provider, "shop", *metrics, family="haproxy", select=swapped)
    assert r["errors"].outcome is Outcome.PASSED and r["errors"].value == 0.0
    assert 'server=~"stable\\\\-1|stable\\\\-2"' in r["errors"].query
    assert r["rps"].value == pytest.approx(2 * SHOP_RPS, rel=0.2)


def test_preflight_of_a_haproxy_policy_finds_a_misnamed_label(
        scenarios: Scenarios, provider: PrometheusProvider) -> None:
    haproxy_or_skip(scenarios)
    metric = MetricSpec(name="errors", builtin="error-rate", max=0.05)
    good = policy(scenarios, metric, family="haproxy", select=SHOP)
    assert preflight(good, provider, service="shop", version="2.0.0",
                     stable_version="1.0.0") == []
    typo = {side: {("backend" if k == "proxy" else k): v for k, v in m.items()}
            for side, m in SHOP.items()}
    bad = policy(scenarios, metric, family="haproxy", select=typo)
    problems = preflight(bad, provider, service="shop", version="2.0.0", stable_version="1.0.0")
    assert [(p.kind, p.field) for p in problems] == [
        (UNKNOWN_LABEL, "spec.select.canary.backend"),
        (UNKNOWN_LABEL, "spec.select.stable.backend")]
    assert "no series of haproxy_server_http_responses_total has a label backend" in str(
        problems[0])


@pytest.mark.parametrize(("low", "bound", "outcome"), [
    ("inconclusive", 0.5, Outcome.INCONCLUSIVE),        # today's rule: whatever the value
    ("pass-within-bounds", 0.5, Outcome.PASSED),        # 4% vs 1%: within 50 points
    ("pass-within-bounds", 0.01, Outcome.INCONCLUSIVE),  # 3 points over: too few to fail
])
def test_on_low_traffic_decides_what_too_few_requests_mean(
        scenarios: Scenarios, provider: PrometheusProvider, low: str, bound: float,
        outcome: Outcome) -> None:
    """A quiet canary: ``minRequests`` above what the real canary served in the window.
    With ``pass-within-bounds`` (the shipped default's) a value within the bound passes,
    so the stage can advance; one over it still cannot fail on so few requests."""
    metric = MetricSpec(name="errors", builtin="error-rate", relative_max=bound,
                        min_requests=100_000, on_low_traffic=low)
    r = judge(scenarios, provider, "payments", metric)["errors"]
    assert r.outcome is outcome
    assert r.value == pytest.approx(0.04, abs=0.015)
    if outcome is Outcome.INCONCLUSIVE:
        assert "requests to 2.0.0 in the last 10s; 100000 needed to judge" in r.message
