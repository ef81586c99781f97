"""Where a Slack bot remembers the first message of each rollout run, to thread the rest.

A port of its own because the memory must outlive the process: a controller restarted
mid-rollout has to keep posting into the same thread, so the runner backs it with store
events. The in-process one here is for notifiers used without a store (tests, one-offs).
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable


@runtime_checkable
class ThreadMemory(Protocol):
    def recall(self, rollout_id: str, attempt: int, channel: str) -> str | None:
        """The ``ts`` of the message that started this run's thread in ``channel``."""
        ...

    def remember(self, rollout_id: str, attempt: int, channel: str, ts: str) -> str:
        """Record ``ts`` as the thread's start unless one is recorded already; return
        the one that stands (first writer wins, so two senders agree on one thread)."""
        ...


class LocalThreads:
    """Remembers threads for the life of the process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[tuple[str, int, str], str] = {}

    def recall(self, rollout_id: str, attempt: int, channel: str) -> str | None:
        with self._lock:
            return self._threads.get((rollout_id, attempt, channel))

    def remember(self, rollout_id: str, attempt: int, channel: str, ts: str) -> str:
        with self._lock:
            return self._threads.setdefault((rollout_id, attempt, channel), ts)

    def __repr__(self) -> str:
        return f"LocalThreads({len(self._threads)} threads)"
