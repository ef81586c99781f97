"""Every transition of decide(): table-driven, time given explicitly, nothing sleeps."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from canary.model import Command, GateResult, Outcome, Phase
from canary.rollout.machine import (
    Decision,
    MetricLimits,
    Notify,
    RunGate,
    SetWeights,
    analysis_due,
    decide,
    next_wakeup,
)
from canary.state import (
    AttemptProgress,
    FailureKind,
    GateProgress,
    GateStatus,
    MetricCounts,
    RolloutState,
    StageProgress,
)
from tests.rollout.helpers import at, new_state, obs, plan


def weights_asked(d: Decision) -> list[int]:
    return [a.canary for a in d.actions if isinstance(a, SetWeights)]


def notices(d: Decision) -> list[str]:
    return [a.event for a in d.actions if isinstance(a, Notify)]


def in_stage(index: int, weight: int, *, started: float = 0, outcome: Outcome | None = None,
             counts: Mapping[str, MetricCounts] | None = None, **kw: object) -> RolloutState:
    stage = StageProgress(started_at=at(started), pause_until=at(started + 60),
                          next_analysis_at=at(started + 10), outcome=outcome,
                          counts=counts or {})
    return new_state(phase=Phase.PROGRESSING, stage_index=index, desired_weight=weight,
                     stage=stage, actual_weight=weight, **kw)


def test_pending_without_gate_starts_first_stage() -> None:
    d = decide(new_state(), obs(0, 0), plan())
    assert d.state.phase is Phase.PROGRESSING
    assert (d.state.stage_index, d.state.desired_weight) == (0, 5)
    assert weights_asked(d) == [5]
    assert [e.kind for e in d.events] == ["stage-started"]


def test_pending_with_gate_runs_gate_before_any_traffic() -> None:
    d = decide(new_state(), obs(0, 0), plan(gate_steps=("migrate",)))
    assert d.state.phase is Phase.GATING
    assert d.actions == (RunGate("migrate", 1),)
    assert d.state.gate.status == "running"


@pytest.mark.parametrize(("ok", "phase", "asked", "notice"), [
    (True, Phase.PROGRESSING, [5], []),
    (False, Phase.ROLLING_BACK, [0], ["gate-failed"]),
])
def test_gate_result(ok: bool, phase: Phase, asked: list[int], notice: list[str]) -> None:
    s = new_state(phase=Phase.GATING, gate=GateProgress(status=GateStatus.RUNNING, attempts=1,
                                                        step="migrate"))
    d = decide(s, obs(1, 0, gate=GateResult(ok=ok, message="m")), plan(gate_steps=("migrate",)))
    assert d.state.phase is phase
    assert weights_asked(d) == asked
    assert notices(d) == notice
    assert d.state.gate.status == ("succeeded" if ok else "failed")


def test_completed_gate_is_not_rerun_after_retry() -> None:
    s = new_state(phase=Phase.PENDING, gate=GateProgress(status=GateStatus.SUCCEEDED, attempts=1,
                                                         done=("migrate",)))
    d = decide(s, obs(0, 0), plan(gate_steps=("migrate",)))
    assert d.state.phase is Phase.PROGRESSING and not any(isinstance(a, RunGate)
                                                          for a in d.actions)


@pytest.mark.parametrize(("step", "idempotent", "phase", "human"), [
    ("migrate", True, Phase.GATING, False),
    ("migrate", False, Phase.FAILED, True),
    ("lint", False, Phase.GATING, False),
    ("compat", False, Phase.GATING, False),
])
def test_gate_interrupted_by_a_crash(step: str, idempotent: bool, phase: Phase,
                                     human: bool) -> None:
    steps = ("lint", "migrate", "compat")
    done = steps[:steps.index(step)]
    s = new_state(phase=Phase.GATING, gate=GateProgress(status=GateStatus.RUNNING, attempts=1,
                                                        step=step, done=done))
    d = decide(s, obs(5, 0), plan(gate_steps=steps, gate_idempotent=idempotent))
    assert d.state.phase is phase
    assert d.state.needs_human is human
    if phase is Phase.GATING:
        assert d.actions == (RunGate(step, 2),)
    else:
        assert notices(d) == ["needs-human"]


def test_gate_steps_run_in_order_each_once() -> None:
    p = plan(gate_steps=("lint", "migrate", "compat"))
    d = decide(new_state(), obs(0, 0), p)
    ran = []
    for t in range(1, 4):
        (action,) = d.actions
        assert isinstance(action, RunGate)
        ran.append(action.step)
        d = decide(d.state, obs(t, 0, gate=GateResult(ok=True, message="ok",
                                                      step=action.step)), p)
    assert ran == ["lint", "migrate", "compat"]
    assert d.state.phase is Phase.PROGRESSING and d.state.gate.status == "succeeded"
    assert d.state.gate.done == ("lint", "migrate", "compat")


def test_failed_compat_check_rejects_before_traffic() -> None:
    s = new_state(phase=Phase.GATING, gate=GateProgress(status=GateStatus.RUNNING, attempts=1,
                                                        step="compat", done=("migrate",)))
    d = decide(s, obs(1, 0, gate=GateResult(ok=False, message="old version broke",
                                            step="compat")),
               plan(gate_steps=("migrate", "compat")))
    assert d.state.phase is Phase.ROLLING_BACK and "compat" in d.state.reason
    assert weights_asked(d) == [0] and notices(d) == ["gate-failed"]


def test_stage_clock_starts_only_when_router_confirms() -> None:
    s = new_state(phase=Phase.PROGRESSING, stage_index=0, desired_weight=5)
    not_yet = decide(s, obs(1, 0), plan())
    assert not_yet.state.stage_started_at is None and weights_asked(not_yet) == [5]
    confirmed = decide(s, obs(2, 5), plan())
    assert confirmed.state.stage_started_at == at(2)
    assert confirmed.state.pause_until == at(62)
    assert confirmed.state.stage.next_analysis_at == at(12)


def test_pause_end_with_passing_analysis_advances() -> None:
    s = in_stage(0, 5, outcome=Outcome.PASSED)
    d = decide(s, obs(61, 5), plan())
    assert (d.state.stage_index, d.state.desired_weight) == (1, 25)
    assert weights_asked(d) == [25]


@pytest.mark.parametrize("outcome", [None, Outcome.INCONCLUSIVE, Outcome.ERROR])
def test_pause_end_without_a_pass_never_advances(outcome: Outcome | None) -> None:
    s = in_stage(0, 5, outcome=outcome, counts={"error-rate": MetricCounts()})
    d = decide(s, obs(61, 5), plan(limits={"error-rate": MetricLimits(inconclusive_limit=5)}))
    assert d.state.stage_index == 0 and d.state.phase is Phase.PROGRESSING
    assert weights_asked(d) == []


def test_inconclusive_past_its_limit_holds_the_stage_and_alerts() -> None:
    s = in_stage(0, 5, counts={"error-rate": MetricCounts(inconclusive=1)},
                 outcome=Outcome.INCONCLUSIVE)
    d = decide(s, obs(61, 5), plan())
    assert d.state.phase is Phase.PAUSED
    assert notices(d) == ["held"]


def test_no_metrics_at_all_advances_on_time() -> None:
    d = decide(in_stage(0, 5), obs(61, 5), plan(analysis=False))
    assert d.state.stage_index == 1


def test_last_stage_passing_promotes_then_succeeds() -> None:
    s = in_stage(3, 100, outcome=Outcome.PASSED)
    d = decide(s, obs(61, 100), plan())
    assert d.state.phase is Phase.PROMOTING and weights_asked(d) == []  # already at 100
    done = decide(d.state, obs(62, 100), plan())
    assert done.state.phase is Phase.SUCCEEDED
    assert done.state.stable_version == "1.0.0"  # what it replaced; the store records 2.0.0
    assert notices(done) == ["promoted"]


def test_failed_analysis_rolls_back_first_then_alerts() -> None:
    d = decide(in_stage(0, 5), obs(10, 5, outcome=Outcome.FAILED), plan())
    assert d.state.phase is Phase.ROLLING_BACK
    assert isinstance(d.actions[0], SetWeights) and d.actions[0].canary == 0
    assert isinstance(d.actions[1], Notify) and d.actions[1].event == "rolled-back"
    assert "error-rate" in d.state.reason


@pytest.mark.parametrize(("limits", "outcomes", "rolled_back_at"), [
    (MetricLimits(failure_limit=0), [Outcome.FAILED], 1),
    (MetricLimits(failure_limit=2), [Outcome.FAILED, Outcome.PASSED, Outcome.FAILED,
                                     Outcome.FAILED], 4),
    (MetricLimits(failure_limit=9, consecutive_failure_limit=1),
     [Outcome.FAILED, Outcome.PASSED, Outcome.FAILED, Outcome.FAILED], 4),
    (MetricLimits(consecutive_error_limit=3), [Outcome.ERROR, Outcome.ERROR, Outcome.PASSED,
                                               Outcome.ERROR, Outcome.ERROR, Outcome.ERROR], 6),
    (MetricLimits(dry_run=True), [Outcome.FAILED] * 5, None),
])
def test_counting_rules(limits: MetricLimits, outcomes: list[Outcome],
                        rolled_back_at: int | None) -> None:
    s, p = in_stage(0, 5, started=0), plan(limits={"error-rate": limits})
    s = dataclasses.replace(s, stage=dataclasses.replace(s.stage, pause_until=at(10_000)))
    seen = None
    for i, o in enumerate(outcomes, start=1):
        d = decide(s, obs(10 * i, 5, outcome=o, dry_run=limits.dry_run), p)
        s = d.state
        if s.phase is Phase.ROLLING_BACK:
            seen = i
            break
    assert seen == rolled_back_at


def test_rollback_confirmed_ends_failed_and_aborted() -> None:
    s = new_state(phase=Phase.ROLLING_BACK, desired_weight=0,
                  run=AttemptProgress(failure_kind=FailureKind.ANALYSIS))
    assert decide(s, obs(1, 0), plan()).state.phase is Phase.FAILED
    a = dataclasses.replace(s, run=AttemptProgress(failure_kind=FailureKind.ABORT))
    assert decide(a, obs(1, 0), plan()).state.phase is Phase.ABORTED


def test_rollback_with_router_down_keeps_trying_then_needs_a_human() -> None:
    s = new_state(phase=Phase.ROLLING_BACK, desired_weight=0,
                  run=AttemptProgress(failure_kind=FailureKind.ANALYSIS))
    p = plan(rollback_router_failure_limit=3)
    for i in range(1, 4):
        d = decide(s, obs(i, None), p)
        s = d.state
        assert weights_asked(d) == [0]
        assert s.phase is Phase.ROLLING_BACK
    assert s.needs_human and notices(d) == ["needs-human"]
    again = decide(s, obs(5, None), p)
    assert notices(again) == []  # alerted once


def test_router_down_while_progressing_never_advances() -> None:
    s = in_stage(0, 5, outcome=Outcome.PASSED)
    d = decide(s, obs(61, None), plan())
    assert d.state.stage_index == 0 and weights_asked(d) == [5]
    assert d.state.router_failures == 1


def test_drift_is_reapplied() -> None:
    d = decide(in_stage(1, 25), obs(20, 0), plan())
    assert weights_asked(d) == [25]
    assert [e.kind for e in d.events] == ["drift"]


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED,
                                   Phase.PROMOTING])
def test_abort_from_any_live_phase(phase: Phase) -> None:
    s = dataclasses.replace(in_stage(1, 25), phase=phase, command=Command.ABORT)
    d = decide(s, obs(20, 25), plan())
    assert d.state.phase is Phase.ROLLING_BACK and d.state.run.failure_kind is FailureKind.ABORT
    assert weights_asked(d) == [0] and notices(d) == ["aborted"]
    assert d.state.command is None


def test_pause_keeps_remaining_time_and_resume_restores_it() -> None:
    s = dataclasses.replace(in_stage(0, 5, started=0), command=Command.PAUSE)
    paused = decide(s, obs(20, 5), plan()).state
    assert paused.phase is Phase.PAUSED and paused.stage.paused_remaining == 40
    resumed = decide(dataclasses.replace(paused, command=Command.RESUME), obs(500, 5), plan()).state
    assert resumed.phase is Phase.PROGRESSING and resumed.pause_until == at(540)


def test_promote_skips_the_rest_of_the_stage_and_full_skips_all() -> None:
    s = dataclasses.replace(in_stage(0, 5), command=Command.PROMOTE)
    assert decide(s, obs(5, 5), plan()).state.desired_weight == 25
    f = dataclasses.replace(in_stage(0, 5), command=Command.PROMOTE_FULL)
    d = decide(f, obs(5, 5), plan())
    assert d.state.phase is Phase.PROMOTING and weights_asked(d) == [100]


def test_promote_never_skips_the_gate() -> None:
    s = new_state(phase=Phase.GATING, gate=GateProgress(status=GateStatus.RUNNING, attempts=1,
                                                        step="migrate"),
                  command=Command.PROMOTE_FULL)
    d = decide(s, obs(1, 0, gate=GateResult(ok=False, message="boom")),
               plan(gate_steps=("migrate",)))
    assert d.state.phase is Phase.ROLLING_BACK


def test_retry_starts_clean_and_ignored_commands_are_recorded() -> None:
    s = new_state(phase=Phase.FAILED, stage_index=1, command=Command.RETRY,
                  run=AttemptProgress(failure_kind=FailureKind.ANALYSIS, reason="bad"),
                  stage=StageProgress(counts={"error-rate": MetricCounts(failures=3)}))
    d = decide(s, obs(1, 0), plan())
    assert d.state.phase is Phase.PENDING and d.state.attempt == 2
    assert d.state.stage.counts == {} and d.state.reason == ""
    done = new_state(phase=Phase.SUCCEEDED, command=Command.PAUSE)
    d2 = decide(done, obs(1, 100), plan())
    assert d2.state.phase is Phase.SUCCEEDED and d2.state.command is None
    assert [e.kind for e in d2.events] == ["command-ignored"]


def test_notification_keys_are_stable_per_event_and_attempt() -> None:
    s = in_stage(0, 5)
    k1 = decide(s, obs(10, 5, outcome=Outcome.FAILED), plan()).actions[1]
    k2 = decide(s, obs(11, 5, outcome=Outcome.FAILED), plan()).actions[1]
    assert k1 == k2
    k3 = decide(dataclasses.replace(s, attempt=2), obs(10, 5, outcome=Outcome.FAILED),
                plan()).actions[1]
    assert k3 != k1


def test_failure_limits_reset_per_stage_but_errors_carry_over() -> None:
    s = in_stage(0, 5, outcome=Outcome.PASSED,
                 counts={"error-rate": MetricCounts(failures=1, consecutive_errors=2)})
    d = decide(s, obs(61, 5), plan())
    assert d.state.stage.counts["error-rate"] == MetricCounts(consecutive_errors=2)


def test_analysis_due_and_wakeup() -> None:
    s = in_stage(0, 5)
    assert not analysis_due(s, at(9)) and analysis_due(s, at(10))
    assert next_wakeup(s, at(5), poll=1.0) == 1.0
    assert next_wakeup(s, at(9.5), poll=1.0) == pytest.approx(0.5)
    assert not analysis_due(dataclasses.replace(s, phase=Phase.PAUSED), at(20))
