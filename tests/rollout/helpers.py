"""Builders for rollout tests: a state, a plan, observations at a given second."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from canary.model import GateResult, MetricResult, Outcome, Verdict, Weights
from canary.rollout.machine import MetricLimits, Observation, Plan
from canary.specs import Stage
from canary.state import RolloutState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAGES = (Stage(5, 60), Stage(25, 60), Stage(50, 60), Stage(100, 60))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_state(**kw: object) -> RolloutState:
    base = RolloutState(id="r1", name="checkout", service="checkout", version="2.0.0",
                        stable_version="1.0.0", document="", source="rollout.yaml",
                        created_at=T0, updated_at=T0, revision=1)
    return dataclasses.replace(base, **kw)


def plan(**kw: object) -> Plan:
    args: dict[str, object] = {"stages": STAGES, "interval": 10.0,
                               "limits": {"error-rate": MetricLimits()}}
    args.update(kw)
    return Plan(**args)  # type: ignore[arg-type]


def obs(seconds: float, weight: int | None, *, outcome: Outcome | None = None,
        gate: GateResult | None = None, name: str = "error-rate",
        dry_run: bool = False) -> Observation:
    verdict = None
    if outcome is not None:
        r = MetricResult(name=name, outcome=outcome, value=0.5, query="q", threshold="<= 0.01",
                         message=f"{name} {outcome.value}", dry_run=dry_run)
        verdict = Verdict.combine((r,), at(seconds))
    return Observation(now=at(seconds), weights=None if weight is None else Weights(weight),
                       router_error="down" if weight is None else "", gate=gate,
                       verdict=verdict)
