"""One check of a running rollout: the policy's threshold metrics plus, when the policy
asks for it, the sequential canary-vs-stable judge, combined into one Verdict.

Providers fetch numbers; the judges here decide. Metrics still in their ``initialDelay``
after the stage started are left out of the check (warm-up), not counted as passes.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from canary.analysis import threshold
from canary.metrics.base import MetricsProvider
from canary.model import PolicySpec, Verdict
from canary.rollout.state import RolloutState


class PolicyAnalyzer:
    def __init__(self, policy: PolicySpec, provider: MetricsProvider) -> None:
        self.policy = policy
        self.provider = provider

    def measure(self, state: RolloutState, now: datetime) -> Verdict:
        policy = self._warm(state, now)
        return threshold.measure(policy, self.provider, service=state.service,
                                 version=state.version, stable_version=state.stable_version,
                                 at=now)

    def _warm(self, state: RolloutState, now: datetime) -> PolicySpec:
        started = state.stage_started_at
        if started is None:
            return self.policy
        age = (now - started).total_seconds()
        ready = tuple(m for m in self.policy.metrics if m.initial_delay <= age)
        if len(ready) == len(self.policy.metrics):
            return self.policy
        return dataclasses.replace(self.policy, metrics=ready)
