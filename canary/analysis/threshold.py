"""The threshold judge: each metric's query, one number, compared with the policy's bounds.

Providers only fetch; judging happens here, once, for every provider. A check keeps
Argo's distinction: FAILED means the canary is measurably bad, ERROR that it could not be
measured (Prometheus down, a query returning several series), INCONCLUSIVE that there is
nothing to judge yet (no series, NaN from 0/0, too few requests). Only FAILED is evidence
against the canary, and neither ERROR nor INCONCLUSIVE ever promotes it. Messages name the
metric, the observed value, the threshold and the query, so an alert says why.

The pure part (``evaluate``) takes samples and is tested without Prometheus; ``measure``
runs the queries within a time budget, so a slow Prometheus costs one check at most its
budget, never the controller's next interval. Limits across checks (failure_limit,
consecutive errors, initial delay) belong to the caller, which sees every check.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit, urlunsplit

from canary.analysis.queries import render_metric_query, request_count_query
from canary.durations import format_duration
from canary.errors import CanaryError, ControllerBusy, MetricsError
from canary.metrics.base import MetricsProvider, Sample
from canary.model import MetricResult, MetricSpec, Outcome, PolicySpec, Verdict

NO_SERIES = "the query returned no series (no traffic yet, or no such series or labels)"
NAN = "the query returned NaN (no traffic in the window: 0/0)"
# A relative bound whose stable side had no traffic in the window (the 100% stage, or a
# stable version between bursts of traffic) compares with the stable version's rate over
# this longer range: its baseline as recorded during the rollout.
BASELINE_WINDOW = 3600.0


def fmt(value: float) -> str:
    """A number as people read it: 0.4, 0.0123457, 1.5e+06, +Inf."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def threshold_text(metric: MetricSpec) -> str:
    """The bounds in human form, e.g. ``<= 0.01`` or ``>= 0.9 and <= stable x 1.5``."""
    parts = []
    if metric.min is not None:
        parts.append(f">= {fmt(metric.min)}")
    if metric.max is not None:
        parts.append(f"<= {fmt(metric.max)}")
    if metric.relative_max is not None:
        parts.append(f"<= stable + {fmt(metric.relative_max)}")
    if metric.relative_ratio is not None:
        parts.append(f"<= stable x {fmt(metric.relative_ratio)}")
    return " and ".join(parts)


def single_value(samples: Sequence[Sample]) -> float | str:
    """The one number in ``samples``, or why there is none (a message, NaN counts as none).

    A several-series answer is reported, never reduced here: which series matters is the
    query author's decision (Flagger silently keeps the last one).
    """
    if not samples:
        return NO_SERIES
    if len(samples) > 1:
        shown = ", ".join(_labels(s) for s in samples[:3])
        more = f" and {len(samples) - 3} more" if len(samples) > 3 else ""
        return (f"the query returned {len(samples)} series ({shown}{more}); it must return"
                " one: aggregate it, e.g. wrap it in sum(...) or max(...)")
    value = samples[0].value
    return NAN if math.isnan(value) else value


def evaluate(
    metric: MetricSpec,
    samples: Sequence[Sample],
    query: str,
    *,
    stable: Sequence[Sample] | None = None,
    window: float | None = None,
    baseline: float | None = None,
) -> MetricResult:
    """Judge one metric from the samples its query returned.

    ``stable`` holds the same query's samples for the stable version; it is needed only
    when the metric has a relative bound. ``window`` (seconds) is the range the query
    covers, named in the message; None when a custom query sets its own range.
    ``baseline`` (seconds): ``stable`` is the stable version's baseline over that longer
    range, because it had no traffic in the window (the 100% stage); the message says so.
    """
    why = _Why(metric, query, window)
    value = single_value(samples)
    if isinstance(value, str):
        several = len(samples) > 1
        outcome = Outcome.ERROR if several else _no_data_outcome(metric)
        return why.result(outcome, None, f"{metric.name} has no value: {value}")
    failure = _absolute_failure(metric, value)
    if failure is None and (metric.relative_max is not None
                            or metric.relative_ratio is not None):
        if stable is None:
            return why.result(Outcome.INCONCLUSIVE, value,
                              f"{metric.name} = {fmt(value)}, but there is no stable version"
                              " to compare it with")
        base = single_value(stable)
        if isinstance(base, str):
            return why.result(Outcome.INCONCLUSIVE, value,
                              f"{metric.name} = {fmt(value)}, but for the stable version "
                              f"{base}")
        failure = _relative_failure(metric, value, base)
        if failure is not None and baseline is not None:
            failure += (f" (its baseline over the last {format_duration(baseline)}: no "
                        "stable traffic in the window)")
    if failure is not None:
        return why.result(Outcome.FAILED, value, f"{metric.name} = {fmt(value)} {failure}")
    return why.result(Outcome.PASSED, value, f"{metric.name} = {fmt(value)} passes")


