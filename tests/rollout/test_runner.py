"""The runner with test doubles: whole rollouts, crashes between save and act, commands."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import pytest

from canary.clock import ManualClock
from canary.model import Command, GateResult, Outcome, Phase, Weights
from canary.notify.base import Notifier
from canary.notify.slack_bot import SlackBotNotifier
from canary.rollout.machine import Plan
from canary.rollout.runner import Runner, exit_code
from canary.rollout.threads import StoreThreads
from canary.specs import RolloutSpec, RouterSpec
from canary.state import FailureKind, RolloutState
from canary.store.sqlite import SQLiteStore
from canary.testing import FakeRouter, RecordingNotifier, ScriptedAnalyzer
from lab.slack_receiver import SlackReceiver
from tests.rollout.helpers import STAGES, T0, new_state, plan


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs, nothing is cleaned up."""


class CrashingRouter(FakeRouter):
    def __init__(self, crash_on_set: int) -> None:
        super().__init__()
        self.crash_on_set = crash_on_set
        self.sets = 0

    def set_weights(self, weights: Weights) -> None:
        self.sets += 1
        if self.sets == self.crash_on_set:
            raise Crash()
        super().set_weights(weights)


class Gate:
    def __init__(self, results: Sequence[GateResult]) -> None:
        self.results, self.runs = list(results), 0

    def run(self, state: RolloutState, step: str) -> GateResult:
        self.runs += 1
        return self.results[min(self.runs, len(self.results)) - 1]


SPEC = RolloutSpec(name="checkout", service="checkout", version="2.0.0", stable_version="1.0.0",
                   router=RouterSpec(type="fake"), stages=STAGES, policy="default")


def make(store: SQLiteStore, router: FakeRouter, clock: ManualClock, *,
         outcomes: Sequence[Outcome] = (Outcome.PASSED,), p: Plan | None = None,
         gate: Gate | None = None, notifier: Notifier | None = None) -> Runner:
    return Runner(name="checkout", spec=SPEC, plan=p or plan(), store=store, router=router,
                  clock=clock, analyzer=ScriptedAnalyzer(outcomes), gate=gate,
                  notifiers=[notifier] if notifier else [], poll=1.0)


@pytest.fixture()
def store(tmp_path: object) -> SQLiteStore:
    s = SQLiteStore(f"{tmp_path}/state.db")
    s.create(new_state(revision=0, created_at=T0, updated_at=T0))
    return s


