"""Microsoft Teams through a Workflows webhook: one Adaptive Card per notification.

Teams' Office 365 connectors are retired; a channel now receives webhooks through the
Workflows app ("Post to a channel when a webhook request is received"), which takes
``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard>}]}`` and posts each
attached card. Workflows support Adaptive Cards only (no MessageCard), so that is what is
sent: version 1.4, which Teams renders on desktop, web and mobile.

The card says what the Slack message says: a headline, the summary line (or the entry's
template for the event), the facts (rollout, service, versions, how far traffic got), each
failing metric with its value, threshold and query, and the commands to look further; a
metric's Prometheus graph becomes an ``Action.OpenUrl`` button. Texts are cut, and metrics
left out, to stay under the ~28 KB a Teams message may take.

The URL is the credential (its ``sig`` query parameter signs the request): it is masked in
``repr`` and errors and registered for log redaction. Workflows answer 202; the retry
rules are :class:`~canary.notify.delivery.Delivery`'s. Workflows offer no idempotency key,
so, as for a Slack incoming webhook, "never twice" is the runner's: it records each
notification's key once sent and skips it after a restart.
"""

from __future__ import annotations

import json
from typing import Any

from canary.model import MetricResult, Notification, Outcome
from canary.notify.sender import IncomingWebhook
from canary.notify.slack import EVENTS, reached
from canary.notify.templates import NO_TEMPLATES, Templates, failing, format_value
from canary.secrets import redact_known

CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
MAX_TEXT = 2000  # characters per TextBlock
MAX_METRIC_LINE = 500
MAX_QUERY = 1000
MAX_METRICS = 10  # metric blocks on one card; the rest are named in one line
MAX_ACTIONS = 3
MAX_URL = 1500  # a graph link longer than this is left out, not cut (a cut URL is wrong)
MAX_BYTES = 24 * 1024  # Teams takes ~28 KB per message; the envelope and headers need some

# event -> (headline colour, what happened). Adaptive Card colours, not hex.
_LOOK: dict[str, str] = {
    "promoted": "Good",
    "rolled-back": "Attention",
    "gate-failed": "Attention",
    "needs-human": "Attention",
    "aborted": "Warning",
    "held": "Warning",
    "stage": "Default",
}


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    text = redact_known(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def headline(n: Notification) -> str:
    what = EVENTS.get(n.event, ("", n.event.replace("-", " ")))[1]
    if n.event == "stage":
        return f"{n.rollout} at stage {n.stage}: {n.weight}% canary"
    return f"{n.rollout} {what}"


def default_text(n: Notification) -> str:
    text = (f"Service {n.service}, {n.stable_version or '?'} → {n.version}, "
            f"reached {reached(n)}.")
    if n.reason:
        text += f" {n.reason.rstrip('.')}."
    return text


def _text(text: str, limit: int = MAX_TEXT, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": _cut(text, limit), "wrap": True, **style}


def _metric_blocks(r: MetricResult) -> list[dict[str, Any]]:
    verdict = "failed" if r.outcome is Outcome.FAILED else "could not be measured"
    line = (f"**{r.name}** {verdict}: observed {format_value(r.value)}, "
            f"threshold {r.threshold or 'none'}")
    if r.message:
        line += f" — {r.message}"
    blocks = [_text(line, MAX_METRIC_LINE, spacing="Medium")]
    if r.query:
        blocks.append(_text(r.query, MAX_QUERY, fontType="Monospace", isSubtle=True,
                            spacing="None"))
    return blocks


def teams_card(n: Notification, *, templates: Templates = NO_TEMPLATES) -> dict[str, Any]:
    """The Adaptive Card for one notification (the ``content`` of the attachment), with
    as many failing metrics as fit in :data:`MAX_BYTES` (multi-byte text counts more)."""
    rendered = templates.render(n)
    shown = min(len(failing(n.results)), MAX_METRICS)
    while True:
        card = _card(n, rendered, shown)
        if shown == 0 or len(json.dumps(card, ensure_ascii=False).encode()) <= MAX_BYTES:
            return card
        shown -= 1


def _card(n: Notification, rendered: str | None, shown: int) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        _text(headline(n), size="Medium", weight="Bolder",
              color=_LOOK.get(n.event, "Default")),
        _text(rendered if rendered is not None else default_text(n)),
    ]
    bad = failing(n.results)
    if rendered is None:
        body.append({"type": "FactSet", "facts": [
            {"title": "Rollout", "value": _cut(n.rollout, 200)},
            {"title": "Service", "value": _cut(n.service, 200)},
            {"title": "Versions", "value": _cut(f"{n.stable_version or '?'} → {n.version}",
                                                400)},
            {"title": "Reached", "value": reached(n)},
        ]})
        if bad:
            body.append(_text(f"Failing metrics ({len(bad)})", weight="Bolder",
                              separator=True))
            for r in bad[:shown]:
                body.extend(_metric_blocks(r))
            if len(bad) > shown:
                rest = bad[shown:]
                body.append(_text(f"…and {len(rest)} more: "
                                  + ", ".join(r.name for r in rest), MAX_METRIC_LINE))
    body.append(_text(f"Inspect: canary status {n.rollout} · canary history {n.rollout}",
                      size="Small", isSubtle=True, separator=True))
    card: dict[str, Any] = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard",
                            "version": CARD_VERSION, "msteams": {"width": "Full"},
                            "body": body}
    actions = [{"type": "Action.OpenUrl", "title": _cut(f"Graph {r.name}", 100),
                "url": r.link}
               for r in bad if r.link.startswith(("http://", "https://"))
               and len(r.link) <= MAX_URL][:MAX_ACTIONS]
    if actions:
        card["actions"] = actions
    return card


def teams_message(n: Notification, *, templates: Templates = NO_TEMPLATES) -> dict[str, Any]:
    """The body a Workflows webhook takes: a message with the card attached."""
    return {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": teams_card(n, templates=templates),
    }]}


class TeamsNotifier(IncomingWebhook):
    """Posts one Adaptive Card per notification to a Teams Workflows webhook."""

    service = "teams"
    url_kind = "teams workflow"

    def message(self, notification: Notification) -> dict[str, Any]:
        return teams_message(notification, templates=self.templates)
