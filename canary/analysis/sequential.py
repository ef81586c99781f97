"""The sequential judge: canary against stable, rolled back the moment the data allow.

Each check hands the judge one interval of counter increments per version (requests,
errors, cumulative latency buckets) and the memory it returned last time; it answers
``rollback``, ``promote`` (this stage, early) or ``continue`` with a reason a person can
act on, and the memory to persist. It is pure: no I/O, no clock.

How it decides (notes/statistics.md has the derivation):

* Errors: a mixture sequential test (an e-process) of "the canary's error rate is at most
  ``tolerance`` x the stable version's", on the canary's share of the errors seen in
  each interval given its observed share of requests. Rates both versions share (daily
  cycles, an incident hitting everything) cancel.
* Latency: the same test where the "errors" are requests slower than a bucket edge, for a
  few edges (``latency_edges``, or edges near the stable version's p75/p90/p99 chosen from
  its first few hundred requests); their e-values are averaged.
* Errors and latency share one alpha budget: the e-values are averaged (half the wealth
  each). The budget covers the whole rollout: the evidence carries across stages, so the
  chance of ever rolling back a canary that is no worse than tolerated is at most alpha
  however often the controller looks (Ville's inequality).
* Rollback when the combined e-value reaches ``1/alpha``. Early promotion of a stage
  (``early_promotion``) uses the mirror test, "canary is at least ``promote_tolerance`` x
  worse", which must be rejected by every family separately within the current stage,
  after at least ``min_stage_requests`` canary requests in it.
* Robustness: each interval's contribution is capped (a retry storm on one version is
  not many independent errors), an interval with a missing version, a negative increment
  (a counter reset) or more errors than requests is skipped, an interval without canary
  traffic carries no evidence, and the first ``warmup`` seconds of canary traffic are
  ignored.
* At 100% (no concurrent stable traffic) the share is 1 and the comparison carries no
  information: the evidence stops moving, the judge keeps answering ``continue`` with the
  evidence reached so far, and only absolute guards (threshold metrics) can still stop
  the rollout. The stage ends by its own timer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from canary.analysis import evidence as ev
from canary.analysis.judge_state import Family, JudgeState
from canary.analysis.sequential_run import feed
from canary.model import MetricResult, Outcome, SequentialSpec

Decision = Literal["rollback", "promote", "continue"]
MAX_LOG = 700.0  # exp() of more than this overflows a float; reported values are capped


@dataclass(frozen=True)
class VersionCounts:
    """One version's counter increments over one interval."""

    requests: float
    errors: float
    latency: Mapping[float, float] = field(default_factory=dict)  # upper bound -> cumulative


@dataclass(frozen=True)
class IntervalCounts:
    """Both versions over one interval; ``None`` for a version means no data."""

    stable: VersionCounts | None
    canary: VersionCounts | None
    seconds: float = 0.0  # the interval's length, for the warm-up
    stage: int = 0  # changes when the rollout moves to its next stage


@dataclass(frozen=True)
class JudgeTuning:
    """Knobs not (yet) in SequentialSpec; the defaults are the benchmark's choice."""

    low: float = 1.25  # smallest alternative, as a multiple of the tolerance
    high: float = 30.0  # largest alternative
    points: int = 16
    prior_decay: float = 0.0
    cap_fraction: float = 1 / 3  # one interval adds at most this share of log(1/alpha)
    dispersion_prior: float = 20.0  # 0: assume independent errors (no dispersion guard)
    promote_tolerance: float = 1.5  # the mirror test's null: canary >= this x stable
    latency_tolerance: float | None = None  # None: the spec's tolerance
    auto_quantiles: tuple[float, ...] = (0.75, 0.9, 0.99)
    auto_edge_requests: float = 500.0  # stable requests seen before edges are chosen
    warmup: float = 0.0  # seconds of canary traffic ignored at the start


@dataclass(frozen=True)
class MetricEvidence:
    """Where one family (errors, or latency) stands after an interval."""

    name: str  # "errors" | "latency"
    log_e: float  # log of this family's rollback e-value since it started
    log_promote_e: float  # log of its promotion e-value in this stage
    canary_rate: float | None
    stable_rate: float | None
    detail: str  # e.g. "errors" or "requests slower than 0.25s"
    counts: tuple[float, float, float, float]  # canary requests, events, stable, events


