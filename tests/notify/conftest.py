"""A real Slack-compatible receiver on a free loopback port, fresh for every test."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from lab.slack_receiver import SlackReceiver

from .receivers import SchemaReceiver
from .samples import SECRET_PATH


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    r = SlackReceiver(echo=io.StringIO()).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def secret_url(receiver: SlackReceiver) -> str:
    return receiver.url(SECRET_PATH)


@pytest.fixture
def schema_receiver() -> Iterator[SchemaReceiver]:
    """Teams Workflows and PagerDuty stand-in: 400 for a payload off its schema, else 202."""
    r = SchemaReceiver(echo=None)
    r.start()
    try:
        yield r
    finally:
        r.stop()
