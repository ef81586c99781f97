"""Following rollouts from outside: `canary status --watch` and shell completion of names.

Both only read the store, so they work whoever drives the rollout: a `canary deploy` in a
CI job, another terminal, or `canary serve` on the same store. Completion runs on every
<TAB>: it must answer fast and never fail, so a missing SQLite file is no names (and is
not created), and any error is no names.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from canary import defaults, exits
from canary.state import RolloutState
from canary.store.base import StateStore
from canary.store.registry import open_store

DEFAULT_STORE = defaults.STORE_URL


def store_url(explicit: str | None) -> str:
    """--store (typer already fills it from $CANARY_STORE), else the default."""
    return explicit or os.environ.get("CANARY_STORE") or DEFAULT_STORE


def ended(state: RolloutState) -> bool:
    """Where `canary deploy` stops following too (rollout/runner.py Runner.run)."""
    return exits.ended(state.phase, needs_human=state.needs_human)


def watch(store: StateStore, name: str, *, on_change: Callable[[RolloutState], None],
          timeout: float | None = None, poll: float = 1.0,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> RolloutState:
    """Read the rollout every ``poll`` seconds until it ends or ``timeout`` passes; calls
    ``on_change`` whenever its phase, stage, weight or message moved. The last state."""
    start, shown = clock(), None
    while True:
        state = store.get(name)
        seen = (state.id, state.attempt, state.phase, state.stage_index, state.desired_weight,
                state.actual_weight, state.message, state.needs_human)
        if seen != shown:
            on_change(state)
            shown = seen
        if ended(state):
            return state
        left = None if timeout is None else timeout - (clock() - start)
        if left is not None and left <= 0:
            return state
        sleep(poll if left is None else min(poll, left))


def rollout_names(url: str | None, incomplete: str) -> list[str]:
    """Names in the store starting with ``incomplete``; [] when it cannot be read."""
    url = store_url(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return []
    os.environ.setdefault("PGCONNECT_TIMEOUT", "2")  # an unreachable server: give up soon
    try:
        store = open_store(url)
    except Exception:  # completion must never print a traceback into the shell
        return []
    try:
        names = {s.name for s in store.history(None, limit=1000)}
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            store.close()
    return sorted(n for n in names if n.startswith(incomplete))


def now() -> datetime:
    return datetime.now(UTC)
