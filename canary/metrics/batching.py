"""Batched Prometheus queries for many rollouts: one query per metric shape, fanned out.

A controller with 1,000 rollouts asks Prometheus the same built-in question 1,000 times per
interval, once per (service, version). This provider rewrites each built-in query into its
grouped form - the service/version matchers dropped, ``sum(`` made ``sum by (service,
version) (`` - runs that once per ``max_age`` for all rollouts sharing it, and hands each
rollout its own series. Custom queries, or anything it does not recognise, pass through
unchanged: batching must never change what a query means.

It works on the rendered PromQL text: a query whose shape it does not know exactly is sent
as it is. `canary serve --batch-max-age` (default 2s) turns it on for every rollout;
tests/server/test_batching.py checks grouped and per-rollout answers agree on a real
Prometheus.

The sequential judge reads raw counter samples as of a pinned evaluation time
(``series_at``, see canary/metrics/counters.py). Those answers are shared only between
rollouts asking for the same evaluation time and window: ``pin`` rounds each rollout's
check time down to a ``max_age`` grid, so checks within one grid step share one flight,
and no rollout is ever handed samples of another span.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from canary.errors import CanaryError
from canary.metrics.base import MetricsProvider, PinnedProvider, Sample, Series

_VALUE = r'"((?:[^"\\]|\\.)*)"'
_OTHER_AGGREGATIONS = re.compile(
    r"\b(avg|min|max|count|count_values|group|stddev|stdvar|topk|bottomk|quantile|without"
    r"|on|ignoring|group_left|group_right)\s*\(|\bby\s*\((?!le\))")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m[1], m[1]), text)


def grouped(promql: str, *, service: str, version: str) -> tuple[str, tuple[str, str]] | None:
    """``promql`` for every (service, version) at once, and which series is this one's."""
    head = re.compile(rf"\{{{re.escape(service)}={_VALUE},{re.escape(version)}={_VALUE}")
    pairs = {(m[1], m[2]) for m in head.finditer(promql)}
    if len(pairs) != 1 or _OTHER_AGGREGATIONS.search(promql):
        return None
    query = head.sub("{", promql).replace("{,", "{")
    by = f"{service}, {version}"
    query = query.replace("sum by (le) (", f"sum by (le, {by}) (")
    query = re.sub(r"\bsum\(", f"sum by ({by}) (", query)
    svc, ver = next(iter(pairs))
    return query, (_unescape(svc), _unescape(ver))


@dataclass
class _Answer:
    at: float
    series: Mapping[tuple[str, str], list[Sample]] | None = None
    error: CanaryError | None = None


@dataclass
class _Samples:
    at: float  # when fetched (monotonic), for eviction
    series: Mapping[tuple[str, str], list[Series]] | None = None
    error: CanaryError | None = None


