"""Slack through a bot token: each rollout run gets one thread instead of a flat stream.

An incoming webhook can only post; ``chat.postMessage`` answers with the message's
``ts``, and a later message sent with ``thread_ts`` set to it lands in that thread. So
the first message of a run (rollout id + attempt) in a channel starts the thread and
every later one replies to it. The ``ts`` is kept in a :class:`ThreadMemory`, which the
runner backs with store events, so a restarted controller keeps the same thread.

The bot token is the credential: it is read from the environment once, here, sent only
in the ``Authorization`` header, registered for log redaction and cut out of every error
text. It is never in the payload, ``repr``, events or state.

The Web API says "not done" inside an HTTP 200 (``{"ok": false, "error": ...}``), so its
answer is read: ``ratelimited`` waits for ``Retry-After`` like a 429 does; other errors
(``invalid_auth``, ``channel_not_found``, ``not_in_channel``) are final, since the same
request would be refused again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import httpx

from canary.clock import Clock
from canary.errors import InputError
from canary.model import Notification
from canary.notify.delivery import (
    DEFAULT_DELIVERY,
    USER_AGENT,
    Attempt,
    Delivery,
    parse_retry_after,
)
from canary.notify.sender import Sender
from canary.notify.slack import slack_message
from canary.notify.templates import NO_TEMPLATES, Templates
from canary.notify.threads import LocalThreads, ThreadMemory
from canary.notify.urls import check_url
from canary.secrets import mask_url, redact, register_secret

DEFAULT_API_URL = "https://slack.com/api"
# Errors that say "later": anything else would be refused again. internal_error and
# fatal_error are not here: Slack warns the message may have been posted anyway.
_RETRYABLE = frozenset({"ratelimited", "rate_limited", "service_unavailable"})
# Bad news stays visible in the channel even though it is a reply in the thread.
_BROADCAST = frozenset({"rolled-back", "gate-failed", "aborted", "needs-human"})


class SlackBotNotifier(Sender):
    """Posts one Block Kit message per notification with ``chat.postMessage``, threaded
    per rollout run. See :class:`~canary.notify.delivery.Delivery` for the retry rules."""

    def __init__(
        self,
        *,
        token_env: str,
        channel: str,
        api_url: str = DEFAULT_API_URL,
        threads: ThreadMemory | None = None,
        templates: Templates = NO_TEMPLATES,
        delivery: Delivery = DEFAULT_DELIVERY,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise InputError(f"environment variable {token_env} (Slack bot token) is not "
                             "set or empty", field="notifications.botTokenEnv")
        if not channel:
            raise InputError("a Slack bot notification needs a channel",
                             field="notifications.channel")
        check_url(api_url, what="slack API")
        register_secret(token)
        self._token = token
        self.token_env = token_env
        self.channel = channel
        self._endpoint = api_url.rstrip("/") + "/chat.postMessage"
        self.threads: ThreadMemory = threads if threads is not None else LocalThreads()
        super().__init__(templates=templates, delivery=delivery, client=client, clock=clock)

    def __repr__(self) -> str:
        return (f"SlackBotNotifier(channel={self.channel!r}, token_env={self.token_env!r}, "
                f"api={mask_url(self._endpoint)!r})")

    def send(self, notification: Notification) -> None:
        n = notification
        payload: dict[str, Any] = {"channel": self.channel,
                                   **slack_message(n, templates=self.templates)}
        thread_ts = (self.threads.recall(n.rollout_id, n.attempt, self.channel)
                     if n.rollout_id else None)
        if thread_ts:
            payload["thread_ts"] = thread_ts
            if n.event in _BROADCAST:
                payload["reply_broadcast"] = True
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   "Authorization": f"Bearer {self._token}"}
        _, ts = self._exchange(self._endpoint,
                               json.dumps(payload, ensure_ascii=False).encode(),
                               headers=headers, what=f"slack {self.channel}",
                               judge=self._judge, secrets=frozenset({self._token}))
        if n.rollout_id and not thread_ts:
            # Posted before it is remembered: a crash in between costs a second thread,
            # never a lost alert.
            self.threads.remember(n.rollout_id, n.attempt, self.channel, ts)

    def _judge(self, response: httpx.Response, now: datetime) -> Attempt:
        """Slack's JSON answer: the message's ``ts``, or why it was not posted."""
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            text = redact(response.text[:200].strip(), {self._token})
            return Attempt(ok=False, problem=f"answer is not Slack's JSON: {text!r}")
        if answer.get("ok") is True:
            ts = answer.get("ts")
            if isinstance(ts, str) and ts:
                return Attempt(ok=True, answer=ts)
            # Posted, but without a ts nothing can thread under it; not worth a duplicate.
            return Attempt(ok=False, problem="Slack accepted the message but sent no ts")
        error = redact(str(answer.get("error") or "unknown error")[:100], {self._token})
        problem = f"Slack error {error!r}"
        if error in ("ratelimited", "rate_limited"):
            return Attempt(ok=False, retryable=True, problem=problem,
                           delay=parse_retry_after(response.headers.get("Retry-After"), now))
        return Attempt(ok=False, retryable=error in _RETRYABLE, problem=problem)
