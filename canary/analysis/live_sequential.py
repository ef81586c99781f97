"""The sequential judge fed live: counter increments from Prometheus at every check.

Each check asks, per version, how many requests, failed requests and latency-bucket
counts arrived since the previous check (``increase(...[interval])``), and feeds them to
the same SequentialJudge that `canary backtest` replays, with its memory persisted in
the rollout's state. So a restart resumes the evidence exactly, and a backtest of a
recorded rollout decides as the live controller did.

The deciding entry is named ``sequential``: FAILED when the evidence of a regression
crosses 1/alpha (roll back at once), PASSED otherwise once the canary has had traffic in
the interval (the judge is a guard: no evidence against the canary lets the stage end on
time), INCONCLUSIVE when the canary had no data, ERROR when Prometheus could not answer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from canary.analysis.queries import increment_queries
from canary.analysis.sequential import (
    IntervalCounts,
    SequentialJudge,
    VersionCounts,
    metric_results,
)
from canary.errors import CanaryError, ControllerBusy, InputError
from canary.metrics.base import MetricsProvider
from canary.model import MetricResult, Outcome, PolicySpec


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


@dataclasses.dataclass
class LiveSequential:
    policy: PolicySpec
    provider: MetricsProvider

    def __post_init__(self) -> None:
        assert self.policy.sequential is not None
        self.judge = SequentialJudge(self.policy.sequential)

    def check(self, memory: Mapping[str, Any] | None, *, service: str, version: str,
              stable_version: str | None, stage: int
              ) -> tuple[tuple[MetricResult, ...], dict[str, Any] | None, bool]:
        """Results, the judge's new memory, and whether it promotes the stage early."""
        seconds = self.policy.interval
        query = "canary vs stable (sequential test on counter increments)"
        try:
            canary = version_counts(self.provider, self.policy, side="canary",
                                    service=service, version=version,
                                    stable_version=stable_version, seconds=seconds)
            stable = None
            if stable_version is not None:
                stable = version_counts(self.provider, self.policy, side="stable",
                                        service=service, version=stable_version,
                                        stable_version=stable_version, seconds=seconds)
        except CanaryError as exc:
            busy = isinstance(exc, ControllerBusy)  # the controller's lateness: hold
            return (MetricResult(name="sequential", value=None,
                                 outcome=Outcome.INCONCLUSIVE if busy else Outcome.ERROR,
                                 query=query, message=f"sequential: could not measure: "
                                 f"{exc}"),), None, False
        interval = IntervalCounts(stable=stable, canary=canary, seconds=seconds, stage=stage)
        restarted = ""
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
        return tuple(results), step.memory, early
