"""The StateStore port: a few methods, one contract suite run on every implementation.

What both stores share beyond the port lives beside it: lease.py (who holds a rollout and
whether that holder still counts), codec.py (rows to values and back, event coalescing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from canary.errors import CanaryError
from canary.model import Event
from canary.state import RolloutState
from canary.store.lease import LeaseOwner

SCHEMA_VERSION = 1


class StoreError(CanaryError):
    """The store answered, but with something this canary cannot use: corrupt or foreign
    data, a read-only database asked to write. Not retried; the CLI exits 4 with this one
    line (a human must look at the store), never a traceback."""


@runtime_checkable
class StateStore(Protocol):
    def create(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        """Store a new rollout (revision 1); ConflictError if one is active for its name."""
        ...

    def get(self, name: str) -> RolloutState:
        """The latest rollout of that name; NotFoundError if none."""
        ...

    def save(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        """Compare-and-set on ``state.revision``; returns the state with revision + 1 and
        appends ``events`` in the same transaction. ConflictError if someone saved first."""
        ...

    def list_active(self) -> list[RolloutState]: ...

    def history(self, name: str | None = None, *, limit: int = 50) -> list[RolloutState]: ...

    def append_event(self, rollout_id: str, event: Event) -> bool:
        """Append; an event whose key was already recorded is not added (returns False).
        An event repeating the rollout's latest one (same kind, message and data, no key)
        is coalesced into it: ``count`` and ``last_at`` in its data (see
        ``canary.store.codec.coalesced``)."""
        ...

    def events(self, rollout_id: str, *, limit: int | None = None) -> list[Event]:
        """Oldest first; with ``limit``, only the newest ``limit`` are read."""
        ...

    def has_event_key(self, key: str) -> bool: ...

    def acquire_lease(self, name: str, owner: LeaseOwner, *, ttl: float, now: datetime) -> None:
        """Take or renew the lease on a rollout; ConflictError naming the holder if a live
        owner holds it."""
        ...

    def release_lease(self, name: str, owner: LeaseOwner) -> None: ...

    def claim_rollouts(self, owner: LeaseOwner, *, ttl: float, now: datetime,
                       limit: int) -> list[str]:
        """For controller replicas: atomically take up to ``limit`` active rollouts whose
        lease is free, expired or held by a dead process; their names."""
        ...

    def last_stable_version(self, service: str) -> str | None: ...

    def close(self) -> None: ...
