"""Wasserstein-1 (earth mover's) distance, on every numeric column at once.

Measures how far the current window's mass has to move to match the reference, in the
column's units:

    W1 = ∫ |F_ref(x) − F_cur(x)| dx.

It is an effect size, not a test: it grows with the shift instead of with the window size,
which is why it is the default for large windows. The default statistic divides it by the
reference standard deviation (the distance in reference standard deviations, like
Evidently's normed Wasserstein distance), so one threshold suits every column;
``normalize=False`` gives the raw distance. A constant reference (standard deviation 0)
gives 0 when nothing moved and +inf when anything did: any change of a constant column is
infinitely many standard deviations. No p-value.

Binned mode knows, per bin, its share of each side's values and their mean (the profile
keeps the reference's bin means, the sketch a sum per bin), and computes W1 exactly
between the two discrete distributions P̂ and Q̂ that put each bin's share at its mean.
Moving every value of a bin to the bin's mean costs at most its mean absolute deviation,
and a distribution on [a, b] with mean μ deviates by at most 2(μ − a)(b − μ)/(b − a)
(|x − μ| lies below its chord between a and b); W1 is a metric, so

    |binned − exact| ≤ W1(P, P̂) + W1(Q, Q̂)
                     ≤ Σ over bins of (p_ref + p_cur) · 2(μ − a)(b − μ)/(b − a)
                     = ``error_bound``   (each side with its own μ; at most w/2 per unit share)

(scaled like the statistic). Bins are the reference's edges; the below-range bin reaches
down to the smaller of the two minima and the above-range bin up to the larger maximum.
Each side's term is reached (values in two clusters at a bin's ends), not both at once,
so the bound can be up to twice the error. A mean at one end of its bin puts every value
there and its term is 0: on a column whose every value is a bin edge on both sides (an
integer or other tied column with fewer values than bins), binned equals exact.
Where a side's bin mean is unknown (a profile file that predates bin means), its mass
sits at the other side's mean of that bin, else at the bin's midpoint, and that bin's
term is p · max(x − a, b − x) for the location x chosen, which holds for any x.

Exact mode takes (columns × rows) float arrays with NaN for missing values, like
``detectors.ks.exact``, and before normalisation equals ``scipy.stats.wasserstein_distance``.
The normalising standard deviation is the reference's (ddof=1, as in the profile) unless
``ref_std`` is given.

>>> import numpy as np
>>> res = exact(np.array([[0.0, 1.0, 3.0]]), np.array([[5.0, 6.0, 8.0]]), normalize=False)
>>> res.statistic.tolist()
[5.0]
>>> from scipy.stats import wasserstein_distance
>>> float(wasserstein_distance([0.0, 1.0, 3.0], [5.0, 6.0, 8.0]))
5.0

References: Villani, C. (2009). Optimal Transport: Old and New, ch. 6. Ramdas, A., García
Trillos, N. and Cuturi, M. (2017). On Wasserstein two-sample testing and related families
of nonparametric tests. Entropy 19(2), 47.
"""

from __future__ import annotations

import numpy as np

from detectors.ks import Pooled
from detectors.stats import NumericBins, Stats


def binned(bins: NumericBins, *, normalize: bool = True) -> Stats:
    """W1 between the histograms with each bin's mass at its mean, and its bound."""
    if not isinstance(bins, NumericBins):
        raise TypeError(
            f"the Wasserstein distance compares numeric bins, not {type(bins).__name__}"
        )
    ref = bins.ref.astype(np.float64)
    cur = bins.cur.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_ref = ref / ref.sum(axis=1, keepdims=True)
        p_cur = cur / cur.sum(axis=1, keepdims=True)
    lo, hi = _bin_bounds(bins)
    ref_means = _means_or_nan(bins.ref_means, ref.shape)
    cur_means = _means_or_nan(bins.cur_means, cur.shape)
    at_ref, bound_ref = _placed(p_ref, ref_means, cur_means, lo, hi)
    at_cur, bound_cur = _placed(p_cur, cur_means, ref_means, lo, hi)
    # W1 of two discrete distributions on the line: ∫ |F_ref − F_cur| over the merged,
    # sorted point masses, all features at once.
    where = np.concatenate([at_ref, at_cur], axis=1)
    order = np.argsort(where, axis=1, kind="stable")
    where = np.take_along_axis(where, order, axis=1)
    mass = np.take_along_axis(np.concatenate([p_ref, -p_cur], axis=1), order, axis=1)
    gap = np.cumsum(mass, axis=1)[:, :-1]
    distance = (np.abs(gap) * np.diff(where, axis=1)).sum(axis=1)
    bound = np.where(np.isnan(distance), np.nan, (bound_ref + bound_cur).sum(axis=1))
    if normalize:
        return Stats(
            statistic=_per_std(distance, bins.ref_std),
            error_bound=_per_std(bound, bins.ref_std),
        )
    return Stats(statistic=distance, error_bound=bound)