class BatchHub:
    """Answers shared by every rollout of one controller; one flight per query at a time."""

    def __init__(self, provider: Callable[[], MetricsProvider], *, max_age: float = 5.0) -> None:
        self._provider = provider
        self.max_age = max_age
        self._answers: dict[tuple[str, str, str], _Answer] = {}
        self._pinned: dict[tuple[str, str, str, float, float], _Samples] = {}
        self._pinned_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._local = threading.local()
        self.flights = 0

    def query(self, promql: str, *, service: str, version: str) -> list[Sample]:
        shaped = grouped(promql, service=service, version=version)
        if shaped is None:
            return self._client().query(promql)
        query, mine = shaped
        key = (query, service, version)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # single flight: the threads that wait get the answer just fetched
            answer = self._answers.get(key)
            if answer is None or time.monotonic() - answer.at > self.max_age:
                answer = self._fetch(query, service=service, version=version)
                self._answers[key] = answer
        if answer.error is not None:
            raise answer.error
        assert answer.series is not None
        return answer.series.get(mine, [])

    def _fetch(self, query: str, *, service: str, version: str) -> _Answer:
        self.flights += 1
        try:
            samples = self._client().query(query)
        except CanaryError as exc:
            return _Answer(at=time.monotonic(), error=exc)
        series: dict[tuple[str, str], list[Sample]] = {}
        for s in samples:
            key = (s.labels.get(service, ""), s.labels.get(version, ""))
            # keep every other label (``le`` of a bucket query), as the ungrouped answer has
            rest = {k: v for k, v in s.labels.items() if k not in (service, version)}
            series.setdefault(key, []).append(Sample(labels=rest, value=s.value))
        return _Answer(at=time.monotonic(), series=series)

    def pin(self, now: float) -> float:
        """``now`` rounded down to the ``max_age`` grid (to the millisecond without one):
        rollouts checking within one grid step ask for the same time and share it."""
        step = self.max_age
        if step <= 0:
            return math.floor(now * 1000.0) / 1000.0
        return math.floor(now / step) * step

    def series_at(self, selector: str, *, at: float, window: float, service: str,
                  version: str) -> list[Series]:
        """Raw samples of ``selector`` as of ``at``; shared only for the same ``at`` and
        ``window``: an answer for another span is never reused."""
        shaped = grouped(selector, service=service, version=version)
        if shaped is None:
            return self._pinned_client().series_at(selector, at=at, window=window)
        query, mine = shaped
        key = (query, service, version, at, float(math.ceil(window)))
        with self._guard:
            lock = self._pinned_locks.setdefault(key[:3], threading.Lock())
        with lock:
            answer = self._pinned.get(key)
            if answer is None:
                answer = self._fetch_series(query, at=at, window=window, service=service,
                                            version=version)
                self._evict()
                self._pinned[key] = answer
        if answer.error is not None:
            raise answer.error
        assert answer.series is not None
        return answer.series.get(mine, [])

    def _fetch_series(self, query: str, *, at: float, window: float, service: str,
                      version: str) -> _Samples:
        self.flights += 1
        try:
            found = self._pinned_client().series_at(query, at=at, window=window)
        except CanaryError as exc:
            return _Samples(at=time.monotonic(), error=exc)
        series: dict[tuple[str, str], list[Series]] = {}
        for s in found:
            key = (s.labels.get(service, ""), s.labels.get(version, ""))
            rest = {k: v for k, v in s.labels.items() if k not in (service, version)}
            series.setdefault(key, []).append(Series(labels=rest, points=s.points))
        return _Samples(at=time.monotonic(), series=series)

    def _evict(self) -> None:
        """Forget pinned answers old enough that no check of their grid step is left."""
        horizon = time.monotonic() - max(60.0, 10 * self.max_age)
        for key in [k for k, a in self._pinned.items() if a.at < horizon]:
            del self._pinned[key]

    def _pinned_client(self) -> PinnedProvider:
        client = self._client()
        if not isinstance(client, PinnedProvider):
            raise TypeError(f"{client!r} cannot answer as of a pinned time")
        return client

    def _client(self) -> MetricsProvider:
        client: MetricsProvider | None = getattr(self._local, "client", None)
        if client is None:  # one HTTP client per thread: no session shared across threads
            client = self._local.client = self._provider()
        return client


class BatchedProvider:
    """The MetricsProvider one rollout's analyzer sees; answers come from the shared hub."""

    def __init__(self, hub: BatchHub, *, labels: Mapping[str, str]) -> None:
        self.hub = hub
        self.service = labels.get("service", "service")
        self.version = labels.get("version", "version")

    def query(self, promql: str) -> list[Sample]:
        return self.hub.query(promql, service=self.service, version=self.version)

    def pin(self, now: float) -> float:
        return self.hub.pin(now)

    def series_at(self, selector: str, *, at: float, window: float) -> list[Series]:
        return self.hub.series_at(selector, at=at, window=window, service=self.service,
                                  version=self.version)
