"""What every HTTP notifier shares, written once: the templates, how hard to try, the
client and clock it posts with (:class:`Sender`), and for the chat services whose incoming
webhook URL is itself the credential (Slack, Teams), the whole notifier but its message
(:class:`IncomingWebhook`)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

from canary.clock import Clock
from canary.model import Notification
from canary.notify.delivery import (
    DEFAULT_DELIVERY,
    USER_AGENT,
    Delivery,
    Judge,
    exchange_json,
)
from canary.notify.templates import NO_TEMPLATES, Templates
from canary.notify.urls import check_url
from canary.secrets import mask_url, register_url


class Sender:
    """What every HTTP notifier shares: its templates, how hard to try (``Delivery``), and
    the client and clock it posts with (both injectable, for tests)."""

    def __init__(self, *, templates: Templates, delivery: Delivery,
                 client: httpx.Client | None, clock: Clock | None) -> None:
        self.templates = templates
        self.delivery = delivery
        self._client = client
        self._clock = clock

    def _post(self, url: str, body: bytes, *, headers: dict[str, str], what: str) -> None:
        exchange_json(url, body, headers=headers, delivery=self.delivery, client=self._client,
                      clock=self._clock, what=what)

    def _exchange(self, url: str, body: bytes, *, headers: dict[str, str], what: str,
                  secrets: frozenset[str], judge: Judge | None = None) -> tuple[int, Any]:
        return exchange_json(url, body, headers=headers, delivery=self.delivery,
                             client=self._client, clock=self._clock, what=what, judge=judge,
                             secrets=secrets)


class IncomingWebhook(Sender):
    """Posts one JSON message per notification to a chat service's incoming webhook. The
    URL is the credential: masked in ``repr`` and errors, registered for log redaction."""

    service: ClassVar[str]  # "slack": names the sends in errors and logs
    url_kind: ClassVar[str]  # "slack webhook": names the URL when it is refused

    def __init__(
        self,
        webhook_url: str,
        *,
        templates: Templates = NO_TEMPLATES,
        delivery: Delivery = DEFAULT_DELIVERY,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_url(webhook_url, what=self.url_kind)
        register_url(webhook_url)
        self._url = webhook_url
        super().__init__(templates=templates, delivery=delivery, client=client, clock=clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self._url)!r})"

    def message(self, notification: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, notification: Notification) -> None:
        body = json.dumps(self.message(notification), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        self._post(self._url, body, headers=headers, what=self.service)
