"""Run a real Prometheus for tests and examples: written config, free loopback port, by PID.

Prometheus serves ``/-/ready`` within a fraction of a second but scrapes for the first time
about 6 s after start, so readiness alone proves nothing about data: callers wait for every
target to be up with ``wait_for_targets_up`` before trusting a query.

Targets get no ``service``/``version`` labels in ``static_configs``: the apps export those
themselves, and a label set on both sides would come back as ``exported_service``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx

from lab.proc import Server, free_port, wait_until


def _config(targets: list[str], scrape_interval: str) -> str:
    # JSON is valid YAML, and json.dumps quotes every value correctly.
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                   "scrape_timeout": scrape_interval},
        "scrape_configs": [{"job_name": "lab", "static_configs": [{"targets": targets}]}],
    }
    return json.dumps(config, indent=2) + "\n"


def start_prometheus(
    workdir: str | Path,
    *,
    targets: list[str],
    scrape_interval: str = "1s",
    port: int | None = None,
    binary: str = "prometheus",
) -> Server:
    """Start Prometheus scraping ``targets`` (``host:port``); ``info['url']`` is its URL.

    Returns once ``/-/ready`` answers; the first scrape is still about 6 s away.
    """
    exe = shutil.which(binary)
    if exe is None:
        raise FileNotFoundError(f"{binary} not found; apt-get install prometheus")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_config(targets, scrape_interval))
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        exe, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn",
    ]
    server = Server(name="prometheus", argv=argv, log_path=str(workdir / "prometheus.log"))
    server.start(cwd=str(workdir))
    server.info.update(url=url, port=port, config=str(config))

    def ready() -> bool:
        if not server.alive():
            return True  # stop waiting; reported below
        return httpx.get(f"{url}/-/ready", timeout=1.0, trust_env=False).status_code == 200

    try:
        wait_until(ready, timeout=30, what=f"prometheus ready on {url}")
        if not server.alive():
            raise RuntimeError(f"prometheus exited:\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise
    return server


def targets_up(url: str) -> int:
    """How many of this Prometheus's targets were up at their last scrape.

    Read from ``/api/v1/targets`` rather than ``count(up == 1)``: a data folder reused from
    an earlier run still holds ``up == 1`` for that run's targets for five minutes.
    """
    response = httpx.get(f"{url}/api/v1/targets", params={"state": "active"},
                         timeout=2.0, trust_env=False)
    response.raise_for_status()
    active = response.json()["data"]["activeTargets"]
    return sum(1 for target in active if target.get("health") == "up")


def wait_for_targets_up(url: str, n: int, timeout: float = 20.0) -> float:
    """Wait until ``n`` targets are up (scraped at least once); returns the seconds waited.

    TimeoutError after ``timeout`` s. The first scrape comes about 6 s after start.
    """
    start = time.monotonic()
    wait_until(lambda: targets_up(url) == n, timeout=timeout, interval=0.2,
               what=f"{n} targets up in {url}")
    return time.monotonic() - start
