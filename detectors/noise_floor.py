"""How large a distance statistic gets on unchanged data: its sampling-noise quantile.

A binned distance between two samples of one distribution is not zero but noise, which
grows with the number of bins and shrinks with the rows. A fixed effect-size threshold is
therefore exceeded on every unchanged window once the window is small enough for its bins
(100 categories at 1001 rows put the Jensen–Shannon distance near 0.13). The floor is the
``1 − alpha`` quantile of the statistic under "no change" for the sample sizes at hand;
``detectors.evaluate`` flags a distance only when it reaches both its configured threshold
and this floor.

With ``m`` reference and ``n`` window values, ``n_eff = m n / (m + n)`` and ``K`` the bins
(or categories) with reference mass, the limits under no change are:

- Jensen–Shannon distance (base 2): ``8 ln 2 · n_eff · JS² → χ²(K − 1)``;
- PSI (natural log): ``n_eff · PSI → χ²(K − 1)``;
- Hellinger distance: ``8 n_eff · H² → χ²(K − 1)``;
- L∞ between shares: ``sqrt(n_eff) (q_i − p_i) → N(0, p_i (1 − p_i))`` per bin; the floor is
  the union bound over the bins, ``Σ_i P(|q_i − p_i| > t) = alpha``;
- Wasserstein-1 (binned, divided by the reference standard deviation σ):
  ``sqrt(n_eff) · W1 → ∫ |B(F(x))| dx`` read on the bins, B a Brownian bridge and F the
  reference CDF (below).

The first three are the second-order expansion of each divergence around equal shares,
where each is a multiple of Pearson's χ² statistic of the 2 × K table. The limit holds
when every bin with reference mass expects about ``DENSE_ROWS`` (50) rows on the smaller
side, and is used as it is there. Below that, sparse bins push the statistics above their
χ² limit (an empty window bin adds ``p ln(p / epsilon)`` to PSI, ``p / 2`` to Hellinger's
H², several times their quadratic terms): with 100 Zipf-distributed categories, 1001-row
windows and ``alpha = 0.001`` the plain limit is exceeded in 3% (JS) to 18% (Hellinger) of
unchanged windows (``tests/unit/test_noise_floor.py`` shows the same at 0.05). There the
floor is a scaled χ², ``a · χ²(ν)``, whose mean and variance are those of the statistic
simulated under no change (multinomial draws of both sides from the reference shares,
``DEFAULT_MULTINOMIAL_SIMULATIONS`` of them, Satterthwaite's approximation), which brings
the rate back to ``alpha``; L∞ takes the larger of its union bound and the simulated
quantile.

For Wasserstein, B is simulated at the reference CDF of every bin edge
(``DEFAULT_SIMULATIONS`` bridges, fixed seed, all columns at once) and read the way
``wasserstein.binned`` reads the bins. Where each bin's mass sits at its mean (bin means
known), W1 of the two point-mass distributions tends to
``Σ_b |B(F_b)| (μ_next − μ_b) + Σ_b sqrt(p_b) σ_b |Z_b|``: the CDF gap after bin b spans the
distance to the next bin's mean, and the two sides' means of bin b differ by a normal
amount with the spread σ_b of the values in the bin (from the profile's row sample, else
``(μ − a)(b − μ) / 3`` for a bin [a, b] with mean μ). The quantile depends on the
reference alone, so it is simulated once per profile and cached; the floor is
``quantile / sqrt(n_eff) / σ``.

>>> import math, numpy as np
>>> from scipy.stats import chi2
>>> ref = np.full((1, 10), 10_000)  # 10 equally likely categories, 100k reference rows
>>> floor = multinomial_floor("jensen_shannon", ref, [100_000], [5000], 0.001)[0]
>>> n_eff = 100_000 * 5000 / 105_000  # 500 rows a bin: the χ² limit as it is
>>> bool(np.isclose(floor, math.sqrt(chi2.isf(0.001, 9) / (8 * math.log(2) * n_eff))))
True
>>> round(float(floor), 4)
0.0325

References: Lin, J. (1991). Divergence measures based on the Shannon entropy. IEEE
Transactions on Information Theory 37(1), 145–151 (JS as a χ² statistic). Read, T. R. C. and
Cressie, N. A. C. (1988). Goodness-of-fit statistics for discrete multivariate data,
ch. 4. Springer (the power-divergence family; PSI and Hellinger are members).
Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance
components. Biometrics Bulletin 2(6), 110–114. del Barrio, E., Giné, E. and Matrán, C.
(1999). Central limit theorems for the Wasserstein distance between the empirical and the
true distributions. Annals of Probability 27(2), 1009–1071 (``sqrt(n) W1 → ∫ |B(F(x))| dx``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import chdtri, ndtr, ndtri

from detectors import hellinger, jensen_shannon, linf, psi
from detectors.bridge_floor import (
    DEFAULT_SIMULATIONS,
    WINDOW_SIMULATIONS,
    BridgeLaw,
    bridge_law,
    bridge_quantile,
    wasserstein_floor,
    wasserstein_null,
    wasserstein_quantile,
)
from detectors.null_laws import (
    DEFAULT_SEED,
    TailQuantiles,
    cache_get,
    cache_put,
    check_alpha,
    clear_cache,
    effective_rows,
)
from detectors.stats import CategoricalBins

# The Wasserstein floor is in detectors/bridge_floor.py and what both share in
# detectors/null_laws.py; every floor is read from here.
__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_MULTINOMIAL_SIMULATIONS",
    "DEFAULT_SEED",
    "DEFAULT_SIMULATIONS",
    "DENSE_ROWS",
    "FLOOR_TESTS",
    "MULTINOMIAL_TESTS",
    "WINDOW_SIMULATIONS",
    "BridgeLaw",
    "TailQuantiles",
    "bridge_law",
    "bridge_quantile",
    "clear_cache",
    "effective_rows",
    "multinomial_floor",
    "multinomial_null",
    "wasserstein_floor",
    "wasserstein_null",
    "wasserstein_quantile",
]

# The distance tests that have a floor (the p-value tests need none).
FLOOR_TESTS = frozenset({"psi", "jensen_shannon", "hellinger", "linf", "wasserstein"})
MULTINOMIAL_TESTS = frozenset({"psi", "jensen_shannon", "hellinger", "linf"})

DEFAULT_EPSILON = psi.DEFAULT_EPSILON
# Draws per column where the χ² limit needs its finite-sample correction (moments only).
DEFAULT_MULTINOMIAL_SIMULATIONS = 1000
# Expected rows per bin, on the smaller side, from which the χ² limit is used as it is.
DENSE_ROWS = 50.0
# Window sizes from which sparse floors are simulated on a grid and interpolated.
_GRID_FROM = 64.0
# Reference-side draws kept for the grid sizes of one column (``_reference_draws``).
_DRAWS_KEPT = 32
_draws: dict[tuple[object, ...], tuple[np.ndarray, Mapping[str, Any]]] = {}
_draws_lock = threading.Lock()
_CHI2_SCALE = {"jensen_shannon": 8.0 * math.log(2.0), "hellinger": 8.0}
_STATISTICS = {
    "jensen_shannon": jensen_shannon.binned,
    "hellinger": hellinger.binned,
    "linf": linf.binned,
}


def multinomial_floor(
    test: str,
    ref: np.ndarray,
    n_ref: Sequence[float] | np.ndarray,
    n_cur: Sequence[float] | np.ndarray,
    alpha: float,
    *,
    epsilon: float = DEFAULT_EPSILON,
    simulations: int = DEFAULT_MULTINOMIAL_SIMULATIONS,
    seed: int = DEFAULT_SEED,
    reuse: bool = True,
) -> np.ndarray:
    """The ``1 − alpha`` no-change quantile of PSI, Jensen–Shannon, Hellinger or L∞, per
    row of the (columns × bins) reference counts ``ref``, for ``n_ref`` reference and
    ``n_cur`` window values; NaN where a side is empty.

    Where every bin with reference mass expects ``DENSE_ROWS`` rows on the smaller side
    the χ² limit is used as it is; elsewhere it is corrected for the sample size (see the
    module docstring). ``epsilon`` is PSI's share for empty bins. ``reuse``: the same
    reference counts will come again (a profile's), so simulations are cached and shared
    by windows of similar sizes; else each is run once for the sizes given.
    """
    floor, _ = multinomial_null(
        test,
        ref,
        n_ref,
        n_cur,
        alpha,
        epsilon=epsilon,
        simulations=simulations,
        seed=seed,
        reuse=reuse,
    )
    return floor


def multinomial_null(
    test: str,
    ref: np.ndarray,
    n_ref: Sequence[float] | np.ndarray,
    n_cur: Sequence[float] | np.ndarray,
    alpha: float,
    *,
    epsilon: float = DEFAULT_EPSILON,
    simulations: int = DEFAULT_MULTINOMIAL_SIMULATIONS,
    seed: int = DEFAULT_SEED,
    reuse: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``multinomial_floor`` and, per column, the no-change mean of the squared statistic
    (of PSI itself: PSI is already on a squared scale), the bias that
    ``detectors.effects`` removes from the estimate."""
    if test not in MULTINOMIAL_TESTS:
        raise ValueError(f"no multinomial floor for {test!r}; one of {sorted(MULTINOMIAL_TESTS)}")
    check_alpha(alpha)
    ref = np.asarray(ref, dtype=np.float64)
    m = _per_column(n_ref, len(ref))
    n = _per_column(n_cur, len(ref))
    n_eff = effective_rows(m, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ref / ref.sum(axis=1, keepdims=True)
    p = np.where(np.isfinite(p), p, 0.0)
    smallest = np.where(p > 0, p, np.inf).min(axis=1, initial=np.inf)
    with np.errstate(invalid="ignore"):
        dense = np.minimum(m, n) * smallest >= DENSE_ROWS
    dof = (p > 0).sum(axis=1) - 1
    if test == "linf":
        floor = _linf_normal(p, n_eff, alpha)
        square = _linf_normal(p, n_eff, 0.5) ** 2  # about the null median, squared
    else:
        crit = np.where(dof > 0, chdtri(np.maximum(dof, 1), alpha), 0.0)  # χ² isf
        floor = _from_chi2(test, crit, n_eff)
        square = _mean_square_from_chi2(test, np.maximum(dof, 0).astype(np.float64), n_eff)
    sparse = np.flatnonzero(~dense & np.isfinite(n_eff))
    for i in sparse:
        floor[i], square[i] = _sparse_floor(
            test, p[i], m[i], n[i], alpha, epsilon, simulations, seed, reuse=reuse
        )
    return floor, square


def _mean_square_from_chi2(test: str, mean: np.ndarray, n_eff: np.ndarray) -> np.ndarray:
    """E[statistic²] (E[PSI] for PSI) of a statistic whose χ²-scaled value has ``mean``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if test == "psi":
            return mean / n_eff
        return mean / (_CHI2_SCALE[test] * n_eff)


def _per_column(x: Sequence[float] | np.ndarray | float, k: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.full(k, float(x)) if x.ndim == 0 else x


def _from_chi2(test: str, value: np.ndarray, n_eff: np.ndarray) -> np.ndarray:
    """The statistic whose χ²-scaled value (module docstring) is ``value``."""
    if test == "psi":
        return value / n_eff
    return np.sqrt(value / (_CHI2_SCALE[test] * n_eff))


def _to_chi2(test: str, statistic: np.ndarray, n_eff: float) -> np.ndarray:
    if test == "psi":
        return statistic * n_eff
    return _CHI2_SCALE[test] * n_eff * statistic**2


def _sparse_floor(
    test: str,
    p: np.ndarray,
    m: float,
    n: float,
    alpha: float,
    epsilon: float,
    simulations: int,
    seed: int,
    *,
    reuse: bool,
) -> tuple[float, float]:
    """The floor (and null mean square) where some bins expect few rows, from the
    statistic simulated under no change (multinomial counts from the reference shares,
    both sides).

    With ``reuse``, windows of similar sizes share simulations: the floor is simulated at
    the two window sizes of a grid of ratio 2^(1/16) around ``n`` (each cached) and
    interpolated in log n between them.
    """
    shares = np.sort(p[p > 0])
    args = (test, shares, max(round(m), 1))
    rest = (epsilon, simulations, seed)
    step = 16.0 * math.log2(n) if reuse and n >= _GRID_FROM else math.nan
    if not math.isfinite(step) or step == math.floor(step):
        law = _simulated_law(*args, max(round(n), 1), *rest, remember=reuse)
        return law.at(alpha), law.mean_square
    k = math.floor(step)
    lo, hi = round(2.0 ** (k / 16.0)), round(2.0 ** ((k + 1) / 16.0))
    law_lo = _simulated_law(*args, lo, *rest)
    law_hi = _simulated_law(*args, hi, *rest)
    where = min(max((math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo)), 0.0), 1.0)
    f_lo, f_hi = law_lo.at(alpha), law_hi.at(alpha)
    s_lo, s_hi = law_lo.mean_square, law_hi.mean_square
    return f_lo + (f_hi - f_lo) * where, s_lo + (s_hi - s_lo) * where


@dataclass(frozen=True)
class _MultinomialLaw:
    """A simulated no-change law of one statistic at one pair of sample sizes: a scaled
    χ², ``scale · χ²(dof)``, with the simulated mean and variance on the statistic's χ²
    scale (Satterthwaite), or for L∞ its tail quantiles and the union bound's inputs."""

    test: str
    n_eff: float
    scale: float
    dof: float
    mean_square: float
    largest: float
    tail: TailQuantiles | None = None
    shares: np.ndarray | None = None

    def at(self, alpha: float) -> float:
        check_alpha(alpha)
        if self.test == "linf":
            assert self.tail is not None and self.shares is not None
            normal = _linf_normal(self.shares[None, :], np.array([self.n_eff]), alpha)[0]
            return max(float(normal), float(self.tail.at(alpha)[0]))
        if not self.dof > 0:
            return self.largest
        value = np.array(self.scale * chdtri(self.dof, alpha))
        return float(_from_chi2(self.test, value, np.array(self.n_eff)))


def _simulated_law(
    test: str,
    shares: np.ndarray,
    m: int,
    n: int,
    epsilon: float,
    simulations: int,
    seed: int,
    *,
    remember: bool = True,
) -> _MultinomialLaw:
    """One simulated no-change law, cached per shares and sizes when ``remember``."""
    key = ("multinomial", test, float(epsilon), simulations, seed, m, n, shares.tobytes())
    hit = cache_get(key)
    if isinstance(hit, _MultinomialLaw):
        return hit
    pvals = shares / shares.sum()
    ref_draws, rng = _reference_draws(pvals, m, simulations, seed, remember=remember)
    bins = CategoricalBins(
        ("",) * simulations, ref_draws, rng.multinomial(n, pvals, size=simulations)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        if test == "psi":
            stat = psi.binned(bins, epsilon=epsilon).statistic
        else:
            stat = _STATISTICS[test](bins).statistic
    stat = stat[np.isfinite(stat)]
    n_eff = m * n / (m + n)
    largest = float(np.max(stat, initial=0.0))
    if test == "linf":
        law = _MultinomialLaw(
            test,
            n_eff,
            math.nan,
            math.nan,
            float(np.mean(stat**2)),
            largest,
            tail=TailQuantiles.of(stat[:, None]),
            shares=pvals,
        )
    else:
        # A scaled χ² with the simulated mean and variance (Satterthwaite).
        t = _to_chi2(test, stat, n_eff)
        mean, var = float(t.mean()), float(t.var())
        square = float(_mean_square_from_chi2(test, np.array(mean), np.array(n_eff)))
        if not var > 0:
            law = _MultinomialLaw(test, n_eff, math.nan, 0.0, square, largest)
        else:
            scale, dof = var / (2.0 * mean), 2.0 * mean**2 / var
            law = _MultinomialLaw(test, n_eff, scale, dof, square, largest)
    if remember:
        cache_put(key, law)
    return law


def _reference_draws(
    pvals: np.ndarray, m: int, simulations: int, seed: int, *, remember: bool
) -> tuple[np.ndarray, np.random.Generator]:
    """The reference side's multinomial draws of a simulation, and the generator where
    they leave it (the window side is drawn next). They do not depend on the window's
    size, so every grid size of one column shares them: kept (counts and generator
    state) per shares, reference rows and seed, the window side continues from the same
    state, and each law is the one a fresh generator would give."""
    key = ("multinomial-reference", simulations, seed, m, pvals.tobytes())
    hit = _draws.get(key) if remember else None
    rng = np.random.default_rng(seed)
    if hit is not None:
        counts, state = hit
        rng.bit_generator.state = state
        return counts.astype(np.int64), rng
    counts = rng.multinomial(m, pvals, size=simulations)
    if remember:
        with _draws_lock:
            while len(_draws) >= _DRAWS_KEPT:
                _draws.pop(next(iter(_draws)))
            small = np.int32 if m < 2**31 else np.int64
            _draws[key] = (counts.astype(small), rng.bit_generator.state)
    return counts, rng


def _linf_normal(p: np.ndarray, n_eff: np.ndarray, alpha: float) -> np.ndarray:
    """t with ``Σ_i 2 Φ̄(t sqrt(n_eff) / σ_i) = alpha``, ``σ_i² = p_i (1 − p_i)``: by the union
    bound, the largest of the bins' normal deviations exceeds it with probability ≤ alpha."""
    sigma = np.sqrt(p * (1.0 - p))
    k = np.maximum((sigma > 0).sum(axis=1), 1)
    lo = np.zeros(len(p))
    # Each bin alone below alpha / k at this z, so the sum is below alpha.
    hi = sigma.max(axis=1, initial=0.0) * ndtri(1.0 - alpha / (2.0 * k))
    safe = np.where(sigma > 0, sigma, 1.0)
    for _ in range(60):  # bisection, every column at once
        z = (lo + hi) / 2.0
        tail = np.where(sigma > 0, 2.0 * ndtr(-z[:, None] / safe), 0.0).sum(axis=1)
        above = tail > alpha
        lo, hi = np.where(above, z, lo), np.where(above, hi, z)
    return hi / np.sqrt(n_eff)
