"""Retry rules over real HTTP: what is retried, how long it waits, and that it stops.

Waits are checked two ways: with a recording clock (exact schedule, no sleeping) and with
the real clock (arrival times at the receiver, wall time until NotifyError).
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from canary.clock import ManualClock
from canary.errors import InputError, NotifyError, TemporaryError
from canary.notify.delivery import Delivery, parse_retry_after
from canary.notify.slack import SlackNotifier
from lab.proc import free_port
from lab.slack_receiver import Reply, SlackReceiver

from .samples import SECRET_PATH, SECRET_TOKEN, rollback


class RecordingClock(ManualClock):
    """Moves only when slept on, and remembers every wait."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


def gaps(receiver: SlackReceiver) -> list[float]:
    at = [r.at for r in receiver.requests]
    return [b - a for a, b in zip(at, at[1:], strict=False)]


def assert_no_secret(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert SECRET_TOKEN not in text
    assert "B0SECRET" not in text


def test_429_waits_for_retry_after_then_delivers(receiver: SlackReceiver, secret_url: str) -> None:
    receiver.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()
    SlackNotifier(secret_url, delivery=Delivery(backoff=0.05)).send(rollback())
    took = time.monotonic() - started

    assert [r.status for r in receiver.requests] == [429, 200]
    assert len(receiver.payloads) == 1
    # Retry-After (1 s) was honoured, not the 0.05 s backoff
    [gap] = gaps(receiver)
    # Upper bounds leave room for a loaded machine; the exact schedule is checked on a
    # recording clock below.
    assert 1.0 <= gap < 3.0
    assert 1.0 <= took < 3.0


def test_retry_after_schedule_exact(receiver: SlackReceiver, secret_url: str) -> None:
    clock = RecordingClock()
    receiver.script(Reply(429, "rate_limited", (("Retry-After", "3"),)),
                    Reply(429, "rate_limited"),  # no header: own backoff
                    Reply(503, "busy"))
    SlackNotifier(secret_url, clock=clock, delivery=Delivery(backoff=0.5)).send(rollback())
    assert clock.sleeps == [3.0, 1.0, 2.0]


def test_500_retried_with_backoff_then_notify_error(
    receiver: SlackReceiver, secret_url: str
) -> None:
    receiver.fail_next(10, status=500)
    started = time.monotonic()
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(secret_url, delivery=Delivery(retries=3, backoff=0.1)).send(rollback())
    took = time.monotonic() - started

    assert len(receiver.requests) == 4  # one try and three retries
    for gap, wait in zip(gaps(receiver), (0.1, 0.2, 0.4), strict=True):
        assert wait <= gap < wait + 1.0
    assert took < 3.0  # the default backoff would take 3.5 s
    err = caught.value
    assert isinstance(err, TemporaryError)
    assert "HTTP 500" in str(err) and "4 tries" in str(err) and "no retries left" in str(err)
    assert f"127.0.0.1:{receiver.port}/***" in str(err)
    assert_no_secret(err)


def test_backoff_schedule_exact(receiver: SlackReceiver, secret_url: str) -> None:
    clock = RecordingClock()
    receiver.fail_next(10, status=502)
    with pytest.raises(NotifyError):
        SlackNotifier(secret_url, clock=clock).send(rollback())
    assert clock.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_4xx_is_not_retried(receiver: SlackReceiver, secret_url: str, status: int) -> None:
    receiver.fail_next(1, status=status, body="invalid_payload")
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(secret_url).send(rollback())
    assert len(receiver.requests) == 1
    assert f"HTTP {status} 'invalid_payload' (not retried)" in str(caught.value)


def test_receiver_down_fails_within_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    notifier = SlackNotifier(url, delivery=Delivery(retries=1000, backoff=0.1, deadline=1.5))
    started = time.monotonic()
    with pytest.raises(NotifyError) as caught:
        notifier.send(rollback())
    took = time.monotonic() - started
    print(f"receiver down, deadline 1.5 s: NotifyError after {took:.2f} s")
    assert took < 3.0  # without the deadline: 1,000 retries
    assert "ConnectError" in str(caught.value) and "deadline" in str(caught.value)
    assert_no_secret(caught.value)


def test_receiver_down_with_defaults_gives_up_in_about_3_5_s() -> None:
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    started = time.monotonic()
    with pytest.raises(NotifyError, match="4 tries"):
        SlackNotifier(url).send(rollback())
    took = time.monotonic() - started
    print(f"receiver down, defaults: NotifyError after {took:.2f} s")
    assert 3.5 <= took < 6.0  # waits 0.5 + 1 + 2, well inside the 10 s deadline


def test_hanging_receiver_is_cut_off_by_the_deadline(
    receiver: SlackReceiver, secret_url: str
) -> None:
    receiver.script(*[Reply(delay=30)] * 20)
    started = time.monotonic()
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(secret_url, delivery=Delivery(timeout=0.5, retries=50, backoff=0.1,
                                                    deadline=2.0)).send(rollback())
    took = time.monotonic() - started
    print(f"hanging receiver, deadline 2 s: NotifyError after {took:.2f} s")
    assert took < 4.0  # without the deadline: 20 replies 30 s late
    assert "ReadTimeout" in str(caught.value)


def test_retry_after_beyond_cap_gives_up_at_once_and_says_when(
    receiver: SlackReceiver, secret_url: str
) -> None:
    receiver.fail_next(1, status=429, retry_after=60)
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(secret_url, delivery=Delivery(max_retry_after=5)).send(rollback())
    assert len(receiver.requests) == 1
    assert caught.value.retry_after == 60
    assert "Retry-After 60s exceeds" in str(caught.value)


def test_retry_that_would_pass_the_deadline_is_not_started(
    receiver: SlackReceiver, secret_url: str
) -> None:
    receiver.fail_next(1, status=429, retry_after=3)
    started = time.monotonic()
    with pytest.raises(NotifyError, match="would pass the 2s deadline"):
        SlackNotifier(secret_url, delivery=Delivery(deadline=2.0)).send(rollback())
    assert time.monotonic() - started < 2.5  # gave up at once instead of waiting 3 s
    assert len(receiver.requests) == 1


def test_secret_never_in_errors_or_logs(
    receiver: SlackReceiver, secret_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(1, status=500, body=f"upstream said no to {SECRET_PATH}")
    receiver.fail_next(1, status=400, body=f"bad request {SECRET_PATH}")
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(secret_url, delivery=Delivery(backoff=0.01)).send(rollback())
    assert "***" in str(caught.value)
    assert_no_secret(caught.value)
    assert "HTTP Request: POST" in caplog.text  # httpx did log the requests...
    assert "retry 1/3" in caplog.text
    assert SECRET_TOKEN not in caplog.text  # ...with the URL masked
    assert "B0SECRET" not in caplog.text


def test_bad_url_is_an_input_error_without_the_secret() -> None:
    for url in (f"ftp://hooks.example{SECRET_PATH}", f"hooks.slack.com{SECRET_PATH}"):
        with pytest.raises(InputError) as caught:
            SlackNotifier(url)
        assert SECRET_TOKEN not in str(caught.value)


def test_an_injected_client_is_used_and_left_open(
    receiver: SlackReceiver, secret_url: str
) -> None:
    with httpx.Client(headers={"X-Test": "injected"}) as client:
        SlackNotifier(secret_url, client=client).send(rollback())
        assert not client.is_closed
    assert receiver.requests[0].headers["X-Test"] == "injected"


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=7)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(later, now) == 7.0
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("inf", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"deadline": -1}, {"retries": -1}])
def test_nonsense_settings_are_input_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(InputError):
        SlackNotifier("https://hooks.slack.com/services/x",
                      delivery=Delivery(**kwargs))  # type: ignore[arg-type]
