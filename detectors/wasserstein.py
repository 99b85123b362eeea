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

Binned mode integrates |F_ref − F_cur| with each CDF linear inside each bin (mass spread
uniformly), on the reference's edges; the below-range bin extends down to the smaller of
the two minima and the above-range bin up to the larger maximum. At any x inside a bin of
width w holding shares p_ref and p_cur, the exact CDF gap and the linear one differ by at
most max(p_ref, p_cur), so

    |binned − exact| ≤ Σ over bins of w · max(p_ref, p_cur) = ``error_bound``

(scaled like the statistic).

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
    """W1 between the two histograms, mass uniform within each bin, and its bound."""
    if not isinstance(bins, NumericBins):
        raise TypeError(
            f"the Wasserstein distance compares numeric bins, not {type(bins).__name__}"
        )
    ref = bins.ref.astype(np.float64)
    cur = bins.cur.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_ref = ref / ref.sum(axis=1, keepdims=True)
        p_cur = cur / cur.sum(axis=1, keepdims=True)
    width = _bin_widths(bins)
    # The CDF gap at each bin's right edge b and left edge a; linear in between.
    gap_b = np.cumsum(p_ref, axis=1) - np.cumsum(p_cur, axis=1)
    gap_a = gap_b - (p_ref - p_cur)
    distance = (width * _mean_abs_linear(gap_a, gap_b)).sum(axis=1)
    bound = (width * np.maximum(p_ref, p_cur)).sum(axis=1)
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


def _bin_widths(bins: NumericBins) -> np.ndarray:
    """Each bin's extent: the edges inside the reference range, the observed extremes
    outside it, zero for padding."""
    rows, width = bins.ref.shape
    edges = bins.edges
    if edges.shape[1] == 0:
        return np.zeros((rows, width))
    last_edge = edges[np.arange(rows), bins.nbins - 2]
    lowest = np.fmin(np.fmin(bins.ref_min, bins.cur_min), edges[:, 0])
    highest = np.fmax(np.fmax(bins.ref_max, bins.cur_max), last_edge)
    bounds = np.concatenate([lowest[:, None], edges, highest[:, None]], axis=1)
    padding = np.arange(width + 1)[None, :] >= bins.nbins[:, None]
    return np.diff(np.where(padding, highest[:, None], bounds), axis=1)


def _mean_abs_linear(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of |g| over [0, 1] for g linear from a to b."""
    same_sign = a * b >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (a**2 + b**2) / (2 * (np.abs(a) + np.abs(b)))
    return np.where(same_sign, (np.abs(a) + np.abs(b)) / 2, crossing)


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
