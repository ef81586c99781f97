"""Faults injected into real servers while `canary deploy` runs as a process: a router that
refuses the rollback (then comes back, or stays down), PostgreSQL restarted mid-rollout,
Slack rate limiting and down.

The router is the command adapter over two small scripts (the split kept in a file, so a
test can break it at will); hooks are scripts that log their idempotency key, so a step
run twice shows; analysis is time-only, so every run is a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.proc import Server, port_open, wait_until
from lab.slack_receiver import SlackReceiver
from tests.store.test_postgres import server_down

REPO = Path(__file__).resolve().parents[2]

ROUTER = """\
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
split, log = os.path.join(here, "split.json"), os.path.join(here, "router.log")
current = json.load(open(split)) if os.path.exists(split) else {"stable": 100, "canary": 0}
if sys.argv[1] == "set":
    canary = int(sys.argv[2])
    back = canary < current["canary"]
    if back and os.path.exists(os.path.join(here, "refuse-rollback")):
        open(log, "a").write(f"refused {canary}\\n")
        print("refusing to move traffic back", file=sys.stderr)
        sys.exit(3)
    open(log, "a").write(f"set {canary}\\n")
    json.dump({"stable": 100 - canary, "canary": canary}, open(split, "w"))
elif os.path.exists(os.path.join(here, "unreadable")):
    print("router API down", file=sys.stderr)
    sys.exit(4)
else:
    print(json.dumps(current))
"""

# Logs every run with its idempotency key. Fails when asked to; with "pause-after" it waits,
# once it has logged, until the test says go (to break something while the result is in
# flight).
HOOK = """\
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
key = os.environ["CANARY_IDEMPOTENCY_KEY"]
open(os.path.join(here, "hooks.log"), "a").write(key + "\\n")
if "pause-after" in sys.argv:
    while not os.path.exists(os.path.join(here, "go")):
        time.sleep(0.05)
sys.exit(1 if "fail" in sys.argv else 0)
"""

POLICY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: time-only
spec:
  interval: 1s
"""


@dataclass
class Lab:
    dir: Path
    slack: SlackReceiver
    store: str

    def write(self, *, stages: str = "[50, 100]", hook_args: str = "") -> Path:
        f = self.dir / "rollout.yaml"
        f.write_text(f"""\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  stableVersion: "1.0.0"
  router:
    type: command
    setCommand: [{sys.executable}, router.py, set, "{{canary}}"]
    getCommand: [{sys.executable}, router.py, get]
  stages: {stages}
  pause: 1s
  analysis:
    policy: policy.yaml
  hooks:
    postStage:
      - name: smoke
        command: [{sys.executable}, hook.py{hook_args}]
        retries: 0
  notifications:
    - type: slack
      webhookUrl: ${{SLACK_WEBHOOK_URL}}
""")
        return f

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "CANARY_STORE": self.store,
                "SLACK_WEBHOOK_URL": self.slack.url()}

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "canary", *args], cwd=self.dir,
                                env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def canary(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "canary", *args], cwd=self.dir,
                              env=self.env(), capture_output=True, text=True, timeout=120,
                              check=False)

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return self.canary("deploy", "-f", "rollout.yaml", "--poll", "0.2", "--timeout", "90s")

    def weight(self) -> int:
        return int(json.loads((self.dir / "split.json").read_text())["canary"])

    def lines(self, name: str) -> list[str]:
        path = self.dir / name
        return path.read_text().splitlines() if path.exists() else []

    def history(self) -> dict[str, object]:
        out = self.canary("history", "checkout", "-o", "json")
        assert out.returncode == 0, out.stderr
        runs = json.loads(out.stdout)
        assert len(runs) == 1
        return dict(runs[0])

    def events(self) -> list[str]:
        """Event kinds, a coalesced event (the same one repeated) counted as often as it
        happened."""
        kinds: list[str] = []
        for e in self.history()["events"]:  # type: ignore[attr-defined]
            kinds += [str(e["kind"])] * int((e.get("data") or {}).get("count", 1))
        return kinds


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    (tmp_path / "router.py").write_text(ROUTER)
    (tmp_path / "hook.py").write_text(HOOK)
    (tmp_path / "policy.yaml").write_text(POLICY)
    slack = SlackReceiver(echo=None).start()
    try:
        yield Lab(dir=tmp_path, slack=slack, store=f"sqlite:///{tmp_path}/state.db")
    finally:
        slack.stop()


def test_a_refused_rollback_is_retried_until_traffic_is_back_on_stable(lab: Lab) -> None:
    lab.write(hook_args=", fail")
    (lab.dir / "refuse-rollback").touch()
    proc = lab.start("deploy", "-f", "rollout.yaml", "--poll", "0.2", "--timeout", "90s")
    try:
        wait_until(lambda: sum(line.startswith("refused") for line in lab.lines("router.log"))
                   >= 3, timeout=60, what="three refused rollbacks")
        assert proc.poll() is None  # still trying, not given up
        assert lab.weight() == 50
        (lab.dir / "refuse-rollback").unlink()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert lab.weight() == 0
    assert "set 100" not in lab.lines("router.log")
    run = lab.history()
    assert run["phase"] == "failed" and not run["needsHuman"]
    assert lab.events().count("router-error") >= 3 and "promoted" not in lab.events()


