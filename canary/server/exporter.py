"""/metrics of `canary serve`: what the controller does, for Prometheus and Grafana.

An own registry, never prometheus_client's global one, so tests and several controllers in
one process do not share counters. Counters are fed from the events each tick records (the
reporter hook of the Runner), so only the replica that drove a step counts it, and a sum
over replicas is the true total. Per-rollout gauges are read from the controller at scrape
time, so a rollout that ended or moved to another replica simply disappears from this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from canary.model import Event, Phase
from canary.state import RolloutState

TICK_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DURATION_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)


@dataclass(frozen=True)
class RolloutSample:
    """One rollout as the controller sees it at scrape time."""

    name: str
    service: str
    phase: str
    weight: int
    owned: bool
    values: tuple[tuple[str, float], ...] = ()  # (metric, last measured value)


class ServeMetrics:
    """The controller's metrics; also the Runner reporter that feeds the counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.snapshot: Callable[[], Sequence[RolloutSample]] = list
        self.analysis = Counter("canary_analysis_checks", "Metric checks by outcome.",
                                ["metric", "outcome"], registry=r)
        self.rollbacks = Counter("canary_rollbacks", "Rollbacks started, by reason.",
                                 ["reason"], registry=r)
        self.finished = Counter("canary_rollouts_finished", "Rollouts ended, by phase.",
                                ["phase"], registry=r)
        self.duration = Histogram("canary_rollout_duration_seconds",
                                  "Time from creation to the end of a rollout.", ["phase"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.tick_seconds = Histogram("canary_tick_duration_seconds",
                                      "Latency of one tick of one rollout, by result "
                                      "(ok, standby: another replica holds it, error).",
                                      ["result"], buckets=TICK_BUCKETS, registry=r)
        self.overruns = Counter("canary_tick_overruns",
                                "Ticks not started: the previous one still ran (busy) or "
                                "the pool was too late (missed).", ["kind"], registry=r)
        self.known = Gauge("canary_rollouts_known",
                           "Active rollouts in the store, driven here or elsewhere.",
                           registry=r)
        Info("canary_build", "The canary running this controller.",
             registry=r).info({"version": _version()})
        self.notifications = Counter("canary_notifications",
                                     "Notification deliveries by channel and result "
                                     "(sent, failed).", ["channel", "result"], registry=r)
        self.ticks_late = Counter("canary_ticks_late",
                                  "Ticks that started more than a period after they were "
                                  "due: the controller is behind.", registry=r)
        self.checks_late = Counter("canary_checks_late",
                                   "Metric queries not asked in time because every query "
                                   "slot of this controller was busy: the check is "
                                   "inconclusive (the rollout holds), never an error.",
                                   registry=r)
        self.query_slots = Gauge("canary_query_slots_in_use",
                                 "Prometheus queries running now (bounded by the slots).",
                                 registry=r)
        self.query_slots_size = Gauge("canary_query_slots",
                                      "Prometheus queries this controller runs at once at "
                                      "most.", registry=r)
        # The process, platform and GC collectors prometheus_client registers globally.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        r.register(_RolloutCollector(self))

    # Runner reporter: called with the saved state and the events of each tick.
    def tick(self, state: RolloutState, events: Sequence[Event]) -> None:
        for e in events:
            if e.kind == "analysis":
                for result in e.data.get("results", []):
                    self.analysis.labels(str(result.get("name")),
                                         str(result.get("outcome"))).inc()
            elif e.kind == "rolling-back":
                self.rollbacks.labels(str(e.data.get("failure") or "unknown")).inc()
        ended = state.finished_at
        if state.phase.terminal and ended is not None and any(e.at == ended for e in events):
            self.finished.labels(state.phase.value).inc()
            self.duration.labels(state.phase.value).observe(
                max(0.0, (ended - state.created_at).total_seconds()))

    def observe_tick(self, seconds: float, result: str) -> None:
        self.tick_seconds.labels(result).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _RolloutCollector(Collector):
    def __init__(self, metrics: ServeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        samples = [s for s in self.metrics.snapshot() if s.owned]
        phases = GaugeMetricFamily("canary_rollouts", "Rollouts driven by this controller, "
                                   "by phase (sum over replicas for the total).",
                                   labels=["phase"])
        for phase in Phase:
            if not phase.terminal:
                phases.add_metric([phase.value],
                                  sum(1 for s in samples if s.phase == phase.value))
        yield phases
        weight = GaugeMetricFamily("canary_rollout_canary_weight",
                                   "Percent of traffic on the canary, as last read from the "
                                   "router.", labels=["rollout", "service"])
        for s in samples:
            weight.add_metric([s.name, s.service], s.weight)
        yield weight
        value = GaugeMetricFamily("canary_analysis_value",
                                  "The last value measured per rollout and metric.",
                                  labels=["rollout", "metric"])
        for s in samples:
            for metric, v in s.values:
                value.add_metric([s.name, metric], v)
        yield value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("canary")
    except PackageNotFoundError:
        return "unknown"
