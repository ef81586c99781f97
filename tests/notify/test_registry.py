"""From rollout-file entries to notifiers: known types only, known events only."""

from __future__ import annotations

import pytest

from canary.errors import InputError
from canary.notify.base import Notifier
from canary.notify.null import NullNotifier
from canary.notify.registry import (
    KNOWN_EVENTS,
    EventFilter,
    build_notifier,
)
from canary.notify.slack import SlackNotifier
from canary.notify.webhook import WebhookNotifier
from canary.specs import NotificationSpec
from lab.slack_receiver import SlackReceiver

from .samples import SECRET_PATH, SECRET_TOKEN, rollback


def test_known_types(secret_url: str) -> None:
    slack = build_notifier(NotificationSpec("slack", secret_url))
    hook = build_notifier(NotificationSpec("webhook", secret_url))
    assert isinstance(slack, EventFilter) and isinstance(slack.notifier, SlackNotifier)
    assert isinstance(hook, EventFilter) and isinstance(hook.notifier, WebhookNotifier)
    # by default every event but per-stage progress
    assert "stage" not in slack.events and {"promoted", "rolled-back"} <= slack.events


@pytest.mark.parametrize("kind", ["slak", "Slack", "", "msteams", "pager-duty"])
def test_unknown_type_is_refused_naming_the_known_ones(kind: str) -> None:
    with pytest.raises(InputError) as caught:
        build_notifier(NotificationSpec(kind, "https://hooks.slack.com" + SECRET_PATH))
    message = str(caught.value)
    assert f"unknown notification type {kind!r}" in message
    assert "known types: pagerduty, slack, teams, webhook" in message
    assert SECRET_TOKEN not in message


def test_unknown_event_is_refused() -> None:
    spec = NotificationSpec("slack", "https://hooks.slack.com/x", events=("rolledback",))
    with pytest.raises(InputError, match="rolledback.*known events: aborted, gate-failed"):
        build_notifier(spec)


def test_events_filter(receiver: SlackReceiver, secret_url: str) -> None:
    notifier = build_notifier(NotificationSpec("slack", secret_url,
                                               events=("rolled-back", "aborted")))
    assert isinstance(notifier, EventFilter)
    notifier.send(rollback(event="stage"))
    notifier.send(rollback(event="promoted"))
    notifier.send(rollback(event="rolled-back"))
    assert len(receiver.payloads) == 1
    assert SECRET_TOKEN not in repr(notifier)


def test_every_notifier_satisfies_the_port(secret_url: str) -> None:
    for notifier in (NullNotifier(),
                     build_notifier(NotificationSpec("slack", secret_url)),
                     build_notifier(NotificationSpec("webhook", secret_url, events=("held",)))):
        assert isinstance(notifier, Notifier)


def test_null_notifier_sends_nothing() -> None:
    NullNotifier().send(rollback())  # and raises nothing


def test_known_events_match_the_model_vocabulary() -> None:
    assert set(KNOWN_EVENTS) == {"promoted", "rolled-back", "gate-failed", "aborted",
                                 "needs-human", "held", "stage"}
