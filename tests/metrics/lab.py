"""The real lab the metrics tests share: three demo apps, load on two, one Prometheus.

- stable: checkout 1.0.0, no errors, no added latency
- canary: checkout 2.0.0, 40% answered 500, 10 ms per request
- odd: a service whose name holds a quote, a backslash, a newline and a tab; no traffic

Prometheus scrapes every second; ``running_lab`` yields once every target is up and the
canary's 10 s window is full of scrapes taken under load, so rates read as in steady state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from canary.metrics.prometheus import PrometheusProvider
from lab.app import start_app
from lab.load import Load
from lab.proc import Server, wait_until
from lab.prometheus import start_prometheus, wait_for_targets_up

RPS = 40.0
WINDOW = 10.0  # seconds; rate() needs two 1 s scrapes inside it, and we want several
ODD_SERVICE = 'we"ird\\svc\n\tx'


@dataclass(frozen=True)
class Lab:
    prometheus_url: str
    stable: Server
    canary: Server
    odd: Server
    startup: dict[str, float]


@contextmanager
def running_lab(workdir: Path) -> Iterator[Lab]:
    """Start the lab in ``workdir``; stop every process (by PID) on the way out."""
    servers: list[Server] = []
    loads: list[Load] = []
    t0 = time.monotonic()
    try:
        stable = start_app(workdir, version="1.0.0")
        servers.append(stable)
        canary = start_app(workdir, version="2.0.0", error_rate=0.4, latency=0.01)
        servers.append(canary)
        odd = start_app(workdir, version="1.0.0", service=ODD_SERVICE)
        servers.append(odd)
        prometheus = start_prometheus(
            workdir, targets=[f"127.0.0.1:{s.info['port']}" for s in servers])
        servers.append(prometheus)
        url = str(prometheus.info["url"])
        ready = time.monotonic() - t0
        loads = [Load(f"{s.info['url']}/", rps=RPS).start() for s in (stable, canary)]
        wait_for_targets_up(url, 3, timeout=30)
        up = time.monotonic() - t0
        # rate() over a window only partly covered by samples reads low (Prometheus
        # extrapolates at most half a scrape past the first sample): wait for a full window.
        scrapes = f'count_over_time(up{{instance="127.0.0.1:{canary.info["port"]}"}}[{WINDOW:g}s])'
        with PrometheusProvider(url) as provider:
            def full() -> bool:
                samples = provider.query(scrapes)
                return bool(samples) and samples[0].value >= WINDOW
            wait_until(full, timeout=30, interval=0.25, what="a full window of canary data")
        yield Lab(prometheus_url=url, stable=stable, canary=canary, odd=odd,
                  startup={"ready": ready, "targets_up": up, "data": time.monotonic() - t0})
    finally:
        for load in loads:
            load.stop()
        for server in reversed(servers):
            server.stop()
