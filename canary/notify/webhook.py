"""The generic webhook notifier: every field of a notification as canary's own JSON, signed
with HMAC-SHA256 when a secret is configured, so any receiver can act on it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import httpx

from canary.clock import Clock
from canary.errors import InputError
from canary.model import Notification
from canary.notify.delivery import DEFAULT_DELIVERY, USER_AGENT, Delivery
from canary.notify.sender import Sender
from canary.notify.templates import NO_TEMPLATES, Templates
from canary.notify.urls import check_url
from canary.secrets import mask_url, register_url

SIGNATURE_HEADER = "X-Canary-Signature"


def notification_json(notification: Notification) -> dict[str, Any]:
    """Every field of the notification, camelCase like the rest of canary's JSON."""
    n = notification
    return {
        "apiVersion": "canary/v1",
        "kind": "Notification",
        "event": n.event,
        "rollout": n.rollout,
        "service": n.service,
        "version": n.version,
        "stableVersion": n.stable_version,
        "stage": n.stage,
        "weight": n.weight,
        "reason": n.reason,
        "results": [r.to_json() for r in n.results],
        "key": n.key,
    }


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Canary-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookNotifier(Sender):
    """POSTs each notification as JSON; signs it when ``secret_env`` names a variable.
    With a template for the event, the JSON also carries the rendered ``text``.

    The signing secret is read once, here, so a missing variable is an input error when
    the rollout is loaded rather than a silent unsigned alert during a rollback.
    """

    def __init__(
        self,
        url: str,
        *,
        secret_env: str | None = None,
        templates: Templates = NO_TEMPLATES,
        delivery: Delivery = DEFAULT_DELIVERY,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_url(url, what="webhook")
        register_url(url)
        self._url = url
        self._secret: bytes | None = None
        if secret_env is not None:
            value = os.environ.get(secret_env, "")
            if not value:
                raise InputError(f"environment variable {secret_env} (webhook signing "
                                 "secret) is not set or empty")
            self._secret = value.encode()
        self.secret_env = secret_env
        super().__init__(templates=templates, delivery=delivery, client=client, clock=clock)

    def __repr__(self) -> str:
        signed = f", secret_env={self.secret_env!r}" if self.secret_env else ""
        return f"WebhookNotifier({mask_url(self._url)!r}{signed})"

    def send(self, notification: Notification) -> None:
        payload = notification_json(notification)
        rendered = self.templates.render(notification)
        if rendered is not None:
            payload["text"] = rendered  # the entry's template for this event
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Canary-Event": notification.event,
        }
        if notification.key:
            headers["Idempotency-Key"] = notification.key
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        self._post(self._url, body, headers=headers, what="webhook")
