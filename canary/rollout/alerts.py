"""Alerts that survive a crash: owed from the save that decides them, delivered once.

The machine writes every alert it decides into the state (``alerts_owed``: key -> event) in
the same transaction as the transition, so a controller killed before or while sending it
leaves a record that it is owed. A key counts as delivered once its ``notified`` event is
stored (with several notifiers, each one's delivery is recorded as ``alert-delivered`` under
``KEY@INDEX`` so a retry does not repeat the ones that already went out). Whoever drives
the rollout next - the same run's next tick, a rerun of `canary deploy`, a controller -
delivers what is still owed. A delivery that fails stays owed and is retried later, so a
Slack outage delays an alert instead of losing it.

The one remaining window is a notifier that delivered but died before the record was
written: Slack webhooks have no idempotency key, so that alert may be sent twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from canary.clock import Clock
from canary.errors import CanaryError, NotifyError
from canary.model import Event, Notification
from canary.notify.base import Notifier
from canary.rollout.vocabulary import Notify
from canary.state import RolloutState
from canary.store.base import StateStore

log = logging.getLogger("canary.alerts")

RETRY_EVERY = 30.0  # seconds between two delivery attempts of an alert that failed


@dataclass
class AlertDesk:
    """Delivers a rollout's owed alerts; one per runner (its retry times live here)."""

    store: StateStore
    clock: Clock
    notifiers: Sequence[Notifier]
    render: Callable[[RolloutState, Notify], Notification]
    record: Callable[[RolloutState, str, str], None]
    _retry_at: dict[str, float] = field(default_factory=dict)

    @property
    def retrying(self) -> bool:
        """Some delivery failed in this process and waits for its retry time."""
        return bool(self._retry_at)

    def owed(self, state: RolloutState) -> list[Notify]:
        """Alerts decided for this rollout and not yet recorded as delivered."""
        return [Notify(event, key) for key, event in state.alerts_owed.items()
                if not self.store.has_event_key(key)]

    def deliver_owed(self, state: RolloutState) -> None:
        """Send every owed alert whose retry time has come (all of them after a restart)."""
        now = _seconds(self.clock)
        for action in self.owed(state):
            if self._retry_at.get(action.key, 0.0) <= now:
                self.send(state, action)

    def send(self, state: RolloutState, action: Notify) -> bool:
        """Deliver ``action`` to every notifier that has not had it; True once all have."""
        if self.store.has_event_key(action.key):
            return True  # already delivered before a restart: never a duplicate
        # rollout id + attempt: a Slack bot threads every message of this run together
        note = dataclasses.replace(self.render(state, action), rollout_id=state.id,
                                   attempt=state.attempt)
        many = len(self.notifiers) > 1
        failures = []
        for index, notifier in enumerate(self.notifiers):
            part = f"{action.key}@{index}"
            if many and self.store.has_event_key(part):
                continue
            try:
                notifier.send(note)
            except NotifyError as exc:
                failures.append(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a notifier's bug must not stop a rollout
                log.exception("notifier %s crashed", type(notifier).__name__)
                failures.append(f"{type(notifier).__name__} crashed: {exc!r}")
                continue
            if many:
                self.store.append_event(state.id, Event(
                    at=self.clock.now(), kind="alert-delivered", key=part,
                    message=f"{action.event} alert delivered by notifier {index + 1}"))
        if failures:
            self._retry_at[action.key] = _seconds(self.clock) + RETRY_EVERY
            self.record(state, "notify-failed", "; ".join(failures) +
                        f" ({action.event} alert kept owed: retried in {RETRY_EVERY:g}s "
                        "or by the next run)")
            return False
        self._retry_at.pop(action.key, None)
        self.store.append_event(state.id, Event(at=self.clock.now(), kind="notified",
                                                message=f"{action.event} alert sent",
                                                key=action.key))
        return True


def _seconds(clock: Clock) -> float:
    return clock.now().timestamp()


def safe_deliver(desk: AlertDesk, state: RolloutState) -> None:
    """Deliver owed alerts where a store error must not hide the state being returned."""
    try:
        desk.deliver_owed(state)
    except CanaryError as exc:
        log.warning("owed alerts of %s not delivered yet: %s", state.name, exc)


def notification_for(state: RolloutState, action: Notify) -> Notification:
    return Notification(
        event=action.event, rollout=state.name, service=state.service, version=state.version,
        stable_version=state.stable_version, stage=max(0, state.stage_index + 1),
        weight=state.actual_weight if state.actual_weight is not None else state.desired_weight,
        reason=state.reason or state.message, results=state.last_results, key=action.key)
