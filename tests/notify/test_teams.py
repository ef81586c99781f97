"""Teams through a Workflows webhook, over real HTTP to a receiver that holds every
payload to the Adaptive Card message schema (tests/notify/schemas/)."""

from __future__ import annotations

import json
import traceback

import pytest

from canary.errors import InputError, NotifyError
from canary.model import MetricResult, Notification, Outcome
from canary.notify.delivery import Delivery
from canary.notify.teams import TeamsNotifier, teams_message
from canary.notify.templates import EVENT_NAMES, compile_templates
from lab.slack_receiver import Reply

from .receivers import TEAMS_PATH, TEAMS_SCHEMA, SchemaReceiver, schema_errors
from .samples import rollback
from .test_delivery import RecordingClock

SIG = "sig=Zm9vYmFyU2VjcmV0U2lnbmF0dXJl"


def teams_url(r: SchemaReceiver) -> str:
    return r.url(f"{TEAMS_PATH}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual&sv=1.0&{SIG}")


def texts(payload: dict[str, object]) -> list[str]:
    card = payload["attachments"][0]["content"]  # type: ignore[index]
    return [b["text"] for b in card["body"] if b["type"] == "TextBlock"]


@pytest.mark.parametrize("event", EVENT_NAMES)
def test_every_event_is_a_valid_card(schema_receiver: SchemaReceiver, event: str) -> None:
    TeamsNotifier(teams_url(schema_receiver)).send(rollback(event=event))
    [req] = schema_receiver.requests
    assert req.status == 202, schema_receiver.refused
    assert req.path.startswith(TEAMS_PATH)
    assert req.headers["Content-Type"].startswith("application/json")
    body = texts(req.payload)
    if event == "stage":
        assert body[0] == "checkout at stage 2: 25% canary"
    else:
        assert body[0].startswith("checkout ")


def test_card_carries_what_an_on_call_needs(schema_receiver: SchemaReceiver) -> None:
    n = rollback(results=(*rollback().results[:2],
                          MetricResult("errors-5xx", Outcome.FAILED, 0.2, "sum(x)",
                                       threshold="<= 0.1",
                                       link="http://prom.example:9090/graph?g0.expr=x")))
    TeamsNotifier(teams_url(schema_receiver)).send(n)
    [payload] = [r.payload for r in schema_receiver.requests if r.status == 202]
    card = payload["attachments"][0]["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["color"] == "Attention"
    facts = {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet"
             for f in b["facts"]}
    assert facts == {"Rollout": "checkout", "Service": "checkout-svc",
                     "Versions": "1.4.2 → 2.0.0", "Reached": "stage 2, 25% canary"}
    body = texts(payload)
    assert "analysis failed: error-rate, latency-p99" in body[1]
    assert "Failing metrics (3)" in body
    assert any(t.startswith("**error-rate** failed: observed 0.0523, threshold <= 0.01")
               for t in body)
    assert any("could not be measured" in t and "Prometheus unreachable" in t for t in body)
    assert 'sum(rate(http_requests_total{service="checkout-svc",code=~"5.."}[1m]))' in body
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Graph errors-5xx",
                                "url": "http://prom.example:9090/graph?g0.expr=x"}]


def test_template_replaces_the_summary(schema_receiver: SchemaReceiver) -> None:
    templates = compile_templates({"rolled-back": "**{{ service }}** back on "
                                   "{{ stableVersion }}: {{ reason }}"})
    notifier = TeamsNotifier(teams_url(schema_receiver), templates=templates)
    notifier.send(rollback())
    notifier.send(rollback(event="promoted", reason=""))
    refused = schema_receiver.refused
    assert [r.status for r in schema_receiver.requests] == [202, 202], refused
    rolled, promoted = (r.payload for r in schema_receiver.requests)
    assert texts(rolled)[:2] == [
        "checkout rolled back",
        "**checkout-svc** back on 1.4.2: analysis failed: error-rate, latency-p99"]
    assert all(b["type"] != "FactSet" for b in rolled["attachments"][0]["content"]["body"])
    # no template for promoted: the default card
    assert texts(promoted)[1].startswith("Service checkout-svc, 1.4.2 → 2.0.0")


