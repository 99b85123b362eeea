"""Multiple-testing corrections for a set of per-column p-value tests.

Testing 50 features at 5% each flags about two of them in every window of unchanged
data. A correction turns the per-column level into a statement about the whole set:
Bonferroni and Holm (1979) bound the chance of any false flag (family-wise error rate),
Benjamini and Hochberg (1995) bound the expected share of false flags among the flagged
(false discovery rate) and keep more power when several columns really drift.

Holm is the default (``DriftSettings.correction``): alerts and rollbacks act on "some
column drifted", so the error that matters is a false flag anywhere in the window, the
family-wise error. Holm bounds it at alpha under any dependence between the columns, as
Bonferroni does, and flags every column Bonferroni flags and sometimes more (it is
uniformly more powerful), so there is no reason to prefer Bonferroni.

Each correction returns, per column, the *effective* p-value threshold, so the rule a
report shows stays ``drifted = p_value < threshold`` with or without a correction.

>>> import numpy as np
>>> c = benjamini_hochberg(np.array([0.001, 0.008, 0.039, 0.041, 0.6]), 0.05)
>>> c.rejected.tolist()
[True, True, False, False, False]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CORRECTION_METHODS = ("none", "holm", "bonferroni", "benjamini_hochberg")


@dataclass(frozen=True)
class Correction:
    """Per column: the effective p-value threshold and whether the column is flagged
    (``rejected == p_values < thresholds``)."""

    thresholds: np.ndarray
    rejected: np.ndarray


def _levels(p_values: np.ndarray, alpha: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    if np.isnan(p).any():
        raise ValueError("p_values contains NaN: leave untestable columns out of the family")
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), p.shape)
    return p, a


def no_correction(p_values: np.ndarray, alpha: float | np.ndarray) -> Correction:
    """Each column at its own level: ``p < alpha``."""
    p, a = _levels(p_values, alpha)
    return Correction(thresholds=a.copy(), rejected=p < a)


def bonferroni(p_values: np.ndarray, alpha: float | np.ndarray) -> Correction:
    """Flag ``p < alpha / m`` for a family of ``m`` tests: P(any false flag) <= alpha."""
    p, a = _levels(p_values, alpha)
    m = max(len(p), 1)
    thresholds = a / m
    return Correction(thresholds=thresholds, rejected=p < thresholds)


def holm_adjusted(p_values: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values, ``max_{j <= i} min(1, (m − j + 1) p_(j))`` in sorted order,
    mapped back to the input order (``statsmodels``' ``multipletests(method="holm")``)."""
    p, _ = _levels(p_values, 0.0)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(p[order] * (m - np.arange(m)), 1.0)
    out = np.empty(m)
    out[order] = np.maximum.accumulate(scaled)
    return out


def holm(p_values: np.ndarray, alpha: float | np.ndarray) -> Correction:
    """Step-down procedure of Holm (1979): with the sorted p-values
    ``p_(1) <= ... <= p_(m)``, flag ``p_(1), ..., p_(j)`` where j is the last rank before the
    first ``p_(r) >= alpha / (m − r + 1)``. P(any false flag) <= alpha under any dependence.

    Equivalently ``p < alpha / (m − j)``, the effective threshold returned (``alpha`` when
    every column is flagged): the flagged passed their steps, which are at most that, and
    the first that failed, like every larger p-value, is at least that. Columns may carry
    different levels ``alpha_i``: each is then flagged when its adjusted p-value is below its
    own level (the loop is over distinct levels only, usually one).
    """
    p, a = _levels(p_values, alpha)
    m = len(p)
    if m == 0:
        return Correction(thresholds=a.copy(), rejected=np.zeros(0, dtype=bool))
    p_sorted = np.sort(p)
    steps = m - np.arange(m)  # m, m − 1, ..., 1
    thresholds = np.empty(m)
    for level in np.unique(a):
        failed = np.flatnonzero(p_sorted >= level / steps)
        j = int(failed[0]) if len(failed) else m
        thresholds[a == level] = level / max(m - j, 1)
    return Correction(thresholds=thresholds, rejected=p < thresholds)


def bh_adjusted(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, ``min_{j >= i} min(1, m p_(j) / j)`` in sorted
    order, mapped back to the input order (what ``scipy.stats.false_discovery_control``
    returns with ``method="bh"``)."""
    p, _ = _levels(p_values, 0.0)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted_sorted, 1.0)
    return out


def benjamini_hochberg(p_values: np.ndarray, alpha: float | np.ndarray) -> Correction:
    """Step-up procedure of Benjamini and Hochberg (1995): with the sorted p-values
    ``p_(1) <= ... <= p_(m)`` and ``k = max{r : p_(r) < r alpha / m}``, flag the k smallest.

    Equivalently ``p < k alpha / m``, the effective threshold returned (``alpha / m`` when
    k = 0, which flags nothing). Columns may carry different levels ``alpha_i``: each is
    then flagged when its adjusted p-value is below its own level, which is the same step-up
    rule run at ``alpha_i``; the loop is over distinct levels only (usually one).
    """
    p, a = _levels(p_values, alpha)
    m = len(p)
    if m == 0:
        return Correction(thresholds=a.copy(), rejected=np.zeros(0, dtype=bool))
    ranks = np.arange(1, m + 1)
    p_sorted = np.sort(p)
    thresholds = np.empty(m)
    for level in np.unique(a):
        below = np.flatnonzero(p_sorted < ranks * level / m)
        k = int(below[-1]) + 1 if len(below) else 0
        thresholds[a == level] = max(k, 1) * level / m
    return Correction(thresholds=thresholds, rejected=p < thresholds)


def correct(p_values: np.ndarray, alpha: float | np.ndarray, method: str) -> Correction:
    """Apply the correction named in ``DriftSettings.correction``."""
    if method == "none":
        return no_correction(p_values, alpha)
    if method == "holm":
        return holm(p_values, alpha)
    if method == "bonferroni":
        return bonferroni(p_values, alpha)
    if method == "benjamini_hochberg":
        return benjamini_hochberg(p_values, alpha)
    raise ValueError(f"unknown correction {method!r}; use one of {CORRECTION_METHODS}")
