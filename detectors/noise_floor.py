"""How large a distance statistic gets on unchanged data: its sampling-noise quantile.

A binned distance between two samples of one distribution is not zero but noise, which
grows with the number of bins and shrinks with the rows. A fixed effect-size threshold is
therefore exceeded on every unchanged window once the window is small enough (100
categories at 1001 rows put the Jensen–Shannon distance near 0.13). The floor is the
``1 − alpha`` quantile of the statistic under "no change" for the sample sizes at hand;
``detectors.evaluate`` flags a distance only when it reaches both its configured threshold
and this floor.

With ``m`` reference and ``n`` window values, ``n_eff = m n / (m + n)`` and ``K`` the bins
(or categories) with reference mass, the asymptotics under no change are:

- Jensen–Shannon distance (base 2): ``8 ln 2 · n_eff · JS² → χ²(K − 1)``;
- PSI (natural log): ``n_eff · PSI → χ²(K − 1)``;
- Hellinger distance: ``8 n_eff · H² → χ²(K − 1)``;
- L∞ between shares: ``sqrt(n_eff) (q_i − p_i) → N(0, p_i (1 − p_i))`` per bin; the floor is
  the union bound over the bins, ``Σ_i P(|q_i − p_i| > t) = alpha`` (at most ``alpha``);
- Wasserstein-1 on the bins (mass uniform inside each bin), normalised by the reference
  standard deviation σ: ``sqrt(n_eff) · W1 → Σ_bins w_b · mean |B| over the bin``, where B
  is a Brownian bridge read at the reference CDF of the bin edges and linear in between
  (the same interpolation the binned statistic uses), w_b the bin widths. Its quantile is
  simulated (``simulations`` bridges, fixed seed) once per reference and cached.

The first three are the second-order expansion of each divergence around equal shares,
where each is a multiple of Pearson's χ² statistic of the 2 × K table. They hold when every
bin with reference mass expects at least about 5 rows on both sides (``n · min p ≥ 5``).
Below that, sparse bins make the statistics depart from χ²: PSI most, because an empty
window bin gets the share ``epsilon`` and adds ``p ln(p / epsilon)``, far above its
quadratic term, so the floor then underestimates PSI's noise; Jensen–Shannon and Hellinger
are bounded per bin and depart less (``tests/unit/test_noise_floor.py`` measures both
regimes).

>>> import numpy as np
>>> ref = np.full((1, 100), 1000)  # 100 equally likely categories
>>> round(float(multinomial_floor("jensen_shannon", ref, [100_000], [1001], 0.001)[0]), 3)
0.164

References: Lin, J. (1991). Divergence measures based on the Shannon entropy. IEEE
Transactions on Information Theory 37(1), 145–151 (JS as a χ² statistic). Read, T. R. C. and
Cressie, N. A. C. (1988). Goodness-of-fit statistics for discrete multivariate data,
ch. 4. Springer (the power-divergence family; PSI and Hellinger are members).
del Barrio, E., Giné, E. and Matrán, C. (1999). Central limit theorems for the Wasserstein
distance between the empirical and the true distributions. Annals of Probability 27(2),
1009–1071 (``sqrt(n) W1 → ∫ |B(F(x))| dx``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Sequence

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import chi2

from detectors.stats import NumericBins
from detectors.wasserstein import _mean_abs_linear

# The distance tests that have a floor (the p-value tests need none).
FLOOR_TESTS = frozenset({"psi", "jensen_shannon", "hellinger", "linf", "wasserstein"})
MULTINOMIAL_TESTS = frozenset({"psi", "jensen_shannon", "hellinger", "linf"})

DEFAULT_SIMULATIONS = 4000
DEFAULT_SEED = 20_240_611
# Elements of one simulated (bridges × columns × bins) block: bounds memory.
_BLOCK_ELEMENTS = 2_000_000
# Bridge quantiles per reference, kept for the next window of the same reference.
_CACHE_SIZE = 32
_cache: dict[Hashable, np.ndarray] = {}
_cache_lock = threading.Lock()


def effective_rows(n_ref: Sequence[float] | np.ndarray, n_cur: Sequence[float] | np.ndarray):
    """``m n / (m + n)``: the sample size that sets a two-sample statistic's noise."""
    m = np.asarray(n_ref, dtype=np.float64)
    n = np.asarray(n_cur, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((m > 0) & (n > 0), m * n / (m + n), np.nan)


def multinomial_floor(
    test: str,
    ref: np.ndarray,
    n_ref: Sequence[float] | np.ndarray,
    n_cur: Sequence[float] | np.ndarray,
    alpha: float,
) -> np.ndarray:
    """The ``1 − alpha`` no-change quantile of PSI, Jensen–Shannon, Hellinger or L∞, per
    row of the (columns × bins) reference counts ``ref``; NaN where a side is empty."""
    if test not in MULTINOMIAL_TESTS:
        raise ValueError(f"no multinomial floor for {test!r}; one of {sorted(MULTINOMIAL_TESTS)}")
    _check_alpha(alpha)
    ref = np.asarray(ref, dtype=np.float64)
    n_eff = effective_rows(n_ref, n_cur)
    if test == "linf":
        return _linf_floor(ref, n_eff, alpha)
    dof = (ref > 0).sum(axis=1) - 1
    crit = np.where(dof > 0, chi2.isf(alpha, np.maximum(dof, 1)), 0.0)
    if test == "psi":
        return crit / n_eff
    scale = 8.0 * math.log(2.0) if test == "jensen_shannon" else 8.0
    return np.sqrt(crit / (scale * n_eff))


def _linf_floor(ref: np.ndarray, n_eff: np.ndarray, alpha: float) -> np.ndarray:
    """t with ``Σ_i 2 Φ̄(t sqrt(n_eff) / σ_i) = alpha``, ``σ_i² = p_i (1 − p_i)``: by the union
    bound, the largest of the bins' normal deviations exceeds it with probability ≤ alpha."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ref / ref.sum(axis=1, keepdims=True)
    sigma = np.sqrt(np.nan_to_num(p * (1.0 - p)))
    k = np.maximum((sigma > 0).sum(axis=1), 1)
    lo = np.zeros(len(ref))
    # Each bin alone below alpha / k at this z, so the sum is below alpha.
    hi = sigma.max(axis=1, initial=0.0) * ndtri(1.0 - alpha / (2.0 * k))
    safe = np.where(sigma > 0, sigma, 1.0)
    for _ in range(60):  # bisection, every column at once
        z = (lo + hi) / 2.0
        tail = np.where(sigma > 0, 2.0 * ndtr(-z[:, None] / safe), 0.0).sum(axis=1)
        above = tail > alpha
        lo, hi = np.where(above, z, lo), np.where(above, hi, z)
    return hi / np.sqrt(n_eff)


def bridge_quantile(
    ref: np.ndarray,
    edges: np.ndarray,
    nbins: np.ndarray,
    ref_min: np.ndarray,
    ref_max: np.ndarray,
    alpha: float,
    *,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Per column, the ``1 − alpha`` quantile of the limit of ``sqrt(n_eff) · W1`` (binned,
    in the column's units, not normalised) between two samples of the reference's
    distribution.

    ``ref`` are the (columns × bins) reference counts on ``edges`` (laid out as in
    ``NumericBins``); the outer bins reach ``ref_min`` / ``ref_max`` where the reference
    has mass there (a baseline window), and have no mass in a profile. Bridges are
    simulated at the reference CDF of every edge, vectorized over columns and bridges.
    """
    _check_alpha(alpha)
    ref = np.asarray(ref, dtype=np.float64)
    cols, width = ref.shape
    if cols == 0 or width == 0:
        return np.zeros(cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ref / ref.sum(axis=1, keepdims=True)
    empty = ~np.isfinite(p).all(axis=1)
    p = np.where(np.isfinite(p), p, 0.0)
    t = np.cumsum(p, axis=1)
    w = _widths(edges, np.asarray(nbins), np.asarray(ref_min), np.asarray(ref_max), width)
    sd = np.sqrt(p)
    rng = np.random.default_rng(seed)
    per_block = max(1, _BLOCK_ELEMENTS // (cols * width))
    values = np.empty((simulations, cols))
    for start in range(0, simulations, per_block):
        s = min(per_block, simulations - start)
        walk = np.cumsum(rng.standard_normal((s, cols, width)) * sd, axis=2)
        bridge = walk - t * walk[:, :, -1:]  # the bridge at each bin's right end
        left = np.concatenate([np.zeros((s, cols, 1)), bridge[:, :, :-1]], axis=2)
        values[start : start + s] = (w * _mean_abs_linear(left, bridge)).sum(axis=2)
    q = np.quantile(values, 1.0 - alpha, axis=0)
    return np.where(empty, np.nan, q)


def _widths(
    edges: np.ndarray, nbins: np.ndarray, lowest: np.ndarray, highest: np.ndarray, width: int
) -> np.ndarray:
    """Bin widths as ``wasserstein.binned`` takes them, from the reference side alone:
    outer bins down to its minimum and up to its maximum, zero for padding."""
    rows = len(nbins)
    if edges.shape[1] == 0:
        return np.zeros((rows, width))
    last = edges[np.arange(rows), nbins - 2]
    low = np.fmin(lowest, edges[:, 0])
    high = np.fmax(highest, last)
    bounds = np.concatenate([low[:, None], edges, high[:, None]], axis=1)
    padding = np.arange(width + 1)[None, :] >= nbins[:, None]
    w = np.diff(np.where(padding, high[:, None], bounds), axis=1)
    return np.where(np.isfinite(w), w, 0.0)


def wasserstein_quantile(
    bins: NumericBins,
    alpha: float,
    *,
    key: Hashable | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """``bridge_quantile`` of every column of ``bins`` (its reference side), cached under
    ``key`` (e.g. a profile's content hash) when one is given."""
    full_key = None if key is None else (key, float(alpha), simulations, seed)
    if full_key is not None:
        with _cache_lock:
            hit = _cache.get(full_key)
        if hit is not None and len(hit) == len(bins.names):
            return hit
    q = bridge_quantile(
        bins.ref,
        bins.edges,
        bins.nbins,
        bins.ref_min,
        bins.ref_max,
        alpha,
        simulations=simulations,
        seed=seed,
    )
    if full_key is not None:
        q.setflags(write=False)
        with _cache_lock:
            while len(_cache) >= _CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[full_key] = q
    return q


def wasserstein_floor(
    quantile: np.ndarray,
    n_ref: Sequence[float] | np.ndarray,
    n_cur: Sequence[float] | np.ndarray,
    ref_std: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """The normalised Wasserstein floor ``quantile / sqrt(n_eff) / σ``; 0 for a constant
    reference (its bridge is 0: any move of a constant column is drift)."""
    std = np.asarray(ref_std, dtype=np.float64)
    q = np.asarray(quantile, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = q / np.sqrt(effective_rows(n_ref, n_cur)) / std
    return np.where(std > 0, floor, np.where(np.isnan(std), np.nan, 0.0))


def clear_cache() -> None:
    """Forget every cached bridge quantile."""
    with _cache_lock:
        _cache.clear()


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