def test_a_huge_failure_still_fits_one_teams_message(schema_receiver: SchemaReceiver
                                                      ) -> None:
    metrics = tuple(MetricResult(f"m{i}", Outcome.FAILED, float(i), "q" * 5000,
                                 threshold="<= 0") for i in range(60))
    TeamsNotifier(teams_url(schema_receiver)).send(rollback(results=metrics,
                                                            reason="r" * 10_000))
    [req] = schema_receiver.requests
    assert req.status == 202, schema_receiver.refused
    assert len(req.body) < 28 * 1024  # what a Teams message may take
    assert "…and 50 more: m10, m11" in "".join(texts(req.payload))


def test_multibyte_text_drops_metrics_to_fit(schema_receiver: SchemaReceiver) -> None:
    metrics = tuple(MetricResult(f"m{i}", Outcome.ERROR, None, "界" * 5000,
                                 message="錯" * 3000) for i in range(60))
    TeamsNotifier(teams_url(schema_receiver)).send(rollback(results=metrics,
                                                            reason="理" * 10_000))
    [req] = schema_receiver.requests
    assert req.status == 202, schema_receiver.refused
    assert len(req.body) < 28 * 1024
    text = "".join(texts(req.payload))
    shown = sum(1 for t in texts(req.payload) if t.startswith("**m"))
    assert 1 <= shown < 10 and f"…and {60 - shown} more" in text


def test_429_waits_for_retry_after(schema_receiver: SchemaReceiver) -> None:
    clock = RecordingClock()
    schema_receiver.script(Reply(429, "slow down", (("Retry-After", "4"),)),
                           Reply(502, "bad gateway"))
    TeamsNotifier(teams_url(schema_receiver), clock=clock,
                  delivery=Delivery(backoff=0.25)).send(rollback())
    assert [r.status for r in schema_receiver.requests] == [429, 502, 202]
    assert clock.sleeps == [4.0, 0.5]


def test_refused_is_final_and_the_url_stays_secret(schema_receiver: SchemaReceiver) -> None:
    schema_receiver.script(Reply(400, "Bad request: " + teams_url(schema_receiver)))
    notifier = TeamsNotifier(teams_url(schema_receiver))
    with pytest.raises(NotifyError) as caught:
        notifier.send(rollback())
    assert len(schema_receiver.requests) == 1
    text = "".join(traceback.format_exception(caught.value)) + repr(notifier)
    assert "HTTP 400" in text and "not retried" in text
    assert "Zm9vYmFyU2VjcmV0U2lnbmF0dXJl" not in text and "abc123" not in text


def test_bad_url_is_an_input_error() -> None:
    with pytest.raises(InputError, match="teams workflow URL"):
        TeamsNotifier("ftp://example.com/x")


def test_the_schema_refuses_what_teams_would() -> None:
    """The check is not vacuous: wrong envelopes and cards fail it."""
    good = teams_message(rollback())
    assert schema_errors(TEAMS_SCHEMA, good) == []
    legacy = {"@type": "MessageCard", "text": "hi"}  # O365 connector format
    wrong_type = json.loads(json.dumps(good))
    wrong_type["attachments"][0]["contentType"] = "application/vnd.microsoft.card.hero"
    typo = json.loads(json.dumps(good))
    typo["attachments"][0]["content"]["body"][0]["colour"] = "Good"
    empty_text = json.loads(json.dumps(good))
    empty_text["attachments"][0]["content"]["body"][1]["text"] = ""
    for bad in (legacy, wrong_type, typo, empty_text):
        assert schema_errors(TEAMS_SCHEMA, bad), bad


def test_unknown_event_gets_a_plain_card(schema_receiver: SchemaReceiver) -> None:
    n: Notification = rollback(event="paused-by-gremlins")
    TeamsNotifier(teams_url(schema_receiver)).send(n)
    [req] = schema_receiver.requests
    assert req.status == 202
    assert texts(req.payload)[0] == "checkout paused by gremlins"
