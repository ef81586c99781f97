"""Preflight without Prometheus: which problems it finds, where it says they are, and
when it stops. (tests/metrics/test_preflight_live.py runs it against a real Prometheus.)"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest

from canary.errors import InputError, MetricsError
from canary.metrics.base import Sample
from canary.rollout.preflight import (
    INVALID,
    REJECTED,
    UNKNOWN_LABEL,
    UNKNOWN_METRIC,
    UNREACHABLE,
    Problem,
    metric_names,
    preflight,
    refuse,
)
from canary.specs import MetricSpec, PolicySpec

SERIES = [  # what the fake Prometheus holds: metric name and label names
    ("http_requests_total", {"service", "version", "code"}),
    ("http_request_duration_seconds_bucket", {"service", "version", "le"}),
    ("queue_depth", {"service"}),
]


class FakePrometheus:
    """Answers preflight's existence checks from SERIES; everything else is no data."""

    def __init__(self, *, rejects: Sequence[str] = (), down: bool = False) -> None:
        self.rejects, self.down = rejects, down
        self.asked: list[str] = []

    def query(self, promql: str) -> list[Sample]:
        self.asked.append(promql)
        if self.down:
            raise MetricsError("Prometheus at http://127.0.0.1:9 is unreachable: refused")
        if any(r in promql for r in self.rejects):
            raise InputError(f"Prometheus rejected the query {promql!r}: parse error")
        if m := re.fullmatch(r'count\(\{__name__="([^"]+)"\}\)', promql):
            n = sum(1 for name, _ in SERIES if name == m.group(1))
            return [Sample({}, float(n))] if n else []
        if m := re.fullmatch(r'count\(([A-Za-z_:]+)\{([A-Za-z_]+)!=""\}\)', promql):
            n = sum(1 for name, labels in SERIES if name == m.group(1) and m.group(2) in labels)
            return [Sample({}, float(n))] if n else []
        return []


def policy(*metrics: MetricSpec, labels: Mapping[str, str] | None = None,
           **kw: object) -> PolicySpec:
    base = PolicySpec(name="p", prometheus_url="http://127.0.0.1:9090", interval=60,
                      window=60, metrics=metrics, **kw)  # type: ignore[arg-type]
    return replace(base, labels={**base.labels, **(labels or {})})


def run(p: PolicySpec, provider: FakePrometheus | None = None,
        stable_version: str | None = "1.0.0") -> list[Problem]:
    return preflight(p, provider or FakePrometheus(), service="checkout", version="2.0.0",
                     stable_version=stable_version)


ERRORS = MetricSpec(name="error-rate", builtin="error-rate", max=0.01, min_requests=10)
LATENCY = MetricSpec(name="p99", builtin="latency", max=0.5, relative_ratio=1.5)


def test_a_sound_policy_has_no_problems_though_the_canary_has_no_data_yet() -> None:
    assert run(policy(ERRORS, LATENCY,
                      MetricSpec(name="q", query='max(queue_depth{service="{{ service }}"})',
                                 max=5))) == []


def test_every_rendered_query_is_run_once() -> None:
    fake = FakePrometheus()
    run(policy(ERRORS, LATENCY), fake)
    data = [q for q in fake.asked if not q.startswith("count(")]
    assert len(data) == len(set(data)) == 4  # error rate, its count, p99 canary and stable
    assert any('version="1.0.0"' in q for q in data)


def test_a_misspelt_custom_metric_names_metric_field_and_query() -> None:
    metric = MetricSpec(name="queue", query='max(queue_dept{service="{{ service }}"})', max=5)
    [problem] = run(policy(ERRORS, metric))
    assert (problem.kind, problem.metric, problem.field) == (UNKNOWN_METRIC, "queue",
                                                             "spec.metrics[1].query")
    assert problem.query == 'max(queue_dept{service="checkout"})'
    assert "no series named queue_dept" in problem.message
    assert str(problem).startswith("spec.metrics[1].query: queue: Prometheus has no series")
    assert problem.to_json()["kind"] == UNKNOWN_METRIC


