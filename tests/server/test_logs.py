"""Structured and escaped log lines: `--log-format json` writes one JSON object per line
with time, level, rollout, stage, event and message; text lines never let a value start a
line of its own."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from canary.console import logs
from canary.console.progress import JsonLineReporter
from canary.model import Event
from canary.state import RolloutState
from tests.e2e.conftest import Lab, Stack, canary_env, write_policy, write_rollout
from tests.server.conftest import run

KEYS = {"time", "level", "rollout", "stage", "event", "message"}


def _log(fmt: str, message: str, *args: object, **extra: object) -> str:
    out = io.StringIO()
    logs.setup(fmt, stream=out)
    try:
        logging.getLogger("canary.test").warning(message, *args, extra=extra)
    finally:
        logs.setup("text")
    return out.getvalue()


def test_text_lines_escape_control_characters() -> None:
    line = _log("text", "rollout %s submitted", "shop\n2030-01-01 INFO forged\r\x1b[2J")
    assert line.count("\n") == 1 and line.endswith("\n")
    assert "shop\\n2030-01-01 INFO forged\\r\\x1b[2J" in line


def test_json_lines_carry_the_rollout_from_the_tick_context() -> None:
    with logs.context(rollout="shop", stage=2):
        line = _log("json", "router: asked %d%%", 25)
    obj = json.loads(line)
    assert set(obj) >= KEYS
    assert (obj["rollout"], obj["stage"], obj["level"], obj["message"]) == (
        "shop", 2, "warning", "router: asked 25%")
    explicit = json.loads(_log("json", "x\ny", **logs.fields(rollout="a", event="released")))
    assert (explicit["rollout"], explicit["event"], explicit["message"]) == ("a", "released",
                                                                             "x\ny")


def test_json_line_reporter_writes_one_object_per_line() -> None:
    now = datetime.now(UTC)
    state = RolloutState(id="r1", name="shop", service="shop", version="2.0.0",
                         stable_version="1.0.0", document="", source="t", created_at=now,
                         updated_at=now, stage_index=1)
    out = io.StringIO()
    reporter = JsonLineReporter(out)
    reporter.tick(state, [
        Event(at=now, kind="stage-started", message="stage 2/4: setting 25%\nforged"),
        Event(at=now, kind="analysis", message="analysis passed", data={"results": [
            {"name": "error-rate", "outcome": "passed", "value": 0.01, "threshold": "<= 0.05"},
            {"name": "latency", "outcome": "inconclusive", "value": None}]}),
        Event(at=now, kind="rolling-back", message="error-rate too high"),
    ])
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 4 and all(set(x) >= KEYS for x in lines)
    assert all(x["rollout"] == "shop" and x["stage"] == 2 for x in lines)
    assert [x["event"] for x in lines] == ["stage-started", "analysis", "analysis",
                                           "rolling-back"]
    assert lines[1]["metric"] == "error-rate" and lines[2]["outcome"] == "inconclusive"
    assert lines[3]["level"] == "warning"


def test_deploy_log_format_json(lab: Lab, stack_for: Callable[..., Stack]) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="2s",
                            stages="[50, 100]")
    res = run(["deploy", "--log-format", "json", "-f", str(rollout)], env=canary_env(stack),
              cwd=stack.dir)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert all(set(x) >= KEYS for x in lines)
    assert all(x["rollout"] == "checkout" for x in lines)
    events = [x["event"] for x in lines]
    assert "stage-started" in events and "analysis" in events
    assert lines[-1]["event"] == "result" and "promoted" in lines[-1]["message"]
