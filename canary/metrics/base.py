"""The MetricsProvider port: fetch numbers, never judge them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Sample:
    """One series of an instant-vector result: its labels and its value (may be NaN)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = float("nan")


@runtime_checkable
class MetricsProvider(Protocol):
    def query(self, promql: str) -> list[Sample]:
        """Evaluate an instant query now. Raises MetricsError (unreachable, timeout, 5xx)
        or InputError (the query itself is invalid, e.g. Prometheus's bad_data)."""
        ...


@dataclass(frozen=True)
class Series:
    """One series of a range-vector result: its labels and its raw ``(time, value)``
    samples, oldest first, exactly as Prometheus stored them (no extrapolation)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    points: tuple[tuple[float, float], ...] = ()


@runtime_checkable
class PinnedProvider(Protocol):
    """A provider that answers as of a given evaluation time: exact live accounting."""

    def pin(self, now: float) -> float:
        """The evaluation time (Unix seconds) to ask for at wall-clock ``now``: ``now``
        itself, or a grid point a batching provider shares among rollouts."""
        ...

    def series_at(self, selector: str, *, at: float, window: float) -> list[Series]:
        """The raw samples of ``selector`` in ``(at - window, at]``. Raises MetricsError
        or InputError like ``MetricsProvider.query``."""
        ...
