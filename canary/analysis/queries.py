"""PromQL for a policy's metrics: the built-in templates of each family and the user's own.

A *family* names where a user's request counts and latencies live: the app's own
``http_requests_total`` (``app``, the default), a mesh's sidecars (``istio``, ``linkerd``)
or the proxy in front (``ingress-nginx``, ``haproxy``), so a service without metrics of its
own can still be judged. Each family knows its counter, its latency series (converted to
seconds: a threshold means the same in every family), how it marks a failed request, and
how it tells the canary's series from the stable's: a version label, or, where the proxy
has none, a selector per side (HAProxy server names, ingress-nginx's ``canary`` label).

A custom ``query`` uses ``{{ service }}``, ``{{ version }}``, ``{{ stable_version }}`` and
``{{ window }}``. Every substituted value is escaped as the content of a double-quoted
PromQL string, so a service named ``a"} or vector(1) or {x="`` stays a label value and
cannot change the query; templates must therefore put values inside double quotes
(``service="{{ service }}"``), the only PromQL string form whose escapes we produce.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from canary.durations import format_duration
from canary.errors import InputError
from canary.model import LabelMatch, MetricSpec, PolicySpec

BUILTINS = ("error-rate", "latency", "request-rate")
PLACEHOLDERS = ("service", "version", "stable_version", "window")
SIDES = ("canary", "stable")
APP_LABELS = {"service": "service", "version": "version", "code": "code"}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


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


@dataclass(frozen=True)
class Series:
    """What a built-in reads, for preflight: the series names and the labels it matches."""

    names: tuple[tuple[str, str], ...]  # (metric name, the policy field that chose it)
    labels: tuple[tuple[str, str, str], ...]  # (metric name, label, the field that chose it)


def escape_label_value(value: str) -> str:
    """``value`` as the content of a double-quoted PromQL string (without the quotes)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def family_of(metric: MetricSpec, policy: PolicySpec) -> Family:
    name = metric.family or policy.family
    family = FAMILIES.get(name)
    if family is None:
        where = f"metrics.{metric.name}.family" if metric.family else "family"
        raise InputError(f"unknown family {name!r}; expected one of {', '.join(FAMILIES)}",
                         field=where)
    return family


def render_metric_query(metric: MetricSpec, policy: PolicySpec, *, service: str, version: str,
                        stable_version: str | None = None, side: str = "canary") -> str:
    """The PromQL that measures ``metric`` for ``version`` of ``service`` over the window.

    ``side`` says whose series a built-in selects ("stable" with the stable version).
    Raises InputError naming the field for an unknown built-in or family, an unknown
    placeholder, a missing stable version, or names PromQL would not accept.
    """
    field_ = f"metrics.{metric.name}"
    window = format_duration(policy.window)
    if metric.builtin is not None and metric.query is not None:
        raise InputError("give either builtin or query, not both", field=field_)
    if metric.query is not None:
        values = {"service": service, "version": version, "stable_version": stable_version,
                  "window": window}
        return render_template(metric.query, values, field=f"{field_}.query")
    if metric.builtin is None:
        raise InputError("needs a builtin or a query", field=field_)
    family = family_of(metric, policy)
    sel = _selector(metric, policy, side=side, service=service, version=version,
                    stable_version=stable_version)
    requests = _requests(metric, policy)
    if metric.builtin == "error-rate":
        code = _label_name(_labels(metric, policy)["code"], "labels.code")
        op, value = family.failed
        errors, coded = f'{sel[:-1]},{code}{op}"{value}"}}', f'{sel[:-1]},{code}!=""}}'
        # Some exporters create a 5xx series only at the first 5xx, so "no 5xx yet" must
        # read as 0, not as no data. The fallback is 0 only when the series do carry the
        # code label: a misnamed label stays "no data" instead of silently passing.
        return (f"(sum(rate({requests}{errors}[{window}]))"
                f" or 0 * sum(rate({requests}{coded}[{window}])))"
                f" / sum(rate({requests}{sel}[{window}]))")
    if metric.builtin == "request-rate":
        return f"sum(rate({requests}{sel}[{window}]))"
    if metric.builtin == "latency":
        duration = _duration(metric, policy)
        if family.mean:
            by = "instance, proxy, server"
            return (f"max({duration}{sel} and on ({by})"
                    f" (sum by ({by}) ({requests}{sel}) >= {WARM})){MEAN_NOTE}")
        if not 0.0 <= metric.quantile <= 1.0:
            raise InputError(f"must be within 0..1, got {metric.quantile}",
                             field=f"{field_}.quantile")
        query = (f"histogram_quantile({metric.quantile!r},"
                 f" sum by (le) (rate({duration}_bucket{sel}[{window}])))")
        return f"{query} / 1000" if family.ms else query
    raise InputError(f"unknown builtin {metric.builtin!r}; expected one of "
                     f"{', '.join(BUILTINS)}", field=f"{field_}.builtin")


