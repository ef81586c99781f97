"""Slack alerts an on-call engineer can act on without opening a dashboard.

The users of Argo and Flagger ask for the *why* in the alert ("failed (1) > failureLimit
(0)" is not actionable): so a message names the rollout, service, both versions, how far
traffic got, the reason, and, for an analysis failure, each failing metric with its
observed value, its threshold and the query that produced it, plus the command to look
further. One incoming-webhook POST per notification: ``text`` (the notification preview
and the fallback for clients without blocks) plus Block Kit ``blocks``.

Block Kit refuses a message outright when a limit is exceeded (header 150 characters,
section text 3000, field 2000, 50 blocks), and a refused alert during a rollback is the
worst outcome, so every piece of user-supplied text is escaped and cut to fit here,
without ever leaving an open code fence or half an ``&amp;``.
"""

from __future__ import annotations

from typing import Any

from canary.model import MetricResult, Notification, Outcome
from canary.notify.sender import IncomingWebhook
from canary.notify.templates import NO_TEMPLATES, Templates, failing, format_value

# Block Kit limits (docs.slack.dev/reference/block-kit): characters per text, blocks.
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_BLOCKS = 50
MAX_TEXT = 3000  # top-level text: Slack allows far more, a preview needs far less

# event -> (emoji, what happened). One look at the channel tells good news from bad.
EVENTS: dict[str, tuple[str, str]] = {
    "promoted": (":white_check_mark:", "promoted"),
    "rolled-back": (":rotating_light:", "rolled back"),
    "gate-failed": (":no_entry:", "gate failed"),
    "aborted": (":octagonal_sign:", "aborted"),
    "needs-human": (":sos:", "needs a human"),
    "held": (":double_vertical_bar:", "held"),
    "stage": (":arrow_forward:", "progressing"),
}
_UNKNOWN_EVENT = ":information_source:"


def _units(text: str) -> int:
    """Length as Slack may count it (UTF-16 code units): never less than len()."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int, *, marker: str = "…") -> str:
    """Cut ``text`` to at most ``limit`` units, ending in ``marker`` when cut, never
    inside an HTML entity made by :func:`escape`."""
    if _units(text) <= limit:
        return text
    keep = max(0, limit - _units(marker))
    cut = text[:keep]
    while cut and _units(cut) > keep:
        cut = cut[: len(cut) - max(1, (_units(cut) - keep) // 2)]
    amp = cut.rfind("&")
    if amp != -1 and len(cut) - amp < 5 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + marker


def escape(text: str) -> str:
    """mrkdwn control characters: Slack reads ``<...>`` as links and mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    """Inline code that a stray backtick cannot break open."""
    return "`" + escape(text).replace("`", "'") + "`"


def _fence(text: str) -> str:
    """Content for a ``` block: a triple backtick inside would end the block early."""
    return escape(text).replace("```", "`\u200b``")


def headline(n: Notification) -> str:
    emoji, what = EVENTS.get(n.event, (_UNKNOWN_EVENT, n.event.replace("-", " ")))
    if n.event == "stage":
        return f"{emoji} {n.rollout} at stage {n.stage}: {n.weight}% canary"
    return f"{emoji} {n.rollout} {what}"


def reached(n: Notification) -> str:
    if n.stage <= 0:
        return f"before any stage ({n.weight}% canary)"
    return f"stage {n.stage}, {n.weight}% canary"


def _metric_text(r: MetricResult) -> str:
    verdict = "failed" if r.outcome is Outcome.FAILED else "could not be measured"
    head = (f"*{escape(r.name)}* {verdict}: observed {_code(format_value(r.value))}, "
            f"threshold {_code(r.threshold or 'none')}")
    if r.message:
        head += f"\n{escape(r.message)}"
    head = truncate(head, 1000)
    if not r.query:
        return head
    budget = MAX_SECTION - _units(head) - len("\n```") - len("```")
    return f"{head}\n```{truncate(_fence(r.query), budget)}```"


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}}


def _header(n: Notification) -> dict[str, object]:
    return {"type": "header",
            "text": {"type": "plain_text", "text": truncate(headline(n), MAX_HEADER),
                     "emoji": True}}


def _inspect(n: Notification) -> dict[str, object]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(
        f"Inspect: {_code(f'canary status {n.rollout}')} · "
        f"{_code(f'canary history {n.rollout}')}", MAX_SECTION)}]}


def _fallback_text(n: Notification, bad: list[MetricResult]) -> str:
    stable = n.stable_version or "?"
    text = (f"{headline(n)}: service {n.service}, {stable} → {n.version}, "
            f"reached {reached(n)}.")
    if n.reason:
        text += f" {n.reason.rstrip('.')}."
    if bad:
        text += " Failing: " + "; ".join(
            f"{r.name} = {format_value(r.value)} ({r.threshold or r.outcome.value})"
            for r in bad
        )
    return truncate(escape(text), MAX_TEXT)


def slack_message(n: Notification, *, templates: Templates = NO_TEMPLATES
                  ) -> dict[str, Any]:
    """The incoming-webhook payload for one notification: ``text`` plus ``blocks``.

    With a template for the event, its text (values escaped, the author's mrkdwn kept)
    is both ``text`` and the one section under the header, in place of the default
    fields, reason and metric sections."""
    rendered = templates.render(n, escape=escape)
    if rendered is not None:
        return {"text": truncate(rendered, MAX_TEXT), "blocks": [
            _header(n), _section(rendered), _inspect(n)]}
    bad = failing(n.results)
    fields = [
        f"*Rollout*\n{escape(n.rollout)}",
        f"*Service*\n{escape(n.service)}",
        f"*Versions*\n{_code(n.stable_version or '?')} → {_code(n.version)}",
        f"*Reached*\n{reached(n)}",
    ]
    head: list[dict[str, object]] = [
        _header(n),
        {"type": "section",
         "fields": [{"type": "mrkdwn", "text": truncate(f, MAX_FIELD)}
                    for f in fields[:MAX_FIELDS]]},
    ]
    if n.reason:
        head.append(_section(f"*Reason*\n{escape(n.reason)}"))
    tail: list[dict[str, object]] = [_inspect(n)]
    middle: list[dict[str, object]] = []
    if bad:
        room = MAX_BLOCKS - len(head) - len(tail) - 2  # title block + a divider
        shown = bad if len(bad) <= room else bad[: room - 1]
        middle.append({"type": "divider"})
        middle.append(_section(f"*Failing metrics ({len(bad)})*"))
        middle.extend(_section(_metric_text(r)) for r in shown)
        if len(shown) < len(bad):
            rest = bad[len(shown):]
            middle.append(_section(f"…and {len(rest)} more: "
                                   + ", ".join(escape(r.name) for r in rest)))
    return {"text": _fallback_text(n, bad), "blocks": head + middle + tail}


class SlackNotifier(IncomingWebhook):
    """Posts one Block Kit message per notification to a Slack incoming webhook. See
    :class:`~canary.notify.delivery.Delivery` for the retry rules."""

    service = "slack"
    url_kind = "slack webhook"

    def message(self, notification: Notification) -> dict[str, Any]:
        return slack_message(notification, templates=self.templates)
