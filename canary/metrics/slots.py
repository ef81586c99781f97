"""A bound on the Prometheus queries one `canary serve` runs at once.

With hundreds of rollouts analysed on many threads, an unbounded controller sends as many
queries at once as it has threads, Prometheus slows down, every query times out and each
timeout counted as an error toward a rollback: the controller's own overload rolled back
healthy canaries. Here a query first takes one of a fixed number of slots, waiting at most
what is left of its check's budget. Not getting one in time raises ControllerBusy: the
check is inconclusive (the rollout holds), never an error, and the metrics say the
controller is behind (canary_query_slots_in_use, canary_checks_late_total). So is a query
that fails while every slot is busy, or after waiting a quarter of its time for a slot:
with the controller asking all it may, its own load is the likeliest cause. A Prometheus
that is down while the controller is quiet (refused connections, errors) stays an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from canary.errors import ControllerBusy, MetricsError
from canary.metrics.base import MetricsProvider, Sample

DEFAULT_SLOTS = 16


class QuerySlots:
    """The shared bound, with the two numbers /metrics shows."""

    def __init__(self, slots: int = DEFAULT_SLOTS, *,
                 on_late: Callable[[], None] = lambda: None) -> None:
        self.size = slots
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiting = 0
        self._on_late = on_late

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def saturated(self) -> bool:
        """Every slot taken, or someone waiting for one: the controller asks all it may."""
        return self._in_use >= self.size or self._waiting > 0

    def take(self, wait: float) -> bool:
        with self._lock:
            self._waiting += 1
        try:
            got = self._free.acquire(timeout=max(0.0, wait))
        finally:
            with self._lock:
                self._waiting -= 1
        if not got:
            self._on_late()
            return False
        with self._lock:
            self._in_use += 1
        return True

    def late(self) -> None:
        self._on_late()

    def give(self) -> None:
        with self._lock:
            self._in_use -= 1
        self._free.release()


class SlottedProvider:
    """``inner``'s queries, each holding a slot of ``slots`` while it runs."""

    def __init__(self, inner: MetricsProvider, slots: QuerySlots, *,
                 timeout: float = 10.0) -> None:
        self.inner, self.slots, self.timeout = inner, slots, timeout

    def query(self, promql: str) -> list[Sample]:
        return self.query_within(promql, self.timeout)

    def query_within(self, promql: str, timeout: float) -> list[Sample]:
        started = time.monotonic()
        if not self.slots.take(timeout):
            raise ControllerBusy(f"not asked: this controller's {self.slots.size} query "
                                 f"slots stayed busy for {timeout:.3g}s (it is behind)")
        try:
            left = timeout - (time.monotonic() - started)
            query_within = getattr(self.inner, "query_within", None)
            if query_within is not None:
                result: list[Sample] = query_within(promql, max(0.05, left))
                return result
            return self.inner.query(promql)
        except MetricsError as exc:
            # Failing while the controller asks all it may: its own load (a Prometheus it
            # floods, its own starved threads) is the likeliest cause, so it is lateness.
            # A Prometheus that refuses or fails while the controller is quiet stays an
            # error, and counts.
            waited = timeout - left
            # ... or after waiting for a slot long enough that the query was left too little.
            if (self.slots.saturated or waited > timeout / 4) and \
                    not isinstance(exc, ControllerBusy):
                self.slots.late()
                raise ControllerBusy(f"{exc} (after {waited:.3g}s waiting for one of this "
                                     f"controller's {self.slots.size} busy query slots: it "
                                     "is behind)") from exc
            raise
        finally:
            self.slots.give()