def request_count_query(policy: PolicySpec, *, service: str, version: str,
                        metric: MetricSpec | None = None, side: str = "canary",
                        stable_version: str | None = None) -> str:
    """How many requests ``version`` answered over the window (for ``minRequests``)."""
    metric = metric or MetricSpec(name="requests", builtin="request-rate")
    sel = _selector(metric, policy, side=side, service=service, version=version,
                    stable_version=stable_version)
    return f"sum(increase({_requests(metric, policy)}{sel}[{format_duration(policy.window)}]))"


def builtin_series(metric: MetricSpec, policy: PolicySpec) -> Series:
    """The series names and labels a built-in metric (and its request count) depends on."""
    family = family_of(metric, policy)
    chosen_by = f"metrics.{metric.name}.family" if metric.family else "family"
    requests = _requests(metric, policy)
    names = [(requests, "requestsMetric" if _own(metric, policy) and (
        family is APP or policy.requests_metric != APP.requests) else chosen_by)]
    if metric.builtin == "latency":
        duration = _duration(metric, policy)
        names.append((duration if family.mean else f"{duration}_bucket",
                      "durationMetric" if _own(metric, policy) and (
                          family is APP or policy.duration_metric != APP.duration)
                      else chosen_by))
    labels = []
    for side in SIDES:
        for label, (op, values), where in _matchers(metric, policy, side):
            if op == "=" and any(values):  # "" or != match series without the label too
                labels += [(name, label, where) for name, _ in names]
    if metric.builtin == "error-rate":
        labels.append((requests, _labels(metric, policy)["code"], "labels.code"))
    return Series(names=tuple(names), labels=tuple(dict.fromkeys(labels)))


def render_template(template: str, values: Mapping[str, str | None], *, field: str) -> str:
    """Substitute ``{{ name }}`` placeholders with escaped ``values``."""
    return _substitute(template, values, field=field, escape=escape_label_value)


