"""The sequential judge: canary against stable, rolled back the moment the data allow.

Each check hands the judge one interval of counter increments per version (requests,
errors, cumulative latency buckets) and the memory it returned last time; it answers
``rollback``, ``promote`` (this stage, early) or ``continue`` with a reason a person can
act on, and the memory to persist. It is pure: no I/O, no clock.

How it decides (docs/statistics.md has the derivation, evidence.py the arithmetic):

* Errors: a mixture sequential test (an e-process) of "the canary's error rate is at most
  ``tolerance`` x the stable version's", on the canary's share of the errors seen in
  each interval given its observed share of requests. Rates both versions share (daily
  cycles, an incident hitting everything) cancel.
* Latency: the same binomial split per histogram bin, the bins' log likelihood ratios
  summed, against alternatives that make the canary's latency distribution a tilt of
  the stable's: the whole distribution slower (a lognormal made slower by a constant
  factor is exactly such a tilt) or only its tail above the p95 (``tail_from``). This
  uses every bucket instead of a few edges; ``latency_edges``, when given, restricts the
  bins to those bounds. The null is "no slower than stable".
* Errors and latency share one alpha budget: the e-values are averaged (latency takes
  ``latency_share`` of the wealth, 30%, from the first interval with buckets). The
  budget covers the whole rollout: the evidence carries across stages, so the chance of
  ever rolling back a canary that is no worse than tolerated is at most alpha however
  often the controller looks (Ville's inequality). Part of the budget
  (``restart_share``, 20%) is kept for evidence that starts afresh at the 2nd and 3rd
  stage, so a regression that appears only at a higher weight
  is not buried under the healthy evidence of the stages before it.
* Rollback when the combined e-value reaches ``1/alpha``. Early promotion of a stage
  (``early_promotion``) uses the mirror test, "the canary is worse than
  ``promote_tolerance`` x stable (errors) or slower by ``promote_beta`` (latency)",
  which every family must reject within the current stage, after at least
  ``min_stage_requests`` canary requests in it. That evidence is only computed when
  early promotion is on.
* Robustness: errors that come in clusters (retries) are detected from the excess
  variance of the canary's share (around the canary/stable ratio fitted in the current
  stage) and of the stable version's own errors from one interval to the next (it has
  many more errors, so it learns in a few intervals what the canary's share needs
  minutes for), and discounted; each interval's contribution is capped, in proportion
  to its length when the judge knows the nominal interval (``interval``);
  an interval with a missing version, a negative increment (a counter reset) or more
  errors than requests is skipped; an interval without canary traffic carries no
  evidence; the first ``warmup`` seconds of canary traffic are ignored, and latency
  stays in warm-up three times as long (``latency_warmup_factor``): caches and JIT keep
  a new version slow after they stop making it fail. In that later part latency is
  judged against a slower null (``warmup_beta``, shift shape only, no promotion), so a
  version far slower than any warm-up is caught without waiting (bench/results/floors.md
  measures what a warm-up that fades in 20 s costs a judge that looks sooner). Latency's
  per-interval cap is the errors' (half of ``log(1/alpha)``, ``latency_cap_fraction``):
  one interval of a canary-only stall (a slow host, a GC pause) must not carry a rollback
  the next healthy intervals merely confirm (docs/statistics.md, bench/scenarios.py
  ``pause``).
* At 100% (no concurrent stable traffic) the share is 1 and the comparison carries no
  information: the evidence stops moving, the judge keeps answering ``continue`` with the
  evidence reached so far, and only absolute guards (threshold metrics) can still stop
  the rollout. The stage ends by its own timer.

The knobs SequentialSpec does not carry yet live in ``JudgeTuning``; its defaults are the
ones bench/judge.py measured (bench/results/judge.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from canary.analysis.sequential import evidence as ev
from canary.analysis.sequential.memory import EPOCHS, ERROR_COUNTS, Family, JudgeState
from canary.analysis.sequential.run import family_log_e, family_log_promote, feed
from canary.analysis.sequential.text import e_value, latency, num, quantiles, rates
from canary.specs import SequentialSpec

Decision = Literal["rollback", "promote", "continue"]
SHAPES = 2  # latency alternatives: the whole distribution slower, or only its tail


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

    low: float = 1.25  # smallest error-rate alternative, as a multiple of the tolerance
    high: float = 10.0  # largest
    points: int = 12  # alternatives per shape, errors and latency alike
    prior_decay: float = 0.0  # > 0 leans the prior towards small effects
    cap_fraction: float = 0.5  # one interval adds at most this share of log(1/alpha)
    latency_cap_fraction: float = 0.5  # the same for latency (docs/statistics.md)
    dispersion_prior: float = 20.0  # 0: assume independent errors (no dispersion guard)
    stable_dispersion: float = 5.0  # > 0: also learn it from the stable version's errors
    refit_per_stage: bool = True  # the guard's canary/stable ratio is fitted per stage
    latency_share: float = 0.3  # of the wealth moved to latency when its buckets arrive
    tail_from: float = 0.95  # the latency "tail" alternative starts at this quantile
    promote_tail_from: float = 0.9  # and the mirror test's (a tail from the p90)
    promote_tolerance: float = 1.5  # mirror test for errors: canary >= this x stable
    latency: bool = True  # judge latency when histograms are there
    beta_low: float = 0.04  # latency alternatives: tilts in normal-score units
    beta_high: float = 1.6  # (0.2 is about 10% slower for a lognormal with sigma 0.5)
    promote_beta: float = 0.2  # mirror test for latency: canary slower by this tilt
    latency_min_stable: float = 200.0  # stable requests with latency before it counts
    warmup: float = 15.0  # seconds of canary traffic ignored at the start
    latency_warmup_factor: float = 3.0  # latency stays in warm-up this many times as long
    warmup_beta: float = 0.5  # > 0: judged in that second part against a slower null
    restart_share: float = 0.2  # of the budget kept for evidence restarting at stage 2, 3


@dataclass(frozen=True)
class MetricEvidence:
    """Where one family (errors, or latency) stands after an interval."""

    name: str  # "errors" | "latency"
    log_e: float  # log of this family's rollback e-value since it started
    log_promote_e: float  # log of its promotion e-value in this stage
    canary: float | None  # error rate, or p99 latency in seconds
    stable: float | None
    summary: str  # canary vs stable, in words and numbers


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

    def __init__(self, spec: SequentialSpec, *, tuning: JudgeTuning | None = None,
                 interval: float | None = None) -> None:
        """``interval``: the nominal check interval in seconds (the policy's, or the
        recording's). The per-interval caps are for an interval of that length; a longer
        or shorter one (a late check, a span across an outage) is capped in proportion to
        its ``seconds``, so the same traffic counts the same however it is cut. None: every
        interval gets the whole cap, whatever its length."""
        if not 0 < spec.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {spec.alpha}")
        if spec.tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got {spec.tolerance}")
        if interval is not None and not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.spec = spec
        self.interval = interval
        self.tuning = t = tuning or JudgeTuning(
            latency=spec.latency, warmup=spec.warmup,
            promote_tolerance=max(spec.promote_tolerance, 1.0 + 1e-9))
        if not (1 < t.low <= t.high and 0 < t.beta_low <= t.beta_high and t.points >= 1):
            raise ValueError("tuning: need 1 < low <= high, 0 < beta_low <= beta_high")
        grid = ev.geometric_grid(t.low, t.high, t.points)
        lp = ev.prior(grid, decay=t.prior_decay)
        self.mix = {"errors": ev.Mixture.above(spec.tolerance, grid, lp)}
        self.pmix = {"errors": ev.Mixture.below(max(t.promote_tolerance, spec.tolerance),
                                                grid, lp)}
        self.betas = ev.geometric_grid(t.beta_low, t.beta_high, t.points)
        self.promote_beta = t.promote_beta
        self.promote_betas = t.promote_beta - self.betas
        self.lat_prior = ev.prior(self.betas / self.betas[0] * 1.25, decay=t.prior_decay)
        share = t.restart_share
        weights = [(1 - share) * share ** e for e in range(EPOCHS - 1)] + [share ** (EPOCHS - 1)]
        with np.errstate(divide="ignore"):
            self.log_epochs = np.log(np.array(weights))
        self.log_threshold = math.log(1 / spec.alpha)
        self.cap = t.cap_fraction * self.log_threshold
        self.lat_cap = t.latency_cap_fraction * self.log_threshold
        self.latency_wanted = t.latency

    # -- public API ---------------------------------------------------------------

    def fresh(self) -> JudgeState:
        pts = self.tuning.points
        errors = Family.fresh(1, pts, 0.0, (ERROR_COUNTS,)) if self.spec.errors else None
        return JudgeState(errors=errors, log_idle=None if self.spec.errors else 0.0)

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
        state = self.fresh() if memory is None else JudgeState.from_json(
            memory, points=self.tuning.points, shapes=SHAPES)
        if state.decision == "rollback":
            return self._step(state, "rollback", state.reason, self._evidence(state),
                              self.log_wealth(state), index=0)
        state, decision, index, note = feed(self, state, intervals)
        metrics, log_e = self._evidence(state), self.log_wealth(state)
        reason = self._reason(state, decision, note, metrics, log_e)
        if decision == "rollback":
            state.decision, state.reason = "rollback", reason
        return self._step(state, decision, reason, metrics, log_e, index=index)

    # -- helpers shared with the engine ---------------------------------------------

    def start_latency(self, state: JudgeState, bounds: tuple[float, ...]) -> None:
        """Fix the latency bins and give latency its share of the current wealth."""
        state.bounds = bounds
        total = self.log_wealth(state)
        if state.errors is not None:
            state.errors.log_alloc += math.log1p(-self.tuning.latency_share)
            total += math.log(self.tuning.latency_share)
        state.log_idle = None
        state.latency = Family.fresh(SHAPES, self.tuning.points, total, (2, len(bounds) + 1))

    def log_wealth(self, state: JudgeState) -> float:
        """log of the combined rollback e-value."""
        parts = [] if state.log_idle is None else [state.log_idle]
        for fam, prior in self._families(state):
            parts.append(fam.log_alloc + self._log_e(fam, prior))
        return float(ev.logsumexp(np.array(parts))) if parts else 0.0

    def _families(self, state: JudgeState) -> list[tuple[Family, ev.FloatArray]]:
        out = []
        if state.errors is not None:
            out.append((state.errors, self.mix["errors"].log_prior))
        if state.latency is not None:
            out.append((state.latency, self.lat_prior))
        return out

    def _log_e(self, fam: Family, prior: ev.FloatArray) -> float:
        return float(family_log_e(fam.rollback[..., None, :], prior, self.log_epochs)[0])

    # -- reporting ------------------------------------------------------------------

    def _evidence(self, state: JudgeState) -> tuple[MetricEvidence, ...]:
        out = []
        if state.errors is not None:
            fam = state.errors
            c, x, s, y = (float(v) for v in fam.counts[:4])
            out.append(MetricEvidence(
                name="errors", log_e=self._log_e(fam, self.mix["errors"].log_prior),
                log_promote_e=_log_promote(fam, self.pmix["errors"].log_prior),
                canary=x / c if c > 0 else None, stable=y / s if s > 0 else None,
                summary=rates(c, x, s, y)))
        if state.latency is not None and state.bounds is not None:
            fam = state.latency
            qc, qs = (quantiles(state.bounds, fam.counts[i]) for i in (0, 1))
            out.append(MetricEvidence(
                name="latency", log_e=self._log_e(fam, self.lat_prior),
                log_promote_e=_log_promote(fam, self.lat_prior),
                canary=qc[-1] if qc else None, stable=qs[-1] if qs else None,
                summary=latency(qc, qs, nc=float(np.sum(fam.counts[0])),
                                ns=float(np.sum(fam.counts[1])))))
        return tuple(out)

    def _reason(self, state: JudgeState, decision: Decision, note: str,
                metrics: tuple[MetricEvidence, ...], log_e: float) -> str:
        thr = num(1 / self.spec.alpha)
        if not metrics:
            return "nothing to judge (errors off and no latency buckets yet)" + note
        if decision == "rollback":
            worst = max(metrics, key=lambda m: m.log_e)
            worse = (f"worse than {num(self.spec.tolerance)} x stable"
                     if worst.name == "errors" and self.spec.tolerance != 1
                     else "worse than stable")
            return (f"{worst.name}: the canary is {worse}: {worst.summary}; evidence "
                    f"{e_value(log_e)} >= {thr} (1/alpha, alpha "
                    f"{num(self.spec.alpha)})")
        if decision == "promote":
            parts = "; ".join(f"{m.name}: {m.summary}, evidence {e_value(m.log_promote_e)}"
                              for m in metrics)
            return (f"the canary is shown no worse than tolerated in this stage ({parts}; "
                    f"{num(state.stage_requests)} canary requests in the stage)")
        parts = "; ".join(f"{m.name}: {m.summary}; evidence {e_value(m.log_e)}"
                          for m in metrics)
        return f"{parts}; combined evidence {e_value(log_e)} < {thr} (rollback at {thr}){note}"

    def _step(self, state: JudgeState, decision: Decision, reason: str,
              metrics: tuple[MetricEvidence, ...], log_e: float, *, index: int) -> JudgeStep:
        return JudgeStep(decision=decision, reason=reason, log_e=log_e,
                         threshold=1 / self.spec.alpha, metrics=metrics,
                         memory=state.to_json(), index=index)


def _log_promote(fam: Family, prior: ev.FloatArray) -> float:
    return float(family_log_promote(fam.promote[:, None, :], prior)[0])
