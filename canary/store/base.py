"""The StateStore port: a few methods, one contract suite run on every implementation."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from canary.errors import CanaryError
from canary.model import Event
from canary.state import RolloutState

SCHEMA_VERSION = 1


class StoreError(CanaryError):
    """The store answered, but with something this canary cannot use: corrupt or foreign
    data, a read-only database asked to write. Not retried; the CLI exits 4 with this one
    line (a human must look at the store), never a traceback."""


@dataclass(frozen=True)
class LeaseOwner:
    """Who drives a rollout: a random id per process, plus what it takes to prove it gone.

    ``id`` is ``<uuid4>@<pid namespace>:<boot id>:<start time>``; it is stored as the lease's
    owner, so both stores keep their columns and an older id (without ``@``) still works:
    it is simply never provably gone, only expired.
    """

    id: str
    host: str
    pid: int

    @staticmethod
    def here() -> LeaseOwner:
        return LeaseOwner.of_process(os.getpid())

    @staticmethod
    def of_process(pid: int) -> LeaseOwner:
        """The identity of process ``pid`` of this host, namespace and boot (tests build
        one for a child they killed)."""
        ident = f"{_pid_namespace()}:{_boot_id()}:{_start_time(pid)}"
        return LeaseOwner(id=f"{uuid.uuid4().hex}@{ident}", host=socket.gethostname(), pid=pid)

    def provably_gone(self) -> bool:
        """Same host, same PID namespace, same boot, and the pid is gone (or a zombie, or
        now a different process: its start time differs). Anything else, alive or not
        knowable from here (another container sharing the hostname on host networking,
        another boot), is left to the lease's expiry."""
        if self.host != socket.gethostname() or "@" not in self.id:
            return False
        ns, _, rest = self.id.split("@", 1)[1].partition(":")
        boot, _, start = rest.partition(":")
        if not ns or ns != _pid_namespace() or not boot or boot != _boot_id():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # exists, another user's: its start time still tells
        now = _start_time(self.pid)
        if start and now and now != start:
            return True  # the pid was reused by another process
        return bool(start) and start == now and _is_zombie(self.pid)


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)  # the namespace's inode
    except OSError:
        return ""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """Clock ticks after boot at which ``pid`` started (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def decode_state(text: str, *, where: str) -> RolloutState:
    """A stored rollout row, or StoreError naming it: a corrupt row is one line, exit 4."""
    try:
        return RolloutState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{where}: a stored rollout cannot be read ({type(exc).__name__}: "
                         f"{exc}); the store is corrupt or was written by another program"
                         ) from exc


def decode_event(at: object, kind: str, message: str, data: str, key: str | None, *,
                 where: str) -> Event:
    try:
        when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        values = json.loads(data)
        if not isinstance(values, dict):
            raise TypeError(f"event data is {type(values).__name__}, not an object")
        return Event(at=when, kind=str(kind), message=str(message), data=values, key=key)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{where}: a stored event ({kind!r}) cannot be read ({exc}); the "
                         "store is corrupt or was written by another program") from exc


def schema_of(value: object, *, where: str) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise StoreError(f"{where}: schema version {value!r} is not a number: not a canary "
                         "store, or a corrupt one") from exc


def coalesced(last: Event | None, new: Event) -> dict[str, Any] | None:
    """The data of ``last`` counting ``new`` too when ``new`` only repeats it (same kind,
    message and data, no key); None when it must be a row of its own. A router down for a
    day is then one event with a count, first and last time, not 86,000 rows."""
    if last is None or new.key is not None or last.key is not None:
        return None
    if (last.kind, last.message) != (new.kind, new.message):
        return None
    base = {k: v for k, v in last.data.items() if k not in ("count", "last_at")}
    if base != dict(new.data) or "count" in new.data or "last_at" in new.data:
        return None
    return {**base, "count": int(last.data.get("count", 1)) + 1, "last_at": new.at.isoformat()}


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
        is coalesced into it: ``count`` and ``last_at`` in its data (see ``coalesced``)."""
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
