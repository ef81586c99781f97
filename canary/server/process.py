"""`canary serve` put together: store, controller, runner factory, HTTP server, signals.

The controller (canary/server/controller.py) ticks rollouts on the scheduler's threads; the HTTP API
(canary/server/api.py) runs on uvicorn's event loop on a thread of its own (canary/server/httpd.py);
the main thread only waits for SIGTERM/SIGINT, then stops the server, lets running ticks
finish and releases every lease. Settings come from options or the environment
(CANARY_LISTEN, CANARY_STORE, CANARY_API_TOKENS_READ / _OPERATOR), so a container needs no
command line beyond `canary serve`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from canary.console.logs import fields
from canary.errors import NotifyError
from canary.metrics.slots import DEFAULT_SLOTS, QuerySlots, SlottedProvider
from canary.model import Notification
from canary.notify.base import Notifier
from canary.notify.registry import EventFilter
from canary.rollout.runner import Analyzer, Runner
from canary.server.controller import Controller, RunnerFactory
from canary.server.exporter import ServeMetrics
from canary.server.pooled import PooledStore
from canary.specs import PolicySpec
from canary.state import RolloutState
from canary.store.base import StateStore

log = logging.getLogger("canary.server.controller")


class CountedNotifier:
    """A notifier whose deliveries /metrics counts by channel and result."""

    def __init__(self, inner: Notifier, metrics: ServeMetrics, *, channel: str) -> None:
        self.inner, self.metrics, self.channel = inner, metrics, channel

    def send(self, note: Notification) -> None:
        try:
            self.inner.send(note)
        except NotifyError:
            self.metrics.notifications.labels(self.channel, "failed").inc()
            raise
        self.metrics.notifications.labels(self.channel, "sent").inc()

    def __repr__(self) -> str:
        return repr(self.inner)


def default_runner_factory(*, tick: float, batch_max_age: float = 0.0,
                           metrics: ServeMetrics | None = None,
                           query_slots: int = DEFAULT_SLOTS) -> RunnerFactory:
    """Runners rebuilt from each rollout's stored document.

    Every Prometheus query of every rollout takes one of ``query_slots`` slots, so an
    overloaded controller asks less, and a query that cannot get a slot within its check's
    budget makes the check inconclusive (hold), never an error toward a rollback. With
    ``batch_max_age`` > 0 the built-in queries also go through one shared hub per
    Prometheus: one grouped query per metric shape, reused for that many seconds."""
    from canary.metrics.batching import BatchedProvider, BatchHub

    metrics = metrics or ServeMetrics()
    slots = QuerySlots(query_slots, on_late=metrics.checks_late.inc)
    metrics.query_slots.set_function(lambda: slots.in_use)
    metrics.query_slots_size.set(query_slots)
    hubs: dict[str, BatchHub] = {}
    guard = threading.Lock()

    def analyzer(policy: PolicySpec) -> Analyzer:
        from canary.analysis.analyzer import PolicyAnalyzer
        from canary.metrics.prometheus import PrometheusProvider

        url, timeout = policy.prometheus_url, min(10.0, policy.interval)

        def provider() -> SlottedProvider:
            return SlottedProvider(PrometheusProvider(url, timeout=timeout), slots,
                                   timeout=timeout)

        if batch_max_age <= 0:
            return PolicyAnalyzer(policy, provider())
        with guard:
            hub = hubs.get(url)
            if hub is None:
                hub = hubs[url] = BatchHub(provider, max_age=batch_max_age)
        return PolicyAnalyzer(policy, BatchedProvider(hub, labels=policy.labels))

    def make(state: RolloutState, store: StateStore) -> Runner:
        from canary.rollout.wiring import runner_for_state

        runner = runner_for_state(state, store=store, poll=tick, analyzer_factory=analyzer)
        for spec, notifier in zip(runner.spec.notifications, runner.notifiers, strict=False):
            # Count what reaches the channel: inside its event filter, when there is one.
            if isinstance(notifier, EventFilter):
                notifier.notifier = CountedNotifier(notifier.notifier, metrics,
                                                    channel=spec.type)
        return runner

    return make


def run_serve(store_url: str, *, listen: str, tick: float, workers: int, lease_ttl: float,
              discover_every: float = 2.0, runner_factory: RunnerFactory | None = None,
              batch_max_age: float = 0.0, allow_env: Sequence[str] = (),
              log_format: str = "text", query_slots: int = DEFAULT_SLOTS,
              read_timeout: float = 10.0) -> int:
    """Serve until SIGTERM or SIGINT, then finish current ticks, release leases, return 0."""
    from canary.console import logs
    from canary.server.api import Tokens, build_app, parse_listen
    from canary.server.bodies import EnvPolicy
    from canary.server.httpd import HttpServer
    from canary.store.registry import open_store

    logs.setup(log_format)
    # The HTTP event loop shares the GIL with the tick threads; each of its socket calls
    # gives the GIL up and waits up to the switch interval (5 ms) to get it back. A shorter
    # interval keeps /healthz quick while rollouts tick, at a little throughput.
    sys.setswitchinterval(0.0005)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # overruns go to /metrics
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # our own lines say it
    host, port = parse_listen(listen)
    tokens = Tokens.from_env(os.environ)
    store = PooledStore(lambda: open_store(store_url))
    metrics = ServeMetrics()
    factory = runner_factory or default_runner_factory(
        tick=tick, batch_max_age=batch_max_age, metrics=metrics, query_slots=query_slots)
    controller = Controller(store, runner_factory=factory, metrics=metrics, tick=tick,
                            lease_ttl=lease_ttl, workers=workers, discover_every=discover_every)
    app = build_app(store=store, controller=controller, metrics=metrics, tokens=tokens,
                    env=EnvPolicy.of(allow_env))
    server = HttpServer(app, host=host, port=port, read_timeout=read_timeout)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not tokens.configured:
        log.warning("no API tokens configured (CANARY_API_TOKENS_READ, "
                    "CANARY_API_TOKENS_OPERATOR): the API refuses every request")
    controller.start()
    server.start()
    log.info("canary serve %s listening on http://%s:%d (store: %s, tick %gs, %d workers, "
             "%d query slots, documents may expand: %s)", controller.owner.id, host,
             server.port, store_url.split(":", 1)[0], tick, workers, query_slots,
             ", ".join(allow_env) or "no variable", extra=fields(event="started"))
    while not stop.wait(0.5):
        pass
    log.info("shutting down: finishing current ticks, releasing leases",
             extra=fields(event="stopping"))
    server.stop()
    controller.stop()
    store.close()
    log.info("stopped", extra=fields(event="stopped"))
    return 0
