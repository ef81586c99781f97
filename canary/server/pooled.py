"""The store as `canary serve` reaches it: many threads at once, a connection each.

The controller's tick threads, its discovery and heartbeat jobs and the HTTP API's thread
pool all call the store concurrently. One SQLite connection cannot carry two threads'
transactions at once, so each call borrows an idle connection (opening one when none is
idle) and gives it back; connections are opened lazily and kept, so there are as many as
the most calls ever in flight at once. ``close()`` closes the idle ones at once and the
borrowed ones as they come back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from canary.model import Event
from canary.state import RolloutState
from canary.store.base import StateStore
from canary.store.lease import LeaseOwner


class PooledStore:
    """A StateStore lending each call a connection of its own: safe from many threads."""

    def __init__(self, opener: Callable[[], StateStore]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._idle: list[StateStore] = [opener()]  # a bad URL fails at start, not later
        self._closed = False

    @contextmanager
    def _borrow(self) -> Iterator[StateStore]:
        with self._lock:
            store = self._idle.pop() if self._idle else None
        if store is None:
            store = self._opener()
        try:
            yield store
        finally:
            with self._lock:
                if self._closed:
                    store.close()
                else:
                    self._idle.append(store)

    def create(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        with self._borrow() as s:
            return s.create(state, events=events)

    def get(self, name: str) -> RolloutState:
        with self._borrow() as s:
            return s.get(name)

    def save(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        with self._borrow() as s:
            return s.save(state, events=events)

    def list_active(self) -> list[RolloutState]:
        with self._borrow() as s:
            return s.list_active()

    def history(self, name: str | None = None, *, limit: int = 50) -> list[RolloutState]:
        with self._borrow() as s:
            return s.history(name, limit=limit)

    def append_event(self, rollout_id: str, event: Event) -> bool:
        with self._borrow() as s:
            return s.append_event(rollout_id, event)

    def events(self, rollout_id: str, *, limit: int | None = None) -> list[Event]:
        with self._borrow() as s:
            return s.events(rollout_id, limit=limit)

    def has_event_key(self, key: str) -> bool:
        with self._borrow() as s:
            return s.has_event_key(key)

    def acquire_lease(self, name: str, owner: LeaseOwner, *, ttl: float, now: datetime) -> None:
        with self._borrow() as s:
            s.acquire_lease(name, owner, ttl=ttl, now=now)

    def release_lease(self, name: str, owner: LeaseOwner) -> None:
        with self._borrow() as s:
            s.release_lease(name, owner)

    def last_stable_version(self, service: str) -> str | None:
        with self._borrow() as s:
            return s.last_stable_version(service)

    def claim_rollouts(self, owner: LeaseOwner, *, ttl: float, now: datetime,
                       limit: int) -> list[str]:
        with self._borrow() as s:
            return s.claim_rollouts(owner, ttl=ttl, now=now, limit=limit)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for s in idle:
            s.close()
