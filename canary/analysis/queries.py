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
from dataclasses import dataclass

from canary.analysis.families import (
    APP,
    MEAN_NOTE,
    WARM,
    duration_metric,
    family_of,
    label_name,
    labels_of,
    own,
    requests_metric,
)
from canary.durations import format_duration
from canary.errors import InputError
from canary.specs import LabelMatch, MetricSpec, PolicySpec

BUILTINS = ("error-rate", "latency", "request-rate")
PLACEHOLDERS = ("service", "version", "stable_version", "window")
SIDES = ("canary", "stable")

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class Series:
    """What a built-in reads, for preflight: the series names and the labels it matches."""

    names: tuple[tuple[str, str], ...]  # (metric name, the policy field that chose it)
    labels: tuple[tuple[str, str, str], ...]  # (metric name, label, the field that chose it)


def escape_label_value(value: str) -> str:
    """``value`` as the content of a double-quoted PromQL string (without the quotes)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


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
    requests = requests_metric(metric, policy)
    if metric.builtin == "error-rate":
        code = label_name(labels_of(metric, policy)["code"], "labels.code")
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
        duration = duration_metric(metric, policy)
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
    window = format_duration(policy.window)
    return f"sum(increase({requests_metric(metric, policy)}{sel}[{window}]))"


def builtin_series(metric: MetricSpec, policy: PolicySpec) -> Series:
    """The series names and labels a built-in metric (and its request count) depends on."""
    family = family_of(metric, policy)
    chosen_by = f"metrics.{metric.name}.family" if metric.family else "family"
    requests = requests_metric(metric, policy)
    names = [(requests, "requestsMetric" if own(metric, policy) and (
        family is APP or policy.requests_metric != APP.requests) else chosen_by)]
    if metric.builtin == "latency":
        duration = duration_metric(metric, policy)
        names.append((duration if family.mean else f"{duration}_bucket",
                      "durationMetric" if own(metric, policy) and (
                          family is APP or policy.duration_metric != APP.duration)
                      else chosen_by))
    labels = []
    for side in SIDES:
        for label, (op, values), where in _matchers(metric, policy, side):
            if op == "=" and any(values):  # "" or != match series without the label too
                labels += [(name, label, where) for name, _ in names]
    if metric.builtin == "error-rate":
        labels.append((requests, labels_of(metric, policy)["code"], "labels.code"))
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


_Located = tuple[str, LabelMatch, str]  # label, matcher, the policy field it came from


def _matchers(metric: MetricSpec, policy: PolicySpec, side: str) -> list[_Located]:
    """One side's label matchers, each with the policy field it came from."""
    if side not in SIDES:
        raise ValueError(f"side must be canary or stable, got {side!r}")
    family = family_of(metric, policy)
    for chosen, where in ((metric.select, f"metrics.{metric.name}.select"),
                          (policy.select if own(metric, policy) else {}, "select")):
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
    labels = labels_of(metric, policy)
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
        name = label_name(label, where)
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
    code = label_name(labels_of(metric, policy)["code"], "labels.code")
    op, value = family.failed
    failed = sel[:-1] + f'{"," if sel != "{}" else ""}{code}{op}"{value}"}}'
    window = format_duration(seconds)
    requests = requests_metric(metric, policy)
    buckets = None
    if not family.mean:
        buckets = (f"sum by (le) (increase({duration_metric(metric, policy)}_bucket{sel}"
                   f"[{window}]))")
    return IncrementQueries(requests=f"sum(increase({requests}{sel}[{window}]))",
                            errors=f"sum(increase({requests}{failed}[{window}]))",
                            buckets=buckets, ms=family.ms)
