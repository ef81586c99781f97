"""Exit codes are a contract: the values are pinned, and every reader of a rollout's end
(the runner, `status --watch`, `deploy --server`) uses the one mapping."""

from __future__ import annotations

import pytest

from canary.exits import Exit, ended, for_ending
from canary.model import Phase
from canary.rollout import follow
from canary.rollout.runner import exit_code
from canary.server import client
from canary.state import AttemptProgress
from tests.rollout.helpers import new_state


def test_the_codes_are_the_contract() -> None:
    assert {e.name: int(e) for e in Exit} == {"OK": 0, "ROLLED_BACK": 1, "INVALID": 2,
                                               "ABORTED": 3, "NEEDS_HUMAN": 4, "RUNNING": 5}


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("needs_human", [False, True])
def test_every_reader_of_an_ending_agrees(phase: Phase, needs_human: bool) -> None:
    state = new_state(phase=phase, run=AttemptProgress(needs_human=needs_human))
    status = {"phase": phase.value, "needsHuman": needs_human}
    code = for_ending(phase, needs_human=needs_human)
    assert exit_code(state) == client.exit_code(status) == code
    assert follow.ended(state) == client.ended(status) == ended(phase, needs_human=needs_human)
    if code is Exit.ROLLED_BACK:  # 1 promises traffic is back on stable
        assert phase is Phase.FAILED and not needs_human
    if not ended(phase, needs_human=needs_human):
        assert code in (Exit.RUNNING, Exit.NEEDS_HUMAN)


def test_a_held_rollout_has_ended_for_a_follower() -> None:
    # held after an internal error: paused, needs a human; nothing moves until one acts
    assert ended(Phase.PAUSED, needs_human=True)
    assert for_ending(Phase.PAUSED, needs_human=True) is Exit.NEEDS_HUMAN
