"""Rolling back: traffic to stable first, alerts after; once the router confirms 0%,
rollback hooks and the compensations of completed hooks in reverse order, then the end."""

from __future__ import annotations

from dataclasses import replace

from canary.model import Phase
from canary.rollout import hookflow
from canary.rollout.vocabulary import Observation, Plan, SetWeights, Step
from canary.state import FailureKind


def rollback(step: Step, *, kind: FailureKind, reason: str, notice: str) -> None:
    # Route back to stable first, then alert: a slow or dead Slack must never keep users
    # on the broken version (the runner acts in list order).
    s = step.state
    step.state = replace(s, phase=Phase.ROLLING_BACK, desired_weight=0,
                         run=replace(s.run, failure_kind=kind, reason=reason),
                         message=f"rolling back: {reason}")
    step.event("rolling-back", reason, failure=kind.value)
    step.actions.append(SetWeights(0))
    step.notify(notice)


def rolling_back(step: Step, obs: Observation, plan: Plan) -> None:
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
