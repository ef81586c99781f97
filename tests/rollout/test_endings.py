"""Endings that survive a crash: owed alerts delivered once by the next runner, the same
deploy of an ended version is a no-op, and an internal error holds the rollout for a human."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from canary.clock import ManualClock
from canary.model import Command, Notification, Outcome, Phase, Verdict, Weights
from canary.rollout.commands import record_command
from canary.rollout.runner import Runner, exit_code
from canary.state import RolloutState
from canary.store.sqlite import SQLiteStore
from canary.testing import FakeRouter, RecordingNotifier, ScriptedAnalyzer
from tests.rollout.helpers import T0, new_state, plan
from tests.rollout.test_runner import SPEC, Crash, make


class CrashingNotifier(RecordingNotifier):
    """Dies (kill -9) while sending its first alert; nothing is recorded after it."""

    def send(self, notification: Notification) -> None:
        raise Crash()


@pytest.fixture()
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(f"{tmp_path}/state.db")
    s.create(new_state(revision=0, created_at=T0, updated_at=T0))
    return s


def test_alert_interrupted_by_a_kill_is_delivered_by_the_next_run_once(
        store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    with pytest.raises(Crash):
        make(store, router, clock, outcomes=[Outcome.FAILED], notifier=CrashingNotifier()).run()
    ended = store.get("checkout")
    assert ended.phase is Phase.ROLLING_BACK or ended.phase is Phase.FAILED
    assert list(ended.alerts_owed.values()) == ["rolled-back"]  # owed, saved with the decision
    note = RecordingNotifier()
    final = make(store, router, clock, outcomes=[Outcome.FAILED], notifier=note).run()
    assert final.phase is Phase.FAILED and exit_code(final) == 1
    assert [n.event for n in note.sent] == ["rolled-back"]
    again = RecordingNotifier()
    make(store, router, clock, notifier=again).run()
    assert again.sent == []  # delivered means delivered: never twice
    kinds = [e.kind for e in store.events(final.id)]
    assert kinds.count("notified") == 1


def test_failed_delivery_stays_owed_and_the_next_run_sends_it(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    down = RecordingNotifier(fail=True)
    final = make(store, router, clock, outcomes=[Outcome.FAILED], notifier=down).run()
    assert final.phase is Phase.FAILED
    assert not store.has_event_key(next(iter(final.alerts_owed)))
    up = RecordingNotifier()
    make(store, router, clock, notifier=up).run()
    assert [n.event for n in up.sent] == ["rolled-back"]


def test_alerts_with_two_notifiers_repeat_none_that_went_out(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    ok, down = RecordingNotifier(), RecordingNotifier(fail=True)
    r = Runner(name="checkout", spec=SPEC, plan=plan(), store=store, router=router, clock=clock,
               analyzer=ScriptedAnalyzer([Outcome.FAILED]), notifiers=[ok, down])
    r.run()
    down.fail = False
    Runner(name="checkout", spec=SPEC, plan=plan(), store=store, router=router, clock=clock,
           notifiers=[ok, down]).run()
    assert [n.event for n in ok.sent] == ["rolled-back"]
    assert [n.event for n in down.sent] == ["rolled-back"]


class BrokenAnalyzer(ScriptedAnalyzer):
    def measure(self, state: RolloutState, now: datetime) -> Verdict:
        self.calls += 1
        raise ZeroDivisionError("a bug in the analysis")


def test_internal_error_holds_traffic_alerts_once_and_exits_4(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()
    analyzer = BrokenAnalyzer([])
    r = Runner(name="checkout", spec=SPEC, plan=plan(), store=store, router=router, clock=clock,
               analyzer=analyzer, notifiers=[note])
    final = r.run()
    assert final.phase is Phase.PAUSED and final.needs_human and exit_code(final) == 4
    assert router.weights == Weights(5) and final.desired_weight == 5  # left where it was
    assert [n.event for n in note.sent] == ["needs-human"]
    for _ in range(5):  # further ticks (a controller) neither loop nor alert again
        clock.advance(10)
        assert r.tick().revision == final.revision
    kinds = [e.kind for e in store.events(final.id)]
    assert kinds.count("internal-error") == 1 and "rolled-back" not in kinds
    assert "promoted" not in kinds and analyzer.calls == 1
    store.release_lease("checkout", r.owner)
    # an operator aborts: the hold is lifted and the rollback runs as usual
    record_command(store, "checkout", Command.ABORT)
    done = Runner(name="checkout", spec=SPEC, plan=plan(), store=store, router=router,
                  clock=clock, notifiers=[note]).run()
    assert done.phase is Phase.ABORTED and router.weights == Weights(0)
    assert exit_code(done) == 3


def test_internal_error_after_the_save_holds_without_losing_the_step(store: SQLiteStore) -> None:
    class Buggy(FakeRouter):
        def set_weights(self, weights: Weights) -> None:
            if weights.canary == 25:
                raise KeyError("backend")
            super().set_weights(weights)

    router, clock, note = Buggy(), ManualClock(T0), RecordingNotifier()
    final = make(store, router, clock, notifier=note).run()
    assert final.phase is Phase.PAUSED and final.needs_human and final.desired_weight == 5
    assert router.history == [5] and [n.event for n in note.sent] == ["needs-human"]


def test_ended_rollout_is_not_ticked_again(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    final = make(store, router, clock).run()
    assert final.phase is Phase.SUCCEEDED
    router.set_weights(Weights(5))  # someone moved traffic by hand: an ended rollout stays out
    again = make(store, router, clock).run()
    assert again.revision == final.revision and router.weights == Weights(5)


def test_same_deploy_after_its_ending_is_a_no_op_new_version_starts(tmp_path: Path) -> None:
    from canary.rollout.wiring import submit
    from canary.store.registry import open_store
    from tests.config.test_cli_analysis import files

    rollout = files(tmp_path, "http://127.0.0.1:9")
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    text = rollout.read_text()
    _, _, first, resumed = submit(text, file=str(rollout), version=None, store=store, now=T0)
    assert not resumed
    promoted = store.save(dataclasses.replace(first, phase=Phase.SUCCEEDED, desired_weight=100))
    # a CI retry of the same deploy: no new rollout, the ending is reported (preflight would
    # have asked the dead Prometheus at port 9: it is not asked either)
    _, _, again, resumed = submit(text, file=str(rollout), version=None, store=store, now=T0,
                                  preflight=True)
    assert resumed and again == promoted and len(store.history("checkout")) == 1
    rolled_back = new_state(id="r2", version="2.0.1", phase=Phase.FAILED, revision=0)
    store.create(rolled_back)
    _, _, same, _ = submit(text, file=str(rollout), version="2.0.1", store=store, now=T0)
    assert same.id == "r2" and same.phase is Phase.FAILED  # rolled back: exit 1 again
    _, _, new, resumed = submit(text, file=str(rollout), version="2.0.2", store=store, now=T0)
    assert not resumed and new.version == "2.0.2" and not new.phase.terminal


def test_heartbeat_keeps_the_lease_through_a_step_longer_than_the_lease(
        tmp_path: Path) -> None:
    import time
    from datetime import UTC
    from datetime import datetime as dt

    from canary.clock import SystemClock
    from canary.errors import ConflictError
    from canary.model import GateResult
    from canary.store.lease import LeaseOwner

    now = dt.now(UTC)
    store = SQLiteStore(f"{tmp_path}/state.db")
    store.create(new_state(revision=0, created_at=now, updated_at=now))
    other, seen = SQLiteStore(f"{tmp_path}/state.db"), []

    class SlowGate:
        def run(self, state: RolloutState, step: str) -> GateResult:
            time.sleep(1.0)  # five times the lease below
            try:
                other.acquire_lease("checkout", LeaseOwner.here(), ttl=0.2, now=dt.now(UTC))
                seen.append("taken")
            except ConflictError:
                seen.append("refused")
            return GateResult(ok=True, step=step, message="ok")

    r = Runner(name="checkout", spec=SPEC, plan=plan(gate_steps=("migrate",)), store=store,
               router=FakeRouter(), clock=SystemClock(), gate=SlowGate(), lease_ttl=0.2)
    r.run(timeout=2.5)
    other.close()
    store.close()
    assert seen == ["refused"]  # the owner was alive all along: never taken over



def test_a_router_down_for_ten_minutes_is_one_event_row(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    r = make(store, router, clock)
    r.tick()
    router.down = True
    for _ in range(600):
        clock.advance(1)
        r.tick()
    errors = [e for e in store.events("r1") if e.kind == "router-error"]
    assert len(errors) == 1 and errors[0].data["count"] == 600
    assert errors[0].data["last_at"] == clock.now().isoformat()
