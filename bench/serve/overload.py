"""Issue 13's overload, replayed: 1,000 healthy rollouts on one `canary serve` with query
batching off. Does the controller's own overload roll healthy canaries back?

The same servers as bench/serve/run.py (fake apps with 2% errors for both versions, a real
Prometheus, one HAProxy, a SQLite store); every rollout is healthy and held in its first
stage (pause 30m) with two metrics analysed every 10 s. After ``--window`` seconds the
store is read: how many rollouts were rolled back and why, and, from /metrics when the
controller answers, its ticks and checks that ran late. Run it once from main's code
(``--src``) and once from this checkout.

    python -m bench.serve.overload --src /tmp/main-src --out /tmp/overload-before.txt
    python -m bench.serve.overload --out /tmp/overload-after.txt
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.serve.run import REPO, TOKEN, policy, rollout, start_haproxy
from lab.proc import Server, free_port, port_open, wait_until
from lab.prometheus import start_prometheus, wait_for_targets_up


def outcome(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    try:
        phases = Counter(p for (p,) in conn.execute("SELECT phase FROM rollouts"))
        reasons = Counter()
        for (message,) in conn.execute("SELECT message FROM events WHERE kind='rolling-back'"):
            reasons[re.sub(r"\d+(\.\d+)?", "N", str(message))[:140]] += 1
    finally:
        conn.close()
    return {"phases": dict(phases), "rollback_reasons": dict(reasons.most_common(3))}


def controller_metrics(url: str) -> dict[str, float]:
    try:
        text = httpx.get(url + "/metrics", timeout=30, trust_env=False).text
    except httpx.HTTPError:
        return {"metrics_unavailable": 1.0}  # an overloaded controller may not answer
    out: dict[str, float] = {}
    for name in ("canary_ticks_late_total", "canary_checks_late_total",
                 "canary_query_slots_in_use", "canary_rollbacks_total"):
        values = re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
        if values:
            out[name] = sum(float(v) for v in values)
    for outcome_ in ("passed", "inconclusive", "error", "failed"):
        values = re.findall(rf'^canary_analysis_checks_total\{{[^}}]*outcome="{outcome_}"'
                            rf'[^}}]*\}} (\S+)$', text, re.M)
        out[f"checks_{outcome_}"] = sum(float(v) for v in values)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default=str(REPO))
    p.add_argument("--rollouts", type=int, default=1000)
    p.add_argument("--window", type=float, default=330.0, help="seconds after submission")
    p.add_argument("--workdir", default="/tmp/canary-bench-overload")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("state.db*"):
        old.unlink()
    apps_port, port = free_port(), free_port()
    apps = Server(name="fakeapps", argv=[sys.executable, "-m", "bench.serve.fakeapps", "--port",
                                         str(apps_port), "--services", str(args.rollouts)],
                  log_path=str(work / "fakeapps.log"))
    apps.start(env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=str(REPO))
    servers = [apps]
    started_at = time.time()
    try:
        wait_until(lambda: port_open(apps_port), timeout=10, what="fakeapps")
        prometheus = start_prometheus(work / "prometheus", targets=[f"127.0.0.1:{apps_port}"],
                                      scrape_interval="5s")
        servers.append(prometheus)
        wait_for_targets_up(str(prometheus.info["url"]), 1, timeout=60)
        time.sleep(65)  # a full rate() window of data before the first analysis
        pol = policy(work / "policy.yaml", str(prometheus.info["url"]))
        hap = start_haproxy(work / "haproxy", args.rollouts)
        servers.append(hap)
        url = f"http://127.0.0.1:{port}"
        ctl = Server(name="controller", argv=[
            sys.executable, "-m", "canary", "serve", "--store", f"sqlite:///{work}/state.db",
            "--listen", f"127.0.0.1:{port}", "--tick", "10s", "--workers", "32",
            "--batch-max-age", "0s"], log_path=str(work / "serve.log"))
        ctl.start(env=dict(os.environ, CANARY_API_TOKENS_OPERATOR=TOKEN,
                           PYTHONPATH=args.src), cwd=str(work))
        servers.append(ctl)
        wait_until(lambda: port_open(port), timeout=30, what="the controller")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=120, trust_env=False) as http:
            def submit(i: int) -> int:
                doc = rollout(i, socket=str(hap.info["socket"]), policy_path=pol)
                return http.post("/api/v1/rollouts", json={"document": doc}).status_code

            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                codes = Counter(pool.map(submit, range(args.rollouts)))
            submitted = time.monotonic() - t0
        time.sleep(args.window)
        metrics = controller_metrics(url)
        ctl.stop(timeout=60)
        result = outcome(work / "state.db")
    finally:
        for server in reversed(servers):
            server.stop()
    lines = [f"command: python -m bench.serve.overload {' '.join(argv or sys.argv[1:])}",
             f"source: {args.src}", f"started: {time.ctime(started_at)}",
             f"submitted {args.rollouts} rollouts in {submitted:.0f}s: {dict(codes)}",
             f"after {args.window:g}s: rollouts by phase {result['phases']}",
             f"rollback reasons (top 3): {result['rollback_reasons']}",
             f"controller /metrics at the end: {metrics}"]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
