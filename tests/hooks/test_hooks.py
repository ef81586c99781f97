"""Hooks in whole rollouts: order, failure at each point, compensations in reverse order,
idempotency keys across restarts, deadlines. Hooks are real processes writing to a log."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from canary.clock import ManualClock
from canary.model import Command, Outcome, Phase
from canary.rollout.machine import Plan
from canary.rollout.runner import Runner, exit_code
from canary.specs import HookCall, HookSpec, RolloutSpec, RouterSpec, Stage
from canary.store.sqlite import SQLiteStore
from canary.testing import FakeRouter, RecordingNotifier, ScriptedAnalyzer
from tests.rollout.helpers import T0, new_state

STAGES = (Stage(25, 10), Stage(100, 10))
RECORD = ("import json, os, sys; "
          "open(sys.argv[1], 'a').write(json.dumps({'hook': sys.argv[2], "
          "'key': os.environ['CANARY_IDEMPOTENCY_KEY'], 'stage': os.environ['CANARY_STAGE'], "
          "'weight': os.environ['CANARY_WEIGHT']}) + '\\n'); "
          "sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)")


def hook(log: Path, point: str, name: str, *, fail: bool = False, undo: bool = False,
         retries: int = 0) -> HookSpec:
    def call(label: str, code: int = 0) -> HookCall:
        return HookCall(command=(sys.executable, "-c", RECORD, str(log), label, str(code)))
    return HookSpec(name=name, point=point, call=call(f"{point}:{name}", 1 if fail else 0),
                    timeout=10, retries=retries, backoff=0.01,
                    compensate=call(f"undo:{name}") if undo else None)


def ran(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [json.loads(line)["hook"] for line in log.read_text().splitlines()]


def runner(tmp: Path, hooks: Sequence[HookSpec], *, outcomes: Sequence[Outcome] = (
        Outcome.PASSED,), notifier: RecordingNotifier | None = None, router: FakeRouter | None
        = None, clock: ManualClock | None = None, **plan_kw: object) -> Runner:
    store = SQLiteStore(str(tmp / "state.db"))
    try:
        store.get("checkout")
    except Exception:
        store.create(new_state(revision=0))
    spec = RolloutSpec(name="checkout", service="checkout", version="2.0.0",
                       stable_version="1.0.0", router=RouterSpec(type="fake"), stages=STAGES,
                       policy="p", hooks=tuple(hooks), base_dir=str(tmp))
    plan = Plan(stages=STAGES, interval=5,
                hooks={p: tuple(h.name for h in hooks if h.point == p)
                       for p in {h.point for h in hooks}},
                compensable=frozenset((h.point, h.name) for h in hooks if h.compensate),
                **plan_kw)  # type: ignore[arg-type]
    return Runner(name="checkout", spec=spec, plan=plan, store=store,
                  router=router or FakeRouter(), clock=clock or ManualClock(T0),
                  analyzer=ScriptedAnalyzer(outcomes), notifiers=[notifier] if notifier else [])


def test_hooks_run_in_order_in_a_successful_rollout(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hooks = [hook(log, p, "h") for p in ("preRollout", "preStage", "postStage",
                                         "confirmPromotion", "promote", "postRollout")]
    r = runner(tmp_path, hooks)
    final = r.run()
    assert final.phase is Phase.SUCCEEDED
    assert ran(log) == ["preRollout:h", "preStage:h", "postStage:h", "preStage:h",
                        "postStage:h", "confirmPromotion:h", "promote:h", "postRollout:h"]
    # preStage ran before its stage's traffic moved: it saw the previous weight's stage
    stages = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(s["hook"], s["stage"]) for s in stages][:3] == [
        ("preRollout:h", "0"), ("preStage:h", "1"), ("postStage:h", "1")]
    # with a promote hook, traffic goes back to the (upgraded) stable servers
    router = r.router
    assert isinstance(router, FakeRouter) and router.history == [25, 100, 0]


@pytest.mark.parametrize(("failing", "completed"), [
    ("preRollout", []),
    ("preStage", ["preRollout"]),
    ("postStage", ["preRollout", "preStage"]),
    ("promote", ["preRollout", "preStage", "postStage", "preStage", "postStage"]),
])
def test_failure_at_each_point_rolls_back_and_compensates_in_reverse(
        tmp_path: Path, failing: str, completed: list[str]) -> None:
    log = tmp_path / "log"
    hooks = [hook(log, p, p, undo=True, fail=p == failing)
             for p in ("preRollout", "preStage", "postStage", "promote")]
    note = RecordingNotifier()
    r = runner(tmp_path, hooks, notifier=note)
    final = r.run()
    assert final.phase is Phase.FAILED and exit_code(final) == 1
    assert final.run.failure_kind == "hook" and failing in final.reason
    assert ran(log) == ([f"{p}:{p}" for p in completed] + [f"{failing}:{failing}"]
                        + [f"undo:{p}" for p in reversed(completed)])
    assert isinstance(r.router, FakeRouter) and r.router.weights.canary == 0
    assert [n.event for n in note.sent] == ["rolled-back"]


def test_compensation_order_is_reverse_of_completion(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hooks = [hook(log, "preRollout", "provision", undo=True),
             hook(log, "preRollout", "warm-cache", undo=True),
             hook(log, "postStage", "notify-sales", undo=True)]
    final = runner(tmp_path, hooks,
                   outcomes=[Outcome.PASSED, Outcome.PASSED, Outcome.FAILED]).run()
    assert final.phase is Phase.FAILED
    assert ran(log) == ["preRollout:provision", "preRollout:warm-cache",
                        "postStage:notify-sales", "undo:notify-sales", "undo:warm-cache",
                        "undo:provision"]


def test_failed_compensation_needs_a_human(tmp_path: Path) -> None:
    log = tmp_path / "log"
    bad_undo = HookSpec(name="provision", point="preRollout",
                        call=HookCall(command=(sys.executable, "-c", "pass")),
                        compensate=HookCall(command=(sys.executable, "-c", "exit(2)")),
                        retries=1, backoff=0.01)
    note = RecordingNotifier()
    final = runner(tmp_path, [bad_undo, hook(log, "preStage", "x", fail=True)],
                   notifier=note).run()
    assert final.phase is Phase.FAILED and final.needs_human and exit_code(final) == 4
    assert [n.event for n in note.sent] == ["rolled-back", "needs-human"]


def test_retries_then_success(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    flaky = HookSpec(name="flaky", point="preRollout", retries=3, backoff=0.01, call=HookCall(
        command=(sys.executable, "-c", f"import pathlib; p = pathlib.Path({str(counter)!r}); "
                 "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
                 "exit(0 if n >= 2 else 1)")))
    final = runner(tmp_path, [flaky]).run()
    assert final.phase is Phase.SUCCEEDED and counter.read_text() == "3"


def test_confirm_promotion_failure_waits_for_an_operator(tmp_path: Path) -> None:
    log = tmp_path / "log"
    note = RecordingNotifier()
    r = runner(tmp_path, [hook(log, "confirmPromotion", "qa-signoff", fail=True)],
               notifier=note)
    held = r.run(timeout=120)
    assert held.phase is Phase.PAUSED and "confirmPromotion" in held.message
    assert exit_code(held) == 5 and [n.event for n in note.sent] == ["held"]
    r.store.save(dataclasses.replace(held, command=Command.PROMOTE))
    final = r.run()
    assert final.phase is Phase.SUCCEEDED
    assert ran(log) == ["confirmPromotion:qa-signoff"]  # not asked again


def test_a_hook_that_was_running_at_a_crash_reruns_with_the_same_key(tmp_path: Path) -> None:
    log = tmp_path / "log"
    r = runner(tmp_path, [hook(log, "preRollout", "h")])
    r.tick()  # decides to run the hook and runs it ...
    state = r.store.get("checkout")
    assert state.run.hook_running is not None
    r.store.release_lease("checkout", r.owner)  # as for a killed process (see store tests)
    r2 = runner(tmp_path, [hook(log, "preRollout", "h")])  # ... but its result was lost
    final = r2.run()
    assert final.phase is Phase.SUCCEEDED
    keys = [json.loads(line)["key"] for line in log.read_text().splitlines()]
    assert len(keys) == 2 and keys[0] == keys[1]  # same idempotency key both times
    assert keys[0].startswith(state.id + "/1/preRollout/0/h")
    # and once recorded as done it never runs again
    runner(tmp_path, [hook(log, "preRollout", "h")]).run()
    assert len(log.read_text().splitlines()) == 2


def test_stage_that_cannot_complete_hits_its_progress_deadline(tmp_path: Path) -> None:
    note = RecordingNotifier()

    class Stuck(FakeRouter):
        def set_weights(self, weights: object) -> None:  # accepts, never applies
            return None

    r = runner(tmp_path, [], router=Stuck(), notifier=note, progress_deadline=30)
    final = r.run()
    assert final.phase is Phase.FAILED and final.run.failure_kind == "deadline"
    assert "progressDeadline" in final.reason and [n.event for n in note.sent] == [
        "rolled-back"]
    assert 30 <= (r.clock.now() - T0).total_seconds() <= 35  # not a second more


def test_rollout_deadline(tmp_path: Path) -> None:
    r = runner(tmp_path, [], outcomes=[Outcome.INCONCLUSIVE], deadline=60, limits={})
    final = r.run()
    assert final.phase is Phase.FAILED and final.run.failure_kind == "deadline"
    assert 60 <= (r.clock.now() - T0).total_seconds() <= 62
