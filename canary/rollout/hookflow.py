"""Hooks inside a transition: run a point's hooks one at a time, record results by
idempotency key, and undo completed hooks in reverse order (saga compensation)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from canary.model import HookResult
from canary.rollout.vocabulary import Plan, RunHook, Step
from canary.state import HookKey, RolloutState

# What a point's hooks came to: a RunHook was emitted, one failed, or all are done.
HookStatus = Literal["running", "failed", "done"]


def hook_key(s: RolloutState, point: str, name: str) -> HookKey:
    return HookKey(s.attempt, point, s.stage_index + 1, name)


def record_hook(step: Step, result: HookResult) -> None:
    s = step.state
    done = dict(s.hooks_done)
    done[HookKey.parse(result.key)] = result.ok
    step.state = replace(s, hooks_done=done, run=replace(s.run, hook_running=None))
    kind = "hook-succeeded" if result.ok else "hook-failed"
    step.event(kind, result.message, key=result.key, attempts=result.attempts,
               output=result.output[-4000:])


def hooks(step: Step, plan: Plan, point: str, *, stop_on_failure: bool = True) -> HookStatus:
    """Run the hooks of ``point`` one by one: "running" (a RunHook was emitted), "failed"
    (one failed; with stop_on_failure the rest do not run) or "done"."""
    s = step.state
    failed = False
    for name in plan.hooks.get(point, ()):
        key = hook_key(s, point, name)
        if key in s.hooks_done:
            if not s.hooks_done[key]:
                failed = True
                if stop_on_failure:
                    return "failed"
            continue
        run_hook(step, RunHook(key))
        return "running"
    return "failed" if failed else "done"


def run_hook(step: Step, action: RunHook) -> None:
    s = step.state
    step.state = replace(
        s, run=replace(s.run, hook_running=action.key),
        message=f"running {action.point} hook {action.name}"
                + (" (compensation)" if action.compensate else ""))
    step.event("hook-started", step.state.message, key=str(action.key))
    step.actions.append(action)


def failed_hook(s: RolloutState, point: str) -> str:
    return next((k.name for k, ok in s.hooks_done.items()
                 if not ok and k.point == point and k.attempt == s.attempt
                 and not k.compensate), "?")


def compensations(step: Step, plan: Plan) -> HookStatus:
    """Undo completed hooks in reverse order; "running", "failed" or "done"."""
    s = step.state
    completed = [k for k, ok in s.hooks_done.items()
                 if ok and k.attempt == s.attempt and not k.compensate
                 and (k.point, k.name) in plan.compensable and k.point != "rollback"]
    failed = False
    for key in reversed(completed):
        undo = key.compensation()
        if undo in s.hooks_done:
            failed = failed or not s.hooks_done[undo]
            continue
        run_hook(step, RunHook(undo))
        return "running"
    return "failed" if failed else "done"
