"""Realized model-quality metrics and their confidence intervals, from raw arrays or from
the sufficient statistics a window keeps.

The point values follow scikit-learn's definitions exactly (``roc_auc_score`` with ties
counted half, ``average_precision_score`` as the step-wise sum Σ (R_n − R_{n−1}) P_n,
``log_loss`` with probabilities clipped to [eps, 1 − eps], ``brier_score_loss``,
``mean_absolute_percentage_error`` with |y| floored at eps), so a window's figures can be
checked against it. The intervals are the usual large-sample ones, at 95 % by default:

- proportions (accuracy, precision, recall): Wilson score interval;
- F1 = 2TP / (2TP + FP + FN), a ratio of sums: delta method;
- means of per-row losses (log loss, Brier, MAE, MAPE): mean ± z·sd/√n; RMSE: the
  interval of the mean squared error, square-rooted;
- ROC AUC: Hanley and McNeil's (1982) standard error;
- average precision: the logit interval of Boyd, Eng and Page (2013);
- expected calibration error: a parametric bootstrap of each bin's observed frequency.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054
EPS = float(np.finfo(np.float64).eps)


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (NaN bounds when ``n`` is 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(total: float, total_sq: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Normal interval of a mean from the sum and the sum of squares of its terms."""
    if n <= 1:
        return math.nan, math.nan
    mean = total / n
    var = max(total_sq / n - mean * mean, 0.0) * n / (n - 1)
    half = z * math.sqrt(var / n)
    return mean - half, mean + half


def ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def f1_with_interval(tp: float, fp: float, fn: float, n: float, z: float = Z95) -> tuple:
    """F1 and its delta-method interval: per row a = 2·[TP], b = 2·[TP] + [FP] + [FN]."""
    den = 2 * tp + fp + fn
    if den <= 0 or n <= 1:
        return math.nan, math.nan, math.nan
    f1 = 2 * tp / den
    # residuals a - F1·b: TP rows 2 - 2·F1, FP and FN rows -F1, TN rows 0
    ss = tp * (2 - 2 * f1) ** 2 + (fp + fn) * f1**2
    var = ss / (n - 1) / n / (den / n) ** 2
    half = z * math.sqrt(var)
    return f1, max(0.0, f1 - half), min(1.0, f1 + half)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties count half); NaN for one class."""
    y = np.asarray(y, dtype=bool)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score, dtype=np.float64)[order]
    # average ranks over ties
    first = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(s)]
    avg_rank = (starts + ends + 1) / 2.0
    ranks = avg_rank[group]
    rank_sum = float(ranks[y[order]].sum())
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def auc_interval(auc: float, pos: float, neg: float, z: float = Z95) -> tuple[float, float]:
    """Hanley–McNeil (1982) interval of a ROC AUC measured on ``pos`` and ``neg`` rows."""
    if not math.isfinite(auc) or pos < 1 or neg < 1:
        return math.nan, math.nan
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (pos - 1) * (q1 - auc * auc) + (neg - 1) * (q2 - auc * auc)) / (
        pos * neg
    )
    half = z * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision, scikit-learn's step-wise definition; NaN without positives."""
    y = np.asarray(y, dtype=bool)
    pos = int(y.sum())
    if pos == 0:
        return math.nan
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s = np.asarray(score, dtype=np.float64)[order]
    yy = y[order]
    # one point per distinct threshold (the last row of each tie group)
    last = np.r_[s[1:] != s[:-1], True]
    tps = np.cumsum(yy)[last].astype(np.float64)
    fps = np.cumsum(~yy)[last].astype(np.float64)
    precision = tps / (tps + fps)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ap_interval(ap: float, pos: float, z: float = Z95) -> tuple[float, float]:
    """Logit interval of average precision (Boyd, Eng and Page, 2013)."""
    if not math.isfinite(ap) or pos < 1:
        return math.nan, math.nan
    if ap <= 0.0 or ap >= 1.0:
        return ap, ap
    logit = math.log(ap / (1 - ap))
    half = z / math.sqrt(pos * ap * (1 - ap))
    return 1 / (1 + math.exp(-(logit - half))), 1 / (1 + math.exp(-(logit + half)))


def ece_from_bins(
    count: np.ndarray, conf_sum: np.ndarray, hit_sum: np.ndarray
) -> tuple[float, float, float]:
    """Expected calibration error Σ_b (n_b / n)·|hit_b − conf_b| and a 95 % bootstrap
    interval (each bin's hits redrawn as Binomial(n_b, hit_b); fixed seed, 400 draws)."""
    n = float(count.sum())
    if n <= 0:
        return math.nan, math.nan, math.nan
    nz = count > 0
    c = count[nz].astype(np.float64)
    conf = conf_sum[nz] / c
    hit = hit_sum[nz] / c
    ece = float(np.sum(c / n * np.abs(hit - conf)))
    rng = np.random.default_rng(0)
    draws = rng.binomial(c.astype(np.int64), np.clip(hit, 0.0, 1.0), size=(400, len(c))) / c
    boot = np.sum(c / n * np.abs(draws - conf), axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return ece, float(min(lo, ece)), float(max(hi, ece))


def ece_bins(
    confidence: np.ndarray, hit: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin count, confidence sum and hit sum over ``bins`` equal-width bins of [0, 1],
    binned as ``sklearn.calibration.calibration_curve`` bins them (right-closed)."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    hit_sum = np.bincount(idx, weights=np.asarray(hit, dtype=np.float64), minlength=bins)
    return count, conf_sum, hit_sum
