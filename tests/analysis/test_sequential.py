"""The sequential judge's statistical promises, checked on seeded simulations.

Properties, not wall-clock: healthy canaries are rarely rolled back (well under alpha),
real regressions are caught, rates both versions share cancel, the memory survives JSON
and a resumed judge decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import math
import re

import numpy as np
import pytest

from canary.analysis.sequential.core import (
    IntervalCounts,
    JudgeStep,
    JudgeTuning,
    SequentialJudge,
    VersionCounts,
)
from canary.analysis.sequential.results import metric_results
from canary.errors import InputError
from canary.model import Outcome
from canary.specs import SequentialSpec

BOUNDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
SHARES = (0.05, 0.25, 0.5)


@functools.lru_cache
def _probs(scale: float) -> np.ndarray:
    """Bin probabilities of a lognormal latency (median 0.1 s x ``scale``, sigma 0.5)."""
    z = [math.log(b / (0.1 * scale)) / 0.5 for b in BOUNDS]
    cdf = [0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z] + [1.0]
    return np.diff(cdf, prepend=0.0)


def _buckets(rng: np.random.Generator, n: int, scale: float) -> dict[float, float]:
    cum = np.cumsum(rng.multinomial(n, _probs(scale))).tolist()
    return {**dict(zip(BOUNDS, cum[:-1], strict=True)), math.inf: cum[-1]}


def rollout(seed: int, *, canary_err: float = 0.01, stable_err: float = 0.01,
            slower: float = 1.0, rps: float = 100.0, steps: int = 60,
            incident: tuple[int, int] | None = None, latency: bool = True,
            cluster: int = 1) -> list[IntervalCounts]:
    """One simulated rollout: 15 s intervals, stages 5/25/50% of ``steps / 3`` each;
    errors come in clusters of ``cluster`` (a client retrying the same failure)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(steps):
        stage = min(3 * k // steps, 2)
        share = SHARES[stage]
        c, s = rng.poisson(rps * 15 * share), rng.poisson(rps * 15 * (1 - share))
        bump = 0.09 if incident and incident[0] <= k < incident[1] else 0.0
        def errors(n: int, p: float) -> float:
            return float(min(n, cluster * rng.binomial(n, p / cluster)))

        out.append(IntervalCounts(
            stable=VersionCounts(s, errors(s, stable_err + bump),
                                 _buckets(rng, s, 1.0) if latency else {}),
            canary=VersionCounts(c, errors(c, canary_err + bump),
                                 _buckets(rng, c, slower) if latency else {}),
            seconds=15.0, stage=stage))
    return out


def stepwise(judge: SequentialJudge, intervals: list[IntervalCounts]) -> tuple[JudgeStep, int]:
    """Check by check, the memory through JSON each time, as the controller persists it."""
    memory = None
    step = None
    for i, iv in enumerate(intervals):
        step = judge.update(memory, iv)
        memory = json.loads(json.dumps(step.memory, allow_nan=False))
        if step.decision != "continue":
            return step, i
    assert step is not None
    return step, len(intervals) - 1


def test_healthy_rollouts_are_rarely_rolled_back() -> None:
    """Ville's inequality: P(ever rolled back | canary no worse) <= alpha, however often
    the judge looks. Here alpha is 0.1 so that a broken bound would show."""
    judge = SequentialJudge(SequentialSpec(alpha=0.1, tolerance=1.0))
    runs = 200
    rolled = sum(judge.run(rollout(seed)).decision == "rollback" for seed in range(runs))
    assert rolled <= 0.1 * runs / 2  # far below alpha: the mixture is conservative


@pytest.mark.parametrize(("canary_err", "slower"), [(0.06, 1.0), (0.03, 1.0), (0.01, 1.5)])
def test_regressions_are_caught(canary_err: float, slower: float) -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    steps = [judge.run(rollout(seed, canary_err=canary_err, slower=slower))
             for seed in range(20)]
    assert all(s.decision == "rollback" for s in steps)
    assert np.median([s.index for s in steps]) <= 20  # within the first stage (5 minutes)
    expected = "errors" if canary_err > 0.01 else "latency"
    assert all(s.reason.startswith(expected) for s in steps)


def test_an_incident_on_both_versions_cancels() -> None:
    """Both versions at 10% errors for 5 minutes: a static 2% threshold fails every run;
    the canary-vs-stable test sees a canary no worse than stable."""
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    runs = [rollout(seed, incident=(10, 30)) for seed in range(60)]
    assert sum(judge.run(r).decision == "rollback" for r in runs) <= 1
    iv = runs[0][15].canary
    assert iv is not None and iv.errors / iv.requests > 0.02


def test_regression_during_an_incident_is_still_caught() -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    steps = [judge.run(rollout(s, canary_err=0.04, incident=(5, 40))) for s in range(10)]
    assert all(s.decision == "rollback" for s in steps)


def test_clustered_errors_are_discounted() -> None:
    """Each failure seen 4 times (retries): four times the variance a binomial split
    allows. The dispersion guard keeps false rollbacks rare; without it they are common."""
    runs = [rollout(seed, cluster=4, latency=False, rps=200) for seed in range(100)]
    guarded = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    naive = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0),
                            tuning=JudgeTuning(dispersion_prior=0, stable_dispersion=0,
                                               cap_fraction=10))
    assert sum(guarded.run(r).decision == "rollback" for r in runs) <= 3
    assert sum(naive.run(r).decision == "rollback" for r in runs) >= 8
    bad = [guarded.run(rollout(s, cluster=4, latency=False, rps=200, canary_err=0.05))
           for s in range(10)]
    assert all(b.decision == "rollback" for b in bad)


