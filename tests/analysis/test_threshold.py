"""The threshold judge without Prometheus: outcomes, messages, and how measure() runs queries."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from canary.analysis.bounds import (
    evaluate,
    fmt,
    quantile_min_requests,
    required_requests,
    threshold_text,
)
from canary.analysis.queries import render_metric_query, request_count_query
from canary.analysis.threshold import BASELINE_WINDOW, DeadlineProvider, measure
from canary.errors import InputError, MetricsError
from canary.metrics.base import MetricsProvider, Sample
from canary.model import MetricResult, Outcome
from canary.specs import MetricSpec, PolicySpec

Q = "sum(rate(x[1m]))"
AT = datetime(2026, 1, 1, tzinfo=UTC)
NAN, INF = math.nan, math.inf


def one(value: float) -> list[Sample]:
    return [Sample(labels={}, value=value)]


# (metric options, canary samples, stable samples, outcome, value, words in the message)
CASES: list[tuple[dict[str, Any], list[Sample], list[Sample] | None, Outcome, float | None,
                  tuple[str, ...]]] = [
    ({"max": 0.01}, one(0.004), None, Outcome.PASSED, 0.004, ("m = 0.004", "<= 0.01")),
    ({"max": 0.01}, one(0.01), None, Outcome.PASSED, 0.01, ()),
    ({"max": 0.01}, one(0.4), None, Outcome.FAILED, 0.4,
     ("m = 0.4", "above the maximum 0.01", Q)),
    ({"min": 0.99}, one(0.95), None, Outcome.FAILED, 0.95, ("below the minimum 0.99", Q)),
    ({"min": 0.5, "max": 2}, one(1.0), None, Outcome.PASSED, 1.0, (">= 0.5 and <= 2",)),
    ({"max": 0.5}, one(INF), None, Outcome.FAILED, INF, ("+Inf", "above the maximum 0.5")),
    ({"max": 0.01}, [], None, Outcome.INCONCLUSIVE, None, ("no series",)),
    ({"max": 0.01, "on_no_data": "fail"}, [], None, Outcome.FAILED, None, ("no series",)),
    ({"max": 0.01}, one(NAN), None, Outcome.INCONCLUSIVE, None, ("NaN",)),
    ({"max": 0.01, "on_no_data": "fail"}, one(NAN), None, Outcome.FAILED, None, ("NaN",)),
    ({"max": 0.01}, [Sample({"version": "1"}, 0.0), Sample({"version": "2"}, 0.3)], None,
     Outcome.ERROR, None, ("2 series", 'version="1"', 'version="2"', "sum(...)")),
    ({"max": 1}, [Sample({"i": str(i)}, 0.0) for i in range(5)], None, Outcome.ERROR, None,
     ("5 series", "and 2 more")),
    ({"relative_max": 0.01}, one(0.015), one(0.01), Outcome.PASSED, 0.015, ()),
    ({"relative_max": 0.01}, one(0.05), one(0.01), Outcome.FAILED, 0.05,
     ("more than 0.01 above the stable version's 0.01",)),
    ({"relative_ratio": 1.5}, one(0.03), one(0.01), Outcome.FAILED, 0.03,
     ("3 times the stable version's 0.01",)),
    ({"relative_ratio": 1.5}, one(0.0), one(0.0), Outcome.PASSED, 0.0, ()),
    ({"relative_ratio": 1.5}, one(0.001), one(0.0), Outcome.FAILED, 0.001, ("+Inf times",)),
    ({"relative_ratio": 1.5}, one(0.01), None, Outcome.INCONCLUSIVE, 0.01,
     ("no stable version",)),
    ({"relative_ratio": 1.5}, one(0.01), [], Outcome.INCONCLUSIVE, 0.01,
     ("for the stable version the query returned no series",)),
    # An absolute failure needs no comparison, so a missing stable side cannot hide it.
    ({"max": 0.1, "relative_ratio": 1.5}, one(0.2), [], Outcome.FAILED, 0.2, ("maximum",)),
]


@pytest.mark.parametrize(("options", "samples", "stable", "outcome", "value", "words"), CASES)
def test_evaluate(options: dict[str, Any], samples: list[Sample], stable: list[Sample] | None,
                  outcome: Outcome, value: float | None, words: tuple[str, ...]) -> None:
    metric = MetricSpec(name="m", query=Q, **options)
    result = evaluate(metric, samples, Q, stable=stable)
    assert (result.outcome, result.value) == (outcome, value)
    assert (result.name, result.query, result.threshold) == ("m", Q, threshold_text(metric))
    for word in words:
        assert word in result.message


@pytest.mark.parametrize(("options", "text"), [
    ({"max": 0.01}, "<= 0.01"),
    ({"min": 0.9}, ">= 0.9"),
    ({"min": 0.9, "max": 1}, ">= 0.9 and <= 1"),
    ({"relative_max": 0.005}, "<= stable + 0.005"),
    ({"max": 0.5, "relative_ratio": 1.5}, "<= 0.5 and <= stable x 1.5"),
    ({}, ""),
])
def test_threshold_text(options: dict[str, Any], text: str) -> None:
    assert threshold_text(MetricSpec(name="m", **options)) == text


def test_a_metric_without_bounds_is_measured_and_passes() -> None:
    result = evaluate(MetricSpec(name="m", query=Q), one(7.0), Q)
    assert (result.outcome, result.value) == (Outcome.PASSED, 7.0)
    assert result.message == (f"m = 7 passes (threshold none: measured only, window as in "
                              f"the query); query: {Q}")


@pytest.mark.parametrize(("options", "samples", "stable", "outcome", "value", "words"), CASES)
def test_every_message_names_metric_threshold_window_and_query(
        options: dict[str, Any], samples: list[Sample], stable: list[Sample] | None,
        outcome: Outcome, value: float | None, words: tuple[str, ...]) -> None:
    metric = MetricSpec(name="m", query=Q, **options)
    message = evaluate(metric, samples, Q, stable=stable, window=90.0).message
    assert message.startswith("m ")
    assert f"(threshold {threshold_text(metric)}, window 1m30s); query: {Q}" in message
    assert message.endswith(Q)  # last, so a cut message loses the query, shown elsewhere
    if value is not None:
        assert f"m = {fmt(value)}" in message
    for bad in ("failureLimit", "failed (", ") >"):
        assert bad not in message


def test_dry_run_is_kept_on_every_outcome() -> None:
    metric = MetricSpec(name="m", query=Q, max=0.01, dry_run=True)
    for samples in (one(0.0), one(1.0), [], one(NAN)):
        assert evaluate(metric, samples, Q).dry_run


class Scripted:
    """A MetricsProvider answering from a table; an exception in the table is raised."""

    def __init__(self, answers: Mapping[str, Sequence[Sample] | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query(self, promql: str) -> list[Sample]:
        self.asked.append(promql)
        answer = self.answers.get(promql, [])
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


def policy(*metrics: MetricSpec) -> PolicySpec:
    return PolicySpec(name="p", prometheus_url="http://127.0.0.1:9090", interval=60,
                      window=60, metrics=metrics)


def q(metric: MetricSpec, p: PolicySpec, version: str = "2.0.0") -> str:
    return render_metric_query(metric, p, service="checkout", version=version)


def run(p: PolicySpec, provider: MetricsProvider) -> Any:
    return measure(p, provider, service="checkout", version="2.0.0", stable_version="1.0.0",
                   at=AT)


def test_measure_judges_every_metric_and_combines() -> None:
    errors = MetricSpec(name="error-rate", builtin="error-rate", max=0.01)
    latency = MetricSpec(name="latency", builtin="latency", max=0.5)
    p = policy(errors, latency)
    count = request_count_query(p, service="checkout", version="2.0.0", metric=latency)
    provider = Scripted({q(errors, p): one(0.4), q(latency, p): one(0.02),
                         count: one(1000.0)})  # a p99 is judged from 1,000 requests up
    verdict = run(p, provider)
    assert verdict.outcome is Outcome.FAILED and verdict.at == AT
    assert [r.outcome for r in verdict.results] == [Outcome.FAILED, Outcome.PASSED]
    assert 'version="2.0.0"' in verdict.results[0].query
    assert q(errors, p) in verdict.results[0].message


@pytest.mark.parametrize("exc", [MetricsError("Prometheus at http://h:9090 is unreachable"),
                                 InputError("Prometheus rejected the query")])
def test_a_query_that_cannot_run_is_an_error_for_that_metric_only(exc: Exception) -> None:
    broken = MetricSpec(name="broken", query="up", max=1)
    fine = MetricSpec(name="fine", query="vector(0)", max=1)
    verdict = run(policy(broken, fine), Scripted({"up": exc, "vector(0)": one(0.0)}))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.results[0].outcome is Outcome.ERROR
    assert str(exc) in verdict.results[0].message
    assert verdict.results[1].outcome is Outcome.PASSED


def test_a_policy_that_cannot_be_rendered_raises_before_any_query() -> None:
    provider = Scripted({})
    with pytest.raises(InputError, match="unknown builtin"):
        run(policy(MetricSpec(name="ok", query="up", max=1),
                   MetricSpec(name="bad", builtin="nope", max=1)), provider)
    assert provider.asked == []


def test_min_requests_makes_low_traffic_inconclusive_and_asks_the_count_once() -> None:
    a = MetricSpec(name="a", builtin="error-rate", max=0.01, min_requests=100)
    b = MetricSpec(name="b", builtin="latency", max=0.5, min_requests=100)
    p = policy(a, b)
    count = request_count_query(p, service="checkout", version="2.0.0")
    provider = Scripted({q(a, p): one(0.5), q(b, p): one(0.1), count: one(12.0)})
    verdict = run(p, provider)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    first = verdict.results[0]
    assert (first.outcome, first.value) == (Outcome.INCONCLUSIVE, 0.5)
    assert "only 12 requests to 2.0.0 in the last 1m; 100 needed" in first.message
    assert provider.asked.count(count) == 1


@pytest.mark.parametrize(("value", "low", "outcome"), [
    (0.005, "inconclusive", Outcome.INCONCLUSIVE), (0.5, "inconclusive", Outcome.INCONCLUSIVE),
    (0.005, "pass-within-bounds", Outcome.PASSED),
    (0.5, "pass-within-bounds", Outcome.INCONCLUSIVE)])
def test_on_low_traffic_lets_a_value_within_the_bounds_pass(
        value: float, low: str, outcome: Outcome) -> None:
    """Too few requests never fail a metric; with ``pass-within-bounds`` a value within
    its bounds passes (a quiet canary is not held), one over them stays inconclusive."""
    a = MetricSpec(name="a", builtin="error-rate", max=0.01, min_requests=100,
                   on_low_traffic=low)
    p = policy(a)
    count = request_count_query(p, service="checkout", version="2.0.0")
    result = run(p, Scripted({q(a, p): one(value), count: one(12.0)})).results[0]
    assert (result.outcome, result.value) == (outcome, value)
    assert ("only 12 requests" in result.message) is (outcome is Outcome.INCONCLUSIVE)


@pytest.mark.parametrize(("count", "outcome"), [([], Outcome.INCONCLUSIVE),
                                                (one(100.0), Outcome.FAILED)])
def test_min_requests_counts_no_series_as_zero_and_enough_as_judgeable(
        count: list[Sample], outcome: Outcome) -> None:
    a = MetricSpec(name="a", builtin="error-rate", max=0.01, min_requests=100)
    p = policy(a)
    counted = request_count_query(p, service="checkout", version="2.0.0")
    verdict = run(p, Scripted({q(a, p): one(0.5), counted: count}))
    assert verdict.results[0].outcome is outcome


def test_relative_bounds_compare_with_the_stable_version() -> None:
    m = MetricSpec(name="e", builtin="error-rate", relative_ratio=1.5)
    p = policy(m)
    verdict = run(p, Scripted({q(m, p): one(0.02), q(m, p, version="1.0.0"): one(0.01)}))
    assert verdict.outcome is Outcome.FAILED
    assert "2 times the stable version's 0.01" in verdict.results[0].message


def test_a_failing_dry_run_metric_does_not_fail_the_verdict() -> None:
    shadow = MetricSpec(name="shadow", query="a", max=0.01, dry_run=True)
    real = MetricSpec(name="real", query="b", max=0.01)
    verdict = run(policy(shadow, real), Scripted({"a": one(1.0), "b": one(0.0)}))
    assert verdict.outcome is Outcome.PASSED
    assert verdict.results[0].outcome is Outcome.FAILED and verdict.results[0].dry_run


def test_each_result_links_to_the_query_graphed_over_ten_windows_before_the_check() -> None:
    m = MetricSpec(name="error-rate", builtin="error-rate", max=0.01)
    p = replace(policy(m), prometheus_url="https://ops:s3cret@prom.example:9090/prom/?x=1")
    [result] = run(p, Scripted({q(m, p): one(0.0)})).results
    link = urlsplit(result.link)
    assert (link.scheme, link.netloc, link.path) == ("https", "prom.example:9090", "/prom/graph")
    params = parse_qs(link.query)
    assert params["g0.expr"] == [result.query]
    assert params["g0.range_input"] == ["10m"] and params["g0.tab"] == ["0"]
    assert params["g0.end_input"] == ["2026-01-01 00:00:00"]
    assert "s3cret" not in result.link and "x=1" not in result.link
    assert MetricResult.from_json(result.to_json()) == result


def test_the_window_is_named_for_builtins_and_templates_using_it_only() -> None:
    builtin = MetricSpec(name="b", builtin="request-rate", min=0)
    templated = MetricSpec(name="t", query="sum(rate(x[{{ window }}]))", max=1)
    fixed = MetricSpec(name="f", query="sum(rate(x[5m]))", max=1)
    p = policy(builtin, templated, fixed)
    answers = {q(builtin, p): one(1.0), "sum(rate(x[1m]))": one(0.5), "sum(rate(x[5m]))": one(0.5)}
    messages = [r.message for r in run(p, Scripted(answers)).results]
    assert ["window 1m" in m for m in messages] == [True, True, False]
    assert "window as in the query" in messages[2]


def test_the_stable_side_uses_the_stable_selector_of_a_family_without_versions() -> None:
    m = MetricSpec(name="e", builtin="error-rate", relative_max=0.01)
    p = replace(policy(m), family="haproxy", select={
        "canary": {"proxy": ("=", ("{{ service }}",)), "server": ("=", ("canary-1",))},
        "stable": {"proxy": ("=", ("{{ service }}",)), "server": ("=", ("s1", "s2"))}})
    canary = render_metric_query(m, p, service="checkout", version="2.0.0")
    stable = render_metric_query(m, p, service="checkout", version="1.0.0", side="stable")
    assert 'server="canary-1"' in canary and 'server=~"s1|s2"' in stable
    verdict = run(p, Scripted({canary: one(0.05), stable: one(0.0)}))
    assert verdict.results[0].outcome is Outcome.FAILED
    assert "more than 0.01 above the stable version's 0" in verdict.results[0].message


class Slow:
    """A provider with the deadline capability whose every answer takes ``delay`` s."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.timeouts: list[float] = []

    def query(self, promql: str) -> list[Sample]:
        raise AssertionError("measure must pass the time left to a DeadlineProvider")

    def query_within(self, promql: str, timeout: float) -> list[Sample]:
        self.timeouts.append(timeout)
        time.sleep(min(self.delay, timeout))
        if self.delay > timeout:
            raise MetricsError(f"did not answer within {timeout:.2g}s")
        return one(0.0)


