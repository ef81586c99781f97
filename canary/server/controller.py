"""`canary serve`: one long-running controller driving many rollouts, safe to run twice.

Each active rollout gets one APScheduler job that calls ``Runner.tick()`` - the very tick
`canary deploy` runs - so a rollout behaves the same whoever drives it. Correctness between
replicas rests on that tick alone: it takes the rollout's lease in the store first and
raises ConflictError while another live controller holds it. A replica that loses that race
becomes the rollout's standby: it only tries again now and then (or, on a store that can
``claim_rollouts``, waits to be handed the rollout), so it takes over within a lease period
when the owner dies and otherwise costs the store little.

Isolation: ticks run on a thread pool, one job per rollout with ``max_instances=1``, so a
rollout whose router or Prometheus hangs holds one thread and its own schedule, never the
others'. Discovery and lease heartbeats run on a separate small pool, so a saturated tick
pool cannot let leases lapse. The store is reached through ``PooledStore``: each call
borrows a connection of its own, because one SQLite connection cannot carry two threads'
transactions at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from canary.clock import Clock, SystemClock
from canary.console.logs import context, fields
from canary.errors import CanaryError, ConflictError, NotFoundError
from canary.model import Event, Phase
from canary.rollout.machine import next_wakeup
from canary.rollout.runner import Runner
from canary.server.exporter import RolloutSample, ServeMetrics
from canary.state import RolloutState
from canary.store.base import LeaseOwner, StateStore

log = logging.getLogger("canary.server.controller")

RunnerFactory = Callable[[RolloutState, StateStore], Runner]


class PooledStore:
    """A StateStore lending each call a connection of its own: safe from many threads."""

    def __init__(self, opener: Callable[[], StateStore]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._idle: list[StateStore] = [opener()]  # a bad URL fails at start, not later
        self._closed = False
        self.can_claim = hasattr(self._idle[0], "claim_rollouts")

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


@dataclass
class _Slot:
    """What this controller knows of one active rollout."""

    name: str
    rollout_id: str
    service: str
    runner: Runner
    period: float
    owned: bool = False
    next_try: float = 0.0  # monotonic: a standby's next attempt at the lease
    busy_since: float | None = None  # a tick is running since then
    due: float = math.inf  # monotonic: when the next tick should start at the latest
    values: tuple[tuple[str, float], ...] = ()  # last measured value per metric
    stage: int | None = None
    phase: str = Phase.PENDING.value
    weight: int = 0


class Controller:
    """The scheduler and its rollouts. ``start()``, then ``stop()`` releases every lease."""

    def __init__(self, store: PooledStore, *, runner_factory: RunnerFactory,
                 metrics: ServeMetrics | None = None, owner: LeaseOwner | None = None,
                 tick: float = 1.0, lease_ttl: float = 30.0, workers: int = 32,
                 discover_every: float = 2.0, clock: Clock | None = None) -> None:
        self.store = store
        self.owner = owner or LeaseOwner.here()
        self.tick_every, self.lease_ttl, self.discover_every = tick, lease_ttl, discover_every
        self.standby_every = lease_ttl / 4
        self.metrics = metrics or ServeMetrics()
        self.metrics.snapshot = self.snapshot
        self.clock = clock or SystemClock()
        self._make_runner = runner_factory
        self._slots: dict[str, _Slot] = {}
        self._broken: dict[str, tuple[str, float]] = {}  # name -> (error, retry at)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(workers),
                       "control": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1})
        self.scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.add_job(self.discover, "interval", seconds=self.discover_every,
                               id="discover", executor="control", next_run_time=_utcnow(),
                               misfire_grace_time=max(1, int(self.discover_every)))
        self.scheduler.add_job(self._heartbeat, "interval", seconds=self.lease_ttl / 3,
                               id="heartbeat", executor="control",
                               misfire_grace_time=max(1, int(self.lease_ttl / 3)))
        self.scheduler.start()

    def stop(self) -> None:
        """Let running ticks finish, start no new ones, then release every lease held."""
        self._stopping.set()
        self.scheduler.shutdown(wait=True)
        for slot in list(self._slots.values()):
            if slot.owned:
                with contextlib.suppress(CanaryError):
                    self.store.release_lease(slot.name, self.owner)
                log.info("released rollout %s", slot.name, extra=fields(rollout=slot.name))

    # -- discovery ------------------------------------------------------------------------

    def discover(self) -> None:
        """Pick up new or resumed rollouts; drop the jobs of those that ended."""
        if self._stopping.is_set():
            return
        try:
            active = {s.name: s for s in self.store.list_active()}
        except CanaryError as exc:
            log.warning("discovery: cannot list rollouts: %s", exc)
            return
        self.metrics.known.set(len(active))
        for name, state in active.items():
            slot = self._slots.get(name)
            if slot is None or slot.rollout_id != state.id:
                self._add(state, first_run=None)
        for name in [n for n in self._slots if n not in active]:
            self._drop_if_ended(name)
        if self.store.can_claim:
            self._claim()

    def adopt(self, state: RolloutState) -> None:
        """Drive ``state`` now: a rollout just submitted or retried through this replica.

        The lease is taken here, at once, so another replica's discovery cannot claim a
        rollout in the moment between its creation and its first tick."""
        self._add(state, first_run=_utcnow())
        slot = self._slots.get(state.name)
        try:
            self.store.acquire_lease(state.name, self.owner, ttl=self.lease_ttl,
                                     now=self.clock.now())
        except ConflictError as exc:
            if slot is not None:
                self._standby(slot, str(exc))
            return
        self.poke(state.name, force=True)

    def poke(self, name: str, *, force: bool = False) -> None:
        """Tick ``name`` at once if this replica drives it (an operator command landed)."""
        slot = self._slots.get(name)
        if slot is None or not (slot.owned or force) or self._stopping.is_set():
            return
        slot.next_try = 0.0
        with contextlib.suppress(LookupError):
            self.scheduler.modify_job(_job_id(name), next_run_time=_utcnow())

    def _add(self, state: RolloutState, *, first_run: datetime | None) -> None:
        with self._lock:
            old = self._slots.get(state.name)
            if old is not None and old.rollout_id == state.id:
                return
            broken = self._broken.get(state.id)
            if broken is not None and time.monotonic() < broken[1]:
                return
            try:
                runner = self._make_runner(state, self.store)
            except CanaryError as exc:
                if broken is None or broken[0] != str(exc):
                    log.error("rollout %s cannot be driven by this controller: %s",
                              state.name, exc, extra=fields(rollout=state.name))
                self._broken[state.id] = (str(exc), time.monotonic() + 60)
                return
            self._broken.pop(state.id, None)
            runner.owner, runner.lease_ttl = self.owner, self.lease_ttl
            runner.reporter = self.metrics
            period = max(0.05, min(self.tick_every, runner.plan.interval, self.lease_ttl / 3))
            slot = _Slot(name=state.name, rollout_id=state.id, service=state.service,
                         runner=runner, period=period, phase=state.phase.value,
                         weight=state.actual_weight or 0)
            if self.store.can_claim and first_run is None:
                slot.next_try = math.inf  # wait to be handed it by claim_rollouts
            self._slots[state.name] = slot
            # Spread first attempts over a period, so replicas discovering the same new
            # rollouts at once split them instead of all colliding on the same ones.
            start = first_run or _utcnow() + timedelta(seconds=random.uniform(0, period))
            self.scheduler.add_job(self._tick, "interval", seconds=period, args=(state.name,),
                                   id=_job_id(state.name), replace_existing=True,
                                   next_run_time=start,
                                   misfire_grace_time=max(1, math.ceil(period)))

    def _drop_if_ended(self, name: str) -> None:
        try:
            state = self.store.get(name)
        except NotFoundError:
            state = None
        except CanaryError:
            return
        slot = self._slots.get(name)
        # Still running (listed just before it was created), or ended with a retry recorded
        # (the next tick starts it again): keep it.
        if slot is not None and state is not None and state.id == slot.rollout_id and (
                not state.phase.terminal or state.command is not None):
            return
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            slot = self._slots.pop(name, None)
        with contextlib.suppress(LookupError):
            self.scheduler.remove_job(_job_id(name))
        if slot is not None and slot.owned:
            with contextlib.suppress(CanaryError):
                self.store.release_lease(name, self.owner)
            log.info("rollout %s ended (%s): released it", name, slot.phase,
                     extra=fields(rollout=name, event="released"))

    def _claim(self) -> None:
        waiting = [s for s in self._slots.values() if not s.owned]
        if not waiting:
            return
        # Half of what looks free per round: replicas claiming together split the work.
        limit = max(1, math.ceil(len(waiting) / 2))
        try:
            names = self.store.claim_rollouts(self.owner, ttl=self.lease_ttl,
                                              now=self.clock.now(), limit=limit)
        except CanaryError as exc:
            log.warning("discovery: cannot claim rollouts: %s", exc)
            return
        for name in names:
            self.poke(name, force=True)

    # -- ticking --------------------------------------------------------------------------

    def _tick(self, name: str) -> None:
        slot = self._slots.get(name)
        if slot is None or self._stopping.is_set() or time.monotonic() < slot.next_try:
            return
        with context(rollout=name, stage=slot.stage):
            self._tick_slot(name, slot)

    def _tick_slot(self, name: str, slot: _Slot) -> None:
        slot.busy_since = time.monotonic()
        if slot.owned and slot.busy_since > slot.due + slot.period:
            self.metrics.ticks_late.inc()  # behind: it shows here, never as a rollback
        started, result = time.perf_counter(), "ok"
        try:
            state = slot.runner.tick()
            # Runner.run() hands a gate step's or hook's result back at once; so do we,
            # before the lease could pass to a replica that would only see an interrupted
            # step.
            while slot.runner.result_pending and not self._stopping.is_set():
                state = slot.runner.tick()
        except ConflictError as exc:
            result = "standby"
            self._standby(slot, str(exc))
            return
        except NotFoundError:
            result = "error"
            self._forget(name)
            return
        except CanaryError as exc:
            result = "error"
            log.warning("rollout %s: tick failed: %s", name, exc)
            return
        except Exception:  # noqa: BLE001 - one rollout's bug must not stop the others
            result = "error"
            log.exception("rollout %s: tick crashed", name)
            return
        finally:
            slot.busy_since = None
            slot.due = time.monotonic() + slot.period
            self.metrics.observe_tick(time.perf_counter() - started, result)
        if not slot.owned:
            slot.owned = True
            log.info("driving rollout %s (%s)", name, state.phase.value)
        slot.phase = state.phase.value
        slot.weight = state.actual_weight if state.actual_weight is not None else 0
        slot.stage = state.stage_index + 1 if state.stage_index >= 0 else None
        slot.values = tuple((r.name, r.value) for r in state.last_results if r.value is not None)
        if state.phase.terminal and state.command is None:
            self._forget(name)
            return
        # Tick again when something falls due (an analysis, the end of a pause) rather than
        # up to a whole period late: the interval trigger resumes from there.
        wait = next_wakeup(state, self.clock.now(), poll=slot.period)
        if wait < slot.period and not self._stopping.is_set():
            with contextlib.suppress(LookupError):
                self.scheduler.modify_job(_job_id(name), next_run_time=_utcnow() + timedelta(
                    seconds=wait + 0.01))

    def _standby(self, slot: _Slot, message: str) -> None:
        if slot.owned:
            log.warning("rollout %s: another controller took it over: %s", slot.name, message,
                        extra=fields(rollout=slot.name, event="standby"))
        slot.owned = False
        slot.next_try = math.inf if self.store.can_claim else \
            time.monotonic() + self.standby_every * random.uniform(0.75, 1.0)

    def _heartbeat(self) -> None:
        """Renew the leases of ticks running long (a migration, a hanging router)."""
        late = time.monotonic() - self.lease_ttl / 3
        for slot in list(self._slots.values()):
            if slot.owned and slot.busy_since is not None and slot.busy_since < late:
                try:
                    self.store.acquire_lease(slot.name, self.owner, ttl=self.lease_ttl,
                                             now=self.clock.now())
                except CanaryError as exc:
                    log.warning("rollout %s: cannot renew the lease: %s", slot.name, exc,
                                extra=fields(rollout=slot.name))

    def _on_skipped(self, event: JobEvent) -> None:
        self.metrics.overruns.labels("missed" if event.code == EVENT_JOB_MISSED else "busy").inc()

    def snapshot(self) -> list[RolloutSample]:
        return [RolloutSample(name=s.name, service=s.service, phase=s.phase, weight=s.weight,
                              owned=s.owned, values=s.values) for s in list(self._slots.values())]

    def owned(self) -> list[str]:
        return sorted(s.name for s in list(self._slots.values()) if s.owned)


def _job_id(name: str) -> str:
    return f"rollout:{name}"


def _utcnow() -> datetime:
    return datetime.now(UTC)