@dataclass(frozen=True)
class JudgeStep:
    decision: Decision
    reason: str
    log_e: float  # log of the combined rollback e-value
    threshold: float  # 1/alpha
    metrics: tuple[MetricEvidence, ...]
    memory: dict[str, Any]
    index: int = 0  # which of the fed intervals the decision was taken at


class SequentialJudge:
    """Judge built from a SequentialSpec; ``update`` for checks, ``run`` for series."""

    def __init__(self, spec: SequentialSpec, *, tuning: JudgeTuning | None = None) -> None:
        if not 0 < spec.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {spec.alpha}")
        if spec.tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got {spec.tolerance}")
        self.spec = spec
        self.tuning = t = tuning or JudgeTuning()
        grid = ev.geometric_grid(t.low, t.high, t.points)
        lp = ev.prior(grid, decay=t.prior_decay)
        lat_tol = t.latency_tolerance or spec.tolerance
        self.mix = {"errors": ev.Mixture.above(spec.tolerance, grid, lp),
                    "latency": ev.Mixture.above(lat_tol, grid, lp)}
        self.pmix = {"errors": ev.Mixture.below(max(t.promote_tolerance, spec.tolerance),
                                                grid, lp),
                     "latency": ev.Mixture.below(max(t.promote_tolerance, lat_tol), grid, lp)}
        self.log_threshold = math.log(1 / spec.alpha)
        self.cap = t.cap_fraction * self.log_threshold
        self.latency_wanted = bool(spec.latency_edges) or t.auto_quantiles != ()

    # -- public API ---------------------------------------------------------------

    def fresh(self) -> JudgeState:
        pts = self.tuning.points
        state = JudgeState(errors=Family.fresh(1, pts, 0.0) if self.spec.errors else None,
                           log_idle=None if self.spec.errors else 0.0)
        if self.spec.latency_edges:
            self.freeze_edges(state, tuple(sorted(self.spec.latency_edges)))
        return state

    def update(self, memory: Mapping[str, Any] | None, interval: IntervalCounts) -> JudgeStep:
        """One check: the memory from the previous check (None at the start) and the new
        interval. The returned step's ``memory`` is what to persist."""
        return self.run([interval], memory=memory)

    def run(self, intervals: Sequence[IntervalCounts], *,
            memory: Mapping[str, Any] | None = None) -> JudgeStep:
        """Feed intervals in order until the first rollback or promotion (or the end).

        The same arithmetic as ``update`` applied interval by interval, vectorised: the
        backtest replays a recording with one call.
        """
        state = self.fresh() if memory is None else JudgeState.from_json(memory,
                                                                         self.tuning.points)
        if state.decision == "rollback":
            return self._step(state, "rollback", state.reason, index=0)
        state, decision, index, note = feed(self, state, intervals)
        reason = self._reason(state, decision, note)
        if decision == "rollback":
            state.decision, state.reason = "rollback", reason
        return self._step(state, decision, reason, index=index)

    # -- helpers shared with the engine ---------------------------------------------

    def freeze_edges(self, state: JudgeState, edges: tuple[float, ...]) -> None:
        """Fix the latency edges and give latency half of the current wealth."""
        state.edges = edges
        state.warm, state.warm_total = {}, 0.0
        if not edges:
            return
        total = self.log_wealth(state)
        if state.errors is not None:
            state.errors.log_alloc -= math.log(2)
            total -= math.log(2)
        state.log_idle = None
        state.latency = Family.fresh(len(edges), self.tuning.points, total)

    def family_log_e(self, name: str, fam: Family) -> float:
        per = ev.log_evidence(fam.rollback, self.mix[name])
        return float(ev.logsumexp(per) - math.log(len(per)))

    def family_log_promote(self, name: str, fam: Family) -> float:
        return float(np.min(ev.log_evidence(fam.promote, self.pmix[name])))

    def log_wealth(self, state: JudgeState) -> float:
        parts = [] if state.log_idle is None else [state.log_idle]
        for name, fam in (("errors", state.errors), ("latency", state.latency)):
            if fam is not None:
                parts.append(fam.log_alloc + self.family_log_e(name, fam))
        return float(ev.logsumexp(np.array(parts))) if parts else 0.0

    # -- reporting ------------------------------------------------------------------

    def _evidence(self, state: JudgeState) -> tuple[MetricEvidence, ...]:
        out = []
        for name, fam in (("errors", state.errors), ("latency", state.latency)):
            if fam is None:
                continue
            per = ev.log_evidence(fam.rollback, self.mix[name])
            k = int(np.argmax(per))
            c, x, s, y = (float(v) for v in fam.totals[k])
            detail = "errors" if name == "errors" else (
                f"latency (requests slower than {_num(state.edges[k] if state.edges else 0)}s)")
            out.append(MetricEvidence(
                name=name, log_e=self.family_log_e(name, fam),
                log_promote_e=self.family_log_promote(name, fam),
                canary_rate=x / c if c > 0 else None, stable_rate=y / s if s > 0 else None,
                detail=detail, counts=(c, x, s, y)))
        return tuple(out)

    def _reason(self, state: JudgeState, decision: Decision, note: str) -> str:
        metrics = self._evidence(state)
        thr = _num(1 / self.spec.alpha)
        if not metrics:
            return "nothing to judge yet (errors off and no latency edges chosen)" + note
        if decision == "rollback":
            worst = max(metrics, key=lambda m: m.log_e)
            return (f"{worst.detail}: the canary is worse than {_num(self.spec.tolerance)} x "
                    f"stable: {_rates(worst)}; evidence {_e(self.log_wealth(state))} >= {thr}"
                    f" (1/alpha, alpha {_num(self.spec.alpha)})")
        if decision == "promote":
            parts = "; ".join(f"{m.detail}: {_rates(m)}, evidence {_e(m.log_promote_e)}"
                              for m in metrics)
            return (f"the canary is shown better than {_num(self.tuning.promote_tolerance)}"
                    f" x stable in this stage ({parts}; {_num(state.stage_requests)} canary "
                    f"requests in the stage)")
        parts = "; ".join(f"{m.detail}: {_rates(m)}, evidence {_e(m.log_e)}" for m in metrics)
        return f"{parts}; rollback at {_e(self.log_wealth(state))} >= {thr}{note}"

    def _step(self, state: JudgeState, decision: Decision, reason: str, *,
              index: int) -> JudgeStep:
        return JudgeStep(decision=decision, reason=reason, log_e=self.log_wealth(state),
                         threshold=1 / self.spec.alpha, metrics=self._evidence(state),
                         memory=state.to_json(), index=index)


