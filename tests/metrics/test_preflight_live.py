"""Preflight against the real lab Prometheus: what it finds in a second, before traffic."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from canary.config.spec import PACKAGE_POLICIES, load_policy
from canary.metrics.prometheus import PrometheusProvider
from canary.rollout.preflight import (
    REJECTED,
    UNKNOWN_LABEL,
    UNKNOWN_METRIC,
    UNREACHABLE,
    Problem,
    preflight,
    preflight_file,
)
from canary.specs import MetricSpec, PolicySpec
from lab.proc import free_port

from .lab import Lab

pytestmark = pytest.mark.servers


def shipped(name: str, lab: Lab) -> PolicySpec:
    return load_policy(str(PACKAGE_POLICIES / f"{name}.yaml"),
                       env={"PROMETHEUS_URL": lab.prometheus_url})


def check(p: PolicySpec, provider: PrometheusProvider, version: str = "3.0.0") -> list[Problem]:
    # 3.0.0 has never run: preflight must not mistake "no series yet" for a problem.
    return preflight(p, provider, service="checkout", version=version, stable_version="1.0.0")


@pytest.mark.parametrize("name", ["default", "strict", "low-traffic", "latency-sensitive"])
def test_the_shipped_policies_pass_preflight_on_the_lab(
        name: str, lab: Lab, provider: PrometheusProvider) -> None:
    start = time.perf_counter()
    assert check(shipped(name, lab), provider) == []
    print(f"preflight of {name}: {(time.perf_counter() - start) * 1000:.0f} ms")


def test_it_finds_each_kind_of_mistake(lab: Lab, provider: PrometheusProvider) -> None:
    base = shipped("default", lab)
    typo = MetricSpec(name="rps", query='sum(rate(http_request_total{service="{{ service }}"}'
                                        "[{{ window }}]))", min=1)
    broken = MetricSpec(name="broken", query="sum(rate(http_requests_total[{{ window }}])",
                        max=1)
    p = replace(base, metrics=(*base.metrics, typo, broken),
                labels={**base.labels, "code": "status"})
    problems = check(p, provider)
    found = {(x.kind, x.metric, x.field) for x in problems}
    assert found == {
        (UNKNOWN_LABEL, "error-rate", "spec.labels.code"),
        (UNKNOWN_METRIC, "rps", "spec.metrics[2].query"),
        (REJECTED, "broken", "spec.metrics[3].query"),
    }
    rejected = next(x for x in problems if x.kind == REJECTED)
    assert "parse error" in rejected.message and rejected.query.startswith("sum(rate(")
    for x in problems:
        print(x)


def test_a_family_that_is_not_deployed_is_found(lab: Lab, provider: PrometheusProvider) -> None:
    p = replace(shipped("default", lab), family="istio", labels={})
    problems = check(p, provider)
    assert {(x.kind, x.field) for x in problems} == {(UNKNOWN_METRIC, "spec.family")}
    assert {x.message.split()[5] for x in problems} == {
        "istio_requests_total", "istio_request_duration_milliseconds_bucket"}


def test_an_unreachable_prometheus_is_one_problem_found_fast(lab: Lab) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    p = replace(shipped("strict", lab), prometheus_url=url)
    start = time.perf_counter()
    with PrometheusProvider(url, timeout=2) as dead:
        problems = check(p, dead)
    seconds = time.perf_counter() - start
    assert [(x.kind, x.field) for x in problems] == [(UNREACHABLE, "spec.prometheus.url")]
    assert "connection refused" in problems[0].message and seconds < 1


def test_preflight_file_reads_a_rollout_and_its_policy(tmp_path: Path, lab: Lab) -> None:
    (tmp_path / "policy.yaml").write_text(
        (PACKAGE_POLICIES / "default.yaml").read_text().replace(
            "${PROMETHEUS_URL:-http://127.0.0.1:9090}", lab.prometheus_url))
    (tmp_path / "rollout.yaml").write_text("""\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  stableVersion: "1.0.0"
  router:
    type: "null"
  analysis:
    policy: policy.yaml
""")
    assert preflight_file(str(tmp_path / "rollout.yaml")) == []
    assert preflight_file(str(tmp_path / "policy.yaml")) == []
