"""What a Slack alert says (A.4), checked on what the real receiver got over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canary.model import MetricResult, Notification, Outcome
from canary.notify.slack import EVENTS, MAX_BLOCKS, SlackNotifier, slack_message, truncate
from lab.slack_receiver import SlackReceiver

from .samples import SECRET_PATH, SECRET_TOKEN, rollback


def texts(payload: dict[str, Any]) -> str:
    """Every piece of text a reader can see, in order."""
    out = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(f["text"] for f in block.get("fields", ()))
        out.extend(e["text"] for e in block.get("elements", ()))
    return "\n".join(out)


def header(payload: dict[str, Any]) -> str:
    blocks = [b for b in payload["blocks"] if b["type"] == "header"]
    assert len(blocks) == 1
    return str(blocks[0]["text"]["text"])


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_rollback_alert_names_everything_needed_to_act(
    receiver: SlackReceiver, secret_url: str
) -> None:
    SlackNotifier(secret_url).send(rollback())

    [request] = receiver.requests
    assert request.path == SECRET_PATH
    assert request.headers["Content-Type"].startswith("application/json")
    payload = request.payload
    assert receiver.payloads == [payload]
    assert header(payload) == ":rotating_light: checkout rolled back"
    seen = unescape(texts(payload))
    for expected in ("checkout", "checkout-svc", "`1.4.2` → `2.0.0`", "stage 2", "25% canary",
                     "analysis failed: error-rate, latency-p99", "canary status checkout"):
        assert expected in seen, expected
    metrics = [unescape(b["text"]["text"]) for b in payload["blocks"]
               if b["type"] == "section" and "```" in b.get("text", {}).get("text", "")]
    assert len(metrics) == 2  # the passed and the dry-run metric do not explain the failure
    error_rate, latency = metrics
    assert "*error-rate* failed: observed `0.0523`, threshold `<= 0.01`" in error_rate
    assert ('```sum(rate(http_requests_total{service="checkout-svc",code=~"5.."}[1m]))```'
            in error_rate)
    assert "*latency-p99* could not be measured: observed `no value`" in latency
    assert "Prometheus unreachable" in latency
    assert "histogram_quantile(0.99" in latency
    assert "queue-depth" not in seen and "cpu" not in seen
    # the plain-text fallback carries the essentials for notifications and old clients
    assert "1.4.2 → 2.0.0" in payload["text"]
    assert "error-rate = 0.0523 (<= 0.01)" in unescape(payload["text"])
    # and the printed line says what it was
    assert "checkout rolled back" in receiver.echo.getvalue()  # type: ignore[union-attr]


def test_no_secret_in_payload_or_repr(receiver: SlackReceiver, secret_url: str) -> None:
    notifier = SlackNotifier(secret_url)
    notifier.send(rollback())
    assert SECRET_TOKEN not in receiver.requests[0].body.decode()
    assert SECRET_TOKEN not in repr(notifier)
    assert repr(notifier) == f"SlackNotifier('http://127.0.0.1:{receiver.port}/***')"


def test_each_event_has_its_own_header() -> None:
    headers = {e: header(slack_message(rollback(event=e, results=()))) for e in EVENTS}
    assert len(set(headers.values())) == len(EVENTS)
    emojis = {h.split()[0] for h in headers.values()}
    assert len(emojis) == len(EVENTS)
    assert headers["promoted"] == ":white_check_mark: checkout promoted"
    assert headers["stage"] == ":arrow_forward: checkout at stage 2: 25% canary"
    # an event this module does not know still makes a readable message, never a crash
    assert "checkout" in header(slack_message(rollback(event="lease-lost")))


def test_before_any_traffic_and_unknown_stable() -> None:
    payload = slack_message(rollback(event="gate-failed", stage=0, weight=0,
                                     stable_version=None, results=(), reason="migrate exit 1"))
    seen = texts(payload)
    assert "before any stage (0% canary)" in seen
    assert "`?` → `2.0.0`" in seen
    assert not any(b["type"] == "divider" for b in payload["blocks"])


def test_mrkdwn_is_escaped_so_user_text_cannot_ping_or_link() -> None:
    payload = slack_message(rollback(reason="<!channel> a & b <http://x|y>"))
    reason = next(b["text"]["text"] for b in payload["blocks"]
                  if b["type"] == "section" and "Reason" in b.get("text", {}).get("text", ""))
    assert reason == "*Reason*\n&lt;!channel&gt; a &amp; b &lt;http://x|y&gt;"
    assert "<!channel>" not in json.dumps(payload)


def test_block_kit_limits_hold_for_huge_input() -> None:
    results = tuple(
        MetricResult(f"metric-{i}-" + "n" * 300, Outcome.FAILED, float(i),
                     "sum(rate(x[1m])) & " * 400 + "```", threshold="<= 1", message="m" * 500)
        for i in range(120)
    )
    n = rollback(rollout="r" * 400, reason="<why>" * 2000, results=results)
    payload = slack_message(n)
    blocks = payload["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert len(header(payload)) <= 150
    for block in blocks:
        if "text" in block and block["type"] == "section":
            text = block["text"]["text"]
            assert len(text) <= 3000
            assert text.count("```") % 2 == 0  # every code block is closed
            assert not text.rstrip("…`").endswith(("&", "&a", "&am", "&amp", "&l", "&lt"))
        for f in block.get("fields", ()):
            assert len(f["text"]) <= 2000
    assert len(payload["text"]) <= 3000
    # the overflow is announced, not silently dropped
    assert "more:" in blocks[-2]["text"]["text"]
    shown = sum(1 for b in blocks if "```" in b.get("text", {}).get("text", ""))
    assert shown + int(blocks[-2]["text"]["text"].split("…and ")[1].split()[0]) == 120


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("abcdefghij", 5, "abcd…"),
        ("ab&amp;cd", 5, "ab…"),  # never half an entity
        ("😀😀😀", 4, "😀…"),  # an emoji is two UTF-16 units
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    assert truncate(text, limit) == expected


def test_notification_with_no_results_and_no_reason() -> None:
    payload = slack_message(Notification(event="promoted", rollout="a", service="b",
                                         version="2", stable_version="1", stage=4, weight=100,
                                         reason=""))
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "context"]
