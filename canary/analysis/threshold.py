"""The threshold judge: each metric's query, one number, compared with the policy's bounds.

Providers only fetch; judging happens here, once, for every provider. A check keeps
Argo's distinction: FAILED means the canary is measurably bad, ERROR that it could not be
measured (Prometheus down, a query returning several series), INCONCLUSIVE that there is
nothing to judge yet (no series, NaN from 0/0, too few requests). Only FAILED is evidence
against the canary, and neither ERROR nor INCONCLUSIVE ever promotes it. Messages name the
metric, the observed value, the threshold and the query, so an alert says why.

The pure part (``evaluate``, in bounds.py) takes samples and is tested without
Prometheus; ``measure`` runs the queries within a time budget, so a slow Prometheus costs
one check at most its budget, never the controller's next interval. Limits across checks
(failure_limit, consecutive errors, initial delay) belong to the caller, which sees every
check.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit, urlunsplit

from canary.analysis.bounds import (
    NAN,
    NO_SERIES,
    Why,
    evaluate,
    low_traffic,
    required_requests,
    single_value,
)
from canary.analysis.queries import render_metric_query, request_count_query
from canary.durations import format_duration
from canary.errors import CanaryError, ControllerBusy, MetricsError
from canary.metrics.base import MetricsProvider, Sample
from canary.model import MetricResult, Outcome, Verdict
from canary.specs import MetricSpec, PolicySpec

# The judging half (one number against its bounds) lives in bounds.py.

# A relative bound whose stable side had no traffic in the window (the 100% stage, or a
# stable version between bursts of traffic) compares with the stable version's rate over
# this longer range: its baseline as recorded during the rollout.
BASELINE_WINDOW = 3600.0


@runtime_checkable
class DeadlineProvider(Protocol):
    """An optional capability: a query that gives up after ``timeout`` seconds."""

    def query_within(self, promql: str, timeout: float) -> list[Sample]: ...


def measure(
    policy: PolicySpec,
    provider: MetricsProvider,
    *,
    service: str,
    version: str,
    stable_version: str | None,
    at: datetime,
    budget: float | None = None,
) -> Verdict:
    """Run every metric of ``policy`` for the canary ``version`` and judge it.

    A query Prometheus cannot answer (MetricsError) or rejects (InputError) makes that
    metric ERROR, never the whole check: the other metrics still count. Queries are
    rendered first, so a policy that cannot be rendered raises InputError before any query.
    With a ``budget`` (seconds), queries share it: each one may take what is left, and
    once it is spent the remaining metrics are ERROR without asking.
    """
    queries = [render_metric_query(m, policy, service=service, version=version,
                                   stable_version=stable_version) for m in policy.metrics]
    run = _memoized(provider, budget)
    results = []
    for metric, query in zip(policy.metrics, queries, strict=True):
        result = _measure_one(metric, query, run, policy=policy, service=service,
                              version=version, stable_version=stable_version)
        link = graph_link(policy.prometheus_url, query, window=policy.window, at=at)
        results.append(replace(result, link=link))
    return Verdict.combine(tuple(results), at)


def _measure_one(metric: MetricSpec, query: str, run: _Run, *, policy: PolicySpec,
                 service: str, version: str, stable_version: str | None) -> MetricResult:
    window = policy.window if metric.builtin or _WINDOW.search(metric.query or "") else None
    try:
        samples = run(query)
        stable, baseline = None, None
        if stable_version is not None and (metric.relative_max is not None
                                           or metric.relative_ratio is not None):
            stable = run(render_metric_query(metric, policy, service=service,
                                             version=stable_version,
                                             stable_version=stable_version, side="stable"))
            if single_value(stable) in (NO_SERIES, NAN) and policy.window < BASELINE_WINDOW:
                # No stable traffic in the window (the 100% stage): compare with the
                # stable version's own baseline over the rollout's last hour instead.
                longer = replace(policy, window=BASELINE_WINDOW)
                fallback = run(render_metric_query(metric, longer, service=service,
                                                   version=stable_version,
                                                   stable_version=stable_version,
                                                   side="stable"))
                if isinstance(single_value(fallback), float):
                    stable, baseline = fallback, BASELINE_WINDOW
        count = None
        if required_requests(metric, family=policy.family) is not None:
            counted = single_value(run(request_count_query(
                policy, service=service, version=version, metric=metric,
                stable_version=stable_version)))
            count = counted if isinstance(counted, float) else 0.0
    except CanaryError as exc:
        # The controller's own lateness says nothing about the canary: hold, never count it.
        outcome = Outcome.INCONCLUSIVE if isinstance(exc, ControllerBusy) else Outcome.ERROR
        return Why(metric, query, window).result(
            outcome, None, f"{metric.name} could not be measured: {exc}")
    result = evaluate(metric, samples, query, stable=stable, window=window,
                      baseline=baseline)
    if count is not None and result.outcome is not Outcome.ERROR:
        guarded = low_traffic(metric, count, value=result.value, query=query,
                              version=version, window=policy.window, family=policy.family,
                              failed=result.outcome is Outcome.FAILED)
        if guarded is not None:
            return guarded
    return result


_Run = Callable[[str], list[Sample]]
_WINDOW = re.compile(r"\{\{\s*window\s*\}\}")


def _memoized(provider: MetricsProvider, budget: float | None) -> _Run:
    """One answer per distinct query within a check (the request count is shared)."""
    seen: dict[str, list[Sample] | CanaryError] = {}
    start = time.monotonic()

    def ask(query: str) -> list[Sample]:
        if budget is None:
            return provider.query(query)
        left = budget - (time.monotonic() - start)
        if left <= 0:
            busy = any(isinstance(a, ControllerBusy) for a in seen.values())
            raise (ControllerBusy if busy else MetricsError)(
                f"not asked: slow answers used up this check's {budget:g}s budget")
        if isinstance(provider, DeadlineProvider):
            return provider.query_within(query, left)
        return provider.query(query)

    def run(query: str) -> list[Sample]:
        if query not in seen:
            try:
                seen[query] = ask(query)
            except CanaryError as exc:
                seen[query] = exc
        answer = seen[query]
        if isinstance(answer, CanaryError):
            raise answer
        return answer

    return run


def graph_link(prometheus_url: str, query: str, *, window: float, at: datetime) -> str:
    """Prometheus's graph page for ``query`` over ten windows ending at the check.

    The end time is pinned, so the link still shows what the check saw days later. The
    URL loses any user, password or query string: links end up in Slack and the store.
    """
    parts = urlsplit(prometheus_url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port is not None else ""
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    params = {"g0.expr": query, "g0.tab": "0", "g0.range_input": format_duration(window * 10),
              "g0.end_input": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")}
    return f"{base}/graph?{urlencode(params)}"


