"""Null router: a router that moves no traffic and remembers the split in memory.

For dry runs (walk a rollout's stages and analysis without touching traffic) and for
tests, so callers always hold a real ``Router`` and never test for None.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from canary.model import Weights


class Config(BaseModel):
    """The ``spec.router`` block for ``type: null``: no options."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class NullRouter:
    """Keeps the last split it was given; starts with all traffic on stable."""

    def __init__(self, initial: Weights | None = None) -> None:
        self._weights = initial or Weights(canary=0)

    def __repr__(self) -> str:
        return f"NullRouter(canary={self._weights.canary})"

    def describe(self) -> str:
        return "null router (dry run: no traffic is moved)"

    def ensure(self) -> None:
        return None

    def set_weights(self, weights: Weights) -> None:
        self._weights = weights

    def get_weights(self) -> Weights:
        return self._weights


def from_config(config: Config) -> NullRouter:
    return NullRouter()
