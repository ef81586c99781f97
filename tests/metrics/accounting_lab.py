"""A lab for exact accounting: real apps whose traffic the test controls, one Prometheus,
and the live judge loop (tests/metrics/accounting_driver.py) run as a process.

Shared by tests/metrics/test_accounting_live.py and bench/accounting.py. The truth a fed
sum is compared with is read from the apps' own ``/metrics`` (not from Prometheus).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from canary.config.spec import load_policy
from canary.replay.backtest import backtest_judge
from canary.replay.recording import load_recording
from lab.app import REPO_ROOT, start_app
from lab.proc import Server, wait_until
from lab.prometheus import start_prometheus, wait_for_targets_up

INTERVAL = 2.0
POLICY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: accounting
spec:
  prometheus:
    url: {url}
  interval: 2s
  window: 10s
  sequential:
    alpha: 0.02
    tolerance: 1.0
    warmup: 6s
"""


@dataclass
class AccountingLab:
    prometheus_url: str
    apps: dict[str, Server]  # version -> app
    workdir: Path
    policy: Path

    def restart_app(self, version: str) -> None:
        """Stop the app and start it again on the same port: its counters reset to 0."""
        old = self.apps[version]
        old.stop()
        info = old.info
        new = start_app(self.workdir, version=version, error_rate=float(str(info["error"])),
                        port=int(str(info["port"])))
        new.info["error"] = info["error"]
        self.apps[version] = new


@contextmanager
def running_accounting_lab(workdir: Path, apps: dict[str, float]) -> Iterator[AccountingLab]:
    """``apps``: version -> error rate. Every process is stopped by PID on the way out."""
    servers: list[Server] = []
    lab: AccountingLab | None = None
    try:
        started = {}
        for version, error in apps.items():
            app = start_app(workdir, version=version, error_rate=error, latency=0.002)
            app.info["error"] = error
            started[version] = app
            servers.append(app)
        prom = start_prometheus(workdir / "prom", targets=[
            f"127.0.0.1:{a.info['port']}" for a in started.values()])
        servers.append(prom)
        url = str(prom.info["url"])
        wait_for_targets_up(url, len(started), timeout=30)
        policy = workdir / "policy.yaml"
        policy.write_text(POLICY.format(url=url))
        lab = AccountingLab(prometheus_url=url, apps=started, workdir=workdir, policy=policy)
        yield lab
    finally:
        for s in reversed(servers if lab is None else [*lab.apps.values(), *servers[-1:]]):
            s.stop()


def app_requests(app: Server) -> float:
    """Requests the app itself counted (all codes), read from its own /metrics."""
    with urllib.request.urlopen(f"{app.info['url']}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                total += sample.value
    return total


def start_driver(lab: AccountingLab, run: Path, *, canary: str, stable: str, checks: int,
                 batch_max_age: float = 0.0, keep_going: bool = False, tick: float = 0.0
                 ) -> subprocess.Popen[bytes]:
    run.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tests.metrics.accounting_driver", "--prometheus",
            lab.prometheus_url, "--policy", str(lab.policy), "--canary", canary, "--stable",
            stable, "--memory", str(run / "memory.json"), "--log", str(run / "checks.jsonl"),
            "--checks", str(checks), "--batch-max-age", str(batch_max_age), "--tick", str(tick),
            *(["--keep-going"] if keep_going else [])]
    log = open(run / "driver.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    return proc


def checks_of(run: Path) -> list[dict[str, Any]]:
    path = run / "checks.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def memory_of(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "memory.json").read_text())
    return data


def wait_checks(run: Path, n: int, *, timeout: float) -> list[dict[str, Any]]:
    wait_until(lambda: len(checks_of(run)) >= n, timeout=timeout, interval=0.2,
               what=f"{n} checks in {run}")
    return checks_of(run)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def settle() -> None:
    """Long enough for Prometheus (1 s scrapes) to have scraped what the apps counted."""
    time.sleep(2.5)


@dataclass(frozen=True)
class Replay:
    """One lab rollout decided live, then recorded and backtested."""

    canary: str
    live: str  # "rollback" or "promote" (no rollback over the rollout's checks)
    live_at: float  # seconds from the recording's start to the deciding/last check
    backtest: str
    backtest_at: float
    checks: int
    fed: float = 0.0  # canary requests fed to the judge over the rollout (exact accounting)
    old_fed: float = 0.0  # what increase(...[interval]) at each check's start time sums to
    recorded: float = 0.0  # canary requests in the recording (a partial interval longer)
    # per live check: its span, both versions' counts, the combined log e-value after it
    live_checks: tuple[dict[str, Any], ...] = ()
    # the same per recorded interval, as the backtest's judge steps through them
    backtest_intervals: tuple[dict[str, Any], ...] = ()

    @property
    def agree(self) -> bool:
        """Same decision, within one interval (a promotion's time is the rollout's end)."""
        same = (self.live == "rollback") == (self.backtest == "rollback")
        return same and (self.live != "rollback"
                         or abs(self.live_at - self.backtest_at) <= INTERVAL + 1e-6)

    def to_json(self) -> dict[str, Any]:
        return {"canary": self.canary, "live": self.live, "liveAt": round(self.live_at, 3),
                "backtest": self.backtest, "backtestAt": self.backtest_at,
                "checks": self.checks, "agree": self.agree, "fed": self.fed,
                "oldFed": round(self.old_fed, 1), "recorded": self.recorded,
                "liveChecks": list(self.live_checks),
                "backtestIntervals": list(self.backtest_intervals)}


def canary_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "canary", *args], cwd=str(REPO_ROOT),
                          capture_output=True, text=True, timeout=120, check=False)


