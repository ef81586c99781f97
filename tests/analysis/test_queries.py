"""Rendering PromQL: built-ins, custom templates, and escaping that no value can break."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from canary.analysis.queries import (
    escape_label_value,
    render_metric_query,
    render_template,
    request_count_query,
)
from canary.errors import InputError
from canary.specs import MetricSpec, PolicySpec

POLICY = PolicySpec(name="p", prometheus_url="http://127.0.0.1:9090", interval=60.0,
                    window=60.0, metrics=())

NASTY = [
    'a"} or vector(1) or {x="',
    "back\\slash",
    "new\nline",
    'ends with a backslash\\',
    '\\"',
    "tab\tand\rreturn",
    "unicode ü ✓",
    "{{ service }}",  # a value that looks like a placeholder is not expanded again
    "",
]


def render(builtin: str | None = None, query: str | None = None, policy: PolicySpec = POLICY,
           **kw: str | None) -> str:
    metric = MetricSpec(name="m", builtin=builtin, query=query, quantile=0.95)
    args: dict[str, str | None] = {"service": "checkout", "version": "2.0.0", **kw}
    return render_metric_query(metric, policy, service=str(args["service"]),
                               version=str(args["version"]),
                               stable_version=args.get("stable_version"))


def test_builtins_read_the_conventional_series() -> None:
    sel = 'service="checkout",version="2.0.0"'
    assert render("error-rate") == (
        f'(sum(rate(http_requests_total{{{sel},code=~"5.."}}[1m]))'
        f' or 0 * sum(rate(http_requests_total{{{sel},code!=""}}[1m])))'
        f" / sum(rate(http_requests_total{{{sel}}}[1m]))")
    assert render("latency") == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(http_request_duration_seconds_bucket{{{sel}}}[1m])))")
    assert render("request-rate") == f"sum(rate(http_requests_total{{{sel}}}[1m]))"
    assert request_count_query(POLICY, service="checkout", version="2.0.0") == (
        f"sum(increase(http_requests_total{{{sel}}}[1m]))")


def test_label_and_metric_names_come_from_the_policy() -> None:
    policy = replace(POLICY, window=90.0, labels={"service": "app", "version": "rev",
                                                  "code": "status"},
                     requests_metric="requests_total", duration_metric="latency_seconds")
    q = render("error-rate", policy=policy)
    assert 'requests_total{app="checkout",rev="2.0.0",status=~"5.."}[1m30s]' in q
    assert "http_requests_total" not in q
    assert "latency_seconds_bucket{app=" in render("latency", policy=policy)


@pytest.mark.parametrize(("field", "labels", "requests_metric"), [
    ("labels.service", {"service": 'x"}'}, "http_requests_total"),
    ("labels.code", {"code": "5xx-code"}, "http_requests_total"),
    ("requestsMetric", {}, "http_requests_total{x}"),
])
def test_names_that_promql_would_not_accept_are_input_errors(
        field: str, labels: dict[str, str], requests_metric: str) -> None:
    policy = replace(POLICY, labels={**POLICY.labels, **labels}, requests_metric=requests_metric)
    with pytest.raises(InputError) as err:
        render("error-rate", policy=policy)
    assert err.value.field == field


def test_unknown_builtin_names_the_field_and_the_choices() -> None:
    with pytest.raises(InputError) as err:
        render("error_rate")
    assert err.value.field == "metrics.m.builtin"
    assert "error-rate, latency, request-rate" in str(err.value)


def test_quantile_outside_0_1_is_an_input_error() -> None:
    metric = MetricSpec(name="m", builtin="latency", quantile=99)
    with pytest.raises(InputError, match="quantile"):
        render_metric_query(metric, POLICY, service="s", version="v")


def test_custom_template_placeholders_with_or_without_spaces() -> None:
    q = render(query='max(q{s="{{service}}",v="{{ version }}",old="{{  stable_version }}"}'
                     '[{{ window }}])', stable_version="1.0.0")
    assert q == 'max(q{s="checkout",v="2.0.0",old="1.0.0"}[1m])'


def test_unknown_placeholder_and_missing_stable_version_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"unknown placeholder \{\{ servce \}\}") as err:
        render(query='up{s="{{ servce }}"}')
    assert err.value.field == "metrics.m.query"
    with pytest.raises(InputError, match="stable_version"):
        render(query='up{v="{{ stable_version }}"}', stable_version=None)


def test_escapes_backslash_quote_and_newline() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_label_value("plain-1.0.0") == "plain-1.0.0"


def decode_strings(promql: str) -> tuple[str, list[str]]:
    """Split PromQL into its skeleton (strings replaced by S) and the decoded strings, the way
    Prometheus's lexer reads double-quoted strings."""
    escapes = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
    skeleton, strings, i = "", [], 0
    while i < len(promql):
        if promql[i] != '"':
            skeleton += promql[i]
            i += 1
            continue
        i += 1
        value = ""
        while promql[i] != '"':
            if promql[i] == "\\":
                i += 1
                value += escapes[promql[i]]
            else:
                assert promql[i] != "\n", "a raw newline ends a PromQL string"
                value += promql[i]
            i += 1
        i += 1
        strings.append(value)
        skeleton += "S"
    return skeleton, strings


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("builtin", ["error-rate", "latency", "request-rate"])
def test_no_value_changes_the_shape_of_a_builtin_query(builtin: str, value: str) -> None:
    benign, _ = decode_strings(render(builtin))
    skeleton, strings = decode_strings(render(builtin, service=value, version=value))
    assert skeleton == benign
    assert value in strings


@pytest.mark.parametrize("value", NASTY)
def test_no_value_changes_the_shape_of_a_custom_query(value: str) -> None:
    template = 'count(x{service="{{ service }}",version="{{ version }}"}) > 0'
    benign, _ = decode_strings(render_template(template, {"service": "s", "version": "v"},
                                               field="f"))
    skeleton, strings = decode_strings(
        render_template(template, {"service": value, "version": value}, field="f"))
    assert skeleton == benign
    assert strings == [value, value]


def test_the_injection_attempt_stays_one_label_value() -> None:
    q = render(query='count(http_requests_total{service="{{ service }}"})',
               service='x"} or vector(1) or {service="x')
    assert q == 'count(http_requests_total{service="x\\"} or vector(1) or {service=\\"x"})'
    assert len(re.findall(r'(?<!\\)"', q)) == 2
