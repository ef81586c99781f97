"""Local stand-ins for a Teams Workflows webhook and PagerDuty's Events API v2 that hold
every payload to a JSON Schema, over real HTTP.

:class:`SchemaReceiver` is the lab's Slack receiver (same scripting: 429 with
Retry-After, 500, held replies) answering like the real services instead: a payload that
breaks the schema of its path gets 400 with the validation errors (as PagerDuty answers
an invalid event), a valid one 202 (both services accept with 202; PagerDuty's body says
``Event processed`` and echoes the dedup_key). The schemas are files beside this one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from lab.slack_receiver import Received, Reply, SlackReceiver

SCHEMAS = Path(__file__).parent / "schemas"
TEAMS_PATH = "/workflows/abc123/triggers/manual/paths/invoke"
PAGERDUTY_PATH = "/v2/enqueue"


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return schema


TEAMS_SCHEMA = load_schema("teams-workflow-message")
PAGERDUTY_SCHEMA = load_schema("pagerduty-events-v2-enqueue")


def schema_errors(schema: dict[str, Any], payload: Any) -> list[str]:
    """Every violation, as ``path: message``; [] when the payload is valid."""
    validator = Draft202012Validator(schema)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in validator.iter_errors(payload)]


@dataclass
class SchemaReceiver(SlackReceiver):
    """Checks each POST against the schema of the first path prefix it starts with."""

    schemas: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "/workflows/": TEAMS_SCHEMA, PAGERDUTY_PATH: PAGERDUTY_SCHEMA})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refused: list[list[str]] = []  # the errors of every payload answered 400

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        try:
            payload: Any = json.loads(body or b"null")
        except ValueError:
            payload = None
        schema = next((s for prefix, s in self.schemas.items() if path.startswith(prefix)),
                      None)
        errors = ["no schema for this path"] if schema is None else schema_errors(
            schema, payload)
        if scripted is not None:
            reply = scripted
        elif errors:
            reply = Reply(400, json.dumps({"status": "invalid event",
                                           "message": "Event object is invalid",
                                           "errors": errors}),
                          (("Content-Type", "application/json"),))
        else:
            dedup = payload.get("dedup_key", "") if isinstance(payload, dict) else ""
            reply = Reply(202, json.dumps({"status": "success", "message": "Event processed",
                                           "dedup_key": dedup}),
                          (("Content-Type", "application/json"),))
        with self._lock:
            self._requests.append(Received(time.monotonic(), path, headers, body, payload,
                                           reply.status))
            if errors and scripted is None:
                self.refused.append(errors)
        if reply.delay:
            self._stopping.wait(reply.delay)
        return reply
