"""The StateStore port: a few methods, one contract suite run on every implementation."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from canary.model import Event
from canary.rollout.state import RolloutState

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LeaseOwner:
    """Who drives a rollout: enough to tell whether that owner is provably gone."""

    id: str
    host: str
    pid: int

    @staticmethod
    def here() -> LeaseOwner:
        host, pid = socket.gethostname(), os.getpid()
        return LeaseOwner(id=f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host=host, pid=pid)

    def provably_gone(self) -> bool:
        """Same host and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return _is_zombie(self.pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


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
        """Append; an event whose key was already recorded is not added (returns False)."""
        ...

    def events(self, rollout_id: str, *, limit: int | None = None) -> list[Event]: ...

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


def open_store(url: str) -> StateStore:
    """sqlite:///path (default) or postgresql://...; anything else is an input error."""
    from canary.errors import InputError

    if url.startswith("sqlite:///") or url == "sqlite://":
        from canary.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from canary.store.postgres import PostgresStore
        except ModuleNotFoundError as exc:  # psycopg is the canary[postgres] extra
            if (exc.name or "").partition(".")[0] != "psycopg":
                raise
            raise InputError("the PostgreSQL store needs psycopg, which is not installed: "
                             "pip install 'canary[postgres]'", field="--store") from exc
        store: StateStore = PostgresStore(url)
        return store
    raise InputError(f"unknown store URL {url!r}: expected sqlite:///PATH or postgresql://...",
                     field="--store")
