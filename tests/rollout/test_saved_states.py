"""States saved by an earlier canary load into today's types, write back unchanged, and
resume exactly as the earlier version decided (steps recorded by
tests/rollout/saved_states.py on the main branch before the state's sub-records)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from canary.rollout.machine import decide
from canary.state import FailureKind, GateStatus, RolloutState, Skip
from tests.rollout.saved_states import (
    DATA,
    PLANS,
    action_json,
    events_json,
    observation,
    record,
)

STEPS: list[dict[str, Any]] = json.loads(DATA.read_text())


def _through_json(state: RolloutState) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(state.to_json()))
    return out


def test_the_recording_covers_what_the_state_can_hold() -> None:
    before = [s["before"] for s in STEPS]
    kinds = Counter(s["failure_kind"] for s in before)
    assert {k.value for k in FailureKind} <= set(kinds), kinds
    assert {s.value for s in Skip} <= {s["skip"] for s in before}
    assert {g.value for g in GateStatus} <= {s["gate"]["status"] for s in before}
    assert any(s["hook_running"] for s in before)
    assert any(k.endswith("#compensate") for s in before for k in s["hooks_done"])
    assert any(s["judge_memory"] for s in before) and any(s["counts"] for s in before)
    assert len({s["phase"] for s in before}) >= 8


@pytest.mark.parametrize("side", ["before", "after"])
def test_a_saved_state_loads_and_writes_back_the_same_json(side: str) -> None:
    for n, step in enumerate(STEPS):
        saved = step[side]
        again = _through_json(RolloutState.from_json(saved))
        assert list(again) == list(saved), f"step {n}: keys differ"
        assert again == saved, f"step {n}"


def test_a_saved_state_resumes_as_the_earlier_version_decided() -> None:
    for n, step in enumerate(STEPS):
        state = RolloutState.from_json(step["before"])
        d = decide(state, observation(step["observation"]), PLANS[step["plan"]])
        assert _through_json(d.state) == step["after"], f"step {n}"
        assert [action_json(a) for a in d.actions] == step["actions"], f"step {n}"
        assert events_json(d.events) == step["events"], f"step {n}"


def test_the_same_walk_today_records_the_same_steps() -> None:
    # The whole recording, not one step at a time: every rollout of the walk, each state
    # carried into the next decision by today's code, matches the earlier version's.
    assert json.loads(json.dumps(record())) == STEPS
