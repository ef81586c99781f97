"""The lab receiver behaves like Slack's incoming webhooks, in-process and as a program."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from canary.notify.slack import SlackNotifier
from lab.proc import Server, free_port, port_open, wait_until
from lab.slack_receiver import SlackReceiver

from .samples import SECRET_PATH, rollback

ROOT = Path(__file__).resolve().parents[2]


def test_answers_like_slack(receiver: SlackReceiver) -> None:
    url = receiver.url(SECRET_PATH)
    ok = httpx.post(url, json={"text": "hi"})
    assert (ok.status_code, ok.text) == (200, "ok")
    bad = httpx.post(url, content=b"{not json")
    assert (bad.status_code, bad.text) == (400, "invalid_payload")
    empty = httpx.post(url, json={"username": "x"})
    assert (empty.status_code, empty.text) == (400, "no_text")
    assert receiver.payloads == [{"text": "hi"}]
    assert [r.status for r in receiver.requests] == [200, 400, 400]


@pytest.mark.servers  # starts the receiver as a process of its own
def test_runs_as_a_program_writes_jsonl_and_prints_a_line(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "alerts.jsonl"
    server = Server("slack-receiver",
                    [sys.executable, "-m", "lab.slack_receiver", "--port", str(port),
                     "--out", str(out), "--fail-first", "1", "--retry-after", "0.2"],
                    str(tmp_path / "receiver.log"))
    server.start(cwd=str(ROOT))
    try:
        wait_until(lambda: port_open(port), timeout=10, what="slack receiver")
        notifier = SlackNotifier(f"http://127.0.0.1:{port}{SECRET_PATH}")
        notifier.send(rollback())  # the first try meets the scripted 429
        notifier.send(rollback(event="promoted", results=(), reason="all checks passed"))
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0  # SIGTERM: clean exit

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["blocks"][0]["text"]["text"] for p in lines] == [
        ":rotating_light: checkout rolled back", ":white_check_mark: checkout promoted"]
    log = server.log_tail()
    assert f"listening on http://127.0.0.1:{port}/" in log
    assert "[slack] :rotating_light: checkout rolled back | :rotating_light:" in log
    assert log.count("[slack]") == 2
