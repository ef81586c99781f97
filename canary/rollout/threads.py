"""Slack threads kept as store events, so a controller restarted mid-rollout posts into the
thread its predecessor started."""

from __future__ import annotations

import logging

from canary.clock import Clock
from canary.errors import CanaryError
from canary.model import Event
from canary.store.base import StateStore

log = logging.getLogger("canary.runner")


class StoreThreads:
    """Slack threads kept as store events (kind ``slack-thread``, one key per run and
    channel), so a controller restarted mid-rollout posts into the same thread.

    A store that cannot be read or written costs a new thread, never the alert itself:
    an alert during a rollback matters more than where it lands.
    """

    KIND = "slack-thread"

    def __init__(self, store: StateStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._known: dict[str, str] = {}  # a thread's ts never changes once recorded

    @staticmethod
    def key(rollout_id: str, attempt: int, channel: str) -> str:
        return f"slack-thread:{rollout_id}:{attempt}:{channel}"

    def recall(self, rollout_id: str, attempt: int, channel: str) -> str | None:
        key = self.key(rollout_id, attempt, channel)
        if key in self._known:
            return self._known[key]
        try:
            events = self.store.events(rollout_id)
        except CanaryError as exc:
            log.warning("slack thread of %s not readable, starting a new one: %s", key, exc)
            return None
        ts = next((e.data.get("ts") for e in events if e.key == key), None)
        if not isinstance(ts, str) or not ts:
            return None
        self._known[key] = ts
        return ts

    def remember(self, rollout_id: str, attempt: int, channel: str, ts: str) -> str:
        key = self.key(rollout_id, attempt, channel)
        event = Event(at=self.clock.now(), kind=self.KIND, key=key, data={"ts": ts},
                      message=f"slack thread started in {channel}")
        try:
            if self.store.append_event(rollout_id, event):
                self._known[key] = ts
                return ts
        except CanaryError as exc:
            log.warning("slack thread of %s not recorded: %s", key, exc)
            return ts
        return self.recall(rollout_id, attempt, channel) or ts  # someone else was first

    def __repr__(self) -> str:
        return f"StoreThreads({type(self.store).__name__})"
