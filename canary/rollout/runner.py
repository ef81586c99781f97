"""The tick: load -> observe -> decide -> save -> act -> notify.

Journal first: the new state and its events are saved before any action runs, so a
controller killed between two lines of this file resumes without losing or repeating a
step. Weights are absolute (re-applying is harmless); alerts are owed in the saved state
and recorded once sent, so the next runner delivers what a killed one did not
(canary/rollout/alerts.py). An unexpected exception in a tick holds the rollout for a human
(one event, one alert: canary/rollout/hold.py) instead of failing every tick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from canary import defaults
from canary.clock import Clock, SystemClock
from canary.errors import (
    CanaryError,
    ConflictError,
    RouterError,
    TemporaryError,
)
from canary.exits import ended, for_ending
from canary.hooks.executor import run_hook
from canary.model import Event, GateResult, HookResult, Verdict, Weights
from canary.notify.base import Notifier
from canary.rollout.alerts import AlertDesk, notification_for, safe_deliver
from canary.rollout.hold import held, hold
from canary.rollout.machine import (
    Decision,
    Notify,
    Observation,
    Plan,
    RunGate,
    RunHook,
    SetWeights,
    analysis_due,
    decide,
    next_wakeup,
)
from canary.rollout.routing import Routing
from canary.routers.base import Router
from canary.specs import RolloutSpec
from canary.state import RolloutState
from canary.store.base import StateStore
from canary.store.lease import LeaseOwner

log = logging.getLogger("canary.runner")


class Analyzer(Protocol):
    def measure(self, state: RolloutState, now: datetime) -> Verdict: ...


class Gate(Protocol):
    def run(self, state: RolloutState, step: str) -> GateResult: ...


class Reporter(Protocol):
    def tick(self, state: RolloutState, events: Sequence[Event]) -> None: ...


class _SilentReporter:
    def tick(self, state: RolloutState, events: Sequence[Event]) -> None:
        return None


@dataclass
class Runner:
    """Drives one rollout. Owns nothing but its collaborators; all state is in the store."""

    name: str
    spec: RolloutSpec
    plan: Plan
    store: StateStore
    router: Router
    clock: Clock
    analyzer: Analyzer | None = None
    gate: Gate | None = None
    notifiers: Sequence[Notifier] = ()
    reporter: Reporter = field(default_factory=_SilentReporter)
    owner: LeaseOwner = field(default_factory=LeaseOwner.here)
    poll: float = 1.0
    lease_ttl: float = defaults.LEASE_TTL
    _gate_result: GateResult | None = None
    _hook_result: HookResult | None = None
    _owed_checked: bool = False

    @property
    def result_pending(self) -> bool:
        """A gate step or hook just finished and its result waits for the next tick."""
        return self._gate_result is not None or self._hook_result is not None

    def __post_init__(self) -> None:
        self.routing = Routing(router=self.router, spec=self.spec)
        self.alerts = AlertDesk(store=self.store, clock=self.clock, notifiers=self.notifiers,
                                render=notification_for,
                                record=lambda st, kind, msg: self._record(st, kind, msg))

    def tick(self) -> RolloutState:
        state = self.store.get(self.name)
        now = self.clock.now()
        self.store.acquire_lease(self.name, self.owner, ttl=self.lease_ttl, now=now)
        if state.command is None and (state.phase.terminal or held(state)):
            # Ended, or held after an internal error until an operator acts: nothing to
            # decide, only what a crash may have left undone: the ending's alert, and a
            # match or mirror the router still has (killed between the ending's save and
            # turning them off).
            if state.phase.terminal:
                self._sync_routes(state)
            safe_deliver(self.alerts, state)
            return state
        gate, self._gate_result = self._gate_result, None
        hook, self._hook_result = self._hook_result, None
        try:
            decision = self._decide(state, now, gate=gate, hook=hook)
        except CanaryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug holds the rollout, never loops
            return self._hold(state, exc)
        try:
            saved = self.store.save(decision.state, events=decision.events)
        except ConflictError:
            # An operator command landed first: nothing was acted on, decide again.
            self._gate_result, self._hook_result = gate, hook
            return self.store.get(self.name)
        except TemporaryError:
            self._gate_result, self._hook_result = gate, hook  # the store is down: keep them
            raise
        try:
            self.reporter.tick(saved, decision.events)
            self._act(saved, decision)
            self._sync_routes(saved)
        except CanaryError:
            raise
        except Exception as exc:  # noqa: BLE001 - saved first: the journal is intact
            return self._hold(saved, exc)
        if not self._owed_checked or self.alerts.retrying:
            # What a killed predecessor decided and never sent, or a delivery that failed.
            self._owed_checked = True
            safe_deliver(self.alerts, saved)
        return saved

    def _decide(self, state: RolloutState, now: datetime, *, gate: GateResult | None,
                hook: HookResult | None) -> Decision:
        weights, router_error = self._read_weights(state)
        verdict = None
        if (self.analyzer is not None and weights is not None
                and weights.canary == state.desired_weight and analysis_due(state, now)):
            verdict = self.analyzer.measure(state, now)
        obs = Observation(now=now, weights=weights, router_error=router_error, gate=gate,
                          verdict=verdict, hook=hook)
        return decide(state, obs, self.plan)

    def _hold(self, state: RolloutState, exc: Exception) -> RolloutState:
        return hold(self.name, state, exc, store=self.store, clock=self.clock,
                    report=self.reporter.tick, alerts=self.alerts)

    def _read_weights(self, state: RolloutState) -> tuple[Weights | None, str]:
        try:
            return self.routing.confirmed(state, self.router.get_weights()), ""
        except RouterError as exc:
            log.warning("router: %s", exc)
            return None, str(exc)

    def _sync_routes(self, state: RolloutState) -> None:
        """Level-triggered like the weights: re-applied whenever the router disagrees."""
        try:
            changed = self.routing.sync(state)
        except RouterError as exc:
            self._record(state, "router-error", f"could not set the router's match and "
                                                f"mirroring: {exc}")
            return
        if changed:
            self._record(state, "router", changed, level=logging.INFO)

    def _act(self, state: RolloutState, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, SetWeights):
                self._set_weights(state, action.canary)
            elif isinstance(action, RunGate):
                if self.gate is None:
                    self._gate_result = GateResult(ok=False, step=action.step,
                                                   message="no gate runner configured")
                else:
                    self._gate_result = self.gate.run(state, action.step)
            elif isinstance(action, Notify):
                self._notify(state, action)
            elif isinstance(action, RunHook):
                self._hook_result = self._run_hook(state, action)

    def _run_hook(self, state: RolloutState, action: RunHook) -> HookResult:
        spec = next((h for h in self.spec.hooks
                     if h.point == action.point and h.name == action.name), None)
        call = None if spec is None else (spec.compensate if action.compensate else spec.call)
        if spec is None or call is None:
            return HookResult(key=str(action.key), ok=False,
                              message=f"hook {action.point}/{action.name} is not in the "
                                      "rollout file any more")
        context = {"rollout": state.name, "service": state.service, "version": state.version,
                   "stable_version": state.stable_version or "",
                   "stage": str(state.stage_index + 1), "weight": str(state.desired_weight),
                   "hook": action.name, "point": action.point, "attempt": str(state.attempt),
                   "compensating": "true" if action.compensate else "false"}
        result = run_hook(call, key=f"{state.id}/{action.key}", timeout=spec.timeout,
                          retries=spec.retries, backoff=spec.backoff, context=context,
                          cwd=self.spec.base_dir, sleep=self.clock.sleep)
        return dataclasses.replace(result, key=str(action.key))  # the machine's own key

    def _set_weights(self, state: RolloutState, canary: int) -> None:
        try:
            self.router.set_weights(Weights(canary=canary))
            now = self.router.get_weights()
        except RouterError as exc:
            # Not fatal: the next tick reads the router again and re-applies.
            self._record(state, "router-error", f"could not set {canary}%: {exc}")
            return
        self._record(state, "router", f"asked {canary}% on the canary; the router reports "
                                      f"stable {now.stable}% / canary {now.canary}%",
                     level=logging.INFO)

    def _notify(self, state: RolloutState, action: Notify) -> None:
        self.alerts.send(state, action)

    def _record(self, state: RolloutState, kind: str, message: str,
                level: int = logging.WARNING) -> None:
        log.log(level, "%s: %s", kind, message)
        event = Event(at=self.clock.now(), kind=kind, message=message)
        self.store.append_event(state.id, event)
        self.reporter.tick(state, [event])

    def run(self, *, timeout: float | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> RolloutState:
        """Tick until the rollout ends, needs a human, or ``timeout`` seconds pass."""
        start = self.clock.now()
        outage = 0
        beat = self._heartbeat()
        try:
            while True:
                try:
                    state = self.tick()
                    outage = 0
                except TemporaryError as exc:
                    # The store (or anything under a tick) is briefly unreachable: nothing
                    # was acted on without being saved first, so waiting is always safe.
                    outage += 1
                    log.warning("tick failed (%s); retrying", exc)
                    if timeout is not None and \
                            (self.clock.now() - start).total_seconds() >= timeout:
                        raise
                    # backoff, but never sooner than the error itself asks (retry_after)
                    self.clock.sleep(min(60.0, max(exc.retry_after, 0.5 * 2 ** min(outage, 6))))
                    continue
                if ended(state.phase, needs_human=state.needs_human):
                    return state
                if self._gate_result is not None or self._hook_result is not None:
                    continue  # feed the gate's or hook's result back at once
                now = self.clock.now()
                if timeout is not None and (now - start).total_seconds() >= timeout:
                    return state
                if should_stop():
                    return state
                wait = next_wakeup(state, now, poll=self.poll)
                if timeout is not None:
                    wait = min(wait, max(0.0, timeout - (now - start).total_seconds()))
                self.clock.sleep(max(wait, 0.01))
        finally:
            beat.set()
            with contextlib.suppress(CanaryError):
                self.store.release_lease(self.name, self.owner)

    def _heartbeat(self) -> threading.Event:
        """Renew the lease every third of its life while run() lasts, so a hook or gate
        step running longer than the lease never lets another controller take a rollout
        whose owner is alive. Only on the real clock: a test's clock does not move alone."""
        stop = threading.Event()
        if not isinstance(self.clock, SystemClock):
            return stop

        def beat() -> None:
            while not stop.wait(self.lease_ttl / 3):
                try:
                    self.store.acquire_lease(self.name, self.owner, ttl=self.lease_ttl,
                                             now=self.clock.now())
                except CanaryError as exc:  # the next tick meets it and decides
                    log.warning("lease heartbeat of %s: %s", self.name, exc)

        threading.Thread(target=beat, name=f"lease-{self.name}", daemon=True).start()
        return stop


def exit_code(state: RolloutState) -> int:
    """How ``state`` ended, as an exit code (canary/exits.py)."""
    return for_ending(state.phase, needs_human=state.needs_human)
