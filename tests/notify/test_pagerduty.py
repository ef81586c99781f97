"""PagerDuty Events API v2 over real HTTP to a receiver that holds every event to the
enqueue schema (tests/notify/schemas/): trigger on bad news, resolve on the next success
of the same rollout, with one dedup_key."""

from __future__ import annotations

import traceback
from collections.abc import Iterator

import pytest

from canary.errors import InputError, NotifyError
from canary.model import MetricResult, Outcome
from canary.notify.delivery import Delivery
from canary.notify.pagerduty import PagerDutyNotifier, dedup_key, pagerduty_event
from canary.notify.templates import compile_templates
from lab.slack_receiver import Reply

from .receivers import PAGERDUTY_PATH, PAGERDUTY_SCHEMA, SchemaReceiver, schema_errors
from .samples import rollback
from .test_delivery import RecordingClock

KEY_ENV = "CANARY_TEST_PD_ROUTING_KEY"
ROUTING_KEY = "R0UT1NGKEYsecret0123456789abcdef"  # 32 characters, like an integration key


@pytest.fixture(autouse=True)
def routing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(KEY_ENV, ROUTING_KEY)
    yield ROUTING_KEY


def pd(r: SchemaReceiver, **kwargs: object) -> PagerDutyNotifier:
    return PagerDutyNotifier(routing_key_env=KEY_ENV, url=r.url(PAGERDUTY_PATH),
                             **kwargs)  # type: ignore[arg-type]


def accepted(r: SchemaReceiver) -> list[dict[str, object]]:
    assert r.refused == []
    return [q.payload for q in r.requests if q.status == 202]


def test_rollback_triggers_and_the_next_promotion_resolves(schema_receiver: SchemaReceiver
                                                           ) -> None:
    notifier = pd(schema_receiver)
    notifier.send(rollback())
    notifier.send(rollback(event="promoted", reason="", results=()))
    trigger, resolve = accepted(schema_receiver)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "canary/checkout-svc/checkout/2.0.0"
    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING_KEY
    assert "payload" not in resolve
    payload = trigger["payload"]
    assert isinstance(payload, dict)
    assert payload["severity"] == "error" and payload["source"] == "checkout-svc"
    assert payload["summary"] == ("checkout rolled back: service checkout-svc, 1.4.2 -> 2.0.0, "
                                  "reached stage 2, 25% canary. analysis failed: error-rate, "
                                  "latency-p99")
    details = payload["custom_details"]
    assert [m["name"] for m in details["failingMetrics"]] == ["error-rate", "latency-p99"]
    assert details["failingMetrics"][0] == {
        "name": "error-rate", "outcome": "failed", "value": "0.0523", "threshold": "<= 0.01",
        "query": 'sum(rate(http_requests_total{service="checkout-svc",code=~"5.."}[1m]))',
        "message": "", "url": ""}
    assert (details["version"], details["stableVersion"], details["weight"]) == (
        "2.0.0", "1.4.2", 25)


def test_needs_human_then_progress_again_resolves(schema_receiver: SchemaReceiver) -> None:
    notifier = pd(schema_receiver)
    notifier.send(rollback(event="needs-human", reason="migration interrupted"))
    notifier.send(rollback(event="stage", stage=1, weight=5, reason="", results=()))
    trigger, resolve = accepted(schema_receiver)
    assert (trigger["event_action"], trigger["payload"]["severity"]) == (  # type: ignore[index]
        "trigger", "critical")
    assert resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]


@pytest.mark.parametrize(("event", "severity"), [
    ("needs-human", "critical"), ("rolled-back", "error"), ("gate-failed", "error"),
    ("held", "warning"), ("aborted", "info")])
def test_severity_by_event(schema_receiver: SchemaReceiver, event: str, severity: str) -> None:
    pd(schema_receiver).send(rollback(event=event))
    [event_body] = accepted(schema_receiver)
    assert event_body["event_action"] == "trigger"
    assert event_body["payload"]["severity"] == severity  # type: ignore[index]
    assert event_body["payload"]["class"] == event  # type: ignore[index]


def test_one_key_per_rollout_run_whatever_the_attempt() -> None:
    run = rollback(rollout_id="9f1c", attempt=1)
    assert dedup_key(run) == "canary/checkout-svc/checkout/9f1c"
    assert dedup_key(run) == dedup_key(rollback(event="promoted", rollout_id="9f1c", attempt=2))
    assert dedup_key(run) != dedup_key(rollback(rollout_id="a77e"))  # a later deploy
    assert dedup_key(run) != dedup_key(rollback(rollout="payments", rollout_id="9f1c"))
    assert dedup_key(rollback()) != dedup_key(rollback(version="2.0.1"))  # no runner: version
    long = dedup_key(rollback(rollout="r" * 400))
    assert len(long) == 255 and long != dedup_key(rollback(rollout="r" * 401))