def test_a_router_down_during_rollback_ends_4_never_promotes_and_resumes(lab: Lab) -> None:
    lab.write(hook_args=", fail")
    (lab.dir / "refuse-rollback").touch()
    proc = lab.start("deploy", "-f", "rollout.yaml", "--poll", "0.2", "--timeout", "90s")
    try:
        wait_until(lambda: any(line.startswith("refused") for line in lab.lines("router.log")),
                   timeout=60, what="a refused rollback")
        (lab.dir / "unreadable").touch()  # and now the router cannot even be read
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 4, err
    assert lab.history()["needsHuman"] is True
    assert "set 100" not in lab.lines("router.log") and "promoted" not in lab.events()
    assert any("human" in json.dumps(p).lower() for p in lab.slack.payloads)  # alerted
    # the router is back: running deploy again takes traffic back to stable (the rollout
    # stays flagged for a human, who looks at what happened: exit 4 again, or 1)
    (lab.dir / "unreadable").unlink()
    (lab.dir / "refuse-rollback").unlink()
    again = lab.deploy()
    assert again.returncode in (1, 4), again.stdout + again.stderr
    assert lab.weight() == 0 and "set 100" not in lab.lines("router.log")
    assert "promoted" not in lab.events()


@pytest.mark.servers
def test_postgresql_restarted_while_a_hook_result_is_in_flight(
        lab: Lab, postgres_server: Server, postgres_dsn: str) -> None:
    """PostgreSQL goes down after a hook has run and before its result is saved: the
    rollout waits, goes on when the server is back, promotes, and runs no hook twice."""
    lab.store = postgres_dsn
    lab.write(stages="[20, 50, 100]", hook_args=", 'pause-after'")
    proc = lab.start("deploy", "-f", "rollout.yaml", "--poll", "0.2", "--timeout", "120s")
    restarted = threading.Event()

    def restart_when_the_first_hook_runs() -> None:
        wait_until(lambda: len(lab.lines("hooks.log")) >= 1, timeout=60, what="first hook")
        with server_down(postgres_server):
            (lab.dir / "go").touch()  # the hook ends while the store is down
            time.sleep(3)  # several ticks fail
        restarted.set()

    worker = threading.Thread(target=restart_when_the_first_hook_runs, daemon=True)
    worker.start()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    worker.join(timeout=60)
    assert restarted.is_set()
    assert port_open(int(str(postgres_server.info["port"])))
    assert proc.returncode == 0, out + err
    assert "tick failed" in err  # the outage was seen, and ridden out
    assert lab.weight() == 100
    keys = lab.lines("hooks.log")
    assert len(keys) == 3 and len(set(keys)) == 3, keys  # one postStage hook per stage, once
    events = lab.events()
    assert events.count("stage-started") == 3 and events.count("promoted") == 1
    assert sum("promoted" in json.dumps(p).lower() for p in lab.slack.payloads) == 1


def test_slack_rate_limiting_delays_no_step_and_every_alert_arrives_once(lab: Lab) -> None:
    lab.write(hook_args=", fail")
    lab.slack.fail_next(2, status=429, retry_after=1)
    done = lab.deploy()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lab.weight() == 0
    statuses = [r.status for r in lab.slack.requests]
    assert statuses[:2] == [429, 429] and statuses[2:] and set(statuses[2:]) == {200}
    # the rolled-back alert was sent once, though it took three tries
    assert len(lab.slack.payloads) == len(set(map(json.dumps, lab.slack.payloads))) >= 1
    assert "notify-failed" not in lab.events()


def test_slack_down_never_blocks_the_rollback(lab: Lab) -> None:
    lab.write(hook_args=", fail")
    lab.slack.stop()
    done = lab.deploy()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lab.weight() == 0
    assert "notify-failed" in lab.events()
    assert lab.history()["phase"] == "failed"


def test_slack_back_within_the_delivery_deadline_gets_the_alert_once(lab: Lab) -> None:
    lab.write(hook_args=", fail")
    port = lab.slack.port
    lab.slack.stop()
    back = SlackReceiver(echo=None, port=port)

    def come_back() -> None:
        wait_until(lambda: bool(lab.lines("hooks.log")), timeout=60, what="the failing hook")
        time.sleep(0.5)  # the rollback's alert meets a closed port, then a retry finds Slack
        back.start()

    threading.Thread(target=come_back, daemon=True).start()
    try:
        done = lab.deploy()
        assert done.returncode == 1, done.stdout + done.stderr
        assert lab.weight() == 0
        assert len(back.payloads) == 1, [r.status for r in back.requests]
    finally:
        back.stop()
