"""The arithmetic of the sequential judge, on arrays, so one implementation serves all.

The controller advances it one interval at a time, ``canary backtest`` a whole recording
at once and the benchmark thousands of simulated rollouts side by side; all three call
these functions, so what the benchmark measures is what the controller runs.

The test (docs/statistics.md): per interval the canary served ``c`` requests with ``x``
"events" (errors, or requests slower than a latency edge) and the stable version ``s``
with ``y``. With ``rho = c / (c + s)`` each of the ``n = x + y`` events is a canary event
with probability ``theta(r) = r rho / (r rho + 1 - rho)`` when the canary's event rate is
``r`` times the stable's, so any rate both versions share cancels. The log likelihood
ratio of an alternative ``r`` against the null ``r0`` for one interval is::

    x log(r / r0) - n [log(1 + rho (r - 1)) - log(1 + rho (r0 - 1))]

which needs no special case at rho = 0 (no canary traffic) or rho = 1 (no stable traffic):
both give 0, no evidence either way. A mixture over a grid of alternatives, summed in log
space, is an e-process for "canary <= r0 x stable"; the mirror image (alternatives below
``r_tol``) is the early-promotion test of "canary >= r_tol x stable".

Every per-interval increment is capped. A burst that lands on the canary in one interval
(a retry storm, one bad host) breaks the Poisson assumption; the cap bounds what a single
interval can contribute and keeps the process a supermartingale (E[min(LR, e^cap)] <=
E[LR] <= 1), at the price of needing a few intervals to reach any verdict. The cap may
differ per interval (the judge scales it with the interval's length, so the same traffic
cut into longer or shorter checks counts about the same): it stays valid as long as it
is fixed before the interval's counts are seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Mixture:
    """Alternatives (natural logs of rate ratios) and their prior log-weights, one test."""

    log_null: float
    log_alternatives: FloatArray  # shape (J,)
    log_prior: FloatArray  # shape (J,), logsumexp == 0

    @staticmethod
    def above(null: float, multiples: FloatArray, log_prior: FloatArray) -> Mixture:
        """Rollback side: alternatives ``null x m`` for each multiple ``m > 1``."""
        return Mixture(float(np.log(null)), np.log(null) + np.log(multiples), log_prior)

    @staticmethod
    def below(null: float, multiples: FloatArray, log_prior: FloatArray) -> Mixture:
        """Promotion side: alternatives ``null / m`` for each multiple ``m > 1``."""
        return Mixture(float(np.log(null)), np.log(null) - np.log(multiples), log_prior)


def geometric_grid(low: float, high: float, points: int) -> FloatArray:
    """``points`` multiples from ``low`` to ``high``, evenly spaced on a log scale."""
    if points == 1:
        return np.array([low], dtype=np.float64)
    return np.geomspace(low, high, points).astype(np.float64)


def prior(multiples: FloatArray, *, decay: float = 0.0) -> FloatArray:
    """Log prior weights, proportional to ``(1 + log m / log m[0]) ** -decay``, summing to 1.

    ``decay = 0`` is uniform over the (log-spaced) grid; a positive decay leans towards
    small effects, which are the slow ones to detect.
    """
    raw = -decay * np.log(np.log(multiples) / np.log(multiples[0]) + 1.0)
    return np.asarray(raw - logsumexp(raw), dtype=np.float64)


def logsumexp(a: FloatArray, axis: int = -1) -> FloatArray:
    """log(sum(exp(a))) along ``axis`` without overflow."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return np.asarray(np.squeeze(out, axis=axis), dtype=np.float64)


def increments(
    events: FloatArray,
    total_events: FloatArray,
    share: FloatArray,
    mixture: Mixture,
    *,
    cap: float | FloatArray,
    count_cap: float | None = None,
    phi: FloatArray | None = None,
) -> FloatArray:
    """Per-interval log likelihood ratios, shape ``events.shape + (J,)``, each <= ``cap``
    (a number, or per interval: broadcast against that shape).

    ``events`` are the canary's (x), ``total_events`` both versions' (n = x + y), ``share``
    the canary's share of requests (rho). ``count_cap`` scales x and n down so that n never
    exceeds it: raising a likelihood ratio to a power below one keeps it an e-value.
    """
    x = events
    n = total_events
    if count_cap is not None:
        scale = np.minimum(1.0, count_cap / np.maximum(n, 1e-300))
        x = x * scale
        n = n * scale
    la = mixture.log_alternatives
    rho = share[..., None]
    drift = np.log1p(rho * np.expm1(la)) - np.log1p(rho * np.expm1(mixture.log_null))
    inc = x[..., None] * (la - mixture.log_null) - n[..., None] * drift
    if phi is not None:
        inc = inc / phi[..., None]
    # one version alone carries no information; make that exact, not 1e-15
    inc = np.where(((share > 0) & (share < 1))[..., None], inc, 0.0)
    return np.asarray(np.minimum(inc, cap), dtype=np.float64)


