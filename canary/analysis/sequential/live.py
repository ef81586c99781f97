"""The sequential judge fed live: counter increments from Prometheus at every check.

Each check asks, per version, how many requests, failed requests and latency-bucket
counts arrived since the previous check, and feeds them to the same SequentialJudge that
`canary backtest` replays, with its memory persisted in the rollout's state. So a restart
resumes the evidence exactly, and a backtest of a recorded rollout decides as the live
controller did.

Exact accounting: each check pins Prometheus's evaluation time (``PinnedProvider.pin``)
and reads the raw counter samples up to it; canary/metrics/counters.py adds exactly the
samples scraped since the previous reading, resets included. The last sample of every
series and the evaluation time are persisted with the judge's memory (``live``), so the
spans of consecutive checks - across a kill -9 and resume, across checks that failed -
neither overlap nor leave gaps: the requests fed to the judge sum to the rollout's whole
traffic, and each interval's ``seconds`` is the true elapsed span. A memory without that
part (written by an older canary) restarts the evidence, with a note. A provider that
cannot pin a time (a test double) gets ``increase(...[interval])`` as before.

The deciding entry is named ``sequential``: FAILED when the evidence of a regression
crosses 1/alpha (roll back at once), PASSED otherwise once the canary has had traffic in
the interval (the judge is a guard: no evidence against the canary lets the stage end on
time), INCONCLUSIVE when the canary had no data, ERROR when Prometheus could not answer.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from canary.analysis.queries import IncrementQueries, increment_queries
from canary.analysis.sequential.core import (
    IntervalCounts,
    SequentialJudge,
    VersionCounts,
)
from canary.analysis.sequential.results import metric_results
from canary.errors import CanaryError, ControllerBusy, InputError
from canary.metrics.base import MetricsProvider, PinnedProvider
from canary.metrics.counters import Seen, advance
from canary.model import MetricResult, Outcome
from canary.specs import PolicySpec


def _one(provider: MetricsProvider, query: str) -> float | None:
    samples = provider.query(query)
    if not samples or math.isnan(samples[0].value):
        return None
    return float(samples[0].value)


def version_counts(provider: MetricsProvider, policy: PolicySpec, *, side: str, service: str,
                   version: str, stable_version: str | None,
                   seconds: float) -> VersionCounts | None:
    q = increment_queries(policy, side=side, service=service, version=version,
                          stable_version=stable_version, seconds=seconds)
    requests = _one(provider, q.requests)
    if requests is None:
        return None  # no series at all: no data, never "healthy"
    errors = _one(provider, q.errors) or 0.0  # no 5xx series yet: none failed
    latency: dict[float, float] = {}
    if q.buckets is not None:
        for s in provider.query(q.buckets):
            le = s.labels.get("le")
            if le is None or math.isnan(s.value):
                continue
            bound = math.inf if le == "+Inf" else float(le) / (1000.0 if q.ms else 1.0)
            latency[bound] = s.value
    return VersionCounts(requests=requests, errors=min(errors, requests), latency=latency)


LIVE_VERSION = 1
# Samples fetched from before the previous reading: a scrape interval up to a minute still
# leaves each series' last counted sample inside the window.
MARGIN = 60.0
_RAW = re.compile(r"^sum(?: by \(le\))? ?\(increase\((?P<sel>.+)\[[^\[\]]+\]\)\)$")


def raw_selector(promql: str) -> str | None:
    """The series selector inside ``sum(increase(SEL[w]))`` (or ``sum by (le)``)."""
    match = _RAW.match(promql)
    return None if match is None else match["sel"]


def pinned_counts(provider: PinnedProvider, q: IncrementQueries, seen: dict[str, Seen], *,
                  at: float, window: float, baseline: float | None) -> VersionCounts | None:
    """What one version's counters grew by since ``seen`` (updated in place), as of ``at``."""
    parts = {"requests": q.requests, "errors": q.errors, "buckets": q.buckets}
    growth = {}
    for what, promql in parts.items():
        if promql is None:
            continue
        selector = raw_selector(promql)
        assert selector is not None  # checked by the caller
        found = provider.series_at(selector, at=at, window=window)
        growth[what] = advance(seen.setdefault(what, {}), found, baseline=baseline)
    requests = growth["requests"]
    if not requests.fresh:
        return None  # no sample in the span: no data, never "healthy"
    errors = growth["errors"].total
    latency: dict[float, float] = {}
    if "buckets" in growth:
        for le, count in growth["buckets"].by_label("le").items():
            bound = math.inf if le == "+Inf" else float(le) / (1000.0 if q.ms else 1.0)
            latency[bound] = count
    return VersionCounts(requests=requests.total, errors=min(errors, requests.total),
                         latency=latency)


