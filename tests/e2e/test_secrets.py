"""Fourteen secrets planted through ``${VAR}`` (and ``tokenEnv``/``secretEnv``) everywhere a
rollout file can carry them; three real rollouts (promoted, rolled back by a failing hook,
a rollback the command router keeps refusing); zero occurrences anywhere a person or a
program can read: stdout, stderr, ``status -o json``, ``history -o json``, the SQLite files'
bytes, every Slack and webhook payload. The scenario is bench/secrets_leak.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from bench.secrets_leak import REPO, SECRETS, Run, leaks, run


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run(REPO, tmp_path_factory.mktemp("secrets"))


def test_the_rollouts_ran_and_the_secrets_reached_the_servers(result: Run) -> None:
    # Without this, "no leak" could mean "nothing happened".
    assert result.exits == {"promoted": 0, "hook-fails": 1, "router-fails": 4}
    hooks = result.received["hooks"]
    assert hooks and all(h[2]["X-Api-Key"] == SECRETS["HOOK_HEADER_KEY"] for h in hooks)
    basic = base64.b64decode(hooks[0][2]["Authorization"].split()[1]).decode()
    assert basic == f"hookuser:{SECRETS['HOOK_URL_PASS']}"
    assert any(f"key={SECRETS['ROUTER_URL_KEY']}" in r[1] for r in result.received["router"])
    router_basic = base64.b64encode(f"router:{SECRETS['ROUTER_HTTP_PASS']}".encode()).decode()
    assert all(r[2].get("Authorization") == f"Basic {router_basic}"
               for r in result.received["router"])
    assert all(r[1].endswith(SECRETS["SLACK_TOKEN"]) for r in result.received["slack"])
    assert all(SECRETS["WEBHOOK_TOKEN"] in r[1] for r in result.received["webhook"])
    # the failures that used to carry secrets happened, and were recorded
    history = result.seen["history -o json"].decode()
    assert "router-error" in history and "hook-failed" in history
    assert "--token=***" in history  # the router's and the hook's arguments, masked
    # alerts were sent for the rollback and for the rollback that needs a human
    events = {json.loads(r[3]).get("event") for r in result.received["webhook"]}
    assert {"promoted", "rolled-back", "needs-human"} <= events


def test_no_secret_surfaces_anywhere(result: Run) -> None:
    assert {"promoted: stdout", "router-fails: stderr", "router-fails: status -o json",
            "history -o json", "sqlite file state.db", "slack payloads",
            "webhook payloads"} <= set(result.seen)
    assert leaks(result.seen) == {}


@pytest.mark.parametrize("spelling", [
    lambda v: v,
    lambda v: json.dumps(v)[1:-1].replace("/", "\\/"),
    lambda v: json.dumps(json.dumps(v)[1:-1])[1:-1],
])
def test_the_leak_counter_sees_every_spelling(spelling: object, tmp_path: Path) -> None:
    assert callable(spelling)
    secret = SECRETS["HOOK_HEADER_KEY"]
    assert leaks({"x": f"... {spelling(secret)} ...".encode()}) == {("HOOK_HEADER_KEY", "x"): 1}
    basic = base64.b64encode(f"hookuser:{SECRETS['HOOK_URL_PASS']}".encode())
    assert leaks({"x": basic}) == {("HOOK_URL_PASS", "x"): 1}
