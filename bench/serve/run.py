"""Scale benchmark of `canary serve`: N concurrent rollouts on one controller.

Real servers on loopback: a Prometheus scraping synthetic series for N services
(bench/serve/fakeapps.py), one HAProxy carrying N backends (the rollouts' routers), a SQLite
store, and the controller as its own process, once with per-rollout queries
(`canary serve --batch-max-age 0`) and once with batched queries (`--batch-max-age 5s`), in
the same run. Each rollout
sits in its first stage with a 10 s analysis interval, so every tick reads the router and
every tenth second each rollout is analysed. Measured over a window after warm-up: tick
latency (from the controller's histogram), controller CPU and memory (/proc), Prometheus
queries per minute (Prometheus's own counter).

    python -m bench.serve.run --rollouts 1000 --window 120 --out bench/serve/results.md
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx

from bench.serve.report import Measure, markdown, snapshot
from lab.haproxy import HAPROXY, runtime_command
from lab.proc import Server, free_port, port_open, wait_until
from lab.prometheus import start_prometheus, wait_for_targets_up

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bench-operator-token"


def start_haproxy(workdir: Path, n: int) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    sock = str(workdir / "admin.sock")
    lines = ["global", f"    stats socket {sock} mode 600 level admin", "defaults",
             "    mode http", "    timeout connect 2s", "    timeout client 10s",
             "    timeout server 10s"]
    for i in range(n):  # servers point at the discard port: no traffic, no checks
        lines += [f"backend svc-{i:04d}", "    balance roundrobin",
                  "    server stable-1 127.0.0.1:9 weight 100",
                  "    server canary-1 127.0.0.1:9 weight 0"]
    (workdir / "haproxy.cfg").write_text("\n".join(lines) + "\n")
    server = Server(name="haproxy", argv=[HAPROXY, "-db", "-f", str(workdir / "haproxy.cfg")],
                    log_path=str(workdir / "haproxy.log")).start()
    wait_until(lambda: "Name: HAProxy" in runtime_command(sock, "show info"), timeout=30,
               what="haproxy")
    server.info["socket"] = sock
    return server


def policy(path: Path, prometheus: str) -> Path:
    path.write_text(f"""\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata: {{name: bench}}
spec:
  prometheus: {{url: "{prometheus}"}}
  interval: 10s
  window: 1m
  metrics:
    - {{name: error-rate, builtin: error-rate, max: 0.05, minRequests: 5,
       inconclusiveLimit: 1000}}
    - {{name: latency-p99, builtin: latency, quantile: 0.99, max: 0.5, minRequests: 5,
       inconclusiveLimit: 1000}}
""")
    return path


def rollout(i: int, *, socket: str, policy_path: Path) -> str:
    return f"""\
apiVersion: canary/v1
kind: Rollout
metadata: {{name: svc-{i:04d}}}
spec:
  service: svc-{i:04d}
  version: "2.0.0"
  stableVersion: "1.0.0"
  router: {{type: haproxy, socket: "{socket}", backend: svc-{i:04d}, stable: stable-1,
           canary: canary-1}}
  stages: [5, 25, 50, 100]
  pause: 30m
  analysis: {{policy: "{policy_path}"}}
