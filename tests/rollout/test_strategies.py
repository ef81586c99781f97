"""Match, mirror and blue-green stages run on the one engine: the runner keeps the
router's matches and mirroring in step with the rollout, level-triggered like weights."""

from __future__ import annotations

import dataclasses

import pytest

from canary.clock import ManualClock
from canary.model import Outcome, Phase, Weights
from canary.rollout.runner import Runner, exit_code
from canary.routers.features import Routes
from canary.specs import RolloutSpec, RouterSpec, Stage
from canary.store.sqlite import SQLiteStore
from canary.testing import FakeRouter, RecordingNotifier, ScriptedAnalyzer
from tests.rollout.helpers import T0, new_state, plan

MATCH = {"header": "X-Canary", "value": "1"}
AB_MIRROR = (Stage(0, 60, match=True), Stage(0, 60, mirror=50), Stage(25, 60),
             Stage(100, 60))
BLUE_GREEN = (Stage(0, 60, match=True), Stage(100, 120))


def runner(store: SQLiteStore, router: FakeRouter, clock: ManualClock, *,
           stages: tuple[Stage, ...], outcomes: list[Outcome],
           note: RecordingNotifier | None = None, match: bool = True) -> Runner:
    spec = RolloutSpec(name="checkout", service="checkout", version="2.0.0",
                       stable_version="1.0.0",
                       router=RouterSpec(type="fake", options={"match": MATCH} if match else {}),
                       stages=stages, policy="default")
    return Runner(name="checkout", spec=spec, plan=plan(stages=stages), store=store,
                  router=router, clock=clock, analyzer=ScriptedAnalyzer(outcomes),
                  notifiers=[note] if note else [], poll=1.0)


@pytest.fixture()
def store(tmp_path: object) -> SQLiteStore:
    s = SQLiteStore(f"{tmp_path}/state.db")
    s.create(new_state(revision=0, created_at=T0, updated_at=T0))
    return s