def test_a_wrong_requests_metric_points_at_requests_metric() -> None:
    kinds = {(p.kind, p.field) for p in run(policy(ERRORS, requests_metric="http_requests"))}
    assert kinds == {(UNKNOWN_METRIC, "spec.requestsMetric")}


def test_a_label_no_series_carries_points_at_its_label_setting() -> None:
    problems = run(policy(ERRORS, labels={"version": "revision"}))
    assert {(p.kind, p.field) for p in problems} == {(UNKNOWN_LABEL, "spec.labels.version")}
    assert "no series of http_requests_total has a label revision" in problems[0].message


def test_a_wrong_family_is_reported_as_its_missing_series() -> None:
    problems = run(policy(ERRORS, family="istio"))
    assert [(p.kind, p.field) for p in problems] == [(UNKNOWN_METRIC, "spec.family")]
    assert "istio_requests_total" in problems[0].message


def test_promql_that_prometheus_rejects() -> None:
    metric = MetricSpec(name="broken", query="sum(rate(queue_depth[{{ window }}])", max=1)
    fake = FakePrometheus(rejects=["sum(rate(queue_depth[1m])"])
    [problem] = run(policy(metric), fake)
    assert (problem.kind, problem.field) == (REJECTED, "spec.metrics[0].query")
    assert "parse error" in problem.message


def test_a_query_that_cannot_be_rendered() -> None:
    metric = MetricSpec(name="q", query='max(x{v="{{ stable_version }}"})', max=1)
    [problem] = run(policy(metric), stable_version=None)
    assert (problem.kind, problem.field) == (INVALID, "spec.metrics[0].query")
    assert "no stable_version is known yet" in problem.message


def test_an_unreachable_prometheus_is_one_problem_and_stops_the_rest() -> None:
    fake = FakePrometheus(down=True)
    problems = run(policy(ERRORS, LATENCY), fake)
    assert [(p.kind, p.field) for p in problems] == [(UNREACHABLE, "spec.prometheus.url")]
    assert "unreachable" in problems[0].message and len(fake.asked) == 1


def test_refuse_lists_every_problem_as_one_input_error() -> None:
    refuse([])
    with pytest.raises(MetricsError, match="preflight could not run; nothing was changed"):
        refuse(run(policy(ERRORS), FakePrometheus(down=True)))
    problems = run(policy(ERRORS, requests_metric="nope", labels={"code": "status"}))
    with pytest.raises(InputError) as err:
        refuse(problems, file="rollout.yaml")
    assert err.value.file == "rollout.yaml"
    assert f"preflight found {len(problems)} problem(s)" in err.value.message
    assert all(str(p) in err.value.message for p in problems)


@pytest.mark.parametrize(("promql", "names"), [
    ('sum(rate(http_requests_total{service="a",code=~"5.."}[1m])) / sum(rate(b_total[1m]))',
     ["http_requests_total", "b_total"]),
    ("histogram_quantile(0.99, sum by (le) (rate(lat_bucket[5m])))", ["lat_bucket"]),
    ('max(queue_depth{service="x"}) offset 5m', ["queue_depth"]),
    ("sum(x) by (le) > bool 1e3 and on(instance) up", ["x", "up"]),
    ('{__name__="foo_total", job="x"} # rate(commented_out)', ["foo_total"]),
    ('label_replace(up, "a", "$1", "b", "(.*)") * scalar(node_load1)', ["up", "node_load1"]),
    ("SUM(rate(abc:ratio5m[1m])) / time()", ["abc:ratio5m"]),
    ('count(x{a="sum(fake_name)"})', ["x"]),
    ("vector(1)", []),
])
def test_metric_names_in_custom_queries(promql: str, names: list[str]) -> None:
    assert metric_names(promql) == names


def test_the_request_count_of_a_custom_metric_is_checked_too() -> None:
    queue = MetricSpec(name="queue", query="max(queue_depth)", max=5, min_requests=10)
    assert run(policy(queue)) == []
    problems = run(policy(queue, requests_metric="http_reqs_total"))
    assert [(p.kind, p.metric, p.field) for p in problems] == [
        (UNKNOWN_METRIC, "queue", "spec.requestsMetric")]
