"""The dispersion guard's second source (the stable version's own errors) and the latency
tail shape: checked on seeded draws, as properties."""

from __future__ import annotations

import numpy as np
import pytest

from canary.analysis.sequential import evidence as ev


def _stable_phi(rng: np.random.Generator, *, cluster: float, intervals: int = 40,
                burst_every: int = 0) -> float:
    """phi learned from ``intervals`` of a stable version at 2,850 requests and 1% errors,
    each failure seen ``cluster`` times on average (geometric sizes), with an x8 error
    burst every ``burst_every`` intervals."""
    reqs = rng.poisson(2850, intervals).astype(float)
    rate = np.full(intervals, 0.01)
    if burst_every:
        rate[::burst_every] *= 8
    if cluster == 1:
        errs = rng.binomial(reqs.astype(np.int64), rate).astype(float)
    else:
        failures = rng.binomial(reqs.astype(np.int64), rate / cluster)
        extra = rng.negative_binomial(np.maximum(failures, 1), 1 / cluster)
        errs = (failures + np.where(failures > 0, extra, 0)).astype(float)
    data = np.stack([reqs, errs], axis=-1)
    terms = ev.stable_terms(data[:-1], data[1:])
    sums = terms.sum(axis=0)
    return float(ev.phi(sums, pseudo=5.0))


def test_independent_errors_give_no_excess_variance() -> None:
    rng = np.random.default_rng(1)
    phis = [_stable_phi(rng, cluster=1) for _ in range(200)]
    assert 1.0 <= np.median(phis) < 1.3


def test_retry_clusters_are_learned_within_minutes() -> None:
    """Geometric clusters of mean 2: the variance of a count is 3 times its mean."""
    rng = np.random.default_rng(2)
    phis = [_stable_phi(rng, cluster=2, intervals=12) for _ in range(200)]
    assert 2.3 < np.median(phis) < 3.7


def test_a_shared_burst_counts_a_bounded_amount() -> None:
    """An x8 burst every 20 intervals and no clusters. Each jump counts at most 9 of its
    variances, so phi stays a few units (the squared jumps themselves would give
    hundreds); it does rise, which slows detection in such a service and never makes a
    false rollback likelier (phi only divides the evidence)."""
    rng = np.random.default_rng(3)
    phis = [_stable_phi(rng, cluster=1, burst_every=20) for _ in range(200)]
    assert 1.5 < np.median(phis) < 5.0
    prev = np.array([[2850.0, 28.0]])
    burst = np.array([[2850.0, 228.0]])
    dev, var = ev.stable_terms(prev, burst)[0]
    assert dev == pytest.approx(9 * var) and (100.0 ** 2) / var > 100


def test_no_stable_traffic_adds_nothing() -> None:
    prev = np.array([[0.0, 0.0], [100.0, 3.0]])
    cur = np.array([[100.0, 5.0], [0.0, 0.0]])
    assert np.all(ev.stable_terms(prev, cur) == 0.0)


@pytest.mark.parametrize("tail_from", [0.9, 0.95, 0.99])
def test_the_tail_shape_starts_at_its_quantile(tail_from: float) -> None:
    q = np.full(100, 0.01)  # 100 equal bins: bin b's middle is the (b + 0.5)% quantile
    tail = ev.bin_scores(q, tail_from=tail_from)[1]
    first = int(np.flatnonzero(tail > 0)[0])
    assert first == round(tail_from * 100)
    assert np.all(np.diff(tail[first:]) > 0)