def exact(
    ref: np.ndarray,
    cur: np.ndarray,
    *,
    normalize: bool = True,
    ref_std: np.ndarray | None = None,
) -> Stats:
    """W1 on the raw values; before normalisation, ``scipy.stats.wasserstein_distance``."""
    pool = Pooled.of(ref, cur)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = pool.ref_rank / pool.m[:, None] - pool.cur_rank / pool.n[:, None]
    step = np.diff(pool.values, axis=1)
    # Between consecutive pooled values both CDFs are flat; tied values have step 0.
    between = pool.valid[:, 1:]
    distance = np.where(between, np.abs(gap[:, :-1]) * np.where(between, step, 0.0), 0.0)
    distance = distance.sum(axis=1)
    distance = np.where((pool.m == 0) | (pool.n == 0), np.nan, distance)
    if not normalize:
        return Stats(statistic=distance)
    if ref_std is None:
        ref_std = _sample_std(np.array(ref, dtype=np.float64, ndmin=2))
    return Stats(statistic=_per_std(distance, np.asarray(ref_std, dtype=np.float64)))


def _bin_bounds(bins: NumericBins) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's extent [lo, hi]: the edges inside the reference range, the observed
    extremes outside it, a point at the top for padding."""
    rows, width = bins.ref.shape
    edges = bins.edges
    if edges.shape[1] == 0:
        return np.zeros((rows, width)), np.zeros((rows, width))
    last_edge = edges[np.arange(rows), bins.nbins - 2]
    lowest = np.fmin(np.fmin(bins.ref_min, bins.cur_min), edges[:, 0])
    highest = np.fmax(np.fmax(bins.ref_max, bins.cur_max), last_edge)
    bounds = np.concatenate([lowest[:, None], edges, highest[:, None]], axis=1)
    padding = np.arange(width + 1)[None, :] >= bins.nbins[:, None]
    bounds = np.where(padding, highest[:, None], bounds)
    return bounds[:, :-1], bounds[:, 1:]


def _means_or_nan(means: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if means is None:
        return np.full(shape, np.nan)
    return np.asarray(means, dtype=np.float64)


def _placed(
    share: np.ndarray, own: np.ndarray, other: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each bin's mass is placed, and the most that placing it there can move W1.

    At its own mean μ the mass moved at most its mean absolute deviation,
    2(μ − lo)(hi − μ)/(hi − lo); at a guessed point x (the mean unknown) at most the
    farthest end, max(x − lo, hi − x). Empty bins get a point too: they weigh nothing.
    """
    known = np.isfinite(own)
    guess = np.where(np.isfinite(other), other, (lo + hi) / 2)
    guess = np.clip(guess, lo, hi)
    at = np.where(known, own, guess)
    mu = np.clip(own, lo, hi)
    width = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(width > 0, 2 * (mu - lo) * (hi - mu) / width, 0.0)
    reach = np.where(known, spread, np.maximum(guess - lo, hi - guess))
    return at, np.where(share > 0, share * reach, 0.0)


def _per_std(distance: np.ndarray, std: np.ndarray) -> np.ndarray:
    """distance / std, with a constant reference (std 0) giving 0 or +inf."""
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = distance / std
    constant = std == 0
    return np.where(constant, np.where(distance == 0, 0.0, np.inf), scaled)


def _sample_std(x: np.ndarray) -> np.ndarray:
    """Standard deviation (ddof=1) of each row's finite values; 0 with fewer than two."""
    valid = np.isfinite(x)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, x, 0.0).sum(axis=1) / count
        sq = np.where(valid, (x - mean[:, None]) ** 2, 0.0).sum(axis=1)
        std = np.sqrt(sq / (count - 1))
    return np.where(count > 1, std, np.where(count == 1, 0.0, np.nan))
