"""The generic JSON webhook: every field, an idempotency key, and a verifiable signature."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from canary.errors import InputError, NotifyError
from canary.model import MetricResult
from canary.notify.delivery import Delivery
from canary.notify.webhook import WebhookNotifier
from lab.slack_receiver import SlackReceiver

from .samples import SECRET_TOKEN, rollback

HOOK_PATH = f"/hooks/canary?token={SECRET_TOKEN}"


def test_posts_every_field_with_an_idempotency_key(receiver: SlackReceiver) -> None:
    n = rollback()
    WebhookNotifier(receiver.url(HOOK_PATH)).send(n)

    [request] = receiver.requests
    assert request.status == 200
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "checkout/7/rolled-back"
    assert request.headers["X-Canary-Event"] == "rolled-back"
    assert "X-Canary-Signature" not in request.headers
    body = request.payload
    assert body == {
        "apiVersion": "canary/v1", "kind": "Notification", "event": "rolled-back",
        "rollout": "checkout", "service": "checkout-svc", "version": "2.0.0",
        "stableVersion": "1.4.2", "stage": 2, "weight": 25,
        "reason": "analysis failed: error-rate, latency-p99",
        "results": [r.to_json() for r in n.results], "key": "checkout/7/rolled-back",
    }
    # results round-trip: a receiver written in Python can rebuild them
    assert tuple(MetricResult.from_json(r) for r in body["results"]) == n.results


def test_signature_verifies_with_the_shared_secret(
    receiver: SlackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_HOOK_SECRET", "s3cr3t-signing-key")
    notifier = WebhookNotifier(receiver.url(HOOK_PATH), secret_env="CANARY_HOOK_SECRET")
    notifier.send(rollback())

    [request] = receiver.requests
    signature = request.headers["X-Canary-Signature"]
    assert signature.startswith("sha256=")
    expected = hmac.new(b"s3cr3t-signing-key", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, f"sha256={expected}")
    # a tampered body no longer verifies
    tampered = request.body.replace(b'"weight":25', b'"weight":0')
    assert tampered != request.body
    wrong = hmac.new(b"s3cr3t-signing-key", tampered, hashlib.sha256).hexdigest()
    assert signature != f"sha256={wrong}"
    # the key itself is nowhere: not in the body, headers or repr
    assert b"s3cr3t" not in request.body
    assert "s3cr3t" not in json.dumps(request.headers)
    assert "s3cr3t" not in repr(notifier) and SECRET_TOKEN not in repr(notifier)
    assert "CANARY_HOOK_SECRET" in repr(notifier)


def test_missing_secret_variable_is_an_input_error(
    receiver: SlackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CANARY_NO_SUCH_SECRET", raising=False)
    with pytest.raises(InputError, match="CANARY_NO_SUCH_SECRET"):
        WebhookNotifier(receiver.url(HOOK_PATH), secret_env="CANARY_NO_SUCH_SECRET")


def test_same_retry_rules(receiver: SlackReceiver) -> None:
    receiver.fail_next(1, status=429, retry_after=0.1)
    receiver.fail_next(1, status=503)
    WebhookNotifier(receiver.url(HOOK_PATH), delivery=Delivery(backoff=0.05)).send(rollback())
    assert [r.status for r in receiver.requests] == [429, 503, 200]
    # one key for all three tries, so the receiver can drop a duplicate
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {"checkout/7/rolled-back"}

    receiver.clear()
    receiver.fail_next(1, status=422)
    with pytest.raises(NotifyError, match="HTTP 422") as caught:
        WebhookNotifier(receiver.url(HOOK_PATH)).send(rollback())
    assert len(receiver.requests) == 1
    assert SECRET_TOKEN not in str(caught.value)


def test_no_key_no_idempotency_header(receiver: SlackReceiver) -> None:
    WebhookNotifier(receiver.url("/hook")).send(rollback(key=""))
    assert "Idempotency-Key" not in receiver.requests[0].headers
