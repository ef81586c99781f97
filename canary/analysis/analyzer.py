"""One check of a running rollout: the policy's threshold metrics, judged into one Verdict.

Providers fetch numbers; the judges decide. Metrics still in their ``initialDelay``
after the stage started are left out of the check (warm-up), not counted as passes.

A check never takes longer than its time budget: queries share it, so a Prometheus that
answers slowly or not at all turns into ERROR results within the budget instead of
stalling the controller past its next interval. The default budget matches the
provider timeout ``canary deploy`` sets, min(interval, 10 s).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from canary.analysis import threshold
from canary.analysis.sequential.live import LiveSequential
from canary.metrics.base import MetricsProvider
from canary.model import Verdict
from canary.specs import PolicySpec
from canary.state import RolloutState

MAX_BUDGET = 10.0  # seconds: a check that needs longer than this is not getting an answer


def check_budget(policy: PolicySpec) -> float:
    """Seconds one check may take: the interval, at most ``MAX_BUDGET``."""
    return min(policy.interval, MAX_BUDGET)


class PolicyAnalyzer:
    def __init__(self, policy: PolicySpec, provider: MetricsProvider, *,
                 budget: float | None = None) -> None:
        self.policy = policy
        self.provider = provider
        self.budget = check_budget(policy) if budget is None else budget
        self.sequential = LiveSequential(policy, provider) if policy.sequential else None

    def measure(self, state: RolloutState, now: datetime) -> Verdict:
        policy = self._warm(state, now)
        verdict = threshold.measure(policy, self.provider, service=state.service,
                                    version=state.version,
                                    stable_version=state.stable_version, at=now,
                                    budget=self.budget)
        if self.sequential is None:
            return verdict
        # Absolute guards and relative evidence side by side: the worst decides.
        results, memory, early = self.sequential.check(
            state.judge_memory, service=state.service, version=state.version,
            stable_version=state.stable_version, stage=state.stage_index)
        combined = Verdict.combine((*verdict.results, *results), now)
        return dataclasses.replace(combined, memory=memory, promote_stage=early)

    def _warm(self, state: RolloutState, now: datetime) -> PolicySpec:
        started = state.stage_started_at
        if started is None:
            return self.policy
        age = (now - started).total_seconds()
        ready = tuple(m for m in self.policy.metrics if m.initial_delay <= age)
        if len(ready) == len(self.policy.metrics):
            return self.policy
        return dataclasses.replace(self.policy, metrics=ready)
