"""Steps of decide() recorded on an earlier version of canary, to replay on this one.

A state saved by the previous version must load and resume exactly: this module walks
decide() through seeded random rollouts (gate, hooks, compensations, verdicts, router
outages, operator commands) and writes each step as JSON: the state given, the
observation, and the state, actions and events decided. tests/rollout/test_saved_states.py
loads each saved state into today's types and decides again from it.

Recorded against the main branch at c9638a67 (before the state's sub-records and HookKey):

    git archive c9638a67 | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old:. python tests/rollout/saved_states.py tests/rollout/data/saved-steps.json

Only names present in both versions are used here (decide, Observation, RolloutState's
to_json/from_json and the JSON shape of a state), so the same file runs on either.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from canary.model import Command, GateResult, HookResult, MetricResult, Outcome, Verdict, Weights
from canary.rollout.machine import Observation, Plan, decide
from canary.specs import Stage
from canary.state import RolloutState
from tests.rollout.helpers import T0, new_state, plan

POINTS = ("preRollout", "preStage", "postStage", "confirmPromotion", "promote", "postRollout",
          "rollback")
PLANS: tuple[Plan, ...] = (
    plan(stages=(Stage(5, 30), Stage(50, 30), Stage(100, 30)), gate_steps=("lint", "migrate"),
         hooks={p: ("h", "g") for p in POINTS},
         compensable=frozenset({("preRollout", "h"), ("preStage", "g")}),
         progress_deadline=400.0, deadline=3000.0, notify_stages=True),
    plan(stages=(Stage(0, 20, match=True), Stage(25, 20), Stage(100, 20)),
         gate_steps=("migrate",), gate_idempotent=False, progress_deadline=90.0),
    plan(stages=(Stage(10, 20), Stage(100, 20)), gate_steps=("migrate",), gate_idempotent=True,
         deadline=400.0),
)
DATA = Path(__file__).with_name("data") / "saved-steps.json"


def observation_json(o: Observation) -> dict[str, Any]:
    return {
        "now": o.now.isoformat(),
        "weights": None if o.weights is None else o.weights.canary,
        "router_error": o.router_error,
        "gate": None if o.gate is None else {"ok": o.gate.ok, "message": o.gate.message,
                                             "step": o.gate.step},
        "hook": None if o.hook is None else {"key": o.hook.key, "ok": o.hook.ok,
                                             "message": o.hook.message},
        "verdict": None if o.verdict is None else {
            "at": o.verdict.at.isoformat(), "memory": o.verdict.memory,
            "promote_stage": o.verdict.promote_stage,
            "results": [r.to_json() for r in o.verdict.results]},
    }


def observation(d: Mapping[str, Any]) -> Observation:
    v = d["verdict"]
    verdict = None if v is None else dataclasses.replace(
        Verdict.combine(tuple(MetricResult.from_json(r) for r in v["results"]),
                        datetime.fromisoformat(v["at"])),
        memory=v["memory"], promote_stage=v["promote_stage"])
    return Observation(
        now=datetime.fromisoformat(d["now"]),
        weights=None if d["weights"] is None else Weights(d["weights"]),
        router_error=d["router_error"],
        gate=None if d["gate"] is None else GateResult(**d["gate"]),
        hook=None if d["hook"] is None else HookResult(**d["hook"]),
        verdict=verdict)


def action_json(action: object) -> dict[str, Any]:
    """An action as plain data; a hook's key in its stored string form."""
    fields = {f.name: getattr(action, f.name) for f in dataclasses.fields(action)}  # type: ignore[arg-type]
    if type(action).__name__ == "RunHook":  # the key alone says point, name, compensation
        fields = {"key": str(fields["key"])}
    return {"type": type(action).__name__, **{k: str(v) for k, v in fields.items()}}


def events_json(decision_events: Any) -> list[dict[str, Any]]:
    return [{"at": e.at.isoformat(), "kind": e.kind, "message": e.message,
             "data": json.loads(json.dumps(e.data, default=str))} for e in decision_events]


def _observe(rng: random.Random, state: RolloutState, now: datetime) -> Observation:
    roll = rng.random()
    weights = (None if roll < 0.05 else
               Weights(rng.choice((0, 5, 50, 100))) if roll < 0.12 else
               Weights(state.desired_weight))
    gate = None
    if state.phase.value == "gating" and rng.random() < 0.9:
        gate = GateResult(ok=rng.random() < 0.75, message="gate", step=state.gate.step)
    hook = None
    running = state.to_json()["hook_running"]  # where the state keeps it varies by version
    if running is not None and rng.random() < 0.9:
        hook = HookResult(key=running, ok=rng.random() < 0.9, message="hook")
    verdict = None
    if state.phase.value == "progressing" and rng.random() < 0.5:
        outcome = rng.choice((Outcome.PASSED,) * 6 + (Outcome.FAILED, Outcome.INCONCLUSIVE,
                                                      Outcome.ERROR))
        result = MetricResult(name="error-rate", outcome=outcome, value=0.0, query="q",
                              threshold="t", message=outcome.value)
        verdict = dataclasses.replace(Verdict.combine((result,), now),
                                      memory={"n": rng.randrange(100)},
                                      promote_stage=rng.random() < 0.1)
    return Observation(now=now, weights=weights, router_error="" if weights else "down",
                       gate=gate, verdict=verdict, hook=hook)


def record(seed: int = 1, rollouts: int = 40) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = []
    for n in range(rollouts):
        which = n % len(PLANS)
        state = new_state()
        now = T0
        for _ in range(120):
            if rng.random() < 0.06:
                state = dataclasses.replace(state, command=rng.choice(list(Command)))
            if rng.random() < 0.01:  # held after an internal error, as the runner does
                data = state.to_json() | {"phase": "paused", "needs_human": True,
                                          "failure_kind": "internal"}
                state = RolloutState.from_json(data)
            now += timedelta(seconds=rng.choice((1.0, 5.0, 30.0)))
            o = _observe(rng, state, now)
            d = decide(state, o, PLANS[which])
            changed = d.state.phase is not state.phase or state.command is not None
            if changed or (not state.phase.terminal and rng.random() < 0.15):
                steps.append({"plan": which, "before": state.to_json(),
                              "observation": observation_json(o), "after": d.state.to_json(),
                              "actions": [action_json(a) for a in d.actions],
                              "events": events_json(d.events)})
            state = d.state
            if state.phase.value == "succeeded" or (state.phase.terminal and rng.random() < 0.2):
                break
    return steps


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    out.parent.mkdir(exist_ok=True)
    recorded = record()
    out.write_text(json.dumps(recorded, indent=None, separators=(",", ":")) + "\n")
    print(f"{len(recorded)} steps -> {out}")
