"""The built-in metric families: the exact PromQL each one renders, and how sides are told."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from canary.analysis.families import FAMILIES
from canary.analysis.queries import builtin_series, render_metric_query, request_count_query
from canary.config.spec import FamilyName
from canary.errors import InputError
from canary.specs import LabelMatch, MetricSpec, PolicySpec

HAPROXY_SELECT: dict[str, dict[str, LabelMatch]] = {
    "canary": {"proxy": ("=", ("{{ service }}",)), "server": ("=", ("canary-1",))},
    "stable": {"proxy": ("=", ("{{ service }}",)), "server": ("=", ("stable-1", "stable-2"))},
}


def policy(family: str, **kw: object) -> PolicySpec:
    select = HAPROXY_SELECT if family == "haproxy" else {}
    base = PolicySpec(name="p", prometheus_url="http://127.0.0.1:9090", interval=60.0,
                      window=60.0, metrics=(), family=family, select=select)
    return replace(base, **kw)  # type: ignore[arg-type]


def render(p: PolicySpec, builtin: str, *, side: str = "canary", **kw: object) -> str:
    metric = MetricSpec(name="m", builtin=builtin, quantile=0.95, **kw)  # type: ignore[arg-type]
    version = "2.0.0" if side == "canary" else "1.0.0"
    return render_metric_query(metric, p, service="checkout", version=version,
                               stable_version="1.0.0", side=side)


def error_rate(requests: str, sel: str, code: str, failed: str) -> str:
    return (f"(sum(rate({requests}{{{sel},{code}{failed}}}[1m]))"
            f" or 0 * sum(rate({requests}{{{sel},{code}!=\"\"}}[1m])))"
            f" / sum(rate({requests}{{{sel}}}[1m]))")


# family: (requests, canary selector, stable selector, code label, failed matcher,
#          latency query without its quantile wrapper for the canary)
EXPECTED = {
    "app": ("http_requests_total", 'service="checkout",version="2.0.0"',
            'service="checkout",version="1.0.0"', "code", '=~"5.."',
            "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
            '{service="checkout",version="2.0.0"}[1m])))'),
    "istio": ("istio_requests_total",
              'destination_service_name="checkout",destination_version="2.0.0",'
              'reporter="destination"',
              'destination_service_name="checkout",destination_version="1.0.0",'
              'reporter="destination"', "response_code", '=~"5.."',
              "histogram_quantile(0.95, sum by (le) (rate("
              'istio_request_duration_milliseconds_bucket{destination_service_name="checkout",'
              'destination_version="2.0.0",reporter="destination"}[1m]))) / 1000'),
    "linkerd": ("response_total", 'app="checkout",version="2.0.0",direction="inbound"',
                'app="checkout",version="1.0.0",direction="inbound"', "classification",
                '="failure"',
                "histogram_quantile(0.95, sum by (le) (rate(response_latency_ms_bucket"
                '{app="checkout",version="2.0.0",direction="inbound"}[1m]))) / 1000'),
    "ingress-nginx": ("nginx_ingress_controller_requests", 'ingress="checkout",canary!=""',
                      'ingress="checkout",canary=""', "status", '=~"5.."',
                      "histogram_quantile(0.95, sum by (le) (rate("
                      "nginx_ingress_controller_request_duration_seconds_bucket"
                      '{ingress="checkout",canary!=""}[1m])))'),
    "haproxy": ("haproxy_server_http_responses_total", 'proxy="checkout",server="canary-1"',
                'proxy="checkout",server=~"stable\\\\-1|stable\\\\-2"', "code", '="5xx"',
                'max(haproxy_server_response_time_average_seconds{proxy="checkout",'
                'server="canary-1"} and on (instance, proxy, server) (sum by (instance, '
                'proxy, server) (haproxy_server_http_responses_total{proxy="checkout",'
                'server="canary-1"}) >= 1024))  # a mean of each server\'s recent responses '
                "(HAProxy keeps no histogram); no value before a server answered 1024"),
}


def test_the_families_are_the_ones_the_policy_file_accepts() -> None:
    assert set(FAMILIES) == set(EXPECTED) == set(FamilyName.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("family", EXPECTED)
def test_each_family_renders_its_own_series(family: str) -> None:
    requests, canary, stable, code, failed, latency = EXPECTED[family]
    p = policy(family)
    assert render(p, "error-rate") == error_rate(requests, canary, code, failed)
    assert render(p, "error-rate", side="stable") == error_rate(requests, stable, code, failed)
    assert render(p, "request-rate") == f"sum(rate({requests}{{{canary}}}[1m]))"
    assert render(p, "request-rate", side="stable") == f"sum(rate({requests}{{{stable}}}[1m]))"
    assert render(p, "latency") == latency
    assert request_count_query(p, service="checkout", version="2.0.0") == (
        f"sum(increase({requests}{{{canary}}}[1m]))")


@pytest.mark.parametrize("family", ["istio", "linkerd"])
def test_millisecond_histograms_are_read_in_seconds(family: str) -> None:
    assert render(policy(family), "latency").endswith(" / 1000")
    assert not render(policy("app"), "latency").endswith(" / 1000")


def test_label_and_metric_names_of_a_family_can_be_changed() -> None:
    p = policy("istio", labels={"version": "destination_canonical_revision"},
               requests_metric="mesh_requests_total")
    q = render(p, "error-rate")
    assert 'destination_canonical_revision="2.0.0"' in q and "destination_version" not in q
    assert q.startswith("(sum(rate(mesh_requests_total{destination_service_name=")


def test_app_label_defaults_do_not_leak_into_another_family() -> None:
    # A PolicySpec built in code carries the app's label and metric names by default.
    p = policy("istio")
    assert p.labels == {"service": "service", "version": "version", "code": "code"}
    assert "istio_requests_total{destination_service_name=" in render(p, "request-rate")


def test_a_metric_may_read_another_family_than_its_policy() -> None:
    p = policy("app", labels={"service": "app", "version": "rev", "code": "status"})
    mesh = render(p, "error-rate", family="istio")
    assert "istio_requests_total{destination_service_name=" in mesh
    assert "rev=" not in mesh  # the policy's labels belong to the policy's family
    assert 'app="checkout",rev="2.0.0"' in render(p, "error-rate")


def test_a_metric_may_bring_its_own_select() -> None:
    own = {"canary": {"ingress": ("=", ("{{ service }}-canary",))},
           "stable": {"ingress": ("=", ("{{ service }}",))}}
    p = policy("ingress-nginx")
    q = render(p, "request-rate", select=own)
    assert q == 'sum(rate(nginx_ingress_controller_requests{ingress="checkout-canary"}[1m]))'


def test_select_values_may_exclude_and_list_literally() -> None:
    select = {"canary": {"server": ("=", ("a.b", "c|d")), "zone": ("!=", ("eu", "us"))},
              "stable": {"server": ("!=", ("",))}}
    p = policy("haproxy", select=select)
    q = render(p, "request-rate")
    # The values are literal: regex characters are escaped, then the whole PromQL string.
    assert 'server=~"a\\\\.b|c\\\\|d",zone!~"eu|us"' in q
    assert 'server!=""' in render(p, "request-rate", side="stable")


def strings_replaced(promql: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', "S", promql)


@pytest.mark.parametrize("value", ['x"} or vector(1) or {a="', "a\\", "new\nline", "a|b.*"])
def test_no_service_name_changes_the_shape_of_a_select_query(value: str) -> None:
    select = {"canary": {"proxy": ("=", ("{{ service }}",)), "server": ("=", ("{{ service }}-1",
                                                                              "x"))},
              "stable": {"proxy": ("=", ("{{ service }}",))}}
    p = policy("haproxy", select=select)
    metric = MetricSpec(name="m", builtin="error-rate")
    benign = render_metric_query(metric, p, service="shop", version="2")
    attacked = render_metric_query(metric, p, service=value, version="2")
    assert strings_replaced(attacked) == strings_replaced(benign)


@pytest.mark.parametrize(("p", "field", "words"), [
    (policy("haproxy", select={}), "select", "server names of each side"),
    (policy("haproxy", select={"canary": HAPROXY_SELECT["canary"]}), "select",
     "stable is missing"),
    (policy("mesh"), "family", "unknown family 'mesh'"),
    (policy("haproxy", select={"canary": {"bad-label": ("=", ("x",))},
                               "stable": HAPROXY_SELECT["stable"]}),
     "select.canary.bad-label", "not a Prometheus label name"),
    (policy("haproxy", select={"canary": {"server": ("=~", ("x",))},
                               "stable": HAPROXY_SELECT["stable"]}),
     "select.canary.server", "expected = or !="),
])
def test_family_settings_that_cannot_work_name_their_field(p: PolicySpec, field: str,
                                                           words: str) -> None:
    with pytest.raises(InputError) as err:
        render(p, "error-rate")
    assert err.value.field == field and words in err.value.message


def test_builtin_series_lists_names_and_labels_with_their_fields() -> None:
    app = builtin_series(MetricSpec(name="l", builtin="latency"), policy("app"))
    assert app.names == (("http_requests_total", "requestsMetric"),
                         ("http_request_duration_seconds_bucket", "durationMetric"))
    assert ("http_request_duration_seconds_bucket", "version", "labels.version") in app.labels
    mesh = builtin_series(MetricSpec(name="e", builtin="error-rate"), policy("istio"))
    assert mesh.names == (("istio_requests_total", "family"),)
    assert ("istio_requests_total", "reporter", "family") in mesh.labels
    assert ("istio_requests_total", "response_code", "labels.code") in mesh.labels
    nginx = builtin_series(MetricSpec(name="r", builtin="request-rate"), policy("ingress-nginx"))
    # canary!="" and canary="" match series without the label too: nothing to check.
    assert [label for _, label, _ in nginx.labels] == ["ingress"]
    haproxy = builtin_series(MetricSpec(name="l", builtin="latency"), policy("haproxy"))
    assert haproxy.names[1] == ("haproxy_server_response_time_average_seconds", "family")
    assert ("haproxy_server_http_responses_total", "server", "select.stable.server") in (
        haproxy.labels)
