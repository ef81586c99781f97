"""Slack bot mode over real HTTP: one thread per rollout run, kept across a restart, the
Web API's own errors and rate limits, and a token that never leaves the header."""

from __future__ import annotations

import io
import json
import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from canary.clock import ManualClock
from canary.config.spec import parse_rollout_text
from canary.errors import InputError, NotifyError
from canary.notify.delivery import Delivery
from canary.notify.registry import EventFilter, build_notifier
from canary.notify.slack import slack_message
from canary.notify.slack_bot import SlackBotNotifier
from canary.notify.threads import LocalThreads, ThreadMemory
from canary.rollout.threads import StoreThreads
from canary.specs import NotificationSpec
from canary.store.sqlite import SQLiteStore
from lab.slack_receiver import Received, SlackReceiver

from .samples import rollback

TOKEN = "xoxb-1111-2222-SuperSecretBotToken"
TOKEN_ENV = "CANARY_TEST_SLACK_BOT_TOKEN"
CHANNEL = "#deploys"


class RecordingClock(ManualClock):
    """Moves only when slept on, and remembers every wait."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackReceiver]:
    """A receiver that, like Slack, insists on the bot token."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    r = SlackReceiver(echo=io.StringIO(), token=TOKEN).start()
    try:
        yield r
    finally:
        r.stop()


def bot(api: SlackReceiver, *, threads: ThreadMemory | None = None, channel: str = CHANNEL,
        **kw: object) -> SlackBotNotifier:
    return SlackBotNotifier(token_env=TOKEN_ENV, channel=channel, api_url=api.url("/api"),
                            threads=threads, **kw)  # type: ignore[arg-type]


def posted(api: SlackReceiver) -> list[Received]:
    return [r for r in api.requests if r.ok and r.ts]


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert "SuperSecret" not in text


def test_first_message_starts_the_thread_later_ones_reply(api: SlackReceiver) -> None:
    notifier = bot(api)
    run = dict(rollout_id="r1", attempt=1)
    notifier.send(rollback(event="stage", **run))
    notifier.send(rollback(event="stage", stage=3, **run))
    notifier.send(rollback(**run))

    first, second, third = posted(api)
    assert first.path == "/api/chat.postMessage"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "thread_ts" not in first.payload
    assert second.payload["thread_ts"] == first.ts == third.payload["thread_ts"]
    # the same Block Kit message as the webhook mode, plus where to post it
    assert first.payload == {"channel": CHANNEL,
                             **slack_message(rollback(event="stage", **run))}
    # progress stays in the thread; a rollback is also shown in the channel
    assert "reply_broadcast" not in second.payload
    assert third.payload["reply_broadcast"] is True


def test_threads_are_per_run_and_channel(api: SlackReceiver) -> None:
    threads = LocalThreads()
    deploys, oncall = bot(api, threads=threads), bot(api, threads=threads, channel="#oncall")
    deploys.send(rollback(rollout_id="r1", attempt=1))
    oncall.send(rollback(rollout_id="r1", attempt=1))   # another channel: its own thread
    deploys.send(rollback(rollout_id="r1", attempt=2))  # a retried run: a new thread
    deploys.send(rollback(rollout_id="r2", attempt=1))  # another rollout: a new thread
    deploys.send(rollback(rollout_id="r1", attempt=2))
    deploys.send(rollback())  # outside any run: never threaded, never remembered
    messages = posted(api)
    assert [m.payload.get("thread_ts") for m in messages] == [
        None, None, None, None, messages[2].ts, None]
    assert len({m.ts for m in messages}) == 6


def test_thread_survives_a_restart(api: SlackReceiver, tmp_path: Path) -> None:
    from tests.rollout.helpers import new_state

    db = f"{tmp_path}/state.db"
    store = SQLiteStore(db)
    store.create(new_state(revision=0))
    bot(api, threads=StoreThreads(store, ManualClock())).send(
        rollback(event="stage", rollout_id="r1", attempt=1))
    store.close()

    # a new process: new store handle, new notifier, nothing in memory
    store = SQLiteStore(db)
    bot(api, threads=StoreThreads(store, ManualClock())).send(
        rollback(rollout_id="r1", attempt=1))
    first, second = posted(api)
    assert second.payload["thread_ts"] == first.ts

    [event] = [e for e in store.events("r1") if e.kind == "slack-thread"]
    assert event.key == f"slack-thread:r1:1:{CHANNEL}"
    assert dict(event.data) == {"ts": first.ts}
    assert_no_token(repr(event), json.dumps(dict(event.data)))
    store.close()


