"""Matches and mirroring kept in step with the rollout, beside the weights.

A rollout whose router has a match (spec.router.match), or whose stages mirror traffic,
wants the router's routes (routers/features.py) to follow its phase and stage: the match
on while the canary takes part, a stage's mirroring while that stage runs, neither once
the rollout rolls back or ends (strategy.routes_for). Like the weights, they are
level-triggered: read every tick and re-applied when the router disagrees.

A rollback is confirmed only when the canary really gets nothing: matching or mirrored
requests the rollout no longer wants count as traffic on the canary.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary.config.strategy import routes_for
from canary.model import Weights
from canary.routers.base import Router
from canary.routers.features import Routes, RoutingRules
from canary.specs import RolloutSpec
from canary.state import RolloutState


@dataclass(frozen=True)
class Routing:
    router: Router
    spec: RolloutSpec

    @property
    def rules(self) -> RoutingRules | None:
        """The router's matches and mirroring, when this rollout uses them."""
        uses = "match" in self.spec.router.options or any(s.mirror for s in self.spec.stages)
        return self.router if uses and isinstance(self.router, RoutingRules) else None

    def wanted(self, state: RolloutState) -> Routes:
        return routes_for(state, self.spec.stages,
                          match_configured="match" in self.spec.router.options)

    def confirmed(self, state: RolloutState, weights: Weights) -> Weights:
        """``weights`` as the rollout must see them: a canary still reached through a
        match or a mirror the rollout no longer wants is not at 0%."""
        rules = self.rules
        if rules is None or weights.canary:
            return weights
        actual, wanted = rules.get_routes(), self.wanted(state)
        if (actual.match and not wanted.match) or (actual.mirror and not wanted.mirror):
            return Weights(canary=1)
        return weights

    def sync(self, state: RolloutState) -> str:
        """Apply the routes ``state`` wants if the router differs; what changed, or ""."""
        rules = self.rules
        if rules is None:
            return ""
        wanted = self.wanted(state)
        if rules.get_routes() == wanted:
            return ""
        rules.set_routes(wanted)
        return f"match {'on' if wanted.match else 'off'}, mirroring {wanted.mirror}%"
