"""What the sequential judge remembers between checks, and its JSON form.

The controller persists this dict with the rollout and hands it back at the next check,
so a restarted controller resumes the evidence exactly: floats survive ``json`` round
trips bit for bit, and nothing here depends on the clock. It stays small (a few hundred
numbers) whatever the rollout's length: cumulative log likelihood ratios per alternative,
running counts, and a few counters.

Wealth bookkeeping: the rollback e-value is the sum over families (errors, latency) of
``exp(log_alloc) x family mixture``. Until the first latency buckets arrive all wealth sits
with errors (or idle when errors are off); then a share (30%) of the current wealth moves to
latency. Moving wealth at a predictable time keeps the total a supermartingale, so the
alpha budget holds, and a service without histograms loses nothing to an idle latency
test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from canary.analysis.sequential.evidence import FloatArray
from canary.errors import InputError

MEMORY_VERSION = 2
EPOCHS = 3  # rollback evidence restarts with the first two stage changes (see Family)
# canary requests, errors, stable requests, errors; deviation, variance (canary's split);
# the stable version's last requests and errors; deviation, variance (its own)
ERROR_COUNTS = 10


@dataclass
class Family:
    """One metric family: ``K`` channels (alternative shapes) x ``J`` alternatives.

    The rollback sums exist once per epoch: epoch 0 starts with the family, epoch ``e``
    with the ``e``-th stage change after that, so a regression that only appears at a
    higher weight is not buried under the evidence of the healthy stages before it.
    ``counts`` is the family's running data: for errors the totals (this stage's with
    ``refit_per_stage``) and the dispersion sums (10,), for latency the canary's and the
    stable's requests per bin (2, B).
    """

    log_alloc: float
    rollback: FloatArray  # (E, K, J) cumulative log likelihood ratios per epoch
    promote: FloatArray  # (K, J) the same for the promotion test, this stage only
    counts: FloatArray
    epochs: int = 1  # epochs started

    @staticmethod
    def fresh(channels: int, points: int, log_alloc: float, counts_shape: tuple[int, ...]
              ) -> Family:
        return Family(log_alloc, np.zeros((EPOCHS, channels, points)),
                      np.zeros((channels, points)), np.zeros(counts_shape))

    def copy(self) -> Family:
        return Family(self.log_alloc, self.rollback.copy(), self.promote.copy(),
                      self.counts.copy(), self.epochs)

    def to_json(self) -> dict[str, Any]:
        return {"logAlloc": self.log_alloc, "rollback": self.rollback.tolist(),
                "promote": self.promote.tolist(), "counts": self.counts.tolist(),
                "epochs": self.epochs}

    @staticmethod
    def from_json(d: Mapping[str, Any], channels: int, points: int,
                  counts_shape: tuple[int, ...]) -> Family:
        epochs = int(d["epochs"])
        if not 1 <= epochs <= EPOCHS:
            raise ValueError(f"epochs must be 1..{EPOCHS}, got {epochs}")
        return Family(float(d["logAlloc"]), _array(d["rollback"], (EPOCHS, channels, points)),
                      _array(d["promote"], (channels, points)),
                      _array(d["counts"], counts_shape), epochs)


@dataclass
class JudgeState:
    """Everything the judge carries from one interval to the next."""

    errors: Family | None
    latency: Family | None = None
    bounds: tuple[float, ...] | None = None  # latency bin bounds; None until first seen
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
                          None if self.latency is None else self.latency.copy(),
                          self.bounds, self.log_idle, self.stage, self.stage_requests,
                          self.canary_seconds, self.intervals, self.skipped, self.decision,
                          self.reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": MEMORY_VERSION,
            "errors": None if self.errors is None else self.errors.to_json(),
            "latency": None if self.latency is None else self.latency.to_json(),
            "bounds": None if self.bounds is None else list(self.bounds),
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
    def from_json(d: Mapping[str, Any], *, points: int, shapes: int) -> JudgeState:
        """Rebuild the state; a memory from another version or grid is an InputError."""
        try:
            if d.get("v") != MEMORY_VERSION:
                raise ValueError(f"unknown memory version {d.get('v')!r}")
            bounds = None if d["bounds"] is None else tuple(float(b) for b in d["bounds"])
            errors = None if d["errors"] is None else Family.from_json(
                d["errors"], 1, points, (ERROR_COUNTS,))
            latency = None if d["latency"] is None else Family.from_json(
                d["latency"], shapes, points, (2, len(bounds or ()) + 1))
            idle = d["logIdle"]
            decision = d["decision"]
            if decision not in (None, "rollback"):
                raise ValueError(f"unknown decision {decision!r}")
            return JudgeState(
                errors=errors, latency=latency, bounds=bounds,
                log_idle=None if idle is None else float(idle),
                stage=int(d["stage"]), stage_requests=float(d["stageRequests"]),
                canary_seconds=float(d["canarySeconds"]), intervals=int(d["intervals"]),
                skipped=int(d["skipped"]), decision=decision, reason=str(d["reason"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"sequential judge memory is not usable: {exc}",
                             field="memory") from exc


def _array(rows: Any, shape: tuple[int, ...]) -> FloatArray:
    arr = np.array(rows, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"expected an array of shape {shape}, got {arr.shape}")
    return arr