def test_first_writer_wins_the_thread(tmp_path: Path) -> None:
    from tests.rollout.helpers import new_state

    store = SQLiteStore(f"{tmp_path}/state.db")
    store.create(new_state(revision=0))
    a, b = StoreThreads(store, ManualClock()), StoreThreads(store, ManualClock())
    assert a.remember("r1", 1, CHANNEL, "1.000001") == "1.000001"
    assert b.remember("r1", 1, CHANNEL, "1.000002") == "1.000001"
    assert b.recall("r1", 1, CHANNEL) == "1.000001"
    assert b.recall("r1", 2, CHANNEL) is None
    store.close()


@pytest.mark.parametrize("how", ["http-429", "ok-false"])
def test_ratelimited_waits_for_retry_after(api: SlackReceiver, how: str) -> None:
    if how == "http-429":
        api.fail_next(1, status=429, retry_after=3,
                      body=json.dumps({"ok": False, "error": "ratelimited"}))
    else:
        api.api_error("ratelimited", retry_after=3)
    clock = RecordingClock()
    notifier = bot(api, delivery=Delivery(backoff=0.5), clock=clock)
    notifier.send(rollback(rollout_id="r1", attempt=1))
    notifier.send(rollback(rollout_id="r1", attempt=1))
    assert clock.sleeps == [3.0]  # Retry-After, not the 0.5 s backoff
    first, second = posted(api)
    assert len(api.requests) == 3
    assert second.payload["thread_ts"] == first.ts  # the retried message started the thread


def test_ratelimited_over_real_time(api: SlackReceiver) -> None:
    api.api_error("ratelimited", retry_after=1)
    started = time.monotonic()
    bot(api, delivery=Delivery(backoff=0.05)).send(rollback(rollout_id="r1", attempt=1))
    assert 1.0 <= time.monotonic() - started < 3
    assert len(posted(api)) == 1


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth"])
def test_other_slack_errors_are_final_and_name_the_error(api: SlackReceiver,
                                                         error: str) -> None:
    api.api_error(error)
    clock = RecordingClock()
    with pytest.raises(NotifyError) as caught:
        bot(api, clock=clock).send(rollback(rollout_id="r1", attempt=1))
    assert error in str(caught.value) and "not retried" in str(caught.value)
    assert clock.sleeps == [] and len(api.requests) == 1
    assert_no_token("".join(traceback.format_exception(caught.value)))


def test_a_failed_first_message_starts_no_thread(api: SlackReceiver) -> None:
    notifier = bot(api)
    api.api_error("channel_not_found")
    with pytest.raises(NotifyError):
        notifier.send(rollback(rollout_id="r1", attempt=1))
    notifier.send(rollback(rollout_id="r1", attempt=1))
    [message] = posted(api)
    assert "thread_ts" not in message.payload


def test_wrong_token_is_refused_and_never_echoed(api: SlackReceiver,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "xoxb-wrong-SuperSecretOther")
    with pytest.raises(NotifyError, match="invalid_auth") as caught:
        bot(api).send(rollback())
    assert "xoxb-wrong" not in "".join(traceback.format_exception(caught.value))


