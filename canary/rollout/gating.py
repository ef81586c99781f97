"""Before traffic moves: the migration gate's steps, then preRollout hooks, then the first
stage. A gate step is persisted as it completes and never runs twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from canary.model import Phase
from canary.rollout import hookflow, rollback, stages
from canary.rollout.vocabulary import Observation, Plan, RunGate, Step
from canary.state import FailureKind, GateProgress, GateStatus, RolloutState


def pending(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    if s.run.started_at is None:
        step.state = replace(s, run=replace(s.run, started_at=step.now))
    if _next_gate_step(step.state, plan) is not None:
        _start_gate(step, plan)
    else:
        before_traffic(step, plan)


def before_traffic(step: Step, plan: Plan) -> None:
    """After the gate: preRollout hooks, then the first stage."""
    status = hookflow.hooks(step, plan, "preRollout")
    if status == "done":
        stages.enter_stage(step, 0, plan)
    elif status == "failed":
        hook = hookflow.failed_hook(step.state, "preRollout")
        rollback.rollback(step, kind=FailureKind.HOOK, notice="rolled-back",
                          reason=f"preRollout hook {hook} failed")
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


def gating(step: Step, obs: Observation, plan: Plan) -> None:
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
            before_traffic(step, plan)
    else:
        step.state = replace(
            step.state, gate=_gate_done(gate, step.now, GateStatus.FAILED, result.message))
        step.event("gate-failed", result.message, step=gate.step, output=result.output[-4000:])
        rollback.rollback(step, kind=FailureKind.GATE, notice="gate-failed",
                          reason=f"migration gate ({gate.step}) failed: {result.message}")


def _gate_done(gate: GateProgress, now: datetime, status: GateStatus,
               message: str = "") -> GateProgress:
    return GateProgress(status=status, attempts=gate.attempts, started_at=gate.started_at,
                        finished_at=now, message=message or gate.message, step=gate.step,
                        done=gate.done)
