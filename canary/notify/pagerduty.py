"""PagerDuty through the Events API v2: a failed rollout opens an incident, its later
success closes it.

Each notification is one ``POST /v2/enqueue``. Bad news (rolled back, gate failed,
needs a human, held, aborted) is ``event_action: trigger`` with a severity by event; good
news (promoted, or progressing again: a ``stage`` event after an operator resumed, promoted
or retried) is ``resolve``. Both carry the same ``dedup_key``, one per rollout run (the
rollout's id, which ``canary retry`` keeps), so the run's next success resolves whatever
its failures opened, a second failure while the incident is open is added to it instead
of paging again, and the first stage of an unrelated later deploy never resolves an
incident it did not fix.

That same key makes delivery safe to repeat: the runner records each notification's key
once sent and never sends it again, and should a controller die between sending and
recording, the repeated trigger lands on the open alert and a repeated resolve of a
resolved one is dropped by PagerDuty. Accepted is 202; 400 is final; 429 and 5xx are
retried (see :class:`~canary.notify.delivery.Delivery`).

The routing key is the credential: read from the environment once, here, registered for
log redaction and cut out of error texts. It travels in the body only, never in a URL,
``repr``, event or state.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx

from canary.clock import Clock
from canary.errors import InputError
from canary.model import Notification
from canary.notify.delivery import DEFAULT_DELIVERY, USER_AGENT, Delivery
from canary.notify.sender import Sender
from canary.notify.slack import EVENTS, reached
from canary.notify.templates import NO_TEMPLATES, Templates, failing, format_value
from canary.notify.urls import check_url
from canary.secrets import mask_url, redact_known, register_secret

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_SUMMARY = 1024  # payload.summary, per the Events API v2
MAX_DEDUP_KEY = 255
# custom_details: enough to act on, and far from the 512 KB an event may take even in
# four-byte characters (20 metrics x 2 texts x 1000 characters x 4 bytes = 160 KB)
MAX_DETAIL = 1000
MAX_METRICS = 20

# event -> severity of the alert it triggers; events not here resolve.
SEVERITY: dict[str, str] = {
    "needs-human": "critical",
    "rolled-back": "error",
    "gate-failed": "error",
    "held": "warning",
    "aborted": "info",  # an operator did it, and knows; kept for the record
}
RESOLVES = frozenset({"promoted", "stage"})


def dedup_key(n: Notification) -> str:
    """One key per rollout run, whatever the attempt: service, rollout name and id (the
    version stands in for the id when a notification is sent outside a runner)."""
    key = f"canary/{n.service}/{n.rollout}/{n.rollout_id or n.version}"
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return key[: MAX_DEDUP_KEY - 17] + "/" + digest


def default_summary(n: Notification) -> str:
    what = EVENTS.get(n.event, ("", n.event.replace("-", " ")))[1]
    text = (f"{n.rollout} {what}: service {n.service}, {n.stable_version or '?'} -> "
            f"{n.version}, reached {reached(n)}")
    if n.reason:
        text += f". {n.reason.rstrip('.')}"
    return text


def _cut(text: str, limit: int) -> str:
    """Redacted (a reason may quote a URL with a token in it), then cut to ``limit``."""
    text = redact_known(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pagerduty_event(n: Notification, *, routing_key: str,
                    templates: Templates = NO_TEMPLATES) -> dict[str, Any]:
    """The enqueue body for one notification: a trigger with a payload, or a resolve."""
    body: dict[str, Any] = {"routing_key": routing_key, "dedup_key": dedup_key(n)}
    if n.event in RESOLVES:
        body["event_action"] = "resolve"
        return body
    summary = templates.render(n) or default_summary(n)
    bad = failing(n.results)
    details: dict[str, Any] = {
        "event": n.event, "rollout": n.rollout, "service": n.service, "version": n.version,
        "stableVersion": n.stable_version, "stage": n.stage, "weight": n.weight,
        "reason": _cut(n.reason, MAX_DETAIL),
        "failingMetrics": [
            {"name": r.name, "outcome": r.outcome.value, "value": format_value(r.value),
             "threshold": r.threshold, "query": _cut(r.query, MAX_DETAIL),
             "message": _cut(r.message, MAX_DETAIL), "url": r.link}
            for r in bad[:MAX_METRICS]],
        "moreFailingMetrics": [r.name[:200] for r in bad[MAX_METRICS:]],
        "inspect": f"canary status {n.rollout}; canary history {n.rollout}",
    }
    body["event_action"] = "trigger"
    body["client"] = "canary"
    body["payload"] = {
        "summary": _cut(summary, MAX_SUMMARY),
        "source": n.service,
        "severity": SEVERITY.get(n.event, "warning"),
        "component": n.rollout,
        "class": n.event,
        "custom_details": details,
    }
    links = [{"href": r.link, "text": f"{r.name} = {format_value(r.value)} (graph)"}
             for r in bad if r.link.startswith(("http://", "https://"))]
    if links:
        body["links"] = links[:10]
    return body


class PagerDutyNotifier(Sender):
    """Triggers and resolves PagerDuty alerts, one dedup key per rollout."""

    def __init__(
        self,
        *,
        routing_key_env: str,
        url: str = DEFAULT_EVENTS_URL,
        templates: Templates = NO_TEMPLATES,
        delivery: Delivery = DEFAULT_DELIVERY,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        key = os.environ.get(routing_key_env, "").strip()
        if not key:
            raise InputError(f"environment variable {routing_key_env} (PagerDuty routing "
                             "key) is not set or empty", field="notifications.routingKeyEnv")
        check_url(url, what="pagerduty events")
        register_secret(key)
        self._key = key
        self.routing_key_env = routing_key_env
        self._url = url
        super().__init__(templates=templates, delivery=delivery, client=client, clock=clock)

    def __repr__(self) -> str:
        return (f"PagerDutyNotifier(routing_key_env={self.routing_key_env!r}, "
                f"url={mask_url(self._url)!r})")

    def send(self, notification: Notification) -> None:
        event = pagerduty_event(notification, routing_key=self._key, templates=self.templates)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        self._exchange(self._url, json.dumps(event, ensure_ascii=False).encode(),
                       headers=headers, what=f"pagerduty {event['event_action']}",
                       secrets=frozenset({self._key}))
