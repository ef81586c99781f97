"""From the ``notifications`` list of a rollout file to one Notifier.

An unknown type is an input error naming the known ones, never a fallback: a typo in
``type: slak`` must fail ``canary validate``, not silently drop the rollback alert. The
same holds for event names in ``events``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from canary.errors import InputError
from canary.model import Notification
from canary.notify.base import Notifier
from canary.notify.pagerduty import DEFAULT_EVENTS_URL, RESOLVES, PagerDutyNotifier
from canary.notify.slack import EVENTS, SlackNotifier
from canary.notify.slack_bot import DEFAULT_API_URL, SlackBotNotifier
from canary.notify.teams import TeamsNotifier
from canary.notify.templates import EVENT_NAMES, Templates, TemplatesError, compile_templates
from canary.notify.threads import LocalThreads, ThreadMemory
from canary.notify.webhook import WebhookNotifier
from canary.specs import NotificationSpec

KNOWN_EVENTS: tuple[str, ...] = tuple(sorted(EVENTS))

Builder = Callable[[NotificationSpec, ThreadMemory, Templates], Notifier]


def _slack(spec: NotificationSpec, threads: ThreadMemory, templates: Templates) -> Notifier:
    """A bot when a token is configured (threads per rollout run), else the webhook."""
    if bool(spec.url) == bool(spec.bot_token_env):
        raise InputError("a slack notification takes either webhookUrl or botTokenEnv "
                         "(with channel), not both or neither", field="notifications")
    if spec.bot_token_env:
        return SlackBotNotifier(token_env=spec.bot_token_env, channel=spec.channel,
                                api_url=spec.api_url or DEFAULT_API_URL, threads=threads,
                                templates=templates)
    return SlackNotifier(spec.url, templates=templates)


def _webhook(spec: NotificationSpec, threads: ThreadMemory, templates: Templates) -> Notifier:
    if spec.bot_token_env or spec.channel:
        raise InputError("botTokenEnv and channel are for type slack; a webhook takes "
                         "webhookUrl", field="notifications")
    return WebhookNotifier(spec.url, secret_env=spec.secret_env, templates=templates)


def _teams(spec: NotificationSpec, threads: ThreadMemory, templates: Templates) -> Notifier:
    return TeamsNotifier(spec.url, templates=templates)


def _pagerduty(spec: NotificationSpec, threads: ThreadMemory, templates: Templates
               ) -> Notifier:
    if not spec.routing_key_env:
        raise InputError("a pagerduty notification needs routingKeyEnv (the variable "
                         "holding the integration's routing key)",
                         field="notifications.routingKeyEnv")
    return PagerDutyNotifier(routing_key_env=spec.routing_key_env,
                             url=spec.api_url or DEFAULT_EVENTS_URL, templates=templates)


_BUILDERS: dict[str, Builder] = {
    "slack": _slack,
    "webhook": _webhook,
    "teams": _teams,
    "pagerduty": _pagerduty,
}
KNOWN_TYPES: tuple[str, ...] = tuple(sorted(_BUILDERS))

# Rollout-file fields (pydantic names) each newer type requires and accepts; slack and
# webhook keep their own rules in canary/config/spec.py.
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "teams": (frozenset({"webhook_url"}),
              frozenset({"type", "webhook_url", "events", "templates"})),
    "pagerduty": (frozenset({"routing_key_env"}),
                  frozenset({"type", "routing_key_env", "api_url", "events", "templates"})),
}
_YAML = {"webhook_url": "webhookUrl", "routing_key_env": "routingKeyEnv", "api_url": "apiUrl",
         "bot_token_env": "botTokenEnv", "secret_env": "secretEnv", "channel": "channel"}


def check_entry(kind: str, fields: set[str], *, templates: Iterable[str] = ()) -> None:
    """ValueError (shown by ``canary validate`` with file and line) when a teams or
    pagerduty entry misses a field it needs, has one that belongs to another type, or
    templates an event PagerDuty only resolves (a resolve carries no text)."""
    if kind not in _FIELDS:
        raise ValueError(f"routingKeyEnv is for type pagerduty, not {kind}")
    required, allowed = _FIELDS[kind]
    missing = sorted(_YAML.get(f, f) for f in required - fields)
    if missing:
        raise ValueError(f"a {kind} notification needs {', '.join(missing)}")
    extra = sorted(_YAML.get(f, f) for f in fields - allowed)
    if extra:
        raise ValueError(f"{', '.join(extra)} do(es) not apply to a {kind} notification; it "
                         f"takes {', '.join(sorted(_YAML.get(f, f) for f in allowed))}")
    unused = sorted(set(templates) & RESOLVES) if kind == "pagerduty" else []
    if unused:
        raise ValueError(f"PagerDuty resolves on {', '.join(unused)}: a resolve has no "
                         "summary, so a template for it would never be used")


def default_events(kind: str) -> tuple[str, ...]:
    """The events an entry without ``events`` gets. () means the runtime default (every
    event but stage progress); PagerDuty takes every event, stage included, since a
    rollout that progresses again after it was held is what resolves its incident."""
    return EVENT_NAMES if kind == "pagerduty" else ()


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
    try:
        templates = compile_templates(spec.templates)
    except TemplatesError as exc:
        raise InputError(exc.message, field=f"notifications.templates.{exc.event}") from None
    notifier = builder(spec, threads if threads is not None else LocalThreads(), templates)
    # Without a filter a channel gets every event but per-stage progress, which only
    # channels that ask for it ("stage") want.
    events = spec.events or tuple(e for e in KNOWN_EVENTS if e != "stage")
    return EventFilter(notifier, events)