def test_queries_share_the_budget_and_the_rest_are_not_asked() -> None:
    metrics = [MetricSpec(name=f"m{i}", query=f"vector({i})", max=1) for i in range(4)]
    provider = Slow(0.12)
    assert isinstance(provider, DeadlineProvider)
    start = time.monotonic()
    verdict = measure(policy(*metrics), provider, service="s", version="v",
                      stable_version=None, at=AT, budget=0.3)
    seconds = time.monotonic() - start
    outcomes = [r.outcome for r in verdict.results]
    assert outcomes == [Outcome.PASSED, Outcome.PASSED, Outcome.ERROR, Outcome.ERROR]
    assert provider.timeouts[0] == pytest.approx(0.3, abs=0.01)
    assert provider.timeouts[2] < 0.1  # the third got what was left
    assert "not asked: slow answers used up this check's 0.3s budget" in (
        verdict.results[3].message)
    assert seconds < 1.0  # the outcomes above prove the budget; this only rules out a hang


def test_without_a_budget_a_plain_provider_is_asked_as_before() -> None:
    m = MetricSpec(name="m", query="vector(1)", max=1)
    provider = Scripted({"vector(1)": one(1.0)})
    verdict = measure(policy(m), provider, service="s", version="v", stable_version=None, at=AT,
                      budget=5.0)
    assert verdict.outcome is Outcome.PASSED and provider.asked == ["vector(1)"]