def test_token_stays_in_the_header(api: SlackReceiver, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    from tests.rollout.helpers import new_state

    caplog.set_level(logging.DEBUG)
    store = SQLiteStore(f"{tmp_path}/state.db")
    store.create(new_state(revision=0))
    notifier = build_notifier(
        NotificationSpec("slack", "", bot_token_env=TOKEN_ENV, channel=CHANNEL,
                         api_url=api.url("/api")),
        threads=StoreThreads(store, ManualClock()))
    notifier.send(rollback(rollout_id="r1", attempt=1))
    api.fail_next(1, status=400, body=f"boom {TOKEN}")  # even a receiver echoing it
    with pytest.raises(NotifyError) as caught:
        notifier.send(rollback(rollout_id="r1", attempt=1))

    assert_no_token(repr(notifier), str(caught.value), caplog.text,
                    *(r.body.decode() for r in api.requests),
                    *(repr(e) for e in store.events("r1")))
    assert TOKEN_ENV in repr(notifier) and CHANNEL in repr(notifier)
    store.close()


def test_registry_picks_the_mode(api: SlackReceiver) -> None:
    spec = NotificationSpec("slack", "", bot_token_env=TOKEN_ENV, channel=CHANNEL)
    built = build_notifier(spec)
    assert isinstance(built, EventFilter) and isinstance(built.notifier, SlackBotNotifier)
    assert "slack.com" in repr(built)  # the default Web API


def test_missing_token_variable_is_an_input_error_naming_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(InputError, match=TOKEN_ENV):
        build_notifier(NotificationSpec("slack", "", bot_token_env=TOKEN_ENV,
                                        channel=CHANNEL))
    monkeypatch.setenv(TOKEN_ENV, "  ")
    with pytest.raises(InputError, match=TOKEN_ENV):
        build_notifier(NotificationSpec("slack", "", bot_token_env=TOKEN_ENV,
                                        channel=CHANNEL))


@pytest.mark.parametrize(("spec", "words"), [
    (NotificationSpec("slack", "https://hooks.slack.com/x", bot_token_env=TOKEN_ENV,
                      channel=CHANNEL), "not both or neither"),
    (NotificationSpec("slack", ""), "not both or neither"),
    (NotificationSpec("slack", "", bot_token_env=TOKEN_ENV), "needs a channel"),
    (NotificationSpec("webhook", "https://example.com/h", bot_token_env=TOKEN_ENV,
                      channel=CHANNEL), "for type slack"),
])
def test_registry_refuses_mixed_modes(api: SlackReceiver, spec: NotificationSpec,
                                      words: str) -> None:
    with pytest.raises(InputError, match=words):
        build_notifier(spec)


ROLLOUT = """\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  router:
    type: haproxy
    socket: /run/haproxy/admin.sock
    backend: checkout
    stable: [stable-1]
    canary: canary-1
  analysis:
    policy: default
  notifications:
    - type: slack
      botTokenEnv: SLACK_BOT_TOKEN
      channel: "#deploys"
"""
ENTRY_LINE = 17


def test_rollout_file_bot_mode() -> None:
    spec = parse_rollout_text(ROLLOUT, file="rollout.yaml")
    [n] = spec.notifications
    assert (n.type, n.url, n.bot_token_env, n.channel, n.api_url) == (
        "slack", "", "SLACK_BOT_TOKEN", "#deploys", "")
    custom = parse_rollout_text(
        ROLLOUT + "      apiUrl: http://127.0.0.1:9/api\n", file="rollout.yaml")
    assert custom.notifications[0].api_url == "http://127.0.0.1:9/api"


@pytest.mark.parametrize(("change", "line", "field", "words"), [
    (("      channel: \"#deploys\"\n",
      "      channel: \"#deploys\"\n      webhookUrl: https://hooks.slack.com/x\n"),
     ENTRY_LINE, "spec.notifications[0]", "exactly one of 'webhookUrl'"),
    (("      botTokenEnv: SLACK_BOT_TOKEN\n      channel: \"#deploys\"\n", ""),
     ENTRY_LINE, "spec.notifications[0]", "exactly one of 'webhookUrl'"),
    (("      channel: \"#deploys\"\n", ""), ENTRY_LINE, "spec.notifications[0]",
     "needs a channel"),
    (("      botTokenEnv: SLACK_BOT_TOKEN\n", "      webhookUrl: https://hooks.slack.com/x\n"),
     ENTRY_LINE, "spec.notifications[0]", "go with botTokenEnv"),
    (("type: slack", "type: webhook"), ENTRY_LINE, "spec.notifications[0]",
     "for type slack"),
    (("botTokenEnv: SLACK_BOT_TOKEN", "botTokenEnv: xoxb-1-2-3"), ENTRY_LINE + 1,
     "spec.notifications[0].botTokenEnv", "pattern"),
    (("      channel: \"#deploys\"\n", "      channel: \"#deploys\"\n      apiUrl: slack.com\n"),
     ENTRY_LINE + 3, "spec.notifications[0].apiUrl", "pattern"),
])
def test_rollout_file_mode_errors_name_line_and_field(change: tuple[str, str], line: int,
                                                      field: str, words: str) -> None:
    assert change[0] in ROLLOUT
    with pytest.raises(InputError) as info:
        parse_rollout_text(ROLLOUT.replace(change[0], change[1]), file="rollout.yaml")
    err = info.value
    assert (err.file, err.line, err.field) == ("rollout.yaml", line, field)
    assert words in err.message
    assert str(err).startswith(f"rollout.yaml:{line}: {field}: ")


def test_webhook_type_still_requires_webhook_url() -> None:
    text = ROLLOUT.replace("type: slack", "type: webhook").replace(
        "      botTokenEnv: SLACK_BOT_TOKEN\n      channel: \"#deploys\"\n", "")
    with pytest.raises(InputError) as info:
        parse_rollout_text(text, file="rollout.yaml")
    assert info.value.field == "spec.notifications[0]"
    assert info.value.line == ENTRY_LINE
    assert "needs webhookUrl" in info.value.message