def _substitute(template: str, values: Mapping[str, str | None], *, field: str,
                escape: Callable[[str], str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise InputError(f"unknown placeholder {{{{ {name} }}}}; expected one of "
                             f"{', '.join(PLACEHOLDERS)}", field=field)
        value = values[name]
        if value is None:
            raise InputError(f"uses {{{{ {name} }}}} but no {name} is known yet "
                             "(set stableVersion in the rollout)", field=field)
        return escape(value)

    return _PLACEHOLDER.sub(substitute, template)


def _labels(metric: MetricSpec, policy: PolicySpec) -> dict[str, str]:
    """The label names in use: the family's, with the policy's ``labels`` on top.

    A PolicySpec built in code carries the app's label names by default; for another
    family those defaults mean "not set". A metric of another family than its policy's
    reads that family's own names.
    """
    family = family_of(metric, policy)
    if not _own(metric, policy):
        return dict(family.labels)
    given = {k: v for k, v in policy.labels.items() if k in APP_LABELS}
    if family is not APP and given == APP_LABELS:
        given = {}
    return {**family.labels, **given}


def _requests(metric: MetricSpec, policy: PolicySpec) -> str:
    return _metric_name(_override(metric, policy, policy.requests_metric, APP.requests,
                                  "requests"), "requestsMetric")


def _duration(metric: MetricSpec, policy: PolicySpec) -> str:
    return _metric_name(_override(metric, policy, policy.duration_metric, APP.duration,
                                  "duration"), "durationMetric")


def _override(metric: MetricSpec, policy: PolicySpec, value: str, app_default: str,
              attr: str) -> str:
    """The policy's metric name where it applies to ``metric``, else the family's own."""
    family = family_of(metric, policy)
    if not _own(metric, policy):
        return str(getattr(family, attr))
    return value if family is APP or value != app_default else str(getattr(family, attr))


def _own(metric: MetricSpec, policy: PolicySpec) -> bool:
    """Whether ``metric`` reads its policy's family (so the policy's names apply)."""
    return metric.family is None or metric.family == policy.family


_Located = tuple[str, LabelMatch, str]  # label, matcher, the policy field it came from


def _matchers(metric: MetricSpec, policy: PolicySpec, side: str) -> list[_Located]:
    """One side's label matchers, each with the policy field it came from."""
    if side not in SIDES:
        raise ValueError(f"side must be canary or stable, got {side!r}")
    family = family_of(metric, policy)
    for chosen, where in ((metric.select, f"metrics.{metric.name}.select"),
                          (policy.select if _own(metric, policy) else {}, "select")):
        if chosen:
            missing = [s for s in SIDES if s not in chosen]
            if missing:
                raise InputError(f"needs both canary and stable, {missing[0]} is missing",
                                 field=where)
            return [(label, match, f"{where}.{side}.{label}")
                    for label, match in chosen[side].items()]
    if family.name == "haproxy":
        raise InputError("the haproxy family needs select.canary and select.stable: the "
                         "server names of each side, e.g. {proxy: '{{ service }}', server: "
                         "[canary-1]}", field="select")
    labels = _labels(metric, policy)
    out: list[_Located] = [(labels["service"], ("=", ("{{ service }}",)), "labels.service")]
    if "version" in family.labels:
        out.append((labels["version"], ("=", ("{{ version }}",)), "labels.version"))
    out += [(label, match, "family") for label, match in family.sides.get(side, {}).items()]
    out += [(label, match, "family") for label, match in family.fixed.items()]
    return out


def _selector(metric: MetricSpec, policy: PolicySpec, *, side: str, service: str,
              version: str, stable_version: str | None) -> str:
    values = {"service": service, "version": version, "stable_version": stable_version,
              "window": format_duration(policy.window)}
    parts = []
    for label, (op, templates), where in _matchers(metric, policy, side):
        name = _label_name(label, where)
        if op not in ("=", "!="):
            raise InputError(f"unknown matcher {op!r}; expected = or !=", field=where)
        if len(templates) == 1:
            value = render_template(templates[0], values, field=where)
            parts.append(f'{name}{op}"{value}"')
            continue
        # Any of several literal values: a regex alternation of the escaped values,
        # itself escaped as a PromQL string (Prometheus anchors label regexes).
        alternation = "|".join(re.escape(_substitute(t, values, field=where, escape=str))
                               for t in templates)
        parts.append(f'{name}{"=~" if op == "=" else "!~"}"{escape_label_value(alternation)}"')
    return "{" + ",".join(parts) + "}"


def _label_name(name: str, field: str) -> str:
    if not _LABEL_NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a Prometheus label name", field=field)
    return name


def _metric_name(name: str, field: str) -> str:
    if not _METRIC_NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a Prometheus metric name", field=field)
    return name


@dataclass(frozen=True)
class IncrementQueries:
    """Counter increments of one side over one interval, for the sequential judge."""

    requests: str
    errors: str
    buckets: str | None  # by le; None when the family has no histogram
    ms: bool  # bucket bounds are milliseconds


def increment_queries(policy: PolicySpec, *, side: str, service: str, version: str,
                      stable_version: str | None, seconds: float) -> IncrementQueries:
    """Requests, failed requests and latency buckets that ``side`` answered in the last
    ``seconds``, read from the policy's family (the same series the built-ins read)."""
    metric = MetricSpec(name="sequential", builtin="request-rate")
    family = family_of(metric, policy)
    sel = _selector(metric, policy, side=side, service=service, version=version,
                    stable_version=stable_version)
    code = _label_name(_labels(metric, policy)["code"], "labels.code")
    op, value = family.failed
    failed = sel[:-1] + f'{"," if sel != "{}" else ""}{code}{op}"{value}"}}'
    window = format_duration(seconds)
    requests = _requests(metric, policy)
    buckets = None
    if not family.mean:
        buckets = (f"sum by (le) (increase({_duration(metric, policy)}_bucket{sel}"
                   f"[{window}]))")
    return IncrementQueries(requests=f"sum(increase({requests}{sel}[{window}]))",
                            errors=f"sum(increase({requests}{failed}[{window}]))",
                            buckets=buckets, ms=family.ms)
