"""From rollout-file entries to notifiers: known types only, known events only."""

from __future__ import annotations

import pytest

from canary.errors import InputError, NotifyError
from canary.model import Notification, NotificationSpec
from canary.notify.base import Notifier
from canary.notify.null import NullNotifier
from canary.notify.registry import (
    KNOWN_EVENTS,
    EventFilter,
    FanOut,
    build_notifier,
    build_notifiers,
)
from canary.notify.slack import SlackNotifier
from canary.notify.webhook import WebhookNotifier
from examples.lab.proc import free_port
from examples.lab.slack_receiver import SlackReceiver

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
    for notifier in (NullNotifier(), build_notifiers([]),
                     build_notifier(NotificationSpec("slack", secret_url)),
                     build_notifier(NotificationSpec("webhook", secret_url, events=("held",))),
                     build_notifiers([NotificationSpec("slack", secret_url)] * 2)):
        assert isinstance(notifier, Notifier)


def test_null_notifier_sends_nothing() -> None:
    assert isinstance(build_notifiers([]), NullNotifier)
    NullNotifier().send(rollback())  # and raises nothing


def test_fan_out_reaches_the_live_ones_and_reports_the_dead(
    receiver: SlackReceiver, secret_url: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    specs = [NotificationSpec("slack", dead), NotificationSpec("webhook", receiver.url("/hook"))]
    assert isinstance(build_notifiers(specs), FanOut)
    notifier = FanOut([SlackNotifier(dead, retries=0), WebhookNotifier(receiver.url("/hook"))])
    with pytest.raises(NotifyError, match="1 of 2 notifiers failed") as caught:
        notifier.send(rollback())
    assert len(receiver.payloads) == 1  # the dead Slack did not silence the webhook
    assert SECRET_TOKEN not in str(caught.value)


class _Boom:
    def send(self, notification: Notification) -> None:
        raise NotifyError("down", retry_after=7)


def test_fan_out_keeps_the_longest_retry_after() -> None:
    with pytest.raises(NotifyError) as caught:
        FanOut([_Boom(), NullNotifier()]).send(rollback())
    assert caught.value.retry_after == 7


def test_known_events_match_the_model_vocabulary() -> None:
    assert set(KNOWN_EVENTS) == {"promoted", "rolled-back", "gate-failed", "aborted",
                                 "needs-human", "held", "stage"}
