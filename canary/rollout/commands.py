"""Operator intent, recorded: the one place that decides whether pause, resume, abort,
promote or retry applies to a rollout and CAS-saves it for the running controller.

The CLI (`canary abort NAME`) and the HTTP API (`POST .../abort`) both call this, so the
rules cannot drift apart. A command that does not apply raises ConflictError (exit 2 in
the CLI, 409 in the API).
"""

from __future__ import annotations

import dataclasses
import time

from canary.errors import ConflictError, TemporaryError
from canary.model import Command
from canary.state import RolloutState
from canary.store.base import StateStore


def record_command(store: StateStore, name: str, command: Command) -> RolloutState:
    """CAS-save ``command`` on the latest rollout called ``name``; the saved state."""
    for _ in range(50):
        state = store.get(name)
        if state.phase not in command.applies_in:  # the machine's own rule (model.py)
            if command is Command.RETRY:
                raise ConflictError(f"rollout {name!r} is {state.phase.value}: only a failed "
                                    "or aborted rollout can be retried")
            if state.phase.terminal:
                raise ConflictError(f"rollout {name!r} already ended ({state.phase.value}): "
                                    f"nothing to {command.value}")
            where = " or ".join(sorted(p.value for p in command.applies_in))
            raise ConflictError(f"rollout {name!r} is {state.phase.value}: "
                                f"{command.value} applies only while it is {where}")
        try:
            return store.save(dataclasses.replace(state, command=command))
        except ConflictError:
            time.sleep(0.05)  # the controller saved in between: read again
    raise TemporaryError(f"rollout {name!r} kept changing; try again")
