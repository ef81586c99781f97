"""From the ``notifications`` list of a rollout file to one Notifier.

An unknown type is an input error naming the known ones, never a fallback: a typo in
``type: slak`` must fail ``canary validate``, not silently drop the rollback alert. The
same holds for event names in ``events``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from canary.errors import InputError, NotifyError
from canary.model import Notification, NotificationSpec
from canary.notify.base import Notifier
from canary.notify.null import NullNotifier
from canary.notify.slack import EVENTS, SlackNotifier
from canary.notify.slack_bot import SlackBotNotifier
from canary.notify.threads import LocalThreads, ThreadMemory
from canary.notify.webhook import WebhookNotifier

KNOWN_EVENTS: tuple[str, ...] = tuple(sorted(EVENTS))


def _slack(spec: NotificationSpec, threads: ThreadMemory) -> Notifier:
    """A bot when a token is configured (threads per rollout run), else the webhook."""
    if bool(spec.url) == bool(spec.bot_token_env):
        raise InputError("a slack notification takes either webhookUrl or botTokenEnv "
                         "(with channel), not both or neither", field="notifications")
    if spec.bot_token_env:
        return SlackBotNotifier(token_env=spec.bot_token_env, channel=spec.channel,
                                api_url=spec.api_url, threads=threads)
    return SlackNotifier(spec.url)


def _webhook(spec: NotificationSpec, threads: ThreadMemory) -> Notifier:
    if spec.bot_token_env or spec.channel:
        raise InputError("botTokenEnv and channel are for type slack; a webhook takes "
                         "webhookUrl", field="notifications")
    return WebhookNotifier(spec.url, secret_env=spec.secret_env)


_BUILDERS: dict[str, Callable[[NotificationSpec, ThreadMemory], Notifier]] = {
    "slack": _slack,
    "webhook": _webhook,
}
KNOWN_TYPES: tuple[str, ...] = tuple(sorted(_BUILDERS))


class EventFilter:
    """Passes on only the events a notification entry subscribed to."""

    def __init__(self, notifier: Notifier, events: Iterable[str]) -> None:
        self.notifier = notifier
        self.events = frozenset(events)

    def send(self, notification: Notification) -> None:
        if notification.event in self.events:
            self.notifier.send(notification)

    def __repr__(self) -> str:
        return f"EventFilter({self.notifier!r}, events={sorted(self.events)})"


class FanOut:
    """Sends to every notifier even when one fails, then reports all failures at once:
    a dead Slack must not also silence the webhook."""

    def __init__(self, notifiers: Iterable[Notifier]) -> None:
        self.notifiers = tuple(notifiers)

    def send(self, notification: Notification) -> None:
        errors: list[NotifyError] = []
        for notifier in self.notifiers:
            try:
                notifier.send(notification)
            except NotifyError as exc:
                errors.append(exc)
        if errors:
            raise NotifyError(
                f"{len(errors)} of {len(self.notifiers)} notifiers failed: "
                + "; ".join(str(e) for e in errors),
                retry_after=max(e.retry_after for e in errors),
            )

    def __repr__(self) -> str:
        return f"FanOut({list(self.notifiers)!r})"


def build_notifier(spec: NotificationSpec, *, threads: ThreadMemory | None = None
                   ) -> Notifier:
    """The notifier for one entry; InputError for an unknown type or event name, or a
    missing secret variable. ``threads`` is where a Slack bot keeps each rollout run's
    thread (the runner passes a store-backed one, so threads survive a restart)."""
    builder = _BUILDERS.get(spec.type)
    if builder is None:
        raise InputError(
            f"unknown notification type {spec.type!r}; known types: {', '.join(KNOWN_TYPES)}",
            field="notifications.type",
        )
    unknown = sorted(set(spec.events) - set(KNOWN_EVENTS))
    if unknown:
        raise InputError(
            f"unknown notification event(s) {', '.join(unknown)}; "
            f"known events: {', '.join(KNOWN_EVENTS)}",
            field="notifications.events",
        )
    notifier = builder(spec, threads if threads is not None else LocalThreads())
    # Without a filter a channel gets every event but per-stage progress, which only
    # channels that ask for it ("stage") want.
    events = spec.events or tuple(e for e in KNOWN_EVENTS if e != "stage")
    return EventFilter(notifier, events)


def build_notifiers(specs: Iterable[NotificationSpec], *,
                    threads: ThreadMemory | None = None) -> Notifier:
    """One Notifier for a whole rollout: Null for none, the one itself, or a FanOut."""
    threads = threads if threads is not None else LocalThreads()  # one, shared by all
    notifiers = [build_notifier(spec, threads=threads) for spec in specs]
    if not notifiers:
        return NullNotifier()
    if len(notifiers) == 1:
        return notifiers[0]
    return FanOut(notifiers)
