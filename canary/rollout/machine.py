"""decide(state, observation, plan) -> (state, actions): the whole rollout logic, pure.

No I/O and no clock: the runner observes (time, weights read from the router, the gate's
result, an analysis verdict), calls ``decide``, saves what it returns, and only then acts.
Actions are absolute (weights) or carry an idempotency key (notifications), so a crash
between save and act is repaired by the next tick without running anything twice.

The allowed phase changes are the table ``TRANSITIONS`` below, which ``decide()`` checks
on every step (a change outside it is a bug: the runner holds the rollout for a human)
and tests/rollout/test_transitions.py walks. Commands are acted on first, then the
phase's own step.

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
    Outcome,
    Phase,
    Verdict,
)
from canary.rollout import hookflow
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
    GateStatus,
    MetricCounts,
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
    _rollback(step, kind=FailureKind.DEADLINE, reason=f"{why}; it was at: {s.message}",
              notice="rolled-back")
    return True


def _command_applies(state: RolloutState, command: Command) -> bool:
    return state.phase in command.applies_in


# -- phases -------------------------------------------------------------------------------


def _pending(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    if s.run.started_at is None:
        step.state = replace(s, run=replace(s.run, started_at=step.now))
    if _next_gate_step(step.state, plan) is not None:
        _start_gate(step, plan)
    else:
        _before_traffic(step, plan)


def _before_traffic(step: Step, plan: Plan) -> None:
    """After the gate: preRollout hooks, then the first stage."""
    status = hookflow.hooks(step, plan, "preRollout")
    if status == "done":
        _enter_stage(step, 0, plan)
    elif status == "failed":
        _rollback(step, kind=FailureKind.HOOK, notice="rolled-back",
                  reason=f"preRollout hook {hookflow.failed_hook(step.state, 'preRollout')} failed")
    else:
        step.state = replace(step.state, phase=Phase.PENDING)


def _next_gate_step(state: RolloutState, plan: Plan) -> str | None:
    return next((g for g in plan.gate_steps if g not in state.gate.done), None)


def _start_gate(step: Step, plan: Plan) -> None:
    gate = step.state.gate
    name = _next_gate_step(step.state, plan)
    assert name is not None
    attempt = gate.attempts + 1 if gate.step == name else 1
    step.state = replace(
        step.state, phase=Phase.GATING, message=f"migration gate: {name}",
        gate=GateProgress(status=GateStatus.RUNNING, attempts=attempt, started_at=step.now,
                          step=name, done=gate.done))
    step.event("gate-started", f"gate step {name} started (attempt {attempt})", step=name)
    step.actions.append(RunGate(name, attempt))


def _gating(step: Step, obs: Observation, plan: Plan) -> None:
    gate, result = step.state.gate, obs.gate
    if result is None:
        # The step was running when the previous controller died. Lint and compat checks
        # only read, so they run again; a migration only when declared idempotent, since
        # only a human knows what a half-applied migration did.
        if gate.step != "migrate" or plan.gate_idempotent:
            step.event("gate-resumed", f"gate step {gate.step} was interrupted: running it "
                                       "again")
            _start_gate(step, plan)
        else:
            reason = ("the migration was interrupted while running and is not marked "
                      "idempotent: check the database by hand, then retry")
            s = step.state
            step.state = replace(
                s, phase=Phase.FAILED, message=reason,
                gate=_gate_done(gate, step.now, GateStatus.INTERRUPTED),
                run=replace(s.run, needs_human=True, finished_at=step.now,
                            failure_kind=FailureKind.GATE, reason=reason))
            step.event("needs-human", reason)
            step.notify("needs-human")
        return
    if result.ok:
        done = (*gate.done, gate.step)
        step.state = replace(step.state, gate=GateProgress(
            status=GateStatus.RUNNING, attempts=gate.attempts, started_at=gate.started_at,
            finished_at=step.now, message=result.message, step=gate.step, done=done))
        step.event("gate-succeeded", result.message, step=gate.step,
                   output=result.output[-4000:])
        if _next_gate_step(step.state, plan) is not None:
            _start_gate(step, plan)
        else:
            step.state = replace(step.state, gate=_gate_done(
                step.state.gate, step.now, GateStatus.SUCCEEDED, result.message))
            _before_traffic(step, plan)
    else:
        step.state = replace(
            step.state, gate=_gate_done(gate, step.now, GateStatus.FAILED, result.message))
        step.event("gate-failed", result.message, step=gate.step, output=result.output[-4000:])
        _rollback(step, kind=FailureKind.GATE, notice="gate-failed",
                  reason=f"migration gate ({gate.step}) failed: {result.message}")


def _gate_done(gate: GateProgress, now: datetime, status: GateStatus,
               message: str = "") -> GateProgress:
    return GateProgress(status=status, attempts=gate.attempts, started_at=gate.started_at,
                        finished_at=now, message=message or gate.message, step=gate.step,
                        done=gate.done)


def _progressing(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    # preStage hooks run before this stage's traffic moves; a match or mirror stage (weight
    # 0) moves no weight, so its hooks run on entry (recorded by key: never twice).
    zero = plan.stages[s.stage_index].weight == 0
    if s.stage.started_at is None and (s.desired_weight != s.actual_weight or zero):
        status = hookflow.hooks(step, plan, "preStage")
        if status == "running":
            return
        if status == "failed":
            _rollback(step, kind=FailureKind.HOOK, notice="rolled-back",
                      reason=f"preStage hook {hookflow.failed_hook(s, 'preStage')} failed at "
                             f"stage {s.stage_index + 1}")
            return
    if obs.weights is None or obs.weights.canary != s.desired_weight:
        _apply_weight(step, obs)
        return
    now = step.now
    stage = plan.stages[s.stage_index]
    if s.stage.started_at is None:
        s = step.state
        step.state = replace(
            s, stage=replace(s.stage, started_at=now,
                             pause_until=now + timedelta(seconds=stage.pause),
                             next_analysis_at=now + timedelta(seconds=plan.interval)),
            message=f"stage {s.stage_index + 1}/{len(plan.stages)}: {stage.weight}% "
                    "on the canary")
        step.event("stage-reached", f"{stage.weight}% of traffic on {s.version}",
                   stage=s.stage_index + 1, weight=stage.weight)
        if plan.notify_stages:
            step.notify("stage")
        return
    if obs.verdict is not None and _judge(step, obs.verdict, plan):
        return
    s = step.state
    passed = not plan.analysis or s.stage.outcome is Outcome.PASSED
    until = s.stage.pause_until
    if s.run.skip is not Skip.NONE or (until is not None and now >= until and passed):
        if s.run.skip is not Skip.FULL:
            status = hookflow.hooks(step, plan, "postStage")
            if status == "running":
                return
            if status == "failed":
                _rollback(step, kind=FailureKind.HOOK, notice="rolled-back",
                          reason=f"postStage hook {hookflow.failed_hook(s, 'postStage')} failed "
                                 f"at stage {s.stage_index + 1}")
                return
        _advance(step, plan)
    elif until is not None and now >= until and _held_too_long(s, plan):
        step.state = replace(
            s, phase=Phase.PAUSED, stage=replace(s.stage, paused_remaining=0.0),
            message="held: analysis stayed inconclusive past its limit; "
                    "promote, resume or abort")
        step.event("held", step.state.message)
        step.notify("held")


def _held_too_long(s: RolloutState, plan: Plan) -> bool:
    return any(s.stage.counts.get(name, MetricCounts()).inconclusive > lim.inconclusive_limit
               for name, lim in plan.limits.items() if not lim.dry_run)


def _judge(step: Step, verdict: Verdict, plan: Plan) -> bool:
    """Count the verdict per metric; roll back (and return True) when a limit is crossed."""
    s = step.state
    counts = dict(s.stage.counts)
    crossed: list[str] = []
    for r in verdict.results:
        c = counts.get(r.name, MetricCounts()).after(r.outcome)
        counts[r.name] = c
        lim = plan.limits.get(r.name, MetricLimits())
        if r.dry_run or lim.dry_run:
            continue
        if c.failures > lim.failure_limit:
            crossed.append(r.message if lim.failure_limit == 0 else
                           f"{r.message} [failed {c.failures} checks in this stage, "
                           f"{lim.failure_limit} allowed]")
        elif lim.consecutive_failure_limit is not None and \
                c.consecutive_failures > lim.consecutive_failure_limit:
            crossed.append(f"{r.message} [failed {c.consecutive_failures} checks in a row, "
                           f"{lim.consecutive_failure_limit} allowed]")
        elif c.consecutive_errors >= lim.consecutive_error_limit:
            crossed.append(f"{r.message} [could not be measured {c.consecutive_errors} times "
                           "in a row]")
    step.state = replace(
        s, last_analysis_at=verdict.at,
        stage=replace(s.stage, counts=counts, outcome=verdict.outcome,
                      next_analysis_at=step.now + timedelta(seconds=plan.interval)),
        run=replace(s.run, last_results=verdict.results,
                    judge_memory=verdict.memory or s.run.judge_memory))
    step.event("analysis", f"analysis {verdict.outcome.value}", outcome=verdict.outcome.value,
               results=[r.to_json() for r in verdict.results])
    if not crossed:
        if verdict.promote_stage and verdict.outcome is Outcome.PASSED:
            # early promotion: the evidence is in, end the stage
            step.state = replace(step.state, run=replace(step.state.run, skip=Skip.STAGE))
            step.event("early-promotion", "the sequential judge has evidence the canary is "
                                          "no worse: ending the stage early")
        return False
    # Each reason is the metric's own message: name, value, threshold, window, query.
    detail = "; ".join(crossed)
    _rollback(step, kind=FailureKind.ANALYSIS, reason=detail, notice="rolled-back")
    return True


def _advance(step: Step, plan: Plan) -> None:
    nxt = step.state.stage_index + 1
    # The next stage moves weight up, or is a match or mirror stage (weight 0) before the
    # weighted ones; `promote --full` has set 100% and skips whatever is left.
    if nxt < len(plan.stages) and (plan.stages[nxt].weight > step.state.desired_weight
                                   or plan.stages[nxt].weight == step.state.desired_weight == 0):
        _enter_stage(step, nxt, plan)
        return
    if not step.state.run.promotion_confirmed:
        status = hookflow.hooks(step, plan, "confirmPromotion")
        if status == "running":
            return
        if status == "failed":
            # A confirmation gate that says no waits for a human, it does not roll back.
            s = step.state
            hook = hookflow.failed_hook(s, "confirmPromotion")
            step.state = replace(
                s, phase=Phase.PAUSED, stage=replace(s.stage, paused_remaining=0.0),
                run=replace(s.run, skip=Skip.NONE),
                message=f"confirmPromotion hook {hook} did not confirm: `canary promote` "
                        "to promote anyway, `canary abort` to roll back")
            step.event("held", step.state.message)
            step.notify("held")
            return
    already = step.state.desired_weight == 100
    step.state = replace(step.state, phase=Phase.PROMOTING, desired_weight=100,
                         message="promoting")
    step.event("promoting", "all stages passed: promoting")
    if not already:
        step.actions.append(SetWeights(100))


def _enter_stage(step: Step, index: int, plan: Plan) -> None:
    s = step.state
    weight = plan.stages[index].weight
    step.state = replace(
        s, phase=Phase.PROGRESSING, stage_index=index, desired_weight=weight,
        # a new stage, its clocks not started; failure limits are per stage, errors in a
        # row carry over
        stage=StageProgress(entered_at=step.now, counts={
            k: MetricCounts(consecutive_errors=v.consecutive_errors)
            for k, v in s.stage.counts.items()}),
        run=replace(s.run, skip=Skip.NONE if s.run.skip is Skip.STAGE else s.run.skip),
        message=f"shifting {weight}% of traffic to {s.version}")
    step.event("stage-started", f"stage {index + 1}/{len(plan.stages)}: setting {weight}%",
               stage=index + 1, weight=weight)
    if plan.hooks.get("preStage"):
        _progressing(step, Observation(now=step.now), plan)  # preStage hooks first
    else:
        step.actions.append(SetWeights(weight))


def _apply_weight(step: Step, obs: Observation) -> None:
    """Level-triggered: whatever the router says, ask again for the desired weight."""
    s = step.state
    if obs.weights is not None and s.stage.started_at is not None:
        step.event("drift", f"router reports {obs.weights.canary}% but the rollout wants "
                            f"{s.desired_weight}%: re-applying", actual=obs.weights.canary)
    step.actions.append(SetWeights(s.desired_weight))


def _paused(step: Step, obs: Observation, plan: Plan) -> None:
    if obs.weights is None or obs.weights.canary != step.state.desired_weight:
        _apply_weight(step, obs)


def _promoting(step: Step, obs: Observation, plan: Plan) -> None:
    # 100% on the canary first; promote hooks (e.g. upgrade the stable fleet) then send
    # traffic back to the stable servers, now running the new version.
    s = step.state
    if plan.hooks.get("promote") and s.desired_weight == 100:
        if obs.weights is None or obs.weights.canary != 100:
            _apply_weight(step, obs)
            return
        status = hookflow.hooks(step, plan, "promote")
        if status == "running":
            return
        if status == "failed":
            _rollback(step, kind=FailureKind.HOOK, notice="rolled-back",
                      reason=f"promote hook {hookflow.failed_hook(s, 'promote')} failed")
            return
        step.state = replace(step.state, desired_weight=0,
                             message="promote hooks done: draining the canary")
    if obs.weights is None or obs.weights.canary != step.state.desired_weight:
        _apply_weight(step, obs)
        return
    post = hookflow.hooks(step, plan, "postRollout", stop_on_failure=False)
    if post == "running":
        return
    note = ""
    if post == "failed":
        note = f" (postRollout hook {hookflow.failed_hook(s, 'postRollout')} failed)"
    step.state = replace(step.state, phase=Phase.SUCCEEDED,
                         run=replace(step.state.run, finished_at=step.now),
                         message=f"promoted {s.version}{note}")
    step.event("promoted", f"{s.version} promoted{note}")
    step.notify("promoted")


def _rolling_back(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    if obs.weights is not None and obs.weights.canary == 0:
        # Traffic is on stable: only now run rollback hooks and compensations, so a
        # hanging hook cannot keep users on the broken version.
        hooks = hookflow.hooks(step, plan, "rollback", stop_on_failure=False)
        if hooks == "running":
            return
        undo = hookflow.compensations(step, plan)
        if undo == "running":
            return
        aborted = s.run.failure_kind is FailureKind.ABORT
        human = hooks == "failed" or undo == "failed"
        step.state = replace(
            step.state, phase=Phase.ABORTED if aborted else Phase.FAILED,
            run=replace(step.state.run, finished_at=step.now),
            message=f"{'aborted' if aborted else 'rolled back'}: traffic is on "
                    f"{s.stable_version or 'stable'}")
        step.event("rolled-back", "router confirms 100% on stable", reason=s.run.reason)
        if human:
            _needs_human(step, step.state.message + "; a rollback hook or compensation "
                                                    "failed: a human must check")
            step.event("needs-human", step.state.message)
            step.notify("needs-human")
        return
    if s.router_failures >= plan.rollback_router_failure_limit and not s.run.needs_human:
        _needs_human(step, f"cannot roll back: {obs.router_error}")
        step.event("needs-human", f"router unreachable during rollback: {obs.router_error}")
        step.notify("needs-human")
    step.actions.append(SetWeights(0))


def _needs_human(step: Step, message: str) -> None:
    step.state = replace(step.state, run=replace(step.state.run, needs_human=True),
                         message=message)


def _terminal(step: Step, obs: Observation, plan: Plan) -> None:
    return None


def _rollback(step: Step, *, kind: FailureKind, reason: str, notice: str) -> None:
    # Route back to stable first, then alert: a slow or dead Slack must never keep users
    # on the broken version (the runner acts in list order).
    s = step.state
    step.state = replace(s, phase=Phase.ROLLING_BACK, desired_weight=0,
                         run=replace(s.run, failure_kind=kind, reason=reason),
                         message=f"rolling back: {reason}")
    step.event("rolling-back", reason, failure=kind.value)
    step.actions.append(SetWeights(0))
    step.notify(notice)


# -- commands -----------------------------------------------------------------------------


def _cmd_abort(step: Step, obs: Observation, plan: Plan) -> None:
    _rollback(step, kind=FailureKind.ABORT, reason="aborted by an operator", notice="aborted")


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
        _progressing(step, Observation(now=step.now, weights=obs.weights), plan)


def _cmd_promote_full(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    step.state = replace(
        s, phase=Phase.PROGRESSING, stage_index=len(plan.stages) - 1,
        stage=replace(s.stage, paused_remaining=None),
        run=replace(s.run, skip=Skip.FULL, promotion_confirmed=True))
    _advance(step, plan)


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
    Phase.PENDING: _pending,
    Phase.GATING: _gating,
    Phase.PROGRESSING: _progressing,
    Phase.PAUSED: _paused,
    Phase.PROMOTING: _promoting,
    Phase.ROLLING_BACK: _rolling_back,
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
