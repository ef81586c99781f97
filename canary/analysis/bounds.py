"""One metric's number against the policy's bounds: the pure half of the threshold judge
(threshold.py runs the queries). Takes samples, returns a MetricResult whose message names
the metric, the observed value, the threshold and the query, so an alert says why; tested
without Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from canary.durations import format_duration
from canary.metrics.base import Sample
from canary.model import MetricResult, Outcome
from canary.specs import MetricSpec

NO_SERIES = "the query returned no series (no traffic yet, or no such series or labels)"
NAN = "the query returned NaN (no traffic in the window: 0/0)"
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
    why = Why(metric, query, window)
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
    stand: ``minRequests`` (for a value within the bounds only with ``onLowTraffic:
    inconclusive``), and for a failed latency quantile at least what makes the quantile
    estimable."""
    need = metric.min_requests
    if not failed and metric.on_low_traffic == "pass-within-bounds":
        need = None
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
    return Why(metric, query, window).result(
        Outcome.INCONCLUSIVE, value,
        f"{shown}only {fmt(count)} requests to {version} in the last "
        f"{format_duration(window)}; {fmt(need)} needed to judge{why}")


@dataclass(frozen=True)
class Why:
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
