"""Test doubles that really implement canary's Protocols (as httpx ships MockTransport).

Use them to test a rollout without servers: a router that can be made to fail or drift,
an analyzer that plays back scripted verdicts, a notifier that records what it was sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from canary.errors import NotifyError, RouterError
from canary.model import MetricResult, Notification, Outcome, Verdict, Weights
from canary.routers.features import Routes
from canary.state import RolloutState


@dataclass
class FakeRouter:
    """In-memory router with matches and mirroring (``RoutingRules``).

    ``down = True`` makes every call raise RouterError; ``history`` and
    ``routes_history`` list every change asked for, in order.
    """

    weights: Weights = field(default_factory=lambda: Weights(canary=0))
    down: bool = False
    history: list[int] = field(default_factory=list)
    routes: Routes = field(default_factory=Routes)
    routes_history: list[Routes] = field(default_factory=list)

    def set_routes(self, routes: Routes) -> None:
        self._check()
        self.routes = routes
        self.routes_history.append(routes)

    def get_routes(self) -> Routes:
        self._check()
        return self.routes

    def ensure(self) -> None:
        self._check()

    def set_weights(self, weights: Weights) -> None:
        self._check()
        self.weights = weights
        self.history.append(weights.canary)

    def get_weights(self) -> Weights:
        self._check()
        return self.weights

    def describe(self) -> str:
        return "fake router"

    def _check(self) -> None:
        if self.down:
            raise RouterError("fake router is down")


class ScriptedAnalyzer:
    """Plays back outcomes in order (the last one repeats); counts how often it was asked."""

    def __init__(self, outcomes: Iterable[Outcome | Sequence[MetricResult]],
                 metric: str = "error-rate") -> None:
        self.script = list(outcomes)
        self.metric = metric
        self.calls = 0

    def measure(self, state: RolloutState, now: datetime) -> Verdict:
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(item, Outcome):
            value = {Outcome.PASSED: 0.0, Outcome.FAILED: 0.4}.get(item)
            results: tuple[MetricResult, ...] = (MetricResult(
                name=self.metric, outcome=item, value=value, threshold="<= 0.01",
                query=f'scripted {self.metric}', message=f"scripted {item.value}"),)
        else:
            results = tuple(item)
        return Verdict.combine(results, now)


@dataclass
class RecordingNotifier:
    """Keeps every notification; ``fail = True`` makes send raise NotifyError."""

    sent: list[Notification] = field(default_factory=list)
    fail: bool = False

    def send(self, notification: Notification) -> None:
        if self.fail:
            raise NotifyError("recording notifier set to fail")
        self.sent.append(notification)
