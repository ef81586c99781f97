"""What the sequential judge remembers between checks, and its JSON form.

The controller persists this dict with the rollout and hands it back at the next check,
so a restarted controller resumes the evidence exactly: floats survive ``json`` round
trips bit for bit, and nothing here depends on the clock. It stays small (a few hundred
numbers) whatever the rollout's length: cumulative log likelihood ratios per alternative,
totals for the human-readable reasons, and a few counters.

Wealth bookkeeping: the rollback e-value is the sum over families (errors, latency) of
``exp(log_alloc) x family mixture``. Until latency edges are chosen (automatic edges need
some stable traffic first) all wealth sits with errors, or idle when errors are off; when
the edges are fixed, half of the current wealth moves to latency. Moving wealth at a
predictable time keeps the total a supermartingale, so the alpha budget holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from canary.analysis.evidence import FloatArray
from canary.errors import InputError

MEMORY_VERSION = 1


@dataclass
class Family:
    """One metric family: ``K`` channels (1 for errors, one per edge for latency)."""

    log_alloc: float
    rollback: FloatArray  # (K, J) cumulative log likelihood ratios, whole rollout
    promote: FloatArray  # (K, J) the same for the promotion test, this stage only
    totals: FloatArray  # (K, 4): canary requests, canary events, stable requests, stable events
    dispersion: FloatArray  # (K, 2): summed squared deviations and binomial variances

    @staticmethod
    def fresh(channels: int, points: int, log_alloc: float) -> Family:
        return Family(log_alloc, np.zeros((channels, points)), np.zeros((channels, points)),
                      np.zeros((channels, 4)), np.zeros((channels, 2)))

    def copy(self) -> Family:
        return Family(self.log_alloc, self.rollback.copy(), self.promote.copy(),
                      self.totals.copy(), self.dispersion.copy())

    def to_json(self) -> dict[str, Any]:
        return {"logAlloc": self.log_alloc, "rollback": self.rollback.tolist(),
                "promote": self.promote.tolist(), "totals": self.totals.tolist(),
                "dispersion": self.dispersion.tolist()}

    @staticmethod
    def from_json(d: Mapping[str, Any], channels: int, points: int) -> Family:
        return Family(float(d["logAlloc"]), _matrix(d["rollback"], channels, points),
                      _matrix(d["promote"], channels, points), _matrix(d["totals"], channels, 4),
                      _matrix(d["dispersion"], channels, 2))


@dataclass
class JudgeState:
    """Everything the judge carries from one interval to the next."""

    errors: Family | None
    latency: Family | None = None
    edges: tuple[float, ...] | None = None  # None: automatic edges not chosen yet
    warm: dict[float, float] = field(default_factory=dict)  # stable cumulative buckets
    warm_total: float = 0.0
    log_idle: float | None = None  # wealth not yet given to any family
    stage: int = 0
    stage_requests: float = 0.0
    canary_seconds: float = 0.0
    intervals: int = 0
    skipped: int = 0
    decision: str | None = None  # "rollback" once it has happened: final
    reason: str = ""

    def copy(self) -> JudgeState:
        return JudgeState(None if self.errors is None else self.errors.copy(),
                          None if self.latency is None else self.latency.copy(), self.edges, dict(self.warm),
                          self.warm_total, self.log_idle, self.stage, self.stage_requests,
                          self.canary_seconds, self.intervals, self.skipped, self.decision,
                          self.reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": MEMORY_VERSION,
            "errors": None if self.errors is None else self.errors.to_json(),
            "latency": None if self.latency is None else self.latency.to_json(),
            "edges": None if self.edges is None else list(self.edges),
            "warm": {"bounds": list(self.warm), "counts": list(self.warm.values()),
                     "total": self.warm_total},
            "logIdle": self.log_idle,
            "stage": self.stage,
            "stageRequests": self.stage_requests,
            "canarySeconds": self.canary_seconds,
            "intervals": self.intervals,
            "skipped": self.skipped,
            "decision": self.decision,
            "reason": self.reason,
        }

    @staticmethod
    def from_json(d: Mapping[str, Any], points: int) -> JudgeState:
        """Rebuild the state; a memory from another version or grid is an InputError."""
        try:
            if d.get("v") != MEMORY_VERSION:
                raise ValueError(f"unknown memory version {d.get('v')!r}")
            edges = None if d["edges"] is None else tuple(float(e) for e in d["edges"])
            errors = None if d["errors"] is None else Family.from_json(d["errors"], 1, points)
            latency = None
            if d["latency"] is not None:
                latency = Family.from_json(d["latency"], len(edges or ()), points)
            warm = d["warm"]
            idle = d["logIdle"]
            return JudgeState(
                errors=errors, latency=latency, edges=edges,
                warm={float(b): float(c) for b, c in zip(warm["bounds"], warm["counts"],
                                                         strict=True)},
                warm_total=float(warm["total"]),
                log_idle=None if idle is None else float(idle),
                stage=int(d["stage"]), stage_requests=float(d["stageRequests"]),
                canary_seconds=float(d["canarySeconds"]), intervals=int(d["intervals"]),
                skipped=int(d["skipped"]), decision=d["decision"], reason=str(d["reason"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"sequential judge memory is not usable: {exc}",
                             field="memory") from exc


def _matrix(rows: Any, channels: int, width: int) -> FloatArray:
    arr = np.array(rows, dtype=np.float64)
    if arr.shape != (channels, width):
        raise ValueError(f"expected a {channels}x{width} matrix, got shape {arr.shape}")
    return arr
