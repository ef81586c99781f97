"""A second real lab, for outcomes the first one (lab.py) does not produce.

- ``payments``: stable 1.0.0 at 1% errors, canary 2.0.0 at 4%: worse than stable, yet
  under an absolute 5% threshold. Only a rule relative to stable catches it.
- ``search``: both versions at 20% errors, an incident that is not the canary's fault:
  an absolute 5% threshold fails it, a rule relative to stable must not.
- ``shop`` behind a real HAProxy with its built-in Prometheus exporter: stable-1 and
  stable-2 (1.0.0, no errors), canary-1 (2.0.0, 40% errors, 20 ms per request), equal
  weights, 120 requests per second. Prometheus scrapes HAProxy, not the apps: the
  ``haproxy`` family must judge from the proxy's own series.

Load runs in processes of its own (``python -m lab.load``), so the test process
stays idle while rates are measured; everything is stopped by PID.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from canary.metrics.prometheus import PrometheusProvider
from lab.app import REPO_ROOT, start_app
from lab.haproxy import HAPROXY, runtime_command
from lab.proc import Server, free_port, wait_until
from lab.prometheus import start_prometheus, wait_for_targets_up

RPS = 40.0
WINDOW = 10.0
SHOP_LOADS, SHOP_RPS = 3, 40.0  # 120 rps through HAProxy, 40 per server
SHOP_SERVERS = {"stable-1": ("1.0.0", 0.0, 0.0), "stable-2": ("1.0.0", 0.0, 0.0),
                "canary-1": ("2.0.0", 0.4, 0.02)}  # name: (version, error rate, latency s)


@dataclass(frozen=True)
class Scenarios:
    prometheus_url: str
    haproxy_metrics: str  # host:port of HAProxy's exporter; "" when it is not compiled in
    startup: dict[str, float]


def haproxy_config(*, port: int, metrics_port: int, socket_path: str,
                   servers: dict[str, int]) -> str:
    """One frontend for traffic, one serving HAProxy's own Prometheus exporter."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 10s",
        "    timeout server 10s",
        "frontend metrics",
        f"    bind 127.0.0.1:{metrics_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "frontend main",
        f"    bind 127.0.0.1:{port}",
        "    default_backend shop",
        "backend shop",
        "    balance roundrobin",
    ]
    lines += [f"    server {name} 127.0.0.1:{p} weight 100" for name, p in servers.items()]
    return "\n".join(lines) + "\n"


def exporter_compiled_in() -> bool:
    """``haproxy -vv`` lists the Prometheus exporter among its services when built with it."""
    try:
        out = subprocess.run([HAPROXY, "-vv"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except OSError:
        return False
    return "prometheus-exporter" in out


def start_exporting_haproxy(workdir: Path, servers: dict[str, int]) -> Server:
    port, metrics_port = free_port(), free_port()
    socket_path = str(workdir / "haproxy-admin.sock")
    config = workdir / "haproxy.cfg"
    config.write_text(haproxy_config(port=port, metrics_port=metrics_port,
                                     socket_path=socket_path, servers=servers))
    check = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True,
                           text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"haproxy -c rejected {config}:\n{check.stdout}{check.stderr}")
    server = Server(name="haproxy", argv=[HAPROXY, "-db", "-f", str(config)],
                    log_path=str(workdir / "haproxy.log"))
    server.info.update(url=f"http://127.0.0.1:{port}", metrics=f"127.0.0.1:{metrics_port}")
    server.start()
    try:
        wait_until(lambda: not server.alive()
                   or "Name: HAProxy" in runtime_command(socket_path, "show info"),
                   timeout=10, what="haproxy runtime API")
    except BaseException:
        server.stop()
        raise
    if not server.alive():
        raise RuntimeError(f"haproxy exited:\n{server.log_tail()}")
    return server


def start_load(workdir: Path, url: str, rps: float) -> Server:
    argv = [sys.executable, "-m", "lab.load", "--url", url, "--rps", str(rps),
            "--duration", "1800"]
    log = workdir / f"load-{free_port()}.log"
    return Server(name=f"load {url}", argv=argv, log_path=str(log)).start(cwd=str(REPO_ROOT))


@contextmanager
def running_scenarios(workdir: Path) -> Iterator[Scenarios]:
    servers: list[Server] = []
    t0 = time.monotonic()
    try:
        targets = []
        for service, rates in (("payments", (0.01, 0.04)), ("search", (0.2, 0.2))):
            for version, rate in zip(("1.0.0", "2.0.0"), rates, strict=True):
                app = start_app(workdir, service=service, version=version, error_rate=rate)
                servers.append(app)
                targets.append(f"127.0.0.1:{app.info['port']}")
                servers.append(start_load(workdir, f"{app.info['url']}/", RPS))
        exporter = ""
        if exporter_compiled_in():
            shop = {}
            for name, (version, rate, latency) in SHOP_SERVERS.items():
                app = start_app(workdir, service="shop", version=version, error_rate=rate,
                                latency=latency)
                servers.append(app)
                shop[name] = int(str(app.info["port"]))
            haproxy = start_exporting_haproxy(workdir, shop)
            servers.append(haproxy)
            exporter = str(haproxy.info["metrics"])
            targets.append(exporter)
            for _ in range(SHOP_LOADS):  # HAProxy's averages need 1024 answers
                servers.append(start_load(workdir, f"{haproxy.info['url']}/", SHOP_RPS))
        prometheus = start_prometheus(workdir / "prometheus", targets=targets)
        servers.append(prometheus)
        url = str(prometheus.info["url"])
        wait_for_targets_up(url, len(targets), timeout=30)
        up = time.monotonic() - t0
        with PrometheusProvider(url) as provider:
            def full() -> bool:
                counts = provider.query(f"count_over_time(up[{WINDOW:g}s])")
                return len(counts) == len(targets) and all(s.value >= WINDOW for s in counts)
            wait_until(full, timeout=40, interval=0.25, what="a full window for every target")
        yield Scenarios(prometheus_url=url, haproxy_metrics=exporter,
                        startup={"targets_up": up, "data": time.monotonic() - t0})
    finally:
        for server in reversed(servers):
            server.stop()
