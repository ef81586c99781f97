"""The store failing exactly when a finished gate step's or hook's result is being saved:
the result is kept for the next tick, so the step is neither run again nor taken for an
interrupted one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from canary.clock import ManualClock
from canary.errors import TemporaryError
from canary.model import Event, GateResult, Phase
from canary.state import RolloutState
from canary.store.sqlite import SQLiteStore
from canary.testing import FakeRouter
from tests.rollout.helpers import T0, new_state, plan
from tests.rollout.test_runner import Gate, make


class DownOnce(SQLiteStore):
    """A real SQLite store that is 'unreachable' for the first save carrying ``kind``."""

    def __init__(self, path: str, *, kind: str) -> None:
        super().__init__(path)
        self.kind, self.failed = kind, False

    def save(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        if not self.failed and any(e.kind == self.kind for e in events):
            self.failed = True
            raise TemporaryError("store unreachable")
        return super().save(state, events=events)


def test_a_migration_result_survives_a_store_outage_at_its_save(tmp_path: Path) -> None:
    store = DownOnce(f"{tmp_path}/state.db", kind="gate-succeeded")
    store.create(new_state(revision=0, created_at=T0, updated_at=T0))
    gate = Gate([GateResult(ok=True, message="migrated")])
    final = make(store, FakeRouter(), ManualClock(T0), p=plan(gate_steps=("migrate",)),
                 gate=gate).run()
    assert store.failed  # the outage did hit that save
    assert gate.runs == 1  # the migration ran once
    assert final.phase is Phase.SUCCEEDED and not final.needs_human
