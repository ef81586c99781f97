"""PromQL for a policy's metrics: the built-in templates and the user's own, made safe.

Built-ins read the conventional series of DESIGN A.3, with metric and label names taken
from the policy. A custom ``query`` uses ``{{ service }}``, ``{{ version }}``,
``{{ stable_version }}`` and ``{{ window }}``. Every substituted value is escaped as the
content of a double-quoted PromQL string, so a service named ``a"} or vector(1) or {x="``
stays a label value and cannot change the query; templates must therefore put values
inside double quotes (``service="{{ service }}"``), the only PromQL string form whose
escapes we produce. The window is rendered by us (``1m30s``) and needs no quotes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from canary.durations import format_duration
from canary.errors import InputError
from canary.model import MetricSpec, PolicySpec

BUILTINS = ("error-rate", "latency", "request-rate")
PLACEHOLDERS = ("service", "version", "stable_version", "window")

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_label_value(value: str) -> str:
    """``value`` as the content of a double-quoted PromQL string (without the quotes)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def render_metric_query(
    metric: MetricSpec,
    policy: PolicySpec,
    *,
    service: str,
    version: str,
    stable_version: str | None = None,
) -> str:
    """The PromQL that measures ``metric`` for ``version`` of ``service`` over the window.

    Raises InputError naming the field for an unknown built-in, an unknown placeholder,
    a missing stable version, or label and metric names PromQL would not accept.
    """
    field = f"metrics.{metric.name}"
    if metric.builtin is not None and metric.query is not None:
        raise InputError("give either builtin or query, not both", field=field)
    if metric.query is not None:
        values = {"service": service, "version": version, "stable_version": stable_version,
                  "window": format_duration(policy.window)}
        return render_template(metric.query, values, field=f"{field}.query")
    if metric.builtin is None:
        raise InputError("needs a builtin or a query", field=field)
    selector = _selector(policy, service=service, version=version)
    window = format_duration(policy.window)
    requests = _metric_name(policy.requests_metric, "requestsMetric")
    if metric.builtin == "error-rate":
        code = _label_name(policy.labels.get("code", "code"), "labels.code")
        errors = f'{selector[:-1]},{code}=~"5.."}}'
        coded = f'{selector[:-1]},{code}!=""}}'
        # prometheus_client creates a 5xx series only at the first 5xx, so "no 5xx yet"
        # must read as 0, not as no data. The fallback is 0 only when the series do carry
        # the code label: a misnamed label stays "no data" instead of silently passing.
        return (f"(sum(rate({requests}{errors}[{window}]))"
                f" or 0 * sum(rate({requests}{coded}[{window}])))"
                f" / sum(rate({requests}{selector}[{window}]))")
    if metric.builtin == "request-rate":
        return f"sum(rate({requests}{selector}[{window}]))"
    if metric.builtin == "latency":
        if not 0.0 <= metric.quantile <= 1.0:
            raise InputError(f"must be within 0..1, got {metric.quantile}",
                             field=f"{field}.quantile")
        buckets = _metric_name(policy.duration_metric, "durationMetric") + "_bucket"
        return (f"histogram_quantile({metric.quantile!r},"
                f" sum by (le) (rate({buckets}{selector}[{window}])))")
    raise InputError(f"unknown builtin {metric.builtin!r}; expected one of "
                     f"{', '.join(BUILTINS)}", field=f"{field}.builtin")


def request_count_query(policy: PolicySpec, *, service: str, version: str) -> str:
    """How many requests ``version`` answered over the window (for ``minRequests``)."""
    selector = _selector(policy, service=service, version=version)
    requests = _metric_name(policy.requests_metric, "requestsMetric")
    return f"sum(increase({requests}{selector}[{format_duration(policy.window)}]))"


def render_template(template: str, values: Mapping[str, str | None], *, field: str) -> str:
    """Substitute ``{{ name }}`` placeholders with escaped ``values``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise InputError(f"unknown placeholder {{{{ {name} }}}}; expected one of "
                             f"{', '.join(PLACEHOLDERS)}", field=field)
        value = values[name]
        if value is None:
            raise InputError(f"uses {{{{ {name} }}}} but no {name} is known yet "
                             "(set stableVersion in the rollout)", field=field)
        return escape_label_value(value)

    return _PLACEHOLDER.sub(substitute, template)


def _selector(policy: PolicySpec, *, service: str, version: str) -> str:
    service_label = _label_name(policy.labels.get("service", "service"), "labels.service")
    version_label = _label_name(policy.labels.get("version", "version"), "labels.version")
    return (f'{{{service_label}="{escape_label_value(service)}",'
            f'{version_label}="{escape_label_value(version)}"}}')


def _label_name(name: str, field: str) -> str:
    if not _LABEL_NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a Prometheus label name", field=field)
    return name


def _metric_name(name: str, field: str) -> str:
    if not _METRIC_NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a Prometheus metric name", field=field)
    return name
