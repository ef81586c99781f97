"""Replay a policy over recorded traffic: what would canary have decided, and when?

``canary backtest --policy P --data FILE_OR_DIR...`` calls ``backtest_files``: one answer
per recording (docs/contract.md), ``{"scenario", "decision", "decidedAt", "reason"}``.

* The policy's ``sequential`` spec drives the sequential judge over the whole recording
  (one call, the arithmetic the controller runs check by check). The recording's canary
  share is what it was: observed counts, not nominal weights, and no stages.
* Its built-in threshold metrics (error-rate, latency, request-rate) are replayed too,
  each check over the policy's window every policy interval, with the metric's limits
  (failureLimit, consecutiveFailureLimit, minRequests, initialDelay), so a backtest works
  for any policy; the earliest rollback wins. Metrics with their own PromQL cannot be
  computed from counts and are left out (the reason says so).
* "promote" when the recording ends (or the sequential judge promotes early) without a
  rollback and with enough exposure; "inconclusive" when there was too little to judge,
  or when a deciding threshold metric never passed a check (live, no stage would have
  advanced: a quiet canary under ``minRequests`` with ``onLowTraffic: inconclusive``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from canary.analysis import bounds, threshold
from canary.analysis.sequential.core import SequentialJudge, VersionCounts
from canary.durations import format_duration
from canary.metrics.base import Sample
from canary.model import MetricResult, Outcome
from canary.replay.recording import Recording, iter_recordings
from canary.specs import MetricSpec, PolicySpec

REPLAYABLE = ("error-rate", "latency", "request-rate")


@dataclass(frozen=True)
class _Event:
    index: int
    decision: str
    reason: str


def backtest_files(policy: PolicySpec, paths: list[str]) -> Iterator[dict[str, Any]]:
    """One result per recording in ``paths`` (files, or directories of ``*.json``)."""
    for recording in iter_recordings(paths):
        yield backtest_recording(policy, recording)


def backtest_judge(policy: PolicySpec, recording: Recording) -> SequentialJudge | None:
    """The policy's sequential judge for ``recording`` (None without one): its caps per
    interval are for the recording's interval, as the live judge's are for the policy's."""
    if policy.sequential is None:
        return None
    return SequentialJudge(policy.sequential, interval=recording.interval)


def backtest_recording(policy: PolicySpec, recording: Recording, *,
                       judge: SequentialJudge | None = None) -> dict[str, Any]:
    """What ``policy`` decides over ``recording``."""
    if judge is None:
        judge = backtest_judge(policy, recording)
    series = recording.series
    if not series:
        return _answer(recording, "inconclusive", 0.0, "the recording has no intervals")
    replayable = [m for m in policy.metrics if m.builtin in REPLAYABLE and m.query is None]
    skipped = [m.name for m in policy.metrics if m not in replayable]
    note = f" (not replayed, they need Prometheus: {', '.join(skipped)})" if skipped else ""
    events = []
    seq_end: _Event | None = None
    if judge is not None:
        step = judge.run(recording.intervals())
        if step.decision == "continue":
            seq_end = _Event(len(series) - 1, "continue", step.reason)
        else:
            events.append(_Event(step.index, step.decision, step.reason))
    guard, passed = _thresholds(policy, recording, replayable)
    if guard is not None:
        events.append(guard)
    rollback = min((e for e in events if e.decision == "rollback"), key=lambda e: e.index,
                   default=None)
    if rollback is not None:
        return _answer(recording, "rollback", series[rollback.index].t, rollback.reason + note)
    early = next((e for e in events if e.decision == "promote"), None)
    if early is not None:
        return _answer(recording, "promote", series[early.index].t,
                       "promoted early: " + early.reason + note)
    last = series[-1].t
    exposure = _exposure(recording)
    span = format_duration(last - series[0].t + recording.interval)
    # A stage advances only on a passing check: a deciding metric checked but never passed
    # (too little traffic, no data) would have held the live rollout in its first stage.
    # (One never checked, a recording shorter than its window, holds only without a judge.)
    deciding = [m.name for m in replayable if not m.dry_run]
    held = [name for name in deciding if passed.get(name) is False]
    if held:
        return _answer(recording, "inconclusive", last,
                       f"never measured as passing over {span}: {', '.join(held)} (a "
                       "stage advances only on a passing check)" + note)
    if judge is not None and seq_end is not None:
        need = max(judge.spec.min_stage_requests, 1.0)
        if exposure < need:
            return _answer(recording, "inconclusive", last,
                           f"too little canary traffic to judge: {exposure:g} requests "
                           f"compared with stable (at least {need:g} needed)" + note)
        return _answer(recording, "promote", last,
                       f"no regression found in {span} ({exposure:g} canary requests): "
                       + seq_end.reason + note)
    if not replayable:
        return _answer(recording, "inconclusive", last,
                       "the policy has neither a sequential judge nor built-in metrics to "
                       "replay" + note)
    never = [name for name in deciding if not passed.get(name)]
    if never:
        return _answer(recording, "inconclusive", last,
                       f"never measured as passing over {span}: {', '.join(never)}" + note)
    return _answer(recording, "promote", last,
                   f"every replayed metric passed its checks over {span}" + note)