@pytest.mark.parametrize(("quantile", "needed"), [(0.5, 20), (0.9, 100), (0.95, 200),
                                                  (0.99, 1000), (0.999, 10000)])
def test_a_quantile_needs_ten_requests_beyond_it(quantile: float, needed: float) -> None:
    assert quantile_min_requests(quantile) == needed


def test_a_p99_of_too_few_requests_is_inconclusive_never_failed_and_may_pass() -> None:
    """A p99 of 600 requests is about the 6th slowest: one slow path away from failing."""
    m = MetricSpec(name="p99", builtin="latency", quantile=0.99, relative_ratio=2)
    p = policy(m)
    count = request_count_query(p, service="checkout", version="2.0.0", metric=m)
    answers = {q(m, p): one(2.0), q(m, p, version="1.0.0"): one(0.3)}
    thin = run(p, Scripted({**answers, count: one(600.0)})).results[0]
    assert thin.outcome is Outcome.INCONCLUSIVE
    assert "600 requests" in thin.message and "1,000" not in thin.message
    assert "1000 needed to judge (a p99 needs 10 beyond it)" in thin.message
    enough = run(p, Scripted({**answers, count: one(1000.0)})).results[0]
    assert enough.outcome is Outcome.FAILED
    # within the bound it passes from any number of requests: it cannot fail the canary
    fine = run(p, Scripted({q(m, p): one(0.4), q(m, p, version="1.0.0"): one(0.3),
                            count: one(60.0)})).results[0]
    assert fine.outcome is Outcome.PASSED


