"""Two-sample Cramér–von Mises test, on every numeric column at once.

Tests whether the reference (m values) and the current window (n values) come from the
same continuous distribution. Where KS looks at the largest CDF gap, Cramér–von Mises sums
the squared gaps over the pooled sample, so it reacts to differences spread over the whole
range. With r_i the pooled ranks of the sorted reference values, s_j those of the sorted
current values, N = m + n and k = m·n (Anderson 1962, eq. 9–10):

    U = m Σ_i (r_i − i)² + n Σ_j (s_j − j)²
    T = U / (k·N) − (4k − 1) / (6N)

Ties get average ranks. The p-value is Anderson's: T is standardised with its exact mean
and variance under the null and referred to the limiting distribution of the one-sample
statistic (Csörgő and Faraway 1996, eq. 1.2), whose series is summed until a term drops
below 1e-7. This is what ``scipy.stats.cramervonmises_2samp(x, y,
method="asymptotic")`` computes, and ``exact`` equals it to rounding.

Ties: the rank formula gives the a tied values of one sample consecutive indices i but one
average rank, which adds a(a² − 1)/12 to that sample's sum of squares. On a discrete
column the statistic is therefore far from its null distribution (10 000 against 1 000
draws of the same 5-valued distribution give T ≈ 300, p < 1e-6). Use KS or chi-square on
discrete columns.

Binned mode (``ties=False``, the default) reports the expected exact statistic given the
bin counts, for continuous data. If within each bin the reference and current values are
exchangeable (as they are under the null), every interleaving of a bin's r_k reference and
c_k current values is equally likely; a reference value then has C_{k−1} + X current values
below it, X counting the current values of its bin before it, and averaging over
interleavings gives E[(C_{k−1} + X)²] = C_{k−1}² + c_k C_{k−1} + c_k/2 + c_k(c_k − 1)/3
(C, R: cumulative current and reference counts). Symmetrically for the current values.

Its error bound holds for data without ties: T also equals m·n/N² Σ_z (F_ref(z) −
F_cur(z))² over the pooled values z, and at a value in bin (a, b] the CDF gap lies in
[F_ref(a) − F_cur(b), F_ref(b) − F_cur(a)]. Bounding each squared gap by that interval gives
[T_lo, T_hi], which holds the exact T and every interleaving's T, hence also their
average; ``error_bound = max(T_hi − T, T − T_lo)``. It is a guarantee, not a typical
error: on 100 quantile bins the bound is of the order of the statistic, the error in
ordinary windows a few percent of the bound, and in windows whose values are pushed to one
edge of their bins (the arrangement furthest from the average) about half of it (see
tests/unit/test_binned_bounds.py). On data with ties the bound does not hold.

``ties=True`` instead treats each bin as one tied value: this equals the exact statistic
on a discrete column whose every value is a bin edge, and nothing is claimed otherwise
(``error_bound`` is None). On continuous data it adds the tie term above to every bin,
biasing T upward (for m = 10 000, n = 1 000 and 100 bins by about 0.75, against a null
mean of 1/6), which is why it is not the default.

Exact mode takes (columns × rows) float arrays with NaN for missing values, like
``detectors.ks.exact``. Fewer than two values on either side gives NaN, as scipy requires.

>>> import numpy as np
>>> x = np.array([[0.1, 0.7, 1.3, 2.2, 2.9, 3.4]])
>>> y = np.array([[1.0, 1.9, 4.2, 5.5, 6.1, np.nan]])
>>> res = exact(x, y)
>>> round(float(res.statistic[0]), 6)
0.266667
>>> from scipy.stats import cramervonmises_2samp
>>> ref = cramervonmises_2samp(x[0], y[0, :5], method="asymptotic")
>>> bool(np.isclose(res.p_value[0], ref.pvalue, rtol=1e-12))
True

References: Anderson, T. W. (1962). On the distribution of the two-sample Cramér–von Mises
criterion. Annals of Mathematical Statistics 33(3), 1148–1159. Csörgő, S. and Faraway,
J. J. (1996). The exact and asymptotic distributions of Cramér–von Mises statistics.
Journal of the Royal Statistical Society B 58(1), 221–234.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, kv

from detectors.ks import Pooled
from detectors.stats import NumericBins, Stats


def binned(bins: NumericBins, *, ties: bool = False) -> Stats:
    """T from the bin counts: its expectation for continuous data, or (``ties=True``)
    its value when each bin is one tied value."""
    if not isinstance(bins, NumericBins):
        raise TypeError(
            f"the Cramér–von Mises test compares numeric bins, not {type(bins).__name__}"
        )
    r = bins.ref.astype(np.float64)
    c = bins.cur.astype(np.float64)
    r_below = np.cumsum(r, axis=1) - r  # R_{k−1}: reference values in earlier bins
    c_below = np.cumsum(c, axis=1) - c  # C_{k−1}
    m, n = r.sum(axis=1), c.sum(axis=1)
    if ties:
        ref_sq = r * (c_below + c / 2) ** 2 + r * (r**2 - 1) / 12
        cur_sq = c * (r_below + r / 2) ** 2 + c * (c**2 - 1) / 12
    else:
        ref_sq = r * (c_below**2 + c * c_below + c / 2 + c * (c - 1) / 3)
        cur_sq = c * (r_below**2 + r * r_below + r / 2 + r * (r - 1) / 3)
    u = m * ref_sq.sum(axis=1) + n * cur_sq.sum(axis=1)
    t = _statistic(u, m, n)
    bound = None if ties else _bound(r, c, r_below, c_below, m, n, t)
    return Stats(statistic=t, p_value=p_value(t, m, n), error_bound=bound)


def exact(ref: np.ndarray, cur: np.ndarray) -> Stats:
    """T on the raw values, equal to ``scipy.stats.cramervonmises_2samp(x, y,
    method="asymptotic")``."""
    pool = Pooled.of(ref, cur)
    rank = _average_ranks(pool.values, pool.valid)
    # In pooled order the reference values come in ascending order, so the i of a
    # reference value is its running count; tied values share a rank, so the order
    # among them does not change the sums.
    own = np.where(pool.from_ref, pool.ref_rank, pool.cur_rank)
    sq = np.where(pool.valid, (rank - own) ** 2, 0.0)
    ref_sq = np.where(pool.from_ref, sq, 0.0).sum(axis=1)
    cur_sq = np.where(pool.from_ref, 0.0, sq).sum(axis=1)
    m = pool.m.astype(np.float64)
    n = pool.n.astype(np.float64)
    t = _statistic(m * ref_sq + n * cur_sq, m, n)
    return Stats(statistic=t, p_value=p_value(t, m, n))


def p_value(t: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Anderson's asymptotic p-value of T for samples of sizes m and n."""
    m = np.asarray(m, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    k, big_n = m * n, m + n
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (1 + 1 / big_n) / 6
        var = (big_n + 1) * (4 * k * big_n - 3 * (m**2 + n**2) - 2 * k)
        var = var / (45 * big_n**2 * 4 * k)
        tn = 1 / 6 + (t - mean) / np.sqrt(45 * var)
    p = np.where(np.isnan(tn), np.nan, 1.0)
    # Below 0.003 the limiting CDF is under 1.3e-18: p is 1.
    far = np.isfinite(tn) & (tn >= 0.003)
    p[far] = np.clip(1.0 - limiting_cdf(tn[far]), 0.0, None)
    return p


def limiting_cdf(x: np.ndarray) -> np.ndarray:
    """CDF of the one-sample Cramér–von Mises statistic as n → ∞ (Csörgő and Faraway
    1996, eq. 1.2 and the second line of 1.3), summed term by term until a term drops
    below 1e-7."""
    x = np.asarray(x, dtype=np.float64)
    total = np.zeros_like(x)
    todo = np.ones(x.shape, dtype=bool)
    k = 0
    while todo.any():
        xs = x[todo]
        u = math.exp(gammaln(k + 0.5) - gammaln(k + 1)) / (np.pi**1.5 * np.sqrt(xs))
        y = 4 * k + 1
        q = y**2 / (16 * xs)
        term = u * math.sqrt(y) * np.exp(-q) * kv(0.25, q)
        total[todo] += term
        todo[todo] = np.abs(term) >= 1e-7
        k += 1
    return total


def _statistic(u: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """T from U; NaN where either side has fewer than two values."""
    k, big_n = m * n, m + n
    with np.errstate(invalid="ignore", divide="ignore"):
        t = u / (k * big_n) - (4 * k - 1) / (6 * big_n)
    return np.where((m < 2) | (n < 2), np.nan, t)


def _bound(
    r: np.ndarray,
    c: np.ndarray,
    r_below: np.ndarray,
    c_below: np.ndarray,
    m: np.ndarray,
    n: np.ndarray,
    t: np.ndarray,
) -> np.ndarray:
    """max(T_hi − T, T − T_lo), from the range of the CDF gap inside each bin."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = r_below / m[:, None] - (c_below + c) / n[:, None]
        hi = (r_below + r) / m[:, None] - c_below / n[:, None]
        weight = m * n / (m + n) ** 2
    sq_max = np.maximum(lo**2, hi**2)
    sq_min = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(lo**2, hi**2))
    pooled = r + c
    t_hi = weight * (pooled * sq_max).sum(axis=1)
    t_lo = weight * (pooled * sq_min).sum(axis=1)
    return np.maximum(np.maximum(t_hi - t, t - t_lo), 0.0)


def _average_ranks(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """1-based pooled ranks along each row, ties averaged; sorted rows, invalid last."""
    width = values.shape[1]
    pos = np.broadcast_to(np.arange(width), values.shape)
    prev = np.concatenate([np.full((len(values), 1), np.nan), values[:, :-1]], axis=1)
    nxt = np.concatenate([values[:, 1:], np.full((len(values), 1), np.nan)], axis=1)
    starts = valid & (values != prev)
    ends = valid & (values != nxt)
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, width)[:, ::-1], axis=1)[:, ::-1]
    return (first + last) / 2 + 1