def rollout_and_replay(lab: AccountingLab, run: Path, *, canary: str, stable: str,
                       checks: int, batch_max_age: float = 0.0, tick: float = 0.0) -> Replay:
    """A live rollout (the judge loop against the lab until rollback or ``checks``), then
    `canary record` of exactly its span and `canary backtest` of the recording."""
    proc = start_driver(lab, run, canary=canary, stable=stable, checks=checks,
                        batch_max_age=batch_max_age, tick=tick)
    try:
        proc.wait(timeout=checks * INTERVAL * 3 + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = [c for c in checks_of(run) if c["at"] is not None]
    if not done:
        raise RuntimeError(f"no check completed; see {run / 'driver.log'}")
    start, end = done[0]["at"] - INTERVAL, done[-1]["at"]
    live = "rollback" if done[-1]["outcome"] == "failed" else "promote"
    # a recording holds whole intervals: up to the grid point nearest the last check (a
    # check due at 40 s runs a few ms late; rounding up would record 2 s the live judge
    # never saw); after a rollback one interval more, since the two agree when the
    # backtest rolls back within one interval of the live judge, and it cannot do so later
    # than the recording's end
    until = start + max(1, round((end - start) / INTERVAL)) * INTERVAL
    if live == "rollback":
        until += INTERVAL
    settle()
    while time.time() < until + 2.5:  # scraped past the recording's end
        time.sleep(0.2)
    rec = run / "recording.json"
    res = canary_cli("record", "--service", "checkout", "--canary", canary, "--stable",
                     stable, "--start", iso(start), "--end", iso(until), "--interval",
                     f"{INTERVAL:g}s", "--prometheus", lab.prometheus_url, "--name",
                     run.name, "-o", str(rec))
    if res.returncode != 0:
        raise RuntimeError(f"canary record failed: {res.stdout}{res.stderr}")
    bt = canary_cli("backtest", "--policy", str(lab.policy), "--data", str(rec), "-o",
                    "json")
    if bt.returncode != 0:
        raise RuntimeError(f"canary backtest failed: {bt.stdout}{bt.stderr}")
    answer = json.loads(bt.stdout.strip().splitlines()[0])
    old = sum(instant(lab.prometheus_url, "sum(increase(http_requests_total{service="
                      f'"checkout",version="{canary}"}}[{INTERVAL:g}s]))', at=c["started"])
              for c in done)
    live_checks = tuple({"t": round(c["at"] - start, 3), "outcome": c["outcome"],
                         **{k: c[k] for k in FED if k in c}} for c in done)
    return Replay(canary=canary, live=live, live_at=end - start,
                  backtest=str(answer["decision"]), backtest_at=float(answer["decidedAt"]),
                  checks=len(done), fed=float(memory_of(run)["live"]["fed"]["canary"]),
                  old_fed=old, recorded=sum(
                      (p["canary"] or {}).get("requests", 0.0)
                      for p in json.loads(rec.read_text())["series"]),
                  live_checks=live_checks, backtest_intervals=backtest_steps(lab.policy, rec))


FED = ("seconds", "canary", "stable", "logE", "logEBy")


def backtest_steps(policy_path: Path, recording_path: Path) -> tuple[dict[str, Any], ...]:
    """The recording's intervals as the backtest's judge sees them, one at a time, up to
    its first rollback: each interval's counts and the combined log e-value after it."""
    policy = load_policy(str(policy_path))
    rec = load_recording(str(recording_path))
    judge = backtest_judge(policy, rec)
    if judge is None:
        return ()
    raw = json.loads(recording_path.read_text())["series"]
    out, memory = [], None
    for point, iv in zip(raw, rec.intervals(), strict=True):
        step = judge.update(memory, iv)
        memory = step.memory
        out.append({"t": point["t"], "seconds": iv.seconds, "canary": point["canary"],
                    "stable": point["stable"], "logE": step.log_e,
                    "logEBy": {m.name: m.log_e for m in step.metrics},
                    "decision": step.decision})
        if step.decision == "rollback":
            break
    return tuple(out)


def instant(url: str, promql: str, *, at: float) -> float:
    """One number from an instant query evaluated at ``at`` (0 when there is none)."""
    query = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as reply:
        result = json.loads(reply.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0