def _answer(recording: Recording, decision: str, at: float, reason: str) -> dict[str, Any]:
    return {"scenario": recording.name, "decision": decision, "decidedAt": at,
            "reason": reason}


def _usable(v: VersionCounts | None) -> bool:
    return (v is not None and math.isfinite(v.requests) and math.isfinite(v.errors)
            and 0 <= v.errors <= v.requests)


def _exposure(recording: Recording) -> float:
    """Canary requests in intervals where stable traffic was there to compare with."""
    return sum(p.canary.requests for p in recording.series
               if p.canary is not None and p.stable is not None and _usable(p.canary)
               and _usable(p.stable) and p.stable.requests > 0)


def _thresholds(policy: PolicySpec, recording: Recording, metrics: list[MetricSpec]
                ) -> tuple[_Event | None, dict[str, bool]]:
    """Replay the threshold metrics; the first limit crossed (if any), and per metric
    checked whether it ever passed (a metric never checked is absent)."""
    passed: dict[str, bool] = {}
    if not metrics:
        return None, passed
    series = recording.series
    start = series[0].t - recording.interval
    failures = {m.name: 0 for m in metrics}
    row = {m.name: 0 for m in metrics}
    next_check = start + max(policy.window, policy.interval)
    for i, p in enumerate(series):
        if p.t + 1e-9 < next_check:
            continue
        while next_check <= p.t + 1e-9:
            next_check += policy.interval
        window = [q for q in series[: i + 1] if q.t > p.t - policy.window + 1e-9]
        hour = [q for q in series[: i + 1] if q.t > p.t - threshold.BASELINE_WINDOW + 1e-9]
        for m in metrics:
            if p.t - start + 1e-9 < m.initial_delay:
                continue
            result = _check(m, window, seconds=policy.window, family=policy.family,
                            baseline=hour)
            passed[m.name] = passed.get(m.name, False) or result.outcome is Outcome.PASSED
            failed = result.outcome is Outcome.FAILED
            failures[m.name] += failed
            row[m.name] = row[m.name] + 1 if failed else 0
            if m.dry_run or not failed:
                continue
            if failures[m.name] > m.failure_limit:
                why = f"{m.name} failed {failures[m.name]} time(s) (limit {m.failure_limit})"
            elif m.consecutive_failure_limit is not None and \
                    row[m.name] > m.consecutive_failure_limit:
                why = f"{m.name} failed {row[m.name]} times in a row"
            else:
                continue
            return _Event(i, "rollback", f"{why}: {result.message}"), passed
    return None, passed


def _check(metric: MetricSpec, window: list[Any], *, seconds: float,
           family: str = "app", baseline: list[Any] | None = None) -> MetricResult:
    """One threshold check of ``metric`` over the recorded intervals in ``window``; a
    relative bound without stable traffic there compares with ``baseline``'s (the last
    hour), as the controller does."""
    can = [p.canary for p in window if _usable(p.canary)]
    sta = [p.stable for p in window if _usable(p.stable)]
    query = f"recorded {metric.builtin} of the canary over {format_duration(seconds)}"
    value, stable = _value(metric, can, seconds), _value(metric, sta, seconds)
    longer = None
    if baseline is not None and bounds.single_value(stable) in (bounds.NO_SERIES,
                                                                    bounds.NAN):
        older = [p.stable for p in baseline if _usable(p.stable)]
        base = _value(metric, older, threshold.BASELINE_WINDOW)
        if isinstance(bounds.single_value(base), float):
            stable, longer = base, threshold.BASELINE_WINDOW
    result = bounds.evaluate(metric, value, query, stable=stable, window=seconds,
                                baseline=longer)
    if result.outcome is Outcome.ERROR:
        return result
    count = sum(v.requests for v in can)
    guarded = bounds.low_traffic(metric, count, value=result.value, query=query,
                                    version="the canary", window=seconds, family=family,
                                    failed=result.outcome is Outcome.FAILED)
    return guarded or result


def _value(metric: MetricSpec, counts: list[VersionCounts], seconds: float) -> list[Sample]:
    """The metric's value over the window as the one sample a query would return."""
    requests = sum(v.requests for v in counts)
    if metric.builtin == "request-rate":
        return [Sample(value=requests / seconds)] if counts else []
    if metric.builtin == "error-rate":
        if not counts:
            return []
        return [Sample(value=sum(v.errors for v in counts) / requests if requests else math.nan)]
    buckets: dict[float, float] = {}
    for v in counts:
        if not v.latency:
            return []
        for bound, count in v.latency.items():
            buckets[bound] = buckets.get(bound, 0.0) + count
    if not buckets:
        return []
    return [Sample(value=_quantile(metric.quantile, buckets))]


def _quantile(q: float, buckets: dict[float, float]) -> float:
    """histogram_quantile: linear inside the bucket; the +Inf bucket answers the last bound."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, buckets[bounds[-1]])
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return lower
            inside = count - below
            return lower + (b - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = b, count
    return lower