def dispersion_terms(totals_before: FloatArray, x: FloatArray, n: FloatArray,
                     rho: FloatArray) -> FloatArray:
    """One interval's (squared deviation, binomial variance) of the canary's events (..., 2).

    Errors that come in clusters (retries, one bad host) vary more between intervals than
    the binomial split allows, and an e-process that believes each error independent
    then overshoots. Summed over intervals, deviations over variances (a pooled Pearson
    ratio) estimate that excess ``phi``. The deviations are taken from the canary/stable
    ratio fitted on earlier intervals, shrunk towards 1, so a steady regression or a rate
    both versions share (an incident, a daily cycle) does not look like dispersion.
    """
    c, xs, s, ys = (totals_before[..., i] for i in range(4))
    stable_rate = (ys + 0.5) / (s + 1.0)
    ratio = (xs + 2.0) / (c * stable_rate + 2.0)
    theta = ratio * rho / (1.0 + rho * (ratio - 1.0))
    return np.asarray(np.stack([(x - n * theta) ** 2, n * theta * (1.0 - theta)], axis=-1),
                      dtype=np.float64)


def stable_terms(previous: FloatArray, current: FloatArray, *, winsor: float = 9.0
                 ) -> FloatArray:
    """(squared deviation, binomial variance) of the stable version's errors between two
    consecutive intervals (..., 2), from (requests, errors) of each (..., 2).

    With independent errors at a rate that barely moves from one interval to the next,
    the errors of the pair split between them in proportion to their requests; retry
    clusters make the split vary more. The stable version sees far more errors than the
    canary (19 times as many at 5%), so this learns the excess variance in a few
    intervals, where the canary's own split needs minutes. Each pair counts at most
    ``winsor`` times its variance, so a sudden shared change (a burst, an incident
    starting) is not taken for clustering.
    """
    s0, y0 = previous[..., 0], previous[..., 1]
    s1, y1 = current[..., 0], current[..., 1]
    m = y0 + y1
    share = np.divide(s1, s0 + s1, out=np.zeros_like(s1, dtype=np.float64),
                      where=(s0 > 0) & (s1 > 0))
    var = m * share * (1.0 - share)
    dev = np.minimum((y1 - m * share) ** 2, winsor * var)
    return np.asarray(np.stack([dev, var], axis=-1), dtype=np.float64)


def phi(sums_before: FloatArray, *, pseudo: float) -> FloatArray:
    """max(1, pooled Pearson ratio), starting at 1 with ``pseudo`` units of variance.

    Dividing an interval's log likelihood ratio by ``phi >= 1`` computed from earlier
    intervals only keeps the process an e-process (a power below one of a likelihood
    ratio has expectation at most one), and makes it count clusters, not errors.
    """
    ratio = (pseudo + sums_before[..., 0]) / (pseudo + sums_before[..., 1])
    return np.asarray(np.maximum(ratio, 1.0), dtype=np.float64)


def paths(start: FloatArray, inc: FloatArray, *, axis: int = -2) -> FloatArray:
    """Running sums of ``inc`` along its time ``axis`` from ``start`` (without that axis).

    Added one interval at a time, in order, so a judge stepped interval by interval and
    one fed the whole series reach bit-identical sums.
    """
    stacked = np.concatenate([np.expand_dims(start, axis), inc], axis=axis)
    out = np.cumsum(stacked, axis=axis)
    return np.asarray(np.delete(out, 0, axis=axis), dtype=np.float64)


def log_evidence(cumulative: FloatArray, log_prior: FloatArray) -> FloatArray:
    """log of the mixture e-value for cumulative log likelihood ratios (..., J) -> (...)."""
    return logsumexp(cumulative + log_prior, axis=-1)