def test_healthy_rollout_is_promoted_through_every_stage(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()
    final = make(store, router, clock, notifier=note).run()
    assert final.phase is Phase.SUCCEEDED and exit_code(final) == 0
    assert router.history == [5, 25, 50, 100]
    assert router.weights == Weights(100)
    assert [n.event for n in note.sent] == ["promoted"]
    # four stages of 60 s pause, each needing a passing check: about 4 minutes, no sleeping
    assert 240 <= (clock.now() - T0).total_seconds() <= 300


def test_failing_canary_rolls_back_at_first_stage_and_alerts_once(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()
    final = make(store, router, clock, outcomes=[Outcome.FAILED], notifier=note).run()
    assert final.phase is Phase.FAILED and exit_code(final) == 1
    assert router.history == [5, 0]
    assert [n.event for n in note.sent] == ["rolled-back"]
    assert note.sent[0].stage == 1 and note.sent[0].results[0].name == "error-rate"


def test_crash_between_save_and_act_resumes_without_repeating(store: SQLiteStore) -> None:
    # Crash on the 2nd set_weights (the 25% step) right after its state was saved.
    router, clock = CrashingRouter(crash_on_set=2), ManualClock(T0)
    with pytest.raises(Crash):
        make(store, router, clock).run()
    saved = store.get("checkout")
    assert (saved.stage_index, saved.desired_weight) == (1, 25)
    assert router.weights == Weights(5)  # the action never happened
    clock.advance(5)
    final = make(store, router, clock).run()
    assert final.phase is Phase.SUCCEEDED
    assert router.history == [5, 25, 50, 100]  # no stage repeated, none lost
    kinds = [e.kind for e in store.events(saved.id)]
    assert kinds.count("stage-started") == 4 and kinds.count("stage-reached") == 4


def test_resume_waits_only_for_what_is_left_of_the_pause(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    r = make(store, router, clock)
    while store.get("checkout").stage_started_at is None:
        r.tick()
    started = store.get("checkout").stage_started_at
    clock.advance(45)  # the controller is "dead" for 45 of the 60 s pause
    r2 = make(store, router, clock)
    while store.get("checkout").stage_index == 0:
        r2.tick()
        clock.advance(1)
    assert started is not None
    assert (clock.now() - started).total_seconds() <= 62


def test_notification_not_repeated_after_restart(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()
    make(store, router, clock, outcomes=[Outcome.FAILED], notifier=note).run()
    make(store, router, clock, outcomes=[Outcome.FAILED], notifier=note).run()
    assert [n.event for n in note.sent] == ["rolled-back"]


def test_slack_down_does_not_stop_the_rollback(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier(fail=True)
    final = make(store, router, clock, outcomes=[Outcome.FAILED], notifier=note).run()
    assert final.phase is Phase.FAILED and router.weights == Weights(0)
    assert "notify-failed" in [e.kind for e in store.events(final.id)]


def test_router_down_during_rollback_exits_needing_a_human(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()

    class DiesAfterFirstSet(FakeRouter):
        def set_weights(self, weights: Weights) -> None:
            super().set_weights(weights)
            if weights.canary == 5:
                self.down = True

    router = DiesAfterFirstSet()
    router.down = False
    r = make(store, router, clock, outcomes=[Outcome.FAILED], notifier=note)
    # the stage can never be confirmed: abort it by hand
    r.tick()
    s = store.get("checkout")
    store.save(dataclasses.replace(s, command=Command.ABORT))
    final = r.run()
    assert final.phase is Phase.ROLLING_BACK and final.needs_human
    assert exit_code(final) == 4
    assert [n.event for n in note.sent] == ["aborted", "needs-human"]


def test_gate_runs_once_and_failure_means_no_canary_traffic(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    gate = Gate([GateResult(ok=False, message="exit 1")])
    final = make(store, router, clock, p=plan(gate_steps=("migrate",)), gate=gate).run()
    assert final.phase is Phase.FAILED and final.run.failure_kind is FailureKind.GATE
    assert gate.runs == 1 and 5 not in router.history


def test_gate_passed_then_rollout_proceeds(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    gate = Gate([GateResult(ok=True, message="ok")])
    final = make(store, router, clock, p=plan(gate_steps=("migrate",)), gate=gate).run()
    assert final.phase is Phase.SUCCEEDED and gate.runs == 1


def test_timeout_leaves_state_to_resume(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    final = make(store, router, clock).run(timeout=30)
    assert exit_code(final) == 5 and final.phase is Phase.PROGRESSING
    assert make(store, router, clock).run().phase is Phase.SUCCEEDED


def test_notifications_name_their_run(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()
    final = make(store, router, clock, outcomes=[Outcome.FAILED], notifier=note).run()
    [sent] = note.sent
    assert (sent.rollout_id, sent.attempt) == (final.id, final.attempt)


def test_slack_bot_keeps_one_thread_across_a_restart(store: SQLiteStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_TEST_BOT_TOKEN", "xoxb-test-runner-token")
    router, clock = CrashingRouter(crash_on_set=3), ManualClock(T0)

    def bot() -> SlackBotNotifier:  # a fresh notifier and memory, as after a restart
        return SlackBotNotifier(token_env="CANARY_TEST_BOT_TOKEN", channel="#deploys",
                                api_url=api.url("/api"), threads=StoreThreads(store, clock))

    with SlackReceiver(echo=io.StringIO(), token="xoxb-test-runner-token") as api:
        with pytest.raises(Crash):
            make(store, router, clock, p=plan(notify_stages=True), notifier=bot()).run()
        before = len(api.payloads)
        clock.advance(5)
        final = make(store, router, clock, p=plan(notify_stages=True), notifier=bot()).run()
        messages = [r for r in api.requests if r.ok]

    assert final.phase is Phase.SUCCEEDED
    assert 1 <= before < len(messages)
    first, *rest = messages
    assert "thread_ts" not in first.payload
    assert rest and all(m.payload["thread_ts"] == first.ts for m in rest)
    threads = [e for e in store.events(final.id) if e.kind == "slack-thread"]
    assert [e.data for e in threads] == [{"ts": first.ts}]
