"""Preflight: run every query of a policy once before any traffic moves.

A policy can validate and still never measure anything: a typo in a metric name, a label
the exporter does not have, PromQL that Prometheus rejects, a Prometheus URL that points
nowhere. At run time each of these reads as "no data" (inconclusive) or as an error,
found only minutes into a rollout. Preflight finds them in a second, and returns them as
data (``Problem``), naming the metric, the policy field and the query; the caller decides
how to print them and which exit code they mean.

"No data for our labels" is not a problem here: before the canary runs, its series do
not exist yet. A metric name with no series for any label values at all, or a label no
series of that metric carries, is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from canary.analysis.queries import (
    builtin_series,
    escape_label_value,
    render_metric_query,
    request_count_query,
)
from canary.errors import InputError, MetricsError
from canary.metrics.base import MetricsProvider, Sample
from canary.specs import MetricSpec, PolicySpec

UNREACHABLE = "unreachable"  # Prometheus could not be asked at all: nothing else was checked
REJECTED = "rejected"  # Prometheus refused the query (bad_data), or it is not one number
UNKNOWN_METRIC = "unknown-metric"  # no series of that name, for any label values
UNKNOWN_LABEL = "unknown-label"  # the metric exists, but none of its series has the label
INVALID = "invalid"  # the query cannot be rendered (placeholder, names)


@dataclass(frozen=True)
class Problem:
    kind: str
    metric: str  # the policy's metric name ("" for the policy as a whole)
    field: str  # where to fix it, e.g. spec.metrics[0].query or spec.labels.version
    query: str
    message: str

    def __str__(self) -> str:
        about = f"{self.metric}: " if self.metric else ""
        query = f" (query: {self.query})" if self.query else ""
        return f"{self.field}: {about}{self.message}{query}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "metric": self.metric, "field": self.field,
                "query": self.query, "message": self.message}


def preflight_policy(policy: PolicySpec, *, service: str, version: str,
                     stable_version: str | None) -> list[Problem]:
    """``preflight`` against the policy's own Prometheus, with the timeout a check has."""
    from canary.analysis.analyzer import check_budget
    from canary.metrics.prometheus import PrometheusProvider

    if not policy.metrics:
        return []
    with PrometheusProvider(policy.prometheus_url, timeout=check_budget(policy)) as provider:
        return preflight(policy, provider, service=service, version=version,
                         stable_version=stable_version)


def preflight_file(path: str, *, service: str | None = None, version: str | None = None,
                   stable_version: str | None = None) -> list[Problem]:
    """Preflight a rollout file (its policy, service and versions) or a policy file.

    A policy file alone names no service: stand-in values are used, which is enough to
    find unknown metric names and labels and rejected PromQL.
    """
    from canary.config.spec import load_any, load_policy, load_rollout, resolve_policy_path

    if load_any(path) == "Rollout":
        try:
            spec = load_rollout(path, version=version)
        except InputError as exc:  # no version in the file: any stands in for it
            if exc.field != "spec.version":
                raise
            spec = load_rollout(path, version="preflight")
        policy = load_policy(resolve_policy_path(spec.policy, base_dir=spec.base_dir))
        return preflight_policy(policy, service=service or spec.service, version=spec.version,
                                stable_version=stable_version or spec.stable_version)
    return preflight_policy(load_policy(path), service=service or "preflight",
                            version=version or "preflight",
                            stable_version=stable_version or "preflight-stable")


def refuse(problems: list[Problem], *, file: str | None = None) -> None:
    """Raise when there are problems; nothing when there is none.

    InputError (exit 2) lists every problem with the policy's queries. A Prometheus that
    could not be asked is no fault of the files: MetricsError (temporary; exit 4 in the
    CLI), so CI can tell "fix the policy" from "try again later". Neither changed anything.
    """
    if not problems:
        return
    lines = "\n  ".join(str(p) for p in problems)
    if all(p.kind == UNREACHABLE for p in problems):
        raise MetricsError(f"preflight could not run; nothing was changed: {lines}")
    raise InputError(f"preflight found {len(problems)} problem(s) with the analysis "
                     f"policy's queries:\n  {lines}", file=file)


class _Unreachable(Exception):
    """Stops the preflight: a Prometheus that cannot answer makes every other check moot."""