def share_of(canary: FloatArray, stable: FloatArray) -> FloatArray:
    """rho = c / (c + s), 0 where neither version served anything."""
    total = canary + stable
    return np.divide(canary, total, out=np.zeros_like(total, dtype=np.float64),
                     where=total > 0)


# -- latency: the whole distribution -------------------------------------------------------
#
# Requests fall into the histogram's bins; per bin, the canary's share of the requests in
# it is the same binomial split as for errors, and the bins are independent given their
# totals, so the log likelihood ratios of the bins add up. The alternatives are
# exponential tilts of the stable version's bin distribution q (estimated from earlier
# intervals): bin b's rate ratio is exp(beta z_b) / sum_b q_b exp(beta z_b), with z_b the
# normal score of the bin's middle. For the "shift" shape that is exactly a lognormal
# latency made slower by a constant factor, without assuming the latency is lognormal;
# the "tail" shape (scores above the p95 by default) is a slower tail with the body
# unchanged.

def bin_scores(q: FloatArray, *, tail_from: float = 0.95) -> FloatArray:
    """Scores (..., 2, B) of bins with probabilities q (..., B): shift and tail shapes, the
    tail starting at the ``tail_from`` quantile."""
    mid = np.cumsum(q, axis=-1) - q / 2
    z = ndtri(np.clip(mid, 1e-6, 1 - 1e-6))
    edge = float(ndtri(np.array(tail_from)))
    return np.asarray(np.stack([z, np.maximum(z - edge, 0.0)], axis=-2),
                      dtype=np.float64)


def tilt_increments(x: FloatArray, n: FloatArray, share: FloatArray, q: FloatArray,
                    scores: FloatArray, betas: FloatArray, *, null: float = 0.0,
                    cap: float | FloatArray) -> FloatArray:
    """Per-interval log likelihood ratios (..., S, J), summed over bins, each <= ``cap``.

    ``x`` and ``n`` (..., B) are the canary's and both versions' requests per bin,
    ``share`` (...) the canary's share of all requests, ``q`` (..., B) the stable bin
    distribution and ``scores`` (..., S, B) the shapes. Alternative ``j`` tilts by
    ``betas[j]``: bin b's rate ratio is r_b = exp(beta z_b) / sum_b q_b exp(beta z_b), and
    its log likelihood ratio against the tilt ``null`` is, per bin, the binomial split's
    x_b log(r_b / r0_b) - n_b [log(1 + rho (r_b - 1)) - log(1 + rho (r0_b - 1))].
    """
    def parts(b: FloatArray) -> tuple[FloatArray, FloatArray]:
        w = b[:, None] * scores[..., :, None, :]  # (..., S, J, B); |w| < 10: no overflow
        e = np.exp(w)
        norm = np.sum(q[..., None, None, :] * e, axis=-1)
        r = e / norm[..., None]
        rho = share[..., None, None, None]
        drift = np.sum(n[..., None, None, :] * np.log1p(rho * (r - 1.0)), axis=-1)
        gain = np.sum(x[..., None, None, :] * w, axis=-1) \
            - np.sum(x, axis=-1)[..., None, None] * np.log(norm)
        return gain, drift

    gain, drift = parts(betas)
    if null != 0.0:
        gain0, drift0 = parts(np.array([null]))
        gain, drift = gain - gain0, drift - drift0
    inc = gain - drift
    inc = np.where(((share > 0) & (share < 1))[..., None, None], inc, 0.0)
    return np.asarray(np.minimum(inc, cap), dtype=np.float64)


_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01, 1.0)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00, 1.0)


def ndtri(p: FloatArray) -> FloatArray:
    """The standard normal quantile (Acklam's rational approximation, rel. error 1e-9)."""
    p = np.asarray(p, dtype=np.float64)
    q = p - 0.5
    r = q * q
    central = np.polyval(_A, r) * q / np.polyval(_B, r)
    t = np.sqrt(-2 * np.log(np.minimum(p, 1 - p)))
    tail = np.polyval(_C, t) / np.polyval(_D, t)
    out = np.where(np.abs(q) <= 0.47575, central, np.where(q < 0, tail, -tail))
    return np.asarray(out, dtype=np.float64)