def _live_part(memory: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The accounting part of a memory, or None when absent or unusable."""
    live = None if memory is None else memory.get("live")
    if not isinstance(live, dict) or live.get("v") != LIVE_VERSION:
        return None
    if not isinstance(live.get("at"), int | float) or not isinstance(live.get("seen"), dict):
        return None
    return copy.deepcopy(live)


@dataclasses.dataclass
class LiveSequential:
    policy: PolicySpec
    provider: MetricsProvider
    clock: Callable[[], float] = time.time  # wall clock: Prometheus's own time base

    def __post_init__(self) -> None:
        assert self.policy.sequential is not None
        # caps per check are for the policy's interval; a late check's longer span gets more
        self.judge = SequentialJudge(self.policy.sequential, interval=self.policy.interval)

    def check(self, memory: Mapping[str, Any] | None, *, service: str, version: str,
              stable_version: str | None, stage: int
              ) -> tuple[tuple[MetricResult, ...], dict[str, Any] | None, bool]:
        """Results, the judge's new memory, and whether it promotes the stage early."""
        seconds = self.policy.interval
        query = "canary vs stable (sequential test on counter increments)"
        sides = [("canary", version)]
        if stable_version is not None:
            sides.append(("stable", stable_version))
        queries = {side: increment_queries(self.policy, side=side, service=service,
                                           version=v, stable_version=stable_version,
                                           seconds=seconds) for side, v in sides}
        pinned = isinstance(self.provider, PinnedProvider) and all(
            raw_selector(p) is not None for q in queries.values()
            for p in (q.requests, q.errors, q.buckets) if p is not None)
        live: dict[str, Any] | None = None
        restarted = ""
        if pinned:
            live = _live_part(memory)
            if memory is not None and live is None:
                memory = None
                restarted = (" (evidence restarted: the judge's memory has no evaluation "
                             "time to continue from: written by an older canary)")
        counts: dict[str, VersionCounts | None] = {"canary": None, "stable": None}
        try:
            if pinned:
                assert isinstance(self.provider, PinnedProvider)
                at = self.provider.pin(self.clock())
                prev = None if live is None else float(live["at"])
                if prev is not None and at <= prev:
                    return (MetricResult(
                        name="sequential", outcome=Outcome.INCONCLUSIVE, value=None,
                        query=query, message="sequential: no time has passed since the "
                        "previous check's evaluation time; nothing new to judge"),), None, False
                seconds = seconds if prev is None else at - prev
                live = live or {"v": LIVE_VERSION, "at": None, "seen": {},
                                "fed": {"canary": 0.0, "stable": 0.0, "spans": 0}}
                for side, _v in sides:
                    counts[side] = pinned_counts(
                        self.provider, queries[side], live["seen"].setdefault(side, {}),
                        at=at, window=seconds + MARGIN,
                        baseline=at - seconds if prev is None else None)
                    got = counts[side]
                    live["fed"][side] += 0.0 if got is None else got.requests
                live["at"], live["fed"]["spans"] = at, live["fed"]["spans"] + 1
            else:
                for side, v in sides:
                    counts[side] = version_counts(
                        self.provider, self.policy, side=side, service=service, version=v,
                        stable_version=stable_version, seconds=seconds)
        except CanaryError as exc:
            busy = isinstance(exc, ControllerBusy)  # the controller's lateness: hold
            return (MetricResult(name="sequential", value=None,
                                 outcome=Outcome.INCONCLUSIVE if busy else Outcome.ERROR,
                                 query=query, message=f"sequential: could not measure: "
                                 f"{exc}"),), None, False
        canary, stable = counts["canary"], counts["stable"]
        interval = IntervalCounts(stable=stable, canary=canary, seconds=seconds, stage=stage)
        try:
            step = self.judge.update(memory, interval)
        except InputError as exc:  # memory of an older canary (an upgrade mid-rollout)
            step = self.judge.update(None, interval)
            restarted = f" (evidence restarted: {exc})"
        results = list(metric_results(step))
        head = results[0]
        if restarted:
            head = dataclasses.replace(head, message=head.message + restarted)
        if head.outcome is Outcome.INCONCLUSIVE:
            if canary is not None and canary.requests > 0:
                head = dataclasses.replace(head, outcome=Outcome.PASSED,
                                           message=f"no evidence of a regression yet: "
                                                   f"{head.message}")
            else:
                head = dataclasses.replace(head, message=f"no canary traffic in the last "
                                                         f"{seconds:g}s: {head.message}")
        results[0] = head
        early = step.decision == "promote" and self.policy.sequential is not None and \
            self.policy.sequential.early_promotion
        new_memory = step.memory if live is None else {**step.memory, "live": live}
        return tuple(results), new_memory, early
