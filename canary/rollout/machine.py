"""decide(state, observation, plan) -> (state, actions): the whole rollout logic, pure.

No I/O and no clock: the runner observes (time, weights read from the router, the gate's
result, an analysis verdict), calls ``decide``, saves what it returns, and only then acts.
Actions are absolute (weights) or carry an idempotency key (notifications), so a crash
between save and act is repaired by the next tick without running anything twice.

The allowed phase changes are the table ``TRANSITIONS`` below, which ``decide()`` checks
on every step (a change outside it is a bug: the runner holds the rollout for a human)
and tests/rollout/test_transitions.py walks. Commands are acted on first (their
handlers are here), then the phase's own step: before traffic in gating.py, stages and
promotion in stages.py, rolling back in rollback.py.

Hooks run at their points (preRollout, preStage, postStage, confirmPromotion, promote,
postRollout, rollback) one at a time as RunHook actions; each carries an idempotency key
recorded in the state once it finished, so a hook is never run twice after it completed
and is re-run with the same key if the controller died while it ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from canary.model import (
    Command,
    Phase,
)
from canary.rollout import gating, hookflow, rollback, stages
from canary.rollout.vocabulary import (
    Action,
    Decision,
    MetricLimits,
    Notify,
    Observation,
    Plan,
    RunGate,
    RunHook,
    SetWeights,
    Step,
)
from canary.state import (
    AttemptProgress,
    FailureKind,
    GateProgress,
    RolloutState,
    Skip,
    StageProgress,
)

__all__ = ["Action", "Decision", "MetricLimits", "Notify", "Observation", "Plan",
           "RunGate", "RunHook", "SetWeights", "analysis_due", "decide", "next_wakeup"]


P = Phase
# Every phase change decide() may make, and why. The same phase again is always allowed.
TRANSITIONS: frozenset[tuple[Phase, Phase]] = frozenset({
    (P.PENDING, P.GATING),              # the migration gate's first step
    (P.PENDING, P.PROGRESSING),         # no gate (or it is done): the first stage
    (P.PENDING, P.ROLLING_BACK),        # a preRollout hook failed, or abort
    (P.GATING, P.PENDING),              # gate passed, preRollout hooks are running
    (P.GATING, P.PROGRESSING),          # gate passed, no preRollout hooks: the first stage
    (P.GATING, P.ROLLING_BACK),         # the gate or a preRollout hook failed, deadline, abort
    (P.GATING, P.FAILED),               # a non-idempotent migration was interrupted: a human
    (P.PROGRESSING, P.PAUSED),          # held (inconclusive, confirmPromotion said no), pause
    (P.PROGRESSING, P.PROMOTING),       # every stage passed
    (P.PROGRESSING, P.ROLLING_BACK),    # analysis, a hook, a deadline, abort
    (P.PAUSED, P.PROGRESSING),          # resume, promote (this stage), promote --full
    (P.PAUSED, P.PROMOTING),            # promote at the last stage, promote --full
    (P.PAUSED, P.ROLLING_BACK),         # abort
    (P.PROMOTING, P.SUCCEEDED),         # the router confirms the final split
    (P.PROMOTING, P.ROLLING_BACK),      # a promote hook failed, deadline, abort
    (P.ROLLING_BACK, P.FAILED),         # the router confirms 0%, hooks and compensations ran
    (P.ROLLING_BACK, P.ABORTED),        # the same, after an operator's abort
    (P.FAILED, P.PENDING),              # retry
    (P.ABORTED, P.PENDING),             # retry
})


class TransitionError(RuntimeError):
    """decide() produced a phase change that TRANSITIONS does not allow: a bug."""


def decide(state: RolloutState, obs: Observation, plan: Plan) -> Decision:
    decision = _decide(state, obs, plan)
    change = (state.phase, decision.state.phase)
    if change[0] is not change[1] and change not in TRANSITIONS:
        raise TransitionError(f"rollout {state.name}: {change[0].value} -> "
                              f"{change[1].value} is not an allowed transition")
    return decision


def _decide(state: RolloutState, obs: Observation, plan: Plan) -> Decision:
    step = Step(replace(state, updated_at=obs.now), obs.now)
    if obs.weights is not None:
        step.state = replace(step.state, actual_weight=obs.weights.canary, router_failures=0)
    elif not state.phase.terminal and state.phase is not Phase.PENDING:
        step.state = replace(step.state, router_failures=state.router_failures + 1)
    if obs.hook is not None:
        hookflow.record_hook(step, obs.hook)
    command = state.command
    if command is not None:
        step.state = replace(step.state, command=None)
        handler = _COMMANDS.get((state.phase, command)) or _COMMANDS.get((None, command))
        if handler is not None and _command_applies(state, command):
            step.event("command", f"operator: {command.value}", command=command.value)
            if state.run.failure_kind is FailureKind.INTERNAL:  # the operator looked
                s = step.state
                step.state = replace(s, run=replace(s.run, needs_human=False,
                                                    failure_kind=FailureKind.NONE))
            handler(step, obs, plan)
            return step.done()
        step.event("command-ignored", f"{command.value} does nothing while {state.phase.value}")
    if not _deadline_passed(step, plan):
        _PHASES[step.state.phase](step, obs, plan)
    return step.done()


def _deadline_passed(step: Step, plan: Plan) -> bool:
    """A stage or rollout that cannot finish in time rolls back instead of hanging."""
    s = step.state
    if s.phase not in (Phase.GATING, Phase.PROGRESSING, Phase.PROMOTING):
        return False
    started = s.run.started_at or s.created_at
    entered = s.stage.entered_at
    if plan.deadline is not None and (step.now - started).total_seconds() > plan.deadline:
        why = f"the rollout did not finish within its deadline ({plan.deadline:g}s)"
    elif (plan.progress_deadline is not None and s.phase is Phase.PROGRESSING
          and entered is not None
          and (step.now - entered).total_seconds() > plan.progress_deadline):
        why = (f"stage {s.stage_index + 1} did not complete within its progressDeadline "
               f"({plan.progress_deadline:g}s)")
    else:
        return False
    rollback.rollback(step, kind=FailureKind.DEADLINE, reason=f"{why}; it was at: {s.message}",
                      notice="rolled-back")
    return True


def _command_applies(state: RolloutState, command: Command) -> bool:
    return state.phase in command.applies_in


def _terminal(step: Step, obs: Observation, plan: Plan) -> None:
    return None


# -- commands -----------------------------------------------------------------------------


def _cmd_abort(step: Step, obs: Observation, plan: Plan) -> None:
    rollback.rollback(step, kind=FailureKind.ABORT, reason="aborted by an operator",
                      notice="aborted")


def _cmd_pause(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    until = s.stage.pause_until
    left = max(0.0, (until - step.now).total_seconds()) if until else None
    step.state = replace(s, phase=Phase.PAUSED, stage=replace(s.stage, paused_remaining=left),
                         message="paused by an operator")


def _cmd_resume(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    if s.phase is not Phase.PAUSED:
        return
    until = s.stage.pause_until
    if s.stage.paused_remaining is not None and s.stage.started_at is not None:
        until = step.now + timedelta(seconds=s.stage.paused_remaining)
    step.state = replace(
        s, phase=Phase.PROGRESSING, message="resumed by an operator",
        stage=replace(s.stage, pause_until=until, paused_remaining=None,
                      next_analysis_at=step.now, counts={}, outcome=None))


def _cmd_promote(step: Step, obs: Observation, plan: Plan) -> None:
    # Promote means "this stage passed": its postStage hooks still run, then it advances.
    s = step.state
    last = s.stage_index >= len(plan.stages) - 1
    step.state = replace(
        s, phase=Phase.PROGRESSING, stage=replace(s.stage, paused_remaining=None),
        run=replace(s.run, skip=Skip.STAGE,
                    promotion_confirmed=s.run.promotion_confirmed or last))
    if step.state.stage.started_at is not None:
        stages.progressing(step, Observation(now=step.now, weights=obs.weights), plan)


def _cmd_promote_full(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    step.state = replace(
        s, phase=Phase.PROGRESSING, stage_index=len(plan.stages) - 1,
        stage=replace(s.stage, paused_remaining=None),
        run=replace(s.run, skip=Skip.FULL, promotion_confirmed=True))
    stages.advance(step, plan)


def _cmd_retry(step: Step, obs: Observation, plan: Plan) -> None:
    # A retried rollout starts clean: stale analysis must not re-abort it. Completed gate
    # steps never run again; hooks are keyed by attempt, so this one's run afresh.
    s = step.state
    step.state = replace(
        s, phase=Phase.PENDING, attempt=s.attempt + 1, stage_index=-1, desired_weight=0,
        stage=StageProgress(), run=AttemptProgress(started_at=step.now),
        gate=GateProgress(done=s.gate.done), message="retry requested")


Handler = Callable[[Step, Observation, Plan], None]

_PHASES: dict[Phase, Handler] = {
    Phase.PENDING: gating.pending,
    Phase.GATING: gating.gating,
    Phase.PROGRESSING: stages.progressing,
    Phase.PAUSED: stages.paused,
    Phase.PROMOTING: stages.promoting,
    Phase.ROLLING_BACK: rollback.rolling_back,
    Phase.SUCCEEDED: _terminal,
    Phase.FAILED: _terminal,
    Phase.ABORTED: _terminal,
}

_COMMANDS: dict[tuple[Phase | None, Command], Handler] = {
    (None, Command.ABORT): _cmd_abort,
    (Phase.PROGRESSING, Command.PAUSE): _cmd_pause,
    (Phase.PAUSED, Command.RESUME): _cmd_resume,
    (Phase.PROGRESSING, Command.PROMOTE): _cmd_promote,
    (Phase.PAUSED, Command.PROMOTE): _cmd_promote,
    (None, Command.PROMOTE_FULL): _cmd_promote_full,
    (None, Command.RETRY): _cmd_retry,
}


def analysis_due(state: RolloutState, now: datetime) -> bool:
    """Whether the runner should measure before deciding this tick."""
    due = state.stage.next_analysis_at
    return (state.phase is Phase.PROGRESSING and state.stage.started_at is not None
            and due is not None and now >= due)


def next_wakeup(state: RolloutState, now: datetime, *, poll: float) -> float:
    """Seconds until something is due; never more than ``poll`` so commands are seen."""
    due = [t for t in (state.stage.next_analysis_at, state.stage.pause_until)
           if t is not None and t > now]
    wait = min([(t - now).total_seconds() for t in due], default=poll)
    return max(0.0, min(wait, poll))
