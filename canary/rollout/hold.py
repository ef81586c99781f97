"""Holding a rollout after an unexpected error in a tick: where its traffic is, for a human.

A bug must never promote, never be reported as a rollback, and never fail every tick
forever: the runner records one event and one alert per hold, after which ticks do nothing
until an operator resumes, promotes or aborts (canary/rollout/runner.py).
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable, Sequence

from canary.clock import Clock
from canary.errors import ConflictError
from canary.model import Event, Phase
from canary.rollout.alerts import AlertDesk
from canary.rollout.vocabulary import Notify
from canary.state import FailureKind, RolloutState
from canary.store.base import StateStore

log = logging.getLogger("canary.runner")


def held(state: RolloutState) -> bool:
    """Held after an internal error and not yet looked at by an operator."""
    return (state.run.needs_human and state.run.failure_kind is FailureKind.INTERNAL
            and not state.phase.terminal)


def hold(name: str, state: RolloutState, exc: Exception, *, store: StateStore, clock: Clock,
         report: Callable[[RolloutState, Sequence[Event]], None],
         alerts: AlertDesk) -> RolloutState:
    """Hold rollout ``name`` (``state`` is what the failed tick read) after ``exc``."""
    what = f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))[-4000:]
    for _ in range(20):
        latest = store.get(name)
        if held(latest):
            log.warning("rollout %s: still held after an internal error: %s", name, what)
            return latest  # held already: no second event, no second alert
        log.error("rollout %s: internal error, holding it for a human", name, exc_info=exc)
        at = clock.now()
        event = Event(at=at, kind="internal-error", data={"traceback": trace},
                      message=f"internal error in a tick: {what}")
        if latest.phase.terminal:
            # It had ended before the error: the ending stands, the error is recorded.
            store.append_event(latest.id, dataclasses.replace(
                event, key=f"internal:{latest.id}:{latest.revision}"))
            return latest
        weight = latest.actual_weight if latest.actual_weight is not None \
            else latest.desired_weight
        key = f"{latest.id}:{latest.attempt}:internal:{latest.revision}"
        new = dataclasses.replace(
            latest, phase=Phase.PAUSED, updated_at=at, desired_weight=weight,
            stage=dataclasses.replace(latest.stage, paused_remaining=None),
            run=dataclasses.replace(latest.run, needs_human=True,
                                    failure_kind=FailureKind.INTERNAL),
            # the command this tick failed on is consumed; one that landed since is kept
            command=None if latest.command == state.command else latest.command,
            alerts_owed={**latest.alerts_owed, key: "needs-human"},
            message=f"held at {weight}% after an internal error ({what}): a human must "
                    "look; `canary resume` to go on, `canary abort` to roll back")
        try:
            saved = store.save(new, events=[event, Event(
                at=at, kind="needs-human", message=new.message)])
        except ConflictError:
            continue
        try:
            report(saved, [event])
        except Exception:  # noqa: BLE001 - the reporter may be what is broken
            log.exception("reporter failed while holding %s", name)
        alerts.send(saved, Notify("needs-human", key))
        return saved
    raise ConflictError(f"rollout {name!r} kept changing while being held")
