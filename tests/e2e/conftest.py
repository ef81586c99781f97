"""The end-to-end lab: a real Prometheus scraping real demo apps, one real HAProxy per
test in front of them, a local Slack receiver, and `canary deploy` run as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.app import start_app
from lab.haproxy import runtime_command, start_haproxy
from lab.load import Load
from lab.proc import Server
from lab.prometheus import start_prometheus, wait_for_targets_up
from lab.slack_receiver import SlackReceiver

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Lab:
    prometheus_url: str
    apps: dict[str, Server]
    workdir: Path
    servers: list[Server] = field(default_factory=list)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    workdir = Path(tempfile.mkdtemp(prefix="canary-e2e-"))
    servers: list[Server] = []
    try:
        apps = {
            "1.0.0": start_app(workdir, version="1.0.0", latency=0.002),
            "2.0.0": start_app(workdir, version="2.0.0", latency=0.002),
            "3.0.0": start_app(workdir, version="3.0.0", latency=0.002, error_rate=0.4),
            # breaks under real load only: a preview's few requests cannot see it
            "4.0.0": start_app(workdir, version="4.0.0", latency=0.002, error_rate=0.4,
                               fail_after=150),
        }
        servers.extend(apps.values())
        prom = start_prometheus(workdir / "prom",
                                targets=[f"127.0.0.1:{a.info['port']}" for a in apps.values()])
        servers.append(prom)
        wait_for_targets_up(str(prom.info["url"]), len(apps), timeout=30)
        yield Lab(prometheus_url=str(prom.info["url"]), apps=apps, workdir=workdir,
                  servers=servers)
    finally:
        for s in reversed(servers):
            s.stop()


@dataclass
class Stack:
    """One test's HAProxy (stable-1 -> 1.0.0, canary-1 -> the canary version) and load."""

    haproxy: Server
    load: Load
    slack: SlackReceiver
    dir: Path
    store: str

    def weight(self, server: str) -> int:
        reply = runtime_command(str(self.haproxy.info["socket"]), f"get weight checkout/{server}")
        return int(reply.split()[0])

    def all_on(self, server: str) -> bool:
        """Every request goes to ``server``: its weight is positive, the other's zero."""
        other = "stable-1" if server == "canary-1" else "canary-1"
        return self.weight(server) > 0 and self.weight(other) == 0

    def canary_sessions(self) -> int:
        stat = runtime_command(str(self.haproxy.info["socket"]), "show stat")
        header = stat.lstrip("# ").splitlines()[0].split(",")
        for line in stat.splitlines()[1:]:
            cols = line.split(",")
            if cols[:2] == ["checkout", "canary-1"]:
                return int(cols[header.index("stot")])
        raise AssertionError("canary-1 not in show stat")


@pytest.fixture()
def stack_for(lab: Lab, tmp_path: Path) -> Iterator[object]:
    made: list[Stack] = []

    def make(canary_version: str, *, rps: float = 60) -> Stack:
        servers = {"stable-1": int(lab.apps["1.0.0"].info["port"]),
                   "canary-1": int(lab.apps[canary_version].info["port"])}
        hap = start_haproxy(tmp_path / "haproxy", backend="checkout", servers=servers,
                            canary=["canary-1"])
        load = Load(f"http://127.0.0.1:{hap.info['port']}/", rps=rps).start()
        slack = SlackReceiver(echo=None).start()
        stack = Stack(haproxy=hap, load=load, slack=slack, dir=tmp_path,
                      store=f"sqlite:///{tmp_path}/state.db")
        made.append(stack)
        return stack

    yield make
    for s in made:
        s.load.stop()
        s.slack.stop()
        s.haproxy.stop()


def write_policy(path: Path, prometheus_url: str, *, extra: str = "") -> Path:
    path.write_text(f"""\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: e2e
spec:
  prometheus:
    url: {prometheus_url}
  interval: 2s
  window: 10s
  metrics:
    - name: error-rate
      builtin: error-rate
      max: 0.05
      minRequests: 5
      inconclusiveLimit: 30
      consecutiveErrorLimit: 3
    - name: latency-p99
      builtin: latency
      quantile: 0.99
      max: 0.5
      minRequests: 5
      inconclusiveLimit: 30
      consecutiveErrorLimit: 3
{extra}""")
    return path


def write_rollout(stack: Stack, *, version: str, policy: Path, pause: str = "4s",
                  stages: str = "[5, 25, 50, 100]", migration: str = "") -> Path:
    f = stack.dir / "rollout.yaml"
    f.write_text(f"""\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "{version}"
  stableVersion: "1.0.0"
  router:
    type: haproxy
    socket: {stack.haproxy.info['socket']}
    backend: checkout
    stable: stable-1
    canary: canary-1
  stages: {stages}
  pause: {pause}
  analysis:
    policy: {policy}
  notifications:
    - type: slack
      webhookUrl: ${{SLACK_WEBHOOK_URL}}
{migration}""")
    return f


def canary_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "canary", *args]


def run_canary(stack: Stack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(canary_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=canary_env(stack), cwd=str(stack.dir), check=False)


def canary_env(stack: Stack) -> dict[str, str]:
    env = dict(os.environ)
    env["SLACK_WEBHOOK_URL"] = stack.slack.url()
    env["CANARY_STORE"] = stack.store
    env["PYTHONPATH"] = str(REPO)
    return env
