"""The metric families: where one kind of deployment keeps its request counts and
latencies (the app's own series, a mesh's sidecars, the proxy in front), and which metric
and label names a policy's metric reads in its family. queries.py builds PromQL from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from canary.errors import InputError
from canary.specs import LabelMatch, MetricSpec, PolicySpec

APP_LABELS = {"service": "service", "version": "version", "code": "code"}

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class Family:
    """Where one kind of deployment keeps request counts and latencies."""

    name: str
    requests: str  # counter of answered requests, one series per status
    duration: str  # histogram base name (without _bucket), or a gauge when ``mean``
    labels: Mapping[str, str]  # service / version / code label names; no version: sides
    failed: tuple[str, str] = ("=~", "5..")  # how the code label marks a failed request
    ms: bool = False  # the histogram counts milliseconds
    mean: bool = False  # the latency is a per-server mean gauge, not a histogram
    fixed: Mapping[str, LabelMatch] = field(default_factory=dict)  # on both sides
    sides: Mapping[str, Mapping[str, LabelMatch]] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("app", "http_requests_total", "http_request_duration_seconds", APP_LABELS),
    Family("istio", "istio_requests_total", "istio_request_duration_milliseconds",
           {"service": "destination_service_name", "version": "destination_version",
            "code": "response_code"}, ms=True, fixed={"reporter": ("=", ("destination",))}),
    Family("linkerd", "response_total", "response_latency_ms",
           {"service": "app", "version": "version", "code": "classification"},
           failed=("=", "failure"), ms=True, fixed={"direction": ("=", ("inbound",))}),
    Family("ingress-nginx", "nginx_ingress_controller_requests",
           "nginx_ingress_controller_request_duration_seconds",
           {"service": "ingress", "code": "status"},
           sides={"canary": {"canary": ("!=", ("",))}, "stable": {"canary": ("=", ("",))}}),
    Family("haproxy", "haproxy_server_http_responses_total",
           "haproxy_server_response_time_average_seconds", {"service": "proxy", "code": "code"},
           failed=("=", "5xx"), mean=True),
)}
APP = FAMILIES["app"]
# HAProxy's per-server average starts at 0 and reads low until it has seen its window
# of answers (measured on 2.6: true mean x answers/512 up to 512; its help text says
# 1024). A server counts only once it has answered WARM requests; before: no value.
WARM = 1024
MEAN_NOTE = (f"  # a mean of each server's recent responses (HAProxy keeps no histogram); "
             f"no value before a server answered {WARM}")


def family_of(metric: MetricSpec, policy: PolicySpec) -> Family:
    name = metric.family or policy.family
    family = FAMILIES.get(name)
    if family is None:
        where = f"metrics.{metric.name}.family" if metric.family else "family"
        raise InputError(f"unknown family {name!r}; expected one of {', '.join(FAMILIES)}",
                         field=where)
    return family


def labels_of(metric: MetricSpec, policy: PolicySpec) -> dict[str, str]:
    """The label names in use: the family's, with the policy's ``labels`` on top.

    A PolicySpec built in code carries the app's label names by default; for another
    family those defaults mean "not set". A metric of another family than its policy's
    reads that family's own names.
    """
    family = family_of(metric, policy)
    if not own(metric, policy):
        return dict(family.labels)
    given = {k: v for k, v in policy.labels.items() if k in APP_LABELS}
    if family is not APP and given == APP_LABELS:
        given = {}
    return {**family.labels, **given}


def requests_metric(metric: MetricSpec, policy: PolicySpec) -> str:
    return metric_name(_override(metric, policy, policy.requests_metric, APP.requests,
                                  "requests"), "requestsMetric")


def duration_metric(metric: MetricSpec, policy: PolicySpec) -> str:
    return metric_name(_override(metric, policy, policy.duration_metric, APP.duration,
                                  "duration"), "durationMetric")


def _override(metric: MetricSpec, policy: PolicySpec, value: str, app_default: str,
              attr: str) -> str:
    """The policy's metric name where it applies to ``metric``, else the family's own."""
    family = family_of(metric, policy)
    if not own(metric, policy):
        return str(getattr(family, attr))
    return value if family is APP or value != app_default else str(getattr(family, attr))


def own(metric: MetricSpec, policy: PolicySpec) -> bool:
    """Whether ``metric`` reads its policy's family (so the policy's names apply)."""
    return metric.family is None or metric.family == policy.family


def label_name(name: str, field: str) -> str:
    if not _LABEL_NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a Prometheus label name", field=field)
    return name


def metric_name(name: str, field: str) -> str:
    if not _METRIC_NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a Prometheus metric name", field=field)
    return name
