"""What the serve benchmark measures, and the markdown it writes: snapshots before and after
a window, differences between them, and one table comparing the modes."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

import httpx

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")


@dataclass(frozen=True)
class Snapshot:
    at: float
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]
    controller_cpu: float  # seconds of CPU used so far
    controller_rss: int  # kB
    controller_peak: int  # kB
    prometheus_cpu: float
    prometheus_queries: float

    def total(self, name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics.items() if n == name and want <= ls)

    def buckets(self, name: str, **labels: str) -> dict[float, float]:
        out: dict[float, float] = {}
        for (n, ls), v in self.metrics.items():
            d = dict(ls)
            if n == f"{name}_bucket" and set(labels.items()) <= ls:
                out[float(d["le"])] = out.get(float(d["le"]), 0.0) + v
        return out


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[2] or ""))
            out[(m[1], labels)] = float(m[3])
    return out


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory(pid: int) -> tuple[int, int]:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def snapshot(http: httpx.Client, prometheus: str, *, controller_pid: int,
             prometheus_pid: int) -> Snapshot:
    metrics = parse(http.get("/metrics").text)
    # An overloaded Prometheus answers its own /metrics late, but it does answer.
    prom = parse(httpx.get(f"{prometheus}/metrics", timeout=120, trust_env=False).text)
    queries = sum(v for (n, ls), v in prom.items()
                  if n == "prometheus_http_requests_total" and ("handler", "/api/v1/query") in ls)
    rss, peak = _memory(controller_pid)
    return Snapshot(at=time.monotonic(), metrics=metrics, controller_cpu=_cpu(controller_pid),
                    controller_rss=rss, controller_peak=peak,
                    prometheus_cpu=_cpu(prometheus_pid), prometheus_queries=queries)


def quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile: linear within the bucket holding the rank."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


@dataclass
class Measure:
    mode: str
    rollouts: int
    before: Snapshot
    after: Snapshot
    submit_seconds: float
    stop_seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.after.at - self.before.at

    def delta(self, name: str, **labels: str) -> float:
        return self.after.total(name, **labels) - self.before.total(name, **labels)

    def tick_quantile(self, q: float) -> float:
        a = self.after.buckets("canary_tick_duration_seconds", result="ok")
        b = self.before.buckets("canary_tick_duration_seconds", result="ok")
        return quantile(q, {k: v - b.get(k, 0.0) for k, v in a.items()})

    def per_minute(self, value: float) -> float:
        return value * 60 / self.seconds

    def rate(self, result: str) -> float:
        return self.delta("canary_tick_duration_seconds_count", result=result) / self.seconds

    def skipped(self, kind: str) -> float:
        return self.delta("canary_tick_overruns_total", kind=kind)

    @property
    def queries(self) -> float:
        return self.after.prometheus_queries - self.before.prometheus_queries

    def cpu(self, who: str) -> float:
        used = getattr(self.after, f"{who}_cpu") - getattr(self.before, f"{who}_cpu")
        return float(used) / self.seconds


def markdown(results: list[Measure], *, command: str, window: float, tick: str,
             workers: int) -> str:
    rows = [
        ("rollouts driven", lambda m: f"{m.rollouts}"),
        ("submitted through the API in", lambda m: f"{m.submit_seconds:.0f} s"),
        ("ticks per second (ok)", lambda m: f"{m.rate('ok'):.1f}"),
        ("tick latency p50", lambda m: f"{m.tick_quantile(0.5) * 1000:.1f} ms"),
        ("tick latency p99", lambda m: f"{m.tick_quantile(0.99) * 1000:.0f} ms"),
        ("tick errors", lambda m: f"{m.rate('error') * m.seconds:.0f}"),
        ("ticks skipped (busy / missed)", lambda m: f"{m.skipped('busy'):.0f} / "
                                                    f"{m.skipped('missed'):.0f}"),
        ("rollouts rolled back in the window",
         lambda m: f"{m.delta('canary_rollbacks_total'):.0f}"),
        ("metric checks per minute",
         lambda m: f"{m.per_minute(m.delta('canary_analysis_checks_total')):.0f}"),
        ("... of which could not be measured",
         lambda m: f"{m.per_minute(m.delta('canary_analysis_checks_total', outcome='error')):.0f}"),
        ("Prometheus queries per minute", lambda m: f"{m.per_minute(m.queries):.0f}"),
        ("controller CPU (1.0 = one core)", lambda m: f"{m.cpu('controller'):.2f}"),
        ("controller memory RSS / peak", lambda m: f"{m.after.controller_rss / 1024:.0f} / "
                                                   f"{m.after.controller_peak / 1024:.0f} MiB"),
        ("Prometheus CPU", lambda m: f"{m.cpu('prometheus'):.2f}"),
        ("graceful stop (SIGTERM to exit)", lambda m: f"{m.stop_seconds:.1f} s"),
    ]
    head = "| | " + " | ".join(m.mode for m in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(m) for m in results) + " |")
    return (f"Command: `{command}`\n\nWindow {window:.0f} s per mode after warm-up; "
            f"`--tick {tick}`, {workers} tick workers, SQLite store, 2-core machine shared by "
            "the controller, Prometheus, HAProxy, the synthetic exporter and this driver.\n\n"
            + "\n".join(lines) + "\n")