def test_ab_then_mirror_then_weights_promotes_with_routes_in_step(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    final = runner(store, router, clock, stages=AB_MIRROR, outcomes=[Outcome.PASSED]).run()
    assert final.phase is Phase.SUCCEEDED and exit_code(final) == 0
    assert router.history == [0, 0, 25, 100]  # each stage asks for its weight once
    assert router.routes_history == [Routes(match=True), Routes(match=True, mirror=50),
                                     Routes(match=True), Routes()]
    assert router.weights == Weights(100) and router.routes == Routes()


def test_a_failure_in_the_mirror_stage_ends_the_match_and_the_mirror(store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()
    outcomes = [Outcome.PASSED] * 6 + [Outcome.FAILED]
    final = runner(store, router, clock, stages=AB_MIRROR, outcomes=outcomes, note=note).run()
    assert final.phase is Phase.FAILED and exit_code(final) == 1
    assert router.routes == Routes() and router.weights == Weights(0)
    assert Routes(match=True, mirror=50) in router.routes_history
    assert [n.event for n in note.sent] == ["rolled-back"]


def test_blue_green_switches_back_in_one_step_after_a_failed_post_promotion_check(
        store: SQLiteStore) -> None:
    router, clock, note = FakeRouter(), ManualClock(T0), RecordingNotifier()
    run = runner(store, router, clock, stages=BLUE_GREEN, outcomes=[Outcome.PASSED],
                 note=note)
    while store.get("checkout").stage_index < 1:
        run.tick()
        clock.advance(1)
    assert router.weights == Weights(100)  # one switch from 0 (preview) to 100
    assert router.history == [0, 100]
    run.analyzer = ScriptedAnalyzer([Outcome.FAILED])
    final = run.run()
    assert final.phase is Phase.FAILED and exit_code(final) == 1
    assert router.history[-2:] == [100, 0]  # back in one step, no stages on the way
    assert router.routes == Routes()
    assert [n.event for n in note.sent] == ["rolled-back"]


def test_a_match_left_on_keeps_the_rollback_unconfirmed(store: SQLiteStore) -> None:
    class StuckMatch(FakeRouter):
        """The router refuses to turn the match off until it is repaired."""

        stuck = True

        def set_routes(self, routes: Routes) -> None:
            if self.stuck and not routes.match:
                from canary.errors import RouterError
                raise RouterError("match cannot be removed right now")
            super().set_routes(routes)

    router, clock = StuckMatch(), ManualClock(T0)
    run = runner(store, router, clock, stages=AB_MIRROR, outcomes=[Outcome.FAILED])
    for _ in range(30):
        run.tick()
        clock.advance(1)
    state = store.get("checkout")
    assert state.phase is Phase.ROLLING_BACK  # weights are 0 but matching users are not
    assert router.routes.match
    router.stuck = False
    final = run.run()
    assert final.phase is Phase.FAILED and router.routes == Routes()


def test_routes_are_left_alone_when_the_rollout_uses_none(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    stages = (Stage(5, 60), Stage(100, 60))
    runner(store, router, clock, stages=stages, outcomes=[Outcome.PASSED], match=False).run()
    assert router.routes_history == []


def test_routes_drift_is_repaired(store: SQLiteStore) -> None:
    router, clock = FakeRouter(), ManualClock(T0)
    run = runner(store, router, clock, stages=AB_MIRROR, outcomes=[Outcome.PASSED])
    while store.get("checkout").phase is not Phase.PROGRESSING:
        run.tick()
        clock.advance(1)
    run.tick()
    router.routes = dataclasses.replace(router.routes, match=False)  # someone cleared it
    run.tick()
    assert router.routes == Routes(match=True)


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs, nothing is cleaned up."""


class CrashingRouter(FakeRouter):
    """Dies at its ``at``-th change (weights or routes), then works again."""

    at = 0
    changes = 0

    def _maybe_die(self) -> None:
        self.changes += 1
        if self.changes == self.at:
            raise Crash()

    def set_weights(self, weights: Weights) -> None:
        self._maybe_die()
        super().set_weights(weights)

    def set_routes(self, routes: Routes) -> None:
        self._maybe_die()
        super().set_routes(routes)


@pytest.mark.parametrize("fail_after_switch", [False, True], ids=["promoted", "switched-back"])
def test_blue_green_killed_at_every_change_resumes_exactly_once(
        tmp_path: object, fail_after_switch: bool) -> None:
    """Kill the controller at each router change of a blue-green rollout in turn (preview
    match on, the switch, the switch back, the match off); a fresh runner resumes it: the
    same ending, each stage reached once, one alert."""
    outcomes = [Outcome.PASSED] * 3 + ([Outcome.FAILED] if fail_after_switch else [])
    expected = Phase.FAILED if fail_after_switch else Phase.SUCCEEDED
    points = 0
    for at in range(1, 12):
        store = SQLiteStore(f"{tmp_path}/bg-{fail_after_switch}-{at}.db")
        store.create(new_state(revision=0, created_at=T0, updated_at=T0))
        router, clock, note = CrashingRouter(), ManualClock(T0), RecordingNotifier()
        router.at = at
        try:
            runner(store, router, clock, stages=BLUE_GREEN, outcomes=outcomes, note=note).run()
            crashed = False
        except Crash:
            crashed = True
            points += 1
            clock.advance(3)
            final = runner(store, router, clock, stages=BLUE_GREEN, outcomes=outcomes,
                           note=note).run()
        final = store.get("checkout")
        assert final.phase is expected, (at, final.phase)
        assert router.weights == Weights(0 if fail_after_switch else 100)
        assert router.routes == Routes()
        reached = [e.data.get("stage") for e in store.events(final.id)
                   if e.kind == "stage-reached"]
        assert sorted(reached) == sorted(set(reached)), (at, reached)  # none twice
        assert [n.event for n in note.sent] == (["rolled-back"] if fail_after_switch
                                                else ["promoted"]), at
        if not crashed:
            break  # past the last change: every point was tried
    assert points >= 4  # preview match on, the switch, (switch back,) match off
