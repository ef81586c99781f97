"""Teams and PagerDuty behind the real runner: one message per notification across a
kill -9 and a restart, and PagerDuty's incident opened by a failed run is resolved by the
next successful run of the same rollout."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from canary.clock import ManualClock
from canary.model import Command, Outcome, Phase, Weights
from canary.notify.base import Notifier
from canary.notify.pagerduty import PagerDutyNotifier
from canary.notify.teams import TeamsNotifier
from canary.rollout.commands import record_command
from canary.rollout.machine import Plan
from canary.rollout.runner import Runner
from canary.specs import RolloutSpec, RouterSpec
from canary.store.sqlite import SQLiteStore
from canary.testing import FakeRouter, ScriptedAnalyzer
from tests.rollout.helpers import STAGES, T0, new_state, plan

from .receivers import PAGERDUTY_PATH, TEAMS_PATH, SchemaReceiver

KEY_ENV = "CANARY_TEST_PD_RUNNER_KEY"
SPEC = RolloutSpec(name="checkout", service="checkout", version="2.0.0", stable_version="1.0.0",
                   router=RouterSpec(type="fake"), stages=STAGES, policy="default")


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


class CrashingRouter(FakeRouter):
    def __init__(self, crash_on_set: int) -> None:
        super().__init__()
        self.crash_on_set, self.sets = crash_on_set, 0

    def set_weights(self, weights: Weights) -> None:
        self.sets += 1
        if self.sets == self.crash_on_set:
            raise Crash()
        super().set_weights(weights)


def runner(store: SQLiteStore, router: FakeRouter, clock: ManualClock,
           notifiers: Sequence[Notifier], *, outcomes: Sequence[Outcome] = (Outcome.PASSED,),
           p: Plan | None = None) -> Runner:
    return Runner(name="checkout", spec=SPEC, plan=p or plan(), store=store, router=router,
                  clock=clock, analyzer=ScriptedAnalyzer(outcomes), notifiers=notifiers,
                  poll=1.0)


@pytest.fixture()
def store(tmp_path: object) -> SQLiteStore:
    s = SQLiteStore(f"{tmp_path}/state.db")
    s.create(new_state(revision=0, created_at=T0, updated_at=T0))
    return s


def notifiers(r: SchemaReceiver) -> list[Notifier]:
    """Fresh notifiers, as a restarted controller builds them."""
    return [TeamsNotifier(r.url(TEAMS_PATH + "?sig=s3cr3t")),
            PagerDutyNotifier(routing_key_env=KEY_ENV, url=r.url(PAGERDUTY_PATH))]


def test_no_duplicate_after_a_crash_and_restart(store: SQLiteStore,
                                                schema_receiver: SchemaReceiver,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k" * 32)
    router, clock = CrashingRouter(crash_on_set=3), ManualClock(T0)
    p = plan(notify_stages=True)
    with pytest.raises(Crash):
        runner(store, router, clock, notifiers(schema_receiver), p=p).run()
    sent_before = len(schema_receiver.requests)
    clock.advance(5)
    final = runner(store, router, clock, notifiers(schema_receiver), p=p).run()
    runner(store, router, clock, notifiers(schema_receiver), p=p).run()  # once more: done

    assert final.phase is Phase.SUCCEEDED
    assert schema_receiver.refused == []
    notified = [e for e in store.events(final.id) if e.kind == "notified"]
    teams = [r for r in schema_receiver.requests if r.path.startswith(TEAMS_PATH)]
    paged = [r for r in schema_receiver.requests if r.path == PAGERDUTY_PATH]
    assert 1 <= sent_before // 2 < len(notified)
    # one Teams card and one PagerDuty event per notification, crash or not
    assert len(teams) == len(paged) == len(notified) == len(STAGES) + 1
    assert all(r.status == 202 for r in schema_receiver.requests)
    assert {r.payload["event_action"] for r in paged} == {"resolve"}


def test_failed_run_triggers_and_the_retried_run_resolves(store: SQLiteStore,
                                                          schema_receiver: SchemaReceiver,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv(KEY_ENV, "k" * 32)
    pd: list[Notifier] = [PagerDutyNotifier(routing_key_env=KEY_ENV,
                                            url=schema_receiver.url(PAGERDUTY_PATH))]
    router, clock = FakeRouter(), ManualClock(T0)
    failed = runner(store, router, clock, pd, outcomes=[Outcome.FAILED]).run()
    assert failed.phase is Phase.FAILED
    record_command(store, "checkout", Command.RETRY)  # `canary retry checkout`
    succeeded = runner(store, router, clock, pd).run()
    assert succeeded.phase is Phase.SUCCEEDED and succeeded.attempt == failed.attempt + 1

    events = [r.payload for r in schema_receiver.requests if r.status == 202]
    assert schema_receiver.refused == []
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["payload"]["class"] == "rolled-back"
    assert events[0]["dedup_key"] == events[1]["dedup_key"] == (
        f"canary/checkout/checkout/{failed.id}")