def test_clusters_are_learned_from_the_stable_version_alone() -> None:
    """With the canary-split estimate off, the stable version's own errors still reveal
    the clustering (it has 19 times the canary's errors at 5%), and the cap stays at its
    default: false rollbacks stay rare where the unguarded judge has many."""
    runs = [rollout(seed, cluster=4, latency=False, rps=200) for seed in range(100)]
    stable_only = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0),
                                  tuning=JudgeTuning(dispersion_prior=0))
    unguarded = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0),
                                tuning=JudgeTuning(dispersion_prior=0, stable_dispersion=0))
    guarded = sum(stable_only.run(r).decision == "rollback" for r in runs)
    naive = sum(unguarded.run(r).decision == "rollback" for r in runs)
    assert guarded <= 3 and naive >= 3 * max(guarded, 1)


def test_tolerance_lets_a_small_increase_through() -> None:
    strict = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    lenient = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=3.0))
    runs = [rollout(seed, canary_err=0.02, latency=False) for seed in range(10)]
    assert sum(strict.run(r).decision == "rollback" for r in runs) >= 9
    assert sum(lenient.run(r).decision == "rollback" for r in runs) == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_memory_round_trips_and_resuming_decides_identically(seed: int) -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    data = rollout(seed, canary_err=0.02)
    whole = judge.run(data)
    step, index = stepwise(judge, data)
    assert (step.decision, index) == (whole.decision, whole.index)
    assert step.log_e == whole.log_e and step.memory == whole.memory
    # a restarted controller: rebuild the judge, resume half-way from the stored memory
    half = judge.run(data[: index // 2 + 1])
    stored = json.loads(json.dumps(half.memory))
    resumed = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0)).run(
        data[index // 2 + 1:], memory=stored)
    assert resumed.decision == whole.decision
    assert resumed.log_e == whole.log_e
    assert len(json.dumps(stored)) < 10_000


def test_a_rollback_is_final() -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    step, _ = stepwise(judge, rollout(4, canary_err=0.1))
    assert step.decision == "rollback"
    again = judge.update(step.memory, rollout(5)[0])
    assert again.decision == "rollback" and again.reason == step.reason


def _evidence(step: JudgeStep) -> dict[str, float]:
    return {m.name: m.log_e for m in step.metrics}


def test_bad_intervals_are_skipped_without_moving_the_evidence() -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    data = rollout(6)
    base = judge.run(data[:10])
    ok = VersionCounts(1000, 10)
    for bad in (IntervalCounts(stable=None, canary=ok),
                IntervalCounts(stable=VersionCounts(-500, -3), canary=ok),
                IntervalCounts(stable=ok, canary=VersionCounts(10, 11)),
                IntervalCounts(stable=ok, canary=VersionCounts(math.nan, 1))):
        step = judge.update(base.memory, bad)
        assert step.decision == "continue"
        assert _evidence(step) == _evidence(base)
        assert "skipped" in step.reason
        assert step.memory["skipped"] == base.memory["skipped"] + 1


def test_no_canary_traffic_and_the_100_percent_stage_carry_no_evidence() -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    base = judge.run(rollout(7)[:10])
    idle = judge.update(base.memory, IntervalCounts(stable=VersionCounts(3000, 30),
                                                     canary=VersionCounts(0, 0), seconds=15))
    assert idle.decision == "continue" and _evidence(idle) == _evidence(base)
    full = judge.update(base.memory, IntervalCounts(stable=VersionCounts(0, 0),
                                                     canary=VersionCounts(3000, 900),
                                                     seconds=15, stage=3))
    assert full.decision == "continue" and _evidence(full) == _evidence(base)
    assert "no stable traffic" in full.reason


def test_early_promotion_needs_evidence_and_exposure_per_stage() -> None:
    spec = SequentialSpec(alpha=0.05, tolerance=1.0, early_promotion=True,
                          min_stage_requests=2000)
    judge = SequentialJudge(spec)
    step, index = stepwise(judge, rollout(8, rps=400, steps=90))
    assert step.decision == "promote"
    assert step.memory["stageRequests"] >= 2000
    assert all(m.log_promote_e >= math.log(20) for m in step.metrics)
    # the next stage starts its promotion evidence from scratch
    nxt = judge.update(step.memory, IntervalCounts(stable=VersionCounts(100, 1),
                                                    canary=VersionCounts(100, 1),
                                                    seconds=15, stage=step.memory["stage"] + 1))
    assert nxt.decision == "continue"
    assert all(m.log_promote_e < math.log(20) for m in nxt.metrics)
    # a bad canary is never promoted early
    bad = [judge.run(rollout(s, canary_err=0.03, rps=400)).decision for s in range(5)]
    assert "promote" not in bad


def test_metric_results_for_the_status_output() -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    failed = metric_results(judge.run(rollout(9, canary_err=0.08)))
    outcomes = {r.name: r.outcome for r in failed}
    assert outcomes["sequential"] is Outcome.FAILED
    assert outcomes["sequential/errors"] is Outcome.FAILED
    assert [r.dry_run for r in failed] == [False, True, True]  # one deciding entry
    assert failed[0].message.startswith("errors: the canary is worse")
    assert all(r.message and r.threshold == "e-value < 20" for r in failed)
    assert failed[0].value is not None and failed[0].value >= 20
    early = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0, early_promotion=True))
    passed = metric_results(early.run(rollout(10, rps=400)))
    assert {r.outcome for r in passed} == {Outcome.PASSED}
    fresh = metric_results(judge.run(rollout(11)[:2]))
    assert {r.outcome for r in fresh} == {Outcome.INCONCLUSIVE}
    json.dumps([r.to_json() for r in failed + passed + fresh], allow_nan=False)


