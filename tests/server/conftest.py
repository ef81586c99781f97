"""`canary serve` as real processes against the end-to-end lab: real Prometheus, demo apps,
HAProxy and load (fixtures shared with tests/e2e), plus helpers to start controllers, call
their API and start one HAProxy carrying several rollouts' backends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.haproxy import HAPROXY, runtime_command
from lab.load import Load
from lab.proc import Server, free_port, wait_until
from tests.e2e.conftest import REPO, Lab, canary_cmd, lab, stack_for  # noqa: F401 - fixtures

# Constants, not random: pytest imports this file twice (as serve.conftest for fixtures and
# tests.server.conftest for the tests' imports), and both copies must agree.
READ_TOKEN = "read-token-3f9c2a7d"
OPERATOR_TOKEN = "operator-token-b81e64c0"


@dataclass
class Controller:
    """One `canary serve` process."""

    server: Server
    url: str

    def call(self, method: str, path: str, *, token: str | None = OPERATOR_TOKEN,
             **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", None) or {})
        return httpx.request(method, self.url + path, headers=headers, timeout=10,
                             trust_env=False, **kw)

    def submit(self, document: str, **kw: Any) -> httpx.Response:
        return self.call("POST", "/api/v1/rollouts", json={"document": document, **kw})

    def status(self, name: str) -> dict[str, Any]:
        r = self.call("GET", f"/api/v1/rollouts/{name}", token=READ_TOKEN)
        r.raise_for_status()
        return dict(r.json())

    def terminate(self, timeout: float = 30) -> int:
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGTERM)
        return self.server.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.server.proc is not None
        os.kill(self.server.proc.pid, signal.SIGKILL)
        self.server.proc.wait(10)

    def log(self) -> str:
        return Path(self.server.log_path).read_text(errors="replace")


def serve_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CANARY_API_TOKENS_READ=READ_TOKEN, CANARY_API_TOKENS_OPERATOR=OPERATOR_TOKEN,
               PYTHONPATH=str(REPO))
    env.pop("CANARY_SERVER", None)
    env.update(extra or {})
    return env


StartServe = Callable[..., Controller]


@pytest.fixture()
def start_serve(tmp_path: Path) -> Iterator[StartServe]:
    started: list[Controller] = []

    def start(store: str, *, tick: str = "0.5s", lease_ttl: str = "30s",
              env: dict[str, str] | None = None, name: str = "serve",
              args: tuple[str, ...] = ()) -> Controller:
        port = free_port()
        # The lab's rollout files name ${SLACK_WEBHOOK_URL}: allowed when it is given.
        slack = ("--allow-env", "SLACK_WEBHOOK_URL") if "SLACK_WEBHOOK_URL" in (env or {}) \
            else ()
        server = Server(name=name, argv=canary_cmd(
            "serve", "--store", store, "--listen", f"127.0.0.1:{port}", "--tick", tick,
            "--lease-ttl", lease_ttl, *slack, *args), log_path=str(tmp_path / f"{name}.log"))
        server.start(env=serve_env(env), cwd=str(tmp_path))
        ctl = Controller(server=server, url=f"http://127.0.0.1:{port}")
        started.append(ctl)
        wait_until(lambda: not server.alive() or ctl.call("GET", "/healthz").status_code == 200,
                   timeout=60, what=f"{name} on port {port}")
        assert server.alive(), ctl.log()
        return ctl

    yield start
    for ctl in started:
        ctl.server.stop()


@dataclass
class MultiHAProxy:
    """One HAProxy with a frontend and a backend per rollout, each stable-1 + canary-1."""

    server: Server
    ports: dict[str, int]
    socket: str
    loads: list[Load] = field(default_factory=list)

    def weight(self, backend: str, server: str) -> int:
        return int(runtime_command(self.socket, f"get weight {backend}/{server}").split()[0])

    def all_on(self, backend: str, server: str) -> bool:
        other = "stable-1" if server == "canary-1" else "canary-1"
        return self.weight(backend, server) > 0 and self.weight(backend, other) == 0


def start_multi_haproxy(workdir: Path, backends: list[str], *, stable_port: int,
                        canary_port: int, rps: float = 15) -> MultiHAProxy:
    workdir.mkdir(parents=True, exist_ok=True)
    sock = str(workdir / "admin.sock")
    ports = {b: free_port() for b in backends}
    lines = ["global", f"    stats socket {sock} mode 600 level admin", "defaults",
             "    mode http", "    timeout connect 2s", "    timeout client 10s",
             "    timeout server 10s"]
    for b in backends:
        lines += [f"frontend fe-{b}", f"    bind 127.0.0.1:{ports[b]}", f"    default_backend {b}",
                  f"backend {b}", "    balance roundrobin",
                  f"    server stable-1 127.0.0.1:{stable_port} weight 100",
                  f"    server canary-1 127.0.0.1:{canary_port} weight 0"]
    config = workdir / "haproxy.cfg"
    config.write_text("\n".join(lines) + "\n")
    server = Server(name="haproxy", argv=[HAPROXY, "-db", "-f", str(config)],
                    log_path=str(workdir / "haproxy.log")).start()
    wait_until(lambda: "Name: HAProxy" in runtime_command(sock, "show info"), timeout=10,
               what="haproxy runtime API")
    hap = MultiHAProxy(server=server, ports=ports, socket=sock)
    hap.loads = [Load(f"http://127.0.0.1:{p}/", rps=rps).start() for p in ports.values()]
    return hap


def rollout_yaml(name: str, *, socket: str, backend: str, version: str, policy: Path,
                 pause: str = "3s", stages: str = "[5, 25, 50, 100]") -> str:
    return f"""\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: {name}
spec:
  service: checkout
  version: "{version}"
  stableVersion: "1.0.0"
  router:
    type: haproxy
    socket: {socket}
    backend: {backend}
    stable: stable-1
    canary: canary-1
  stages: {stages}
  pause: {pause}
  analysis:
    policy: {policy}
"""


def wait_phase(ctl: Controller, name: str, phases: set[str], *, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = ctl.status(name)
        if status["phase"] in phases:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still {status['phase']} after {timeout}s: {status}")
        time.sleep(0.2)


def run(args: list[str], *, env: dict[str, str], cwd: Path,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(canary_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(cwd), check=False)