def metric_results(step: JudgeStep) -> tuple[MetricResult, ...]:
    """The controller's status entries for one step: FAILED for the family that carried a
    rollback, PASSED for a family with promotion evidence, INCONCLUSIVE otherwise."""
    worst = max(step.metrics, key=lambda m: m.log_e).name if step.metrics else ""
    log_thr = math.log(step.threshold)
    out = []
    for m in step.metrics:
        if step.decision == "rollback" and m.name == worst:
            outcome = Outcome.FAILED
        elif m.log_promote_e >= log_thr:
            outcome = Outcome.PASSED
        else:
            outcome = Outcome.INCONCLUSIVE
        out.append(MetricResult(
            name=f"sequential-{m.name}", outcome=outcome,
            value=math.exp(min(m.log_e, MAX_LOG)), query=f"canary vs stable: {m.detail}",
            threshold=f"e-value < {_num(step.threshold)}",
            message=f"{m.detail}: {_rates(m)}; evidence {_e(m.log_e)}"))
    return tuple(out)


def _rates(m: MetricEvidence) -> str:
    c, x, s, y = m.counts
    if c <= 0 or s <= 0:
        return "not enough traffic on both versions to compare yet"
    return (f"canary {_pct(x / c)} ({_num(x)} of {_num(c)}) vs stable "
            f"{_pct(y / s)} ({_num(y)} of {_num(s)})")


def _pct(v: float) -> str:
    return f"{100 * v:.3g}%"


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _e(log_e: float) -> str:
    return _num(math.exp(min(log_e, MAX_LOG)))