# A quantile fails only from enough requests that this many are expected on its far side:
# the q-quantile of n requests is the (n(1 - q))-th slowest, and with fewer than about ten
# beyond it one slow request moves it to another bucket (a p99 of 60 requests is the
# slowest one). So p50 needs 20 requests, p90 100, p95 200, p99 1,000, p99.9 10,000.
# Below that a value over the bound is inconclusive; one within it still passes, as it
# did before: it cannot fail the canary, and holding every stage of a quiet service for
# a p99 it cannot estimate would stall it (the sequential judge covers latency there).
ESTIMABLE_TAIL = 10


def quantile_min_requests(q: float) -> float:
    """Fewest requests from which a q-quantile is estimable (see ESTIMABLE_TAIL)."""
    return float(math.ceil(ESTIMABLE_TAIL / min(q, 1.0 - q) - 1e-9))


def required_requests(metric: MetricSpec, *, family: str = "app",
                      failed: bool = True) -> float | None:
    """Requests the canary must have served in the window for ``metric``'s check to
    stand: ``minRequests``, and for a failed latency quantile at least what makes the
    quantile estimable."""
    need = metric.min_requests
    if failed and metric.builtin == "latency" and (metric.family or family) != "haproxy":
        need = max(need or 0.0, quantile_min_requests(metric.quantile))
    return need


def low_traffic(metric: MetricSpec, count: float, *, value: float | None, query: str,
                version: str, window: float, family: str = "app",
                failed: bool = True) -> MetricResult | None:
    """INCONCLUSIVE when ``version`` served fewer requests than ``metric`` needs (its
    ``minRequests``; to fail a quantile, what makes it estimable), else None."""
    need = required_requests(metric, family=family, failed=failed)
    if need is None or count >= need:
        return None
    shown = "" if value is None else f"{metric.name} = {fmt(value)}, but "
    why = "" if metric.min_requests is not None and need <= metric.min_requests else \
        f" (a p{100 * metric.quantile:g} needs {ESTIMABLE_TAIL} beyond it)"
    return _Why(metric, query, window).result(
        Outcome.INCONCLUSIVE, value,
        f"{shown}only {fmt(count)} requests to {version} in the last "
        f"{format_duration(window)}; {fmt(need)} needed to judge{why}")


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
        return _Why(metric, query, window).result(
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


@dataclass(frozen=True)
class _Why:
    """Results whose message says what an alert needs, always in one shape:
    ``<what was seen> (threshold <= 0.01, window 1m); query: <PromQL>``. The query comes
    last: where space is short (Slack) it is the part shown in full elsewhere."""

    metric: MetricSpec
    query: str
    window: float | None

    def result(self, outcome: Outcome, value: float | None, head: str) -> MetricResult:
        bounds = threshold_text(self.metric) or "none: measured only"
        span = "as in the query" if self.window is None else format_duration(self.window)
        message = f"{head} (threshold {bounds}, window {span}); query: {self.query}"
        return MetricResult(name=self.metric.name, outcome=outcome, value=value,
                            query=self.query, threshold=threshold_text(self.metric),
                            message=message, dry_run=self.metric.dry_run)


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


def _no_data_outcome(metric: MetricSpec) -> Outcome:
    return Outcome.FAILED if metric.on_no_data == "fail" else Outcome.INCONCLUSIVE


def _absolute_failure(metric: MetricSpec, value: float) -> str | None:
    if metric.max is not None and value > metric.max:
        return f"is above the maximum {fmt(metric.max)}"
    if metric.min is not None and value < metric.min:
        return f"is below the minimum {fmt(metric.min)}"
    return None


def _relative_failure(metric: MetricSpec, value: float, base: float) -> str | None:
    if metric.relative_max is not None and value - base > metric.relative_max:
        return (f"is more than {fmt(metric.relative_max)} above the stable version's "
                f"{fmt(base)}")
    if metric.relative_ratio is not None:
        # 0 against 0 is equal; anything against 0 is infinitely worse.
        ratio = 1.0 if value == base else (math.inf if base == 0 else value / base)
        if ratio > metric.relative_ratio:
            return (f"is {fmt(ratio)} times the stable version's {fmt(base)}"
                    f" (at most {fmt(metric.relative_ratio)} allowed)")
    return None


def _labels(sample: Sample) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
    return "{" + inner + "}"
