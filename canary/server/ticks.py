"""The threads that tick rollouts: APScheduler behind the few calls the controller makes.

One interval job per rollout runs on a pool of ``workers`` threads with ``max_instances=1``
and ``coalesce``, so a rollout whose router or Prometheus hangs holds one thread and its own
schedule, never the others'. Discovery and lease heartbeats run on a pool of two threads of
their own, so a saturated tick pool cannot let leases lapse. A tick skipped because the
previous one still runs, or missed because no thread was free in time, is reported to
``on_skipped`` ("busy" or "missed") for /metrics; APScheduler's own warnings are silenced
in canary/server/process.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler


class TickPool:
    """Rollout jobs by name on the tick pool, housekeeping jobs on the control pool."""

    def __init__(self, *, workers: int, on_skipped: Callable[[str], None]) -> None:
        self._on_skipped = on_skipped
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(workers),
                       "control": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1})
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

    def housekeeping(self, fn: Callable[[], None], *, every: float, now: bool = False) -> None:
        """Run ``fn`` every ``every`` seconds on the control pool (at once with ``now``)."""
        kwargs: dict[str, Any] = {"next_run_time": utcnow()} if now else {}
        self._scheduler.add_job(fn, "interval", seconds=every, id=fn.__name__,
                                executor="control", misfire_grace_time=max(1, int(every)),
                                **kwargs)

    def schedule(self, name: str, tick: Callable[[str], None], *, period: float,
                 first: datetime, grace: int) -> None:
        """Call ``tick(name)`` every ``period`` seconds from ``first`` on, replacing the
        rollout's previous job if any."""
        self._scheduler.add_job(tick, "interval", seconds=period, args=(name,),
                                id=_job_id(name), replace_existing=True, next_run_time=first,
                                misfire_grace_time=grace)

    def wake(self, name: str, *, after: float = 0.0) -> None:
        """Move the rollout's next tick to ``after`` seconds from now (no job: nothing)."""
        when = utcnow() + timedelta(seconds=after) if after else utcnow()
        with contextlib.suppress(LookupError):
            self._scheduler.modify_job(_job_id(name), next_run_time=when)

    def drop(self, name: str) -> None:
        with contextlib.suppress(LookupError):
            self._scheduler.remove_job(_job_id(name))

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        """Start no new job, wait for the running ones."""
        self._scheduler.shutdown(wait=True)

    def _skipped(self, event: JobEvent) -> None:
        self._on_skipped("missed" if event.code == EVENT_JOB_MISSED else "busy")


def _job_id(name: str) -> str:
    return f"rollout:{name}"


def utcnow() -> datetime:
    return datetime.now(UTC)
