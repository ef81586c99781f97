"""Hooks inside a transition: run a point's hooks one at a time, record results by
idempotency key, and undo completed hooks in reverse order (saga compensation)."""

from __future__ import annotations

from canary.model import HookResult
from canary.rollout.vocabulary import Plan, RunHook, Step
from canary.state import RolloutState


def hook_key(s: RolloutState, point: str, name: str) -> str:
    return f"{s.attempt}/{point}/{s.stage_index + 1}/{name}"


def record_hook(step: Step, result: HookResult) -> None:
    done = dict(step.state.hooks_done)
    done[result.key] = result.ok
    step.set(hooks_done=done, hook_running=None)
    kind = "hook-succeeded" if result.ok else "hook-failed"
    step.event(kind, result.message, key=result.key, attempts=result.attempts,
               output=result.output[-4000:])


def hooks(step: Step, plan: Plan, point: str, *, stop_on_failure: bool = True) -> str:
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
        run_hook(step, RunHook(key, point, name))
        return "running"
    return "failed" if failed else "done"


def run_hook(step: Step, action: RunHook) -> None:
    step.set(hook_running=action.key,
             message=f"running {action.point} hook {action.name}"
                     + (" (compensation)" if action.compensate else ""))
    step.event("hook-started", step.state.message, key=action.key)
    step.actions.append(action)


def failed_hook(s: RolloutState, point: str) -> str:
    return next((k.split("/", 3)[3] for k, ok in s.hooks_done.items()
                 if not ok and k.split("/")[1] == point and k.startswith(f"{s.attempt}/")), "?")


def compensations(step: Step, plan: Plan) -> str:
    """Undo completed hooks in reverse order; "running", "failed" or "done"."""
    s = step.state
    prefix = f"{s.attempt}/"
    completed = [k for k, ok in s.hooks_done.items()
                 if ok and k.startswith(prefix) and not k.endswith("#compensate")
                 and (k.split("/")[1], k.split("/", 3)[3]) in plan.compensable
                 and k.split("/")[1] != "rollback"]
    failed = False
    for key in reversed(completed):
        ckey = key + "#compensate"
        if ckey in s.hooks_done:
            failed = failed or not s.hooks_done[ckey]
            continue
        _, point, _, name = key.split("/", 3)
        run_hook(step, RunHook(ckey, point, name, compensate=True))
        return "running"
    return "failed" if failed else "done"