def test_template_is_the_summary_and_stays_under_1024(schema_receiver: SchemaReceiver) -> None:
    templates = compile_templates({
        "rolled-back": "[{{ service }}] {{ version }} rolled back at {{ weight }}%: "
                       "{% for m in metrics %}{{ m.name }}={{ m.value }} {% endfor %}",
        "held": "{{ reason }}{{ reason }}{{ reason }}"})
    notifier = pd(schema_receiver, templates=templates)
    notifier.send(rollback())
    notifier.send(rollback(event="held", reason="x" * 900))
    rolled, held = accepted(schema_receiver)
    assert rolled["payload"]["summary"] == (  # type: ignore[index]
        "[checkout-svc] 2.0.0 rolled back at 25%: error-rate=0.0523 latency-p99=no value")
    assert len(held["payload"]["summary"]) == 1024  # type: ignore[index]


def test_a_huge_failure_stays_far_under_512_kb(schema_receiver: SchemaReceiver) -> None:
    metrics = tuple(MetricResult(f"m{i}", Outcome.ERROR, None, "界" * 5000,
                                 message="錯" * 5000) for i in range(60))
    pd(schema_receiver).send(rollback(results=metrics, reason="理" * 10_000))
    [req] = schema_receiver.requests
    assert req.status == 202, schema_receiver.refused
    assert len(req.body) < 512 * 1024 // 2
    details = req.payload["payload"]["custom_details"]
    assert len(details["failingMetrics"]) == 20
    assert details["moreFailingMetrics"] == [f"m{i}" for i in range(20, 60)]


def test_metric_graphs_become_links(schema_receiver: SchemaReceiver) -> None:
    results = (MetricResult("latency", Outcome.FAILED, 0.9, "q", threshold="<= 0.5",
                            link="https://prom.example/graph?g0.expr=q"),
               MetricResult("errors", Outcome.FAILED, 0.3, "q2", link="javascript:alert(1)"))
    pd(schema_receiver).send(rollback(results=results))
    [body] = accepted(schema_receiver)
    assert body["links"] == [{"href": "https://prom.example/graph?g0.expr=q",
                              "text": "latency = 0.9 (graph)"}]


def test_429_waits_for_retry_after_then_triggers_once(schema_receiver: SchemaReceiver) -> None:
    clock = RecordingClock()
    schema_receiver.script(Reply(429, '{"status":"throttle event"}', (("Retry-After", "2"),)),
                           Reply(500, "oops"))
    pd(schema_receiver, clock=clock, delivery=Delivery(backoff=0.5)).send(rollback())
    assert [r.status for r in schema_receiver.requests] == [429, 500, 202]
    assert clock.sleeps == [2.0, 1.0]
    assert len(accepted(schema_receiver)) == 1


def test_invalid_event_is_final_and_the_key_never_shows(
    schema_receiver: SchemaReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a key of the wrong length: the receiver's 400 quotes it back, as an API might
    short = "shortSECRETkey42"
    monkeypatch.setenv(KEY_ENV, short)
    notifier = pd(schema_receiver)
    with pytest.raises(NotifyError) as caught:
        notifier.send(rollback())
    assert len(schema_receiver.requests) == 1 and schema_receiver.refused
    assert short in schema_receiver.requests[0].body.decode()  # it was sent...
    text = "".join(traceback.format_exception(caught.value)) + repr(notifier)
    assert "HTTP 400" in text and "not retried" in text
    assert short not in text  # ...but never shown


def test_missing_routing_key_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(InputError, match=f"{KEY_ENV} \\(PagerDuty routing key\\)"):
        PagerDutyNotifier(routing_key_env=KEY_ENV)


def test_the_schema_refuses_what_pagerduty_would() -> None:
    """The check is not vacuous: events PagerDuty answers 400 fail it."""
    good = pagerduty_event(rollback(), routing_key=ROUTING_KEY)
    assert schema_errors(PAGERDUTY_SCHEMA, good) == []
    bad_severity = {**good, "payload": {**good["payload"], "severity": "high"}}
    no_summary = {**good, "payload": {k: v for k, v in good["payload"].items()
                                      if k != "summary"}}
    long_summary = {**good, "payload": {**good["payload"], "summary": "s" * 1025}}
    resolve_without_key = {"routing_key": ROUTING_KEY, "event_action": "resolve"}
    trigger_without_payload = {"routing_key": ROUTING_KEY, "event_action": "trigger",
                               "dedup_key": "k"}
    for bad in (bad_severity, no_summary, long_summary, resolve_without_key,
                trigger_without_payload):
        assert schema_errors(PAGERDUTY_SCHEMA, bad), bad
