"""The HTTP front of `canary serve` under hostile load: many clients at once, and many
connections that never finish a request.

A real controller process (from this checkout, or from ``--src``: another copy of the
`canary` package, e.g. main's, to compare) drives N rollouts on a real HAProxy (held in
their first stage, ticking every second, no analysis), while this script:

1. runs 200 concurrent clients against /healthz, each opening a new connection per request:
   latency p50/p99/max, requests that failed or took over 30 s, and the controller's CPU
   time per request (user + system, from /proc: it depends much less than latency on what
   else the machine runs, so it tells a change in the server from a noisy neighbour);
2. opens 1,000 connections, half idle and half with half-sent headers, holds them for a
   window, and samples the controller's threads and RSS every 2 s; meanwhile it counts the
   ticks the controller reports (canary_tick_duration_seconds_count) against the N x window
   / tick it should have done, and times /healthz from a well-behaved client.

    python -m bench.serve.http --out /tmp/http-after.md
    python -m bench.serve.http --src /tmp/main-src --out /tmp/http-before.md
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import httpx

from bench.serve.report import _memory
from bench.serve.run import start_haproxy
from lab.proc import Server, free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bench-operator-token"


POLICY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata: {name: bench-http}
spec:
  prometheus: {url: "http://127.0.0.1:9"}
  interval: 1h
  window: 1m
  metrics:
    - {name: error-rate, builtin: error-rate, max: 0.05, consecutiveErrorLimit: 1000}
"""


def rollout(i: int, *, sock: str, policy: Path) -> str:
    return f"""\
apiVersion: canary/v1
kind: Rollout
metadata: {{name: svc-{i:04d}}}
spec:
  service: svc-{i:04d}
  version: "2.0.0"
  stableVersion: "1.0.0"
  router: {{type: haproxy, socket: "{sock}", backend: svc-{i:04d}, stable: stable-1,
           canary: canary-1}}
  stages: [5, 25, 50, 100]
  pause: 30m
  analysis: {{policy: "{policy}"}}
"""


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def ticks(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=60, trust_env=False).text
    return sum(float(v) for v in re.findall(
        r'^canary_tick_duration_seconds_count\{result="ok"\} (\S+)$', text, re.M))


def one_healthz(url: str) -> float:
    """Seconds for one GET /healthz on a new connection (negative: failed or over 30 s).
    A raw socket, so the figure is the server's and not an HTTP client library's."""
    port = int(url.rsplit(":", 1)[1])
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        ok = answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200")
    except OSError:
        ok = False
    took = time.perf_counter() - started
    return took if ok else -took


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def burst(url: str, pid: int, *, clients: int, each: int) -> dict[str, float]:
    cpu = cpu_seconds(pid)
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: one_healthz(url), range(clients * each)))
    cpu = cpu_seconds(pid) - cpu
    ok = [r for r in results if r > 0]
    return {"requests": len(results), "failed": len(results) - len(ok),
            "p50_ms": pct(ok, 0.5) * 1e3, "p99_ms": pct(ok, 0.99) * 1e3,
            "max_ms": max(ok, default=float("nan")) * 1e3,
            "controller_cpu_ms_per_request": cpu / len(results) * 1e3}


def hostile(url: str, pid: int, *, n: int, window: float, rollouts: int,
            tick: float) -> dict[str, float]:
    port = int(url.rsplit(":", 1)[1])
    socks, refused = [], 0
    ticks_before = ticks(url)
    started = time.monotonic()
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                s.sendall(b"GET /api/v1/rollouts HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            refused += 1
    opened = time.monotonic() - started
    peak_threads, peak_rss, health = 0, 0, []
    while time.monotonic() - started < opened + window:
        peak_threads = max(peak_threads, threads(pid))
        peak_rss = max(peak_rss, _memory(pid)[0])
        health.append(one_healthz(url))
        time.sleep(2)
    elapsed = time.monotonic() - started
    done = ticks(url) - ticks_before
    open_at_end = 0
    for s in socks:
        s.setblocking(False)
        try:
            open_at_end += s.recv(1) != b""
        except BlockingIOError:
            open_at_end += 1  # nothing to read and not closed: still held open
        except OSError:
            pass
        s.close()
    ok = [h for h in health if h > 0]
    return {"connections": n, "seconds_to_open_them": opened, "refused": refused,
            "still_open_at_end": open_at_end,
            "peak_threads": peak_threads, "peak_rss_mib": peak_rss / 1024,
            "ticks_done": done, "ticks_due": rollouts * elapsed / tick,
            "healthz_failed": len(health) - len(ok), "healthz_p99_ms": pct(ok, 0.99) * 1e3}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default=str(REPO), help="folder holding the canary package run")
    p.add_argument("--rollouts", type=int, default=50)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--each", type=int, default=10, help="requests per client")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--workdir", default="/tmp/canary-bench-http")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    hap = start_haproxy(work / "haproxy", args.rollouts)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv_ = [sys.executable, "-m", "canary", "serve", "--store", f"sqlite:///{work}/state.db",
             "--listen", f"127.0.0.1:{port}", "--tick", "1s"]
    env = dict(os.environ, CANARY_API_TOKENS_OPERATOR=TOKEN, PYTHONPATH=args.src)
    ctl = Server(name="controller", argv=argv_, log_path=str(work / "serve.log"))
    ctl.start(env=env, cwd=str(work))
    try:
        wait_until(lambda: port_open(port), timeout=30, what="the controller")
        policy = work / "policy.yaml"
        policy.write_text(POLICY)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60, trust_env=False) as http:
            for i in range(args.rollouts):
                doc = rollout(i, sock=str(hap.info["socket"]), policy=policy)
                assert http.post("/api/v1/rollouts", json={"document": doc}).status_code == 201
        time.sleep(5)
        first = burst(url, ctl.pid, clients=args.clients, each=args.each)
        second = hostile(url, ctl.pid, n=args.connections, window=args.window,
                         rollouts=args.rollouts, tick=1.0)
        log = (work / "serve.log").read_text(errors="replace")
        second["tracebacks_in_log"] = log.count("Traceback")
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
            text = http.get("/metrics").text
        second["rollouts_still_progressing"] = sum(float(v) for v in re.findall(
            r'^canary_rollouts\{phase="progressing"\} (\S+)$', text, re.M))
    finally:
        ctl.stop()
        hap.stop()
    lines = [f"command: python -m bench.serve.http {' '.join(argv or sys.argv[1:])}",
             f"source: {args.src}", f"load average at the start: {load:.1f}", "",
             f"{args.clients} concurrent clients x {args.each} requests on /healthz "
             "(new connection each):"]
    lines += [f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}"
              for k, v in first.items()]
    lines += ["", f"{args.connections} connections (half idle, half half-sent headers) held "
              f"{args.window:g}s, {args.rollouts} rollouts ticking every 1s:"]
    lines += [f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}"
              for k, v in second.items()]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