def test_errors_only_when_there_are_no_histograms() -> None:
    judge = SequentialJudge(SequentialSpec(alpha=0.05, tolerance=1.0))
    step = judge.run(rollout(12, canary_err=0.04, latency=False))
    assert step.decision == "rollback"
    assert [m.name for m in step.metrics] == ["errors"]
    assert step.memory["latency"] is None


def test_unusable_memory_is_an_input_error() -> None:
    judge = SequentialJudge(SequentialSpec())
    memory = judge.run(rollout(13)[:5]).memory
    with pytest.raises(InputError) as err:
        judge.update({**memory, "v": 99}, rollout(13)[5])
    assert err.value.field == "memory"
    other = SequentialJudge(SequentialSpec(), tuning=None)
    broken = {**memory, "errors": {**memory["errors"], "rollback": [[0.0, 1.0]]}}
    with pytest.raises(InputError):
        other.update(broken, rollout(13)[5])


def test_reasons_state_both_rates_the_requests_and_the_evidence_against_its_threshold(
        ) -> None:
    """What deploy prints, status shows and Slack sends: enough to check the decision."""
    judge = SequentialJudge(SequentialSpec(alpha=0.02, tolerance=1.0))
    err = judge.run(rollout(3, canary_err=0.05))
    assert err.decision == "rollback"
    assert re.fullmatch(
        r"errors: the canary is worse than stable: canary [\d.]+% errors vs stable [\d.]+% "
        r"over [\d,]+ canary requests \(\d+ failed\) and [\d,]+ stable \(\d+\); "
        r"evidence [\d.,]+ >= 50 \(1/alpha, alpha 0.02\)", err.reason), err.reason
    slow = judge.run(rollout(3, slower=1.5))
    assert re.fullmatch(
        r"latency: the canary is worse than stable: canary p(50|90|99) [\d.]+s vs stable "
        r"[\d.]+s \(p\d+ [\d.]+s vs [\d.]+s, p\d+ [\d.]+s vs [\d.]+s\) over [\d,]+ canary "
        r"requests and [\d,]+ stable; evidence [\d.,]+ >= 50 \(1/alpha, alpha 0.02\)",
        slow.reason), slow.reason
    calm = judge.run(rollout(3))
    assert calm.decision == "continue"
    assert re.search(r"errors: canary [\d.]+% errors vs stable .*; evidence [\d.]+; latency: "
                     r"canary p\d+ .*; combined evidence [\d.]+ < 50 \(rollback at 50\)$",
                     calm.reason), calm.reason