def test_the_quantile_rule_adds_to_min_requests_and_skips_haproxy_means() -> None:
    p50 = MetricSpec(name="p50", builtin="latency", quantile=0.5, min_requests=100)
    assert required_requests(p50) == 100
    assert required_requests(MetricSpec(name="p99", builtin="latency", min_requests=5)) == 1000
    assert required_requests(MetricSpec(name="mean", builtin="latency"),
                             family="haproxy") is None
    assert required_requests(MetricSpec(name="e", builtin="error-rate")) is None
    assert required_requests(MetricSpec(name="p99", builtin="latency"), failed=False) is None


def test_without_stable_traffic_a_relative_bound_compares_with_the_stable_baseline() -> None:
    """The 100% stage: no stable traffic in the window, so the stable version's own rate
    over the last hour (recorded during the rollout) is what the canary is held to."""
    m = MetricSpec(name="error-rate", builtin="error-rate", relative_max=0.25)
    p = policy(m)
    hour = replace(p, window=BASELINE_WINDOW)
    stable_now = q(m, p, version="1.0.0")
    stable_hour = render_metric_query(m, hour, service="checkout", version="1.0.0")
    assert stable_hour != stable_now and "[1h]" in stable_hour
    bad = run(p, Scripted({q(m, p): one(0.4), stable_now: one(math.nan),
                           stable_hour: one(0.01)})).results[0]
    assert bad.outcome is Outcome.FAILED
    assert "above the stable version's 0.01 (its baseline over the last 1h" in bad.message
    fine = run(p, Scripted({q(m, p): one(0.02), stable_now: [],
                            stable_hour: one(0.01)})).results[0]
    assert fine.outcome is Outcome.PASSED
    never = run(p, Scripted({q(m, p): one(0.4), stable_now: [], stable_hour: []})).results[0]
    assert never.outcome is Outcome.INCONCLUSIVE