"""


def run_mode(mode: str, *, n: int, window: float, warmup: float, workers: int, tick: str,
             workdir: Path, prometheus: Server, policy_path: Path,
             src: str | None = None) -> Measure:
    d = workdir / mode
    shutil.rmtree(d, ignore_errors=True)  # a fresh store: every rollout is created anew
    hap = start_haproxy(d / "haproxy", n)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--store", f"sqlite:///{d}/state.db", "--listen", f"127.0.0.1:{port}",
            "--tick", tick, "--workers", str(workers)]
    # Both modes are the product's `canary serve`: batching on (grouped queries shared by
    # every rollout, answers reused 5 s) or off.
    batch = "5s" if mode == "batched" else "0s"
    argv = [sys.executable, "-m", "canary", "serve", *args, "--batch-max-age", batch]
    env = dict(os.environ, CANARY_API_TOKENS_OPERATOR=TOKEN, PYTHONPATH=src or str(REPO))
    ctl = Server(name=f"controller {mode}", argv=argv, log_path=str(d / "serve.log"))
    ctl.start(env=env, cwd=str(d))
    try:
        wait_until(lambda: port_open(port), timeout=30, what="the controller")
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=60, trust_env=False)
        started = time.monotonic()

        def submit(i: int) -> int:
            doc = rollout(i, socket=str(hap.info["socket"]), policy_path=policy_path)
            return http.post("/api/v1/rollouts", json={"document": doc}).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(submit, range(n)))
        submitted = time.monotonic() - started
        assert codes.count(201) == n, {c: codes.count(c) for c in set(codes)}
        prom = str(prometheus.info["url"])
        try:  # every rollout ticked at least once (an overloaded run may never get there)
            wait_until(lambda: _driven(http) >= n, timeout=120, interval=1,
                       what=f"{n} rollouts driven")
        except TimeoutError as exc:
            print(f"{mode}: {exc}; measuring anyway", file=sys.stderr)
        time.sleep(warmup)
        before = snapshot(http, prom, controller_pid=ctl.pid, prometheus_pid=prometheus.pid)
        time.sleep(window)
        after = snapshot(http, prom, controller_pid=ctl.pid, prometheus_pid=prometheus.pid)
        stop_started = time.monotonic()
        ctl.stop(timeout=60)
        stopped = time.monotonic() - stop_started
        http.close()
        return Measure(mode=mode, rollouts=n, before=before, after=after,
                       submit_seconds=submitted, stop_seconds=stopped)
    finally:
        ctl.stop()
        hap.stop()


def _driven(http: httpx.Client) -> int:
    """Rollouts this controller drives now, plus those it already ended."""
    text = http.get("/metrics").text
    values = re.findall(r"^canary_rollouts(?:_finished_total)?\{phase=\S+\} (\S+)$", text,
                        re.M)
    return int(sum(float(v) for v in values))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rollouts", type=int, default=1000)
    p.add_argument("--window", type=float, default=120.0, help="seconds measured per mode")
    p.add_argument("--warmup", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--tick", default="10s")
    p.add_argument("--modes", default="unbatched,batched")
    p.add_argument("--workdir", default="/tmp/canary-bench-serve")
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.add_argument("--src", default=None, help="run the controller from this folder's canary "
                   "package (e.g. an export of main, to compare); default this checkout")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on the way out
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    apps = Server(name="fakeapps", argv=[sys.executable, "-m", "bench.serve.fakeapps",
                                         "--port", str(port), "--services", str(args.rollouts)],
                  log_path=str(workdir / "fakeapps.log"))
    apps.start(env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=str(REPO))
    prometheus = None
    try:
        wait_until(lambda: port_open(port), timeout=10, what="fakeapps")
        prometheus = start_prometheus(workdir / "prometheus", targets=[f"127.0.0.1:{port}"],
                                      scrape_interval="5s")
        wait_for_targets_up(str(prometheus.info["url"]), 1, timeout=60)
        time.sleep(65)  # a full rate() window of data before the first analysis
        pol = policy(workdir / "policy.yaml", str(prometheus.info["url"]))
        results = [run_mode(m, n=args.rollouts, window=args.window, warmup=args.warmup,
                            workers=args.workers, tick=args.tick, workdir=workdir,
                            prometheus=prometheus, policy_path=pol, src=args.src)
                   for m in args.modes.split(",")]
    finally:
        if prometheus is not None:
            prometheus.stop()
        apps.stop()
    command = "python -m bench.serve.run " + " ".join(argv if argv is not None else sys.argv[1:])
    report = markdown(results, command=command, window=args.window, tick=args.tick,
                      workers=args.workers)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
