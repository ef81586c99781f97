"""`canary serve`: one long-running controller driving many rollouts, safe to run twice.

Each active rollout gets one APScheduler job that calls ``Runner.tick()`` - the very tick
`canary deploy` runs - so a rollout behaves the same whoever drives it. Correctness between
replicas rests on that tick alone: it takes the rollout's lease in the store first and
raises ConflictError while another live controller holds it. A replica that loses that race
becomes the rollout's standby: it does not try the lease again on its own but waits for
discovery's ``claim_rollouts`` (every store has it) to hand it the rollout, so it takes over
within a lease period when the owner dies and otherwise costs the store nothing.

Ticks run on canary/server/ticks.py's pool, one job per rollout, so a rollout that hangs
holds one thread and its own schedule; the store is reached through canary/server/pooled.py,
a connection per concurrent call.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from canary.clock import Clock, SystemClock
from canary.console.logs import context, fields
from canary.errors import CanaryError, ConflictError, NotFoundError
from canary.model import Phase
from canary.rollout.machine import next_wakeup
from canary.rollout.runner import Runner
from canary.server.exporter import RolloutSample, ServeMetrics
from canary.server.pooled import PooledStore
from canary.server.ticks import TickPool, utcnow
from canary.state import RolloutState
from canary.store.base import StateStore
from canary.store.lease import LeaseOwner

log = logging.getLogger("canary.server.controller")

RunnerFactory = Callable[[RolloutState, StateStore], Runner]


@dataclass
class _Slot:
    """What this controller knows of one active rollout."""

    name: str
    rollout_id: str
    service: str
    runner: Runner
    period: float
    owned: bool = False
    next_try: float = 0.0  # monotonic: inf while a standby waits to be handed the lease
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
        self.metrics = metrics or ServeMetrics()
        self.metrics.snapshot = self.snapshot
        self.clock = clock or SystemClock()
        self._make_runner = runner_factory
        self._slots: dict[str, _Slot] = {}
        self._broken: dict[str, tuple[str, float]] = {}  # name -> (error, retry at)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self.ticks = TickPool(workers=workers,
                              on_skipped=lambda why: self.metrics.overruns.labels(why).inc())

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.ticks.housekeeping(self.discover, every=self.discover_every, now=True)
        self.ticks.housekeeping(self._heartbeat, every=self.lease_ttl / 3)
        self.ticks.start()

    def stop(self) -> None:
        """Let running ticks finish, start no new ones, then release every lease held."""
        self._stopping.set()
        self.ticks.shutdown()
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
        self._claim()

    def adopt(self, state: RolloutState) -> None:
        """Drive ``state`` now: a rollout just submitted or retried through this replica.

        The lease is taken here, at once, so another replica's discovery cannot claim a
        rollout in the moment between its creation and its first tick."""
        self._add(state, first_run=utcnow())
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
        self.ticks.wake(name)

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
            if first_run is None:
                slot.next_try = math.inf  # wait to be handed it by claim_rollouts
            self._slots[state.name] = slot
            # Spread first attempts over a period, so replicas discovering the same new
            # rollouts at once split them instead of all colliding on the same ones.
            start = first_run or utcnow() + timedelta(seconds=random.uniform(0, period))
            self.ticks.schedule(state.name, self._tick, period=period, first=start,
                                grace=max(1, math.ceil(period)))

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
        self.ticks.drop(name)
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
            self.ticks.wake(name, after=wait + 0.01)

    def _standby(self, slot: _Slot, message: str) -> None:
        if slot.owned:
            log.warning("rollout %s: another controller took it over: %s", slot.name, message,
                        extra=fields(rollout=slot.name, event="standby"))
        slot.owned = False
        slot.next_try = math.inf  # until discovery's claim_rollouts hands it back

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

    def snapshot(self) -> list[RolloutSample]:
        return [RolloutSample(name=s.name, service=s.service, phase=s.phase, weight=s.weight,
                              owned=s.owned, values=s.values) for s in list(self._slots.values())]

    def owned(self) -> list[str]:
        return sorted(s.name for s in list(self._slots.values()) if s.owned)