def preflight(policy: PolicySpec, provider: MetricsProvider, *, service: str, version: str,
              stable_version: str | None) -> list[Problem]:
    """Every problem the policy's queries have against this Prometheus; [] when none."""
    problems: list[Problem] = []
    asked: dict[str, list[Sample] | Exception] = {}

    def ask(query: str) -> list[Sample]:
        if query not in asked:
            try:
                asked[query] = provider.query(query)
            except (MetricsError, InputError) as exc:
                asked[query] = exc
        answer = asked[query]
        if isinstance(answer, MetricsError):
            problems.append(Problem(UNREACHABLE, "", "spec.prometheus.url", "",
                                    f"Prometheus could not answer: {answer}"))
            raise _Unreachable
        if isinstance(answer, Exception):
            raise answer
        return answer

    try:
        for index, metric in enumerate(policy.metrics):
            problems += _check_metric(metric, index, policy, ask, service=service,
                                      version=version, stable_version=stable_version)
    except _Unreachable:
        pass
    return _unique(problems)


def _check_metric(metric: MetricSpec, index: int, policy: PolicySpec,
                  ask: Callable[[str], list[Sample]], *, service: str, version: str,
                  stable_version: str | None) -> list[Problem]:
    at = f"spec.metrics[{index}]"
    source = f"{at}.builtin" if metric.builtin else f"{at}.query"
    relative = metric.relative_max is not None or metric.relative_ratio is not None
    try:
        queries = [render_metric_query(metric, policy, service=service, version=version,
                                       stable_version=stable_version)]
        if relative and stable_version is not None:
            queries.append(render_metric_query(metric, policy, service=service,
                                               version=stable_version,
                                               stable_version=stable_version, side="stable"))
        if metric.min_requests is not None:
            queries.append(request_count_query(policy, service=service, version=version,
                                               metric=metric, stable_version=stable_version))
    except InputError as exc:
        return [Problem(INVALID, metric.name, _field(exc.field, at, metric.name), "",
                        exc.message)]
    problems = []
    for query in queries:
        try:
            ask(query)
        except InputError as exc:
            problems.append(Problem(REJECTED, metric.name, source, query, exc.message))
    names: list[tuple[str, str]] = []
    labels: list[tuple[str, str, str]] = []
    if metric.query is not None:
        names = [(name, source) for name in metric_names(metric.query)]
    if metric.builtin is not None or metric.min_requests is not None:
        # A custom metric's minRequests counts with the family's request counter.
        counted = metric if metric.builtin else replace(metric, builtin="request-rate",
                                                        query=None)
        series = builtin_series(counted, policy)
        names += [(name, f"spec.{where}") for name, where in series.names]
        labels += [(name, label, _field(where, at, metric.name))
                   for name, label, where in series.labels]
    missing = set()
    for name, where in names:
        query = f'count({{__name__="{escape_label_value(name)}"}})'
        if not ask(query):
            missing.add(name)
            problems.append(Problem(UNKNOWN_METRIC, metric.name, where, queries[0],
                                    f"Prometheus has no series named {name} (for any "
                                    "labels): is the name right, and is it scraped?"))
    for name, label, where in labels:
        if name in missing:
            continue
        if not ask(f"count({name}{{{label}!=\"\"}})"):
            problems.append(Problem(UNKNOWN_LABEL, metric.name, where, queries[0],
                                    f"no series of {name} has a label {label}: map the "
                                    "right label name in the policy"))
    return problems


def _field(field: str | None, at: str, name: str) -> str:
    """A renderer's field (``metrics.<name>.query``, ``labels.code``) as a file path."""
    own = f"metrics.{name}"
    if field and (field == own or field.startswith(own + ".")):
        return at + field[len(own):]
    return f"spec.{field}" if field else at


def _unique(problems: list[Problem]) -> list[Problem]:
    """The same problem found through two queries is reported once."""
    return list(dict.fromkeys(problems))


# -- metric names in a custom query (best effort: PromQL is not parsed) --------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*+)(?!\s*\()")
_KEYWORDS = frozenset((
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "start", "end", "atan2",
    # aggregation operators may stand before their `by (...)` clause, not before `(`
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio"))


def metric_names(promql: str) -> list[str]:
    """The metric names a PromQL expression selects, in order, without duplicates.

    Best effort, without a parser: strings, label matchers, ranges, grouping clauses and
    function calls are removed first. Names given as ``{__name__="..."}`` are found too.
    """
    names = [m.group(1)[1:-1] for m in _NAME_MATCHER.finditer(promql)]
    text = _STRING.sub('""', promql)
    text = re.sub(r"#[^\n]*", "", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    for m in _IDENT.finditer(text):
        word = m.group(1)
        if word.lower() not in _KEYWORDS:
            names.append(word)
    return list(dict.fromkeys(n for n in names if n))
