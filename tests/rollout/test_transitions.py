"""The state graph is data: a seeded random walk through decide() (every observation,
gate result, hook result, verdict and operator command it can meet) only ever makes the
phase changes in TRANSITIONS, and reaches every one of them."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest

from canary.model import (
    Command,
    GateResult,
    HookResult,
    MetricResult,
    Outcome,
    Phase,
    Verdict,
    Weights,
)
from canary.rollout.machine import TRANSITIONS, Observation, TransitionError, decide
from canary.specs import Stage
from canary.state import RolloutState
from tests.rollout.helpers import T0, new_state, plan

POINTS = ("preRollout", "preStage", "postStage", "confirmPromotion", "promote", "postRollout",
          "rollback")
PLANS = [
    plan(stages=(Stage(5, 30), Stage(50, 30), Stage(100, 30)), gate_steps=("lint", "migrate"),
         hooks={p: ("h",) for p in POINTS}, compensable=frozenset({("preRollout", "h")}),
         progress_deadline=400.0, deadline=3000.0),
    plan(stages=(Stage(0, 20, match=True), Stage(25, 20), Stage(100, 20)), gate_steps=("migrate",),
         gate_idempotent=False),
    plan(stages=(Stage(10, 20), Stage(100, 20))),
]


def observe(rng: random.Random, state: RolloutState, now_s: float) -> Observation:
    now = T0 + timedelta(seconds=now_s)
    roll = rng.random()
    weights = (None if roll < 0.05 else
               Weights(rng.choice((0, 5, 50, 100))) if roll < 0.15 else
               Weights(state.desired_weight))
    gate = None
    if state.phase is Phase.GATING and rng.random() < 0.9:
        gate = GateResult(ok=rng.random() < 0.85, message="gate", step=state.gate.step)
    hook = None
    if state.run.hook_running is not None and rng.random() < 0.9:
        hook = HookResult(key=str(state.run.hook_running), ok=rng.random() < 0.85,
                          message="hook")
    verdict = None
    if state.phase is Phase.PROGRESSING and rng.random() < 0.5:
        outcome = rng.choice((Outcome.PASSED, Outcome.PASSED, Outcome.PASSED, Outcome.FAILED,
                              Outcome.INCONCLUSIVE, Outcome.ERROR))
        result = MetricResult(name="error-rate", outcome=outcome, value=0.0, query="q",
                              threshold="t", message=outcome.value)
        verdict = Verdict.combine((result,), now)
    return Observation(now=now, weights=weights, router_error="" if weights else "down",
                       gate=gate, verdict=verdict, hook=hook)


@pytest.mark.parametrize("seed", range(3))
def test_a_random_walk_stays_inside_the_table_and_covers_it(seed: int) -> None:
    rng = random.Random(seed)
    seen: set[tuple[Phase, Phase]] = set()
    for _ in range(300):  # rollouts
        p = rng.choice(PLANS)
        state = new_state()
        now_s = 0.0
        for _ in range(200):  # ticks
            if rng.random() < 0.08:
                state = dataclasses.replace(state, command=rng.choice(list(Command)))
            now_s += rng.choice((1.0, 5.0, 30.0))
            decision = decide(state, observe(rng, state, now_s), p)  # raises outside it
            change = (state.phase, decision.state.phase)
            if change[0] is not change[1]:
                seen.add(change)
            state = decision.state
            if state.phase is Phase.SUCCEEDED:
                break
    assert seen <= TRANSITIONS
    assert TRANSITIONS - seen == set(), f"never reached: {sorted(TRANSITIONS - seen)}"


def test_a_change_outside_the_table_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A succeeded rollout never starts again: retry on it is ignored ...
    state = new_state(phase=Phase.SUCCEEDED, command=Command.RETRY)
    decision = decide(state, Observation(now=T0, weights=Weights(100)), plan())
    assert decision.state.phase is Phase.SUCCEEDED
    # ... and were a bug to let it through, the table stops it before anything is saved.
    from canary.rollout import machine

    monkeypatch.setattr(machine, "_command_applies", lambda s, c: True)
    with pytest.raises(TransitionError, match="succeeded -> pending"):
        decide(state, Observation(now=T0, weights=Weights(100)), plan())
