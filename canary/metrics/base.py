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
