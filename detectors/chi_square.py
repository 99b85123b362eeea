"""Chi-square test of homogeneity, on every categorical column at once.

Tests whether the reference and the current window draw their categories from the same
distribution. Each column gives a 2 × K contingency table (reference counts, current
counts) over its categories; categories empty on both sides are dropped, and with
E = row total × column total / grand total

    χ² = Σ (O − E)² / E,    dof = K − 1,    p = P(χ²_dof ≥ χ²).

This is ``scipy.stats.chi2_contingency(table)`` with its default Yates continuity
correction, which applies when dof = 1 (two categories): each observed count moves by
min(0.5, |E − O|) towards E. ``correction=False`` turns it off. A table with a single
category has dof 0: statistic 0, p-value 1, as scipy reports it.

Categories the reference never had are not dropped: in binned mode they sit in the last
("unseen") column of ``CategoricalBins``, zero in the reference and counted in the window,
so a new category that takes a large share of the window gives a large statistic and a
tiny p-value. The reference's rarer categories share the "other" column; binned equals
exact when the vocabulary covers every category.

Exact mode takes, per column, the raw values of both sides as 1-D object arrays of
category strings (None or NaN for missing values, as the profile's sample and the window's
reservoir hold them), and counts them over the union of the column's categories in one
pass over all columns (``category_counts``). An empty side gives NaN.

>>> import numpy as np
>>> ref = [np.array(["a", "a", "b", "b", None], dtype=object)]
>>> cur = [np.array(["a", "b", "c", "c", "c"], dtype=object)]
>>> res = exact(ref, cur)
>>> from scipy.stats import chi2_contingency
>>> want = chi2_contingency([[2, 2, 0], [1, 1, 3]])
>>> np.allclose([res.statistic[0], res.p_value[0]], [want.statistic, want.pvalue])
True

Reference: Pearson, K. (1900). On the criterion that a given system of deviations from the
probable in the case of a correlated system of variables is such that it can be reasonably
supposed to have arisen from random sampling. Philosophical Magazine 50(302), 157–175.
Yates, F. (1934). Contingency tables involving small numbers and the χ² test. Supplement
to the Journal of the Royal Statistical Society 1(2), 217–235.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import chdtrc

from detectors.missing import isna_objects
from detectors.stats import CategoricalBins, Stats


def binned(bins: CategoricalBins, *, correction: bool = True) -> Stats:
    """χ² and p-value of each column's (reference, current) table of category counts."""
    if not isinstance(bins, CategoricalBins):
        raise TypeError(f"the chi-square test compares categorical bins, not {type(bins).__name__}")
    return homogeneity(bins.ref, bins.cur, correction=correction)


def exact(
    ref: Sequence[np.ndarray], cur: Sequence[np.ndarray], *, correction: bool = True
) -> Stats:
    """χ² on the raw categories, equal to ``scipy.stats.chi2_contingency``."""
    ref_counts, cur_counts = category_counts(ref, cur)
    return homogeneity(ref_counts, cur_counts, correction=correction)


def homogeneity(ref: np.ndarray, cur: np.ndarray, *, correction: bool = True) -> Stats:
    """The test on (columns × categories) count matrices of both sides."""
    observed = np.stack([ref, cur], axis=1).astype(np.float64)  # columns × 2 × K
    row = observed.sum(axis=2)
    col = observed.sum(axis=1)
    total = row.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = row[:, :, None] * col[:, None, :] / total[:, None, None]
    present = col > 0
    dof = present.sum(axis=1) - 1
    if correction:
        diff = expected - observed
        yates = observed + np.sign(diff) * np.minimum(0.5, np.abs(diff))
        observed = np.where((dof == 1)[:, None, None], yates, observed)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (observed - expected) ** 2 / expected
    statistic = np.where(present[:, None, :], terms, 0.0).sum(axis=(1, 2))
    p = chdtrc(np.maximum(dof, 1), statistic)
    single = dof == 0
    statistic = np.where(single, 0.0, statistic)
    p = np.where(single, 1.0, p)
    empty = (row == 0).any(axis=1)
    return Stats(statistic=np.where(empty, np.nan, statistic), p_value=np.where(empty, np.nan, p))


def category_counts(
    ref: Sequence[np.ndarray], cur: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Count both sides of every column over the union of the column's categories.

    Returns two (columns × K) count matrices, K the most categories of any column, with
    zero padding on the right; missing values (None, NaN) are not counted. One factorize
    over all values of all columns, then one bincount.
    """
    if len(ref) != len(cur):
        raise ValueError(f"ref has {len(ref)} columns and cur {len(cur)}")
    columns = len(ref)
    arrays = [np.asarray(a, dtype=object).ravel() for a in (*ref, *cur)]
    if not arrays:
        return np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1), dtype=np.int64)
    lengths = [len(a) for a in arrays]
    values = np.concatenate(arrays)
    column = np.repeat(np.tile(np.arange(columns), 2), lengths)
    side = np.repeat(np.repeat([0, 1], columns), lengths)
    present = ~isna_objects(values)
    # Codes in order of first occurrence, as pandas.factorize gives them, without pandas.
    items = values[present].tolist()
    lookup = {v: i for i, v in enumerate(dict.fromkeys(items))}
    codes = np.fromiter(map(lookup.__getitem__, items), dtype=np.int64, count=len(items))
    column, side = column[present], side[present]
    # Number each column's categories 0, 1, ... from the sorted (column, category) keys.
    stride = max(len(lookup), 1)
    keys, slot = np.unique(column * stride + codes, return_inverse=True)
    key_column = keys // stride
    slot = slot - np.searchsorted(key_column, np.arange(columns))[column]
    width = max(int(np.bincount(key_column, minlength=columns).max(initial=0)), 1)
    flat = (side * columns + column) * width + slot
    counts = np.bincount(flat, minlength=2 * columns * width).reshape(2, columns, width)
    return counts[0].astype(np.int64), counts[1].astype(np.int64)
