"""Two-sample Kolmogorov–Smirnov test, on every numeric column at once.

Tests whether the reference and the current window come from the same continuous
distribution. The statistic is the largest distance between the two empirical CDFs,

    D = sup_x |F_ref(x) − F_cur(x)|,

and the two-sided p-value is Smirnov's asymptotic one, computed as
``scipy.stats.ks_2samp(x, y, method="asymp")`` does: ``kstwo.sf(D, round(m·n / (m + n)))``.

Binned mode reads both CDFs at the reference's bin edges from one cumulative sum over the
(columns × bins) count matrices. The edges are points where the exact CDFs are known, so
the binned D is a lower bound of the exact D; inside a bin (a, b] each CDF is only known
to lie between its values at a and b, so the exact D is at most

    U = max over bins of max(F_ref(b) − F_cur(a), F_cur(b) − F_ref(a)),

and ``error_bound = U − D``: the exact statistic lies in ``[statistic, statistic +
error_bound]``. A bin with no float strictly between its edges holds one value and adds
only its edge's gap to U (the profile makes such a bin of a reference minimum that holds
at least one bin's share of the rows). The binned p-value, from the smaller D, is an upper
bound of the exact one. When every bin holds a single value (a discrete column whose
values are all bin edges) the CDFs change only at the edges and binned equals exact,
though the bound, which cannot know that, stays positive.

The binned p-value is ``kstwo.sf(D, en)``, ``en = round(m·n / (m + n))``, up to
``en = BINNED_LIMIT_ROWS`` (10 000); above, it is Kolmogorov's limiting distribution with
Stephens' finite-sample argument, ``kstwobign.sf(D · (sqrt(en) + 0.12 + 0.11 / sqrt(en)))``:
``kstwo`` costs time linear in ``en`` (about 10 ms per column at 10 000, 40 ms at 50 000,
measured), the limit microseconds for every column at once. At the cutoff the two differ
by at most 1.4e-3 in p and 1.5% relative for p in [1e-6, 0.1], less above it; the binned
statistic's own error bound moves the p-value far more. Exact mode always uses ``kstwo``,
as scipy does.

Exact mode takes the raw values as (columns × rows) float arrays with NaN for missing
values; non-finite values are left out like the window sketch leaves them out of its
histograms. A column with no values on either side gets NaN.

Parameters of ``binned``: ``bins`` (NumericBins). Of ``exact``: ``ref``, ``cur``.

>>> import numpy as np
>>> res = exact(np.array([[1.0, 2, 3, 4]]), np.array([[3.0, 4, 5, 6, np.nan]]))
>>> res.statistic.tolist()
[0.5]
>>> from scipy.stats import ks_2samp
>>> bool(np.isclose(res.p_value[0], ks_2samp([1, 2, 3, 4], [3, 4, 5, 6], method="asymp").pvalue))
True

References: Smirnov, N. (1948). Table for estimating the goodness of fit of empirical
distributions. Annals of Mathematical Statistics 19(2), 279–281. Hodges, J. L. (1958).
The significance probability of the Smirnov two-sample test. Arkiv för Matematik 3,
469–486. Simard, R. and L'Ecuyer, P. (2011). Computing the two-sided Kolmogorov–Smirnov
distribution. Journal of Statistical Software 39(11) (what ``kstwo`` evaluates; for
windows of a few thousand rows it costs milliseconds per column, the bulk of this test's
time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.kolmogorov import kstwo_sf, kstwobign_sf
from detectors.stats import NumericBins, Stats

# Binned mode: above this effective sample size the p-value is the limiting distribution's.
BINNED_LIMIT_ROWS = 10_000


def binned(bins: NumericBins) -> Stats:
    """D at the bin edges, its p-value, and the bound U − D on the exact D."""
    if not isinstance(bins, NumericBins):
        raise TypeError(f"the KS test compares numeric bins, not {type(bins).__name__}")
    ref = bins.ref.astype(np.float64)
    cur = bins.cur.astype(np.float64)
    m, n = ref.sum(axis=1), cur.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # CDFs at each bin's right edge b, and at its left edge a (the previous bin's b).
        ref_b = np.cumsum(ref, axis=1) / m[:, None]
        cur_b = np.cumsum(cur, axis=1) / n[:, None]
        ref_a = ref_b - ref / m[:, None]
        cur_a = cur_b - cur / n[:, None]
    gap_b = np.abs(ref_b - cur_b)
    d = gap_b.max(axis=1, initial=0.0)
    inside = np.maximum(ref_b - cur_a, cur_b - ref_a)
    upper = np.where(_single_valued(bins), gap_b, inside).max(axis=1, initial=0.0)
    untestable = (m == 0) | (n == 0)
    d = np.where(untestable, np.nan, d)
    bound = np.where(untestable, np.nan, np.maximum(upper - d, 0.0))
    return Stats(
        statistic=d, p_value=p_value(d, m, n, limit_above=BINNED_LIMIT_ROWS), error_bound=bound
    )


def _single_valued(bins: NumericBins) -> np.ndarray:
    """Bins (a, b] with no float between a and b: they hold the value b alone (the bin of
    a reference minimum heavy enough to be a quantile, padding)."""
    rows = len(bins.edges)
    left = np.concatenate([np.full((rows, 1), -np.inf), bins.edges], axis=1)
    right = np.concatenate([bins.edges, np.full((rows, 1), np.inf)], axis=1)
    return right == np.nextafter(left, np.inf)


def exact(ref: np.ndarray, cur: np.ndarray) -> Stats:
    """D on the raw values, equal to ``scipy.stats.ks_2samp(x, y, method="asymp")``."""
    pool = Pooled.of(ref, cur)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = pool.ref_rank / pool.m[:, None] - pool.cur_rank / pool.n[:, None]
    # Read the CDFs only after the last of tied values, where both are complete.
    d = np.max(np.abs(diff), axis=1, where=pool.last_of_tie, initial=0.0)
    d = np.where((pool.m == 0) | (pool.n == 0), np.nan, d)
    return Stats(statistic=d, p_value=p_value(d, pool.m, pool.n))


def p_value(
    d: np.ndarray, m: np.ndarray, n: np.ndarray, *, limit_above: float | None = None
) -> np.ndarray:
    """Two-sided asymptotic p-value of D for samples of sizes m and n, as scipy's
    ``ks_2samp(method="asymp")`` computes it: ``kstwo.sf(D, en)``. Where ``en`` exceeds
    ``limit_above``, Kolmogorov's limiting distribution with Stephens' correction instead
    (see the module docstring)."""
    m = np.asarray(m, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    ok = np.isfinite(d) & (m > 0) & (n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        en = np.round(m * n / (m + n))
    limit = ok & (en > limit_above) if limit_above is not None else np.zeros_like(ok)
    finite = ok & ~limit
    p = np.full(np.shape(d), np.nan)
    p[finite] = np.clip(kstwo_sf(d[finite], en[finite]), 0.0, 1.0)
    root = np.sqrt(en[limit])
    p[limit] = np.clip(kstwobign_sf(d[limit] * (root + 0.12 + 0.11 / root)), 0.0, 1.0)
    return p


@dataclass(frozen=True)
class Pooled:
    """Both samples of every column, pooled and sorted in one (columns × rows) array.

    The exact rank and CDF tests (KS, Cramér–von Mises, Wasserstein) read everything they
    need from it: ``ref_rank[i, j]`` is how many reference values are at or before
    position j of column i's sorted pool, ``cur_rank`` the same for the current values.
    Missing values sort last and are marked invalid.
    """

    values: np.ndarray
    from_ref: np.ndarray
    valid: np.ndarray
    ref_rank: np.ndarray
    cur_rank: np.ndarray
    m: np.ndarray
    n: np.ndarray

    @classmethod
    def of(cls, ref: np.ndarray, cur: np.ndarray) -> Pooled:
        ref, cur = _as_rows(ref), _as_rows(cur)
        if ref.shape[0] != cur.shape[0]:
            raise ValueError(
                f"ref has {ref.shape[0]} columns and cur {cur.shape[0]}; one row per column"
            )
        both = np.concatenate([ref, cur], axis=1)
        from_ref = np.zeros(both.shape, dtype=bool)
        from_ref[:, : ref.shape[1]] = True
        order = np.argsort(both, axis=1, kind="stable")  # NaN last
        values = np.take_along_axis(both, order, axis=1)
        from_ref = np.take_along_axis(from_ref, order, axis=1)
        valid = ~np.isnan(values)
        ref_rank = np.cumsum(from_ref & valid, axis=1)
        cur_rank = np.cumsum(~from_ref & valid, axis=1)
        return cls(
            values=values,
            from_ref=from_ref,
            valid=valid,
            ref_rank=ref_rank,
            cur_rank=cur_rank,
            m=ref_rank[:, -1] if both.shape[1] else np.zeros(len(both), dtype=np.int64),
            n=cur_rank[:, -1] if both.shape[1] else np.zeros(len(both), dtype=np.int64),
        )

    @property
    def last_of_tie(self) -> np.ndarray:
        """True at the last position of each run of equal valid values."""
        nxt = np.concatenate([self.values[:, 1:], np.full((len(self.values), 1), np.nan)], axis=1)
        return self.valid & (self.values != nxt)


def _as_rows(x: np.ndarray) -> np.ndarray:
    """(columns × rows) float64 with NaN for missing and for non-finite values."""
    x = np.array(x, dtype=np.float64, ndmin=2)
    if x.ndim != 2:
        raise ValueError(f"expected a (columns × rows) array, got shape {x.shape}")
    x[~np.isfinite(x)] = np.nan
    return x
