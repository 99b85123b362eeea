"""Classifier two-sample test: can a classifier tell window rows from reference rows?

Lopez-Paz and Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017. Half of each
sample trains a classifier to tell the two apart; on the other half, its scores for window
rows and for reference rows are compared by their AUC. When both samples come from one
distribution, the held-out scores of the two groups are exchangeable whatever the
classifier learnt, so the AUC's null distribution is the Mann–Whitney U's (exact for small
samples without ties, normal approximation with tie correction otherwise; scipy's
``mannwhitneyu``), and the p-value is exact in that sense.

The classifier is small gradient boosting written here on numpy: trees of depth 2 (so a
pair of features can interact, which is what a correlation change needs) on features
binned at their training quantiles, with the logistic loss and second-order leaf values
(Friedman 2001; Chen and Guestrin 2016). Histograms of every feature come from one
``bincount`` per node. No scikit-learn, so the base install stays light.

Trees split one feature at a time, so a correlation change (every marginal unchanged)
is found only if a root split happens to fall on one of the two features. The products of
the ``pairs`` column pairs whose correlation differs most between the two *training*
halves are therefore added as features (standardised by the training rows): chosen without
the held-out rows, they leave the test's null distribution untouched.

Which features separate: held-out permutation importance, the AUC lost when one column's
test values (and so its products) are shuffled (Breiman 2001) — measured on rows the
classifier never saw, so a feature it merely overfitted scores about zero.

Example::

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1000, 4))
    >>> cov = np.eye(4); cov[0, 1] = cov[1, 0] = 0.8
    >>> y = rng.multivariate_normal(np.zeros(4), cov, size=1000)
    >>> r = classifier_test(x, y, seed=0)
    >>> r.p_value < 0.01, int(np.argmax(r.importance)) in (0, 1)
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from detectors.multivariate.backend import Deadline

DEFAULT_TREES = 100
DEFAULT_DEPTH = 2
DEFAULT_BINS = 32
# Products of this many column pairs (largest correlation change) join the features.
DEFAULT_PAIRS = 10


@dataclass(frozen=True)
class ClassifierResult:
    """``statistic`` is the held-out AUC (0.5: indistinguishable), ``threshold`` the AUC
    the test needs to reach for ``p < alpha`` (normal approximation), ``importance`` the
    held-out AUC lost per input column when its values are shuffled."""

    statistic: float
    p_value: float
    threshold: float
    importance: np.ndarray
    test_rows_reference: int
    test_rows_window: int
    trees: int


@dataclass(frozen=True)
class _Tree:
    """A depth-limited tree as arrays: node ``i`` splits on ``feature[i]`` at bin
    ``cut[i]`` (left: code <= cut); children of ``i`` are ``2i+1`` and ``2i+2``; a node
    with ``feature == -1`` is a leaf holding ``value``."""

    feature: np.ndarray
    cut: np.ndarray
    value: np.ndarray

    def predict(self, codes: np.ndarray) -> np.ndarray:
        node = np.zeros(len(codes), dtype=np.intp)
        rows = np.arange(len(codes))
        for _ in range(len(self.feature).bit_length()):
            f = self.feature[node]
            inner = f >= 0
            if not inner.any():
                break
            go_left = codes[rows[inner], f[inner]] <= self.cut[node[inner]]
            node[inner] = 2 * node[inner] + np.where(go_left, 1, 2)
        return self.value[node]


def quantile_codes(train: np.ndarray, bins: int) -> list[np.ndarray]:
    """Per column, the cut points at the training quantiles (unique values)."""
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return [np.unique(np.quantile(train[:, j], qs)) for j in range(train.shape[1])]


def apply_codes(z: np.ndarray, cuts: list[np.ndarray]) -> np.ndarray:
    """Bin codes (uint8 when they fit): code ``c`` means ``cuts[c-1] < value <= cuts[c]``."""
    out = np.empty(z.shape, dtype=np.uint8 if max(map(len, cuts), default=0) < 255 else np.int32)
    for j, c in enumerate(cuts):
        out[:, j] = np.searchsorted(c, z[:, j], side="left")
    return out


def fit_boosting(
    codes: np.ndarray,
    target: np.ndarray,
    *,
    trees: int = DEFAULT_TREES,
    depth: int = DEFAULT_DEPTH,
    learning_rate: float = 0.2,
    l2: float = 1.0,
    min_hessian: float = 5.0,
    deadline: Deadline | None = None,
) -> tuple[float, list[_Tree]]:
    """Gradient-boosted trees for the logistic loss; returns (base score, trees)."""
    n, d = codes.shape
    width = int(codes.max()) + 1 if codes.size else 1
    flat = codes.astype(np.intp) + np.arange(d) * width  # (n × d) histogram slots
    prior = float(np.clip(target.mean(), 1e-6, 1 - 1e-6))
    base = float(np.log(prior / (1 - prior)))
    score = np.full(n, base)
    out: list[_Tree] = []
    nodes = 2 ** (depth + 1) - 1
    for _ in range(trees):
        if deadline is not None:
            deadline.check()
        p = 1.0 / (1.0 + np.exp(-score))
        g, h = p - target, p * (1.0 - p)
        feature = np.full(nodes, -1, dtype=np.intp)
        cut = np.zeros(nodes, dtype=np.intp)
        value = np.zeros(nodes)
        members = {0: np.arange(n)}
        for node in range(nodes):
            rows = members.pop(node, None)
            if rows is None:
                continue
            gs, hs = g[rows].sum(), h[rows].sum()
            value[node] = -learning_rate * gs / (hs + l2)
            if 2 * node + 2 >= nodes or len(rows) < 2:
                continue
            split = _best_split(flat[rows], g[rows], h[rows], d, width, l2, min_hessian)
            if split is None:
                continue
            feature[node], cut[node] = split
            left = codes[rows, split[0]] <= split[1]
            members[2 * node + 1] = rows[left]
            members[2 * node + 2] = rows[~left]
        tree = _Tree(feature, cut, value)
        out.append(tree)
        score += tree.predict(codes)
    return base, out


def _best_split(
    flat: np.ndarray,
    g: np.ndarray,
    h: np.ndarray,
    d: int,
    width: int,
    l2: float,
    min_hessian: float,
) -> tuple[int, int] | None:
    """The (feature, cut) of largest gain, from every feature's histogram at once."""
    size = d * width
    gh = np.bincount(flat.ravel(), weights=np.repeat(g, d), minlength=size).reshape(d, width)
    hh = np.bincount(flat.ravel(), weights=np.repeat(h, d), minlength=size).reshape(d, width)
    gl, hl = np.cumsum(gh, axis=1)[:, :-1], np.cumsum(hh, axis=1)[:, :-1]
    gt, ht = g.sum(), h.sum()
    gr, hr = gt - gl, ht - hl
    gain = gl**2 / (hl + l2) + gr**2 / (hr + l2) - gt**2 / (ht + l2)
    gain[(hl < min_hessian) | (hr < min_hessian)] = -np.inf
    if not gain.size or not np.isfinite(gain).any():
        return None
    j, c = np.unravel_index(int(np.argmax(gain)), gain.shape)
    return (int(j), int(c)) if gain[j, c] > 0 else None


def predict_boosting(base: float, trees: list[_Tree], codes: np.ndarray) -> np.ndarray:
    score = np.full(len(codes), base)
    for tree in trees:
        score += tree.predict(codes)
    return score


def auc_test(scores_window: np.ndarray, scores_reference: np.ndarray) -> tuple[float, float]:
    """AUC of window over reference scores and its one-sided Mann–Whitney p-value."""
    res = stats.mannwhitneyu(scores_window, scores_reference, alternative="greater")
    auc = float(res.statistic) / (len(scores_window) * len(scores_reference))
    return auc, float(res.pvalue)


def auc_threshold(n_window: int, n_reference: int, alpha: float) -> float:
    """The AUC above which the normal approximation gives ``p < alpha``."""
    sd = np.sqrt((n_window + n_reference + 1) / (12.0 * n_window * n_reference))
    return float(0.5 + stats.norm.isf(alpha) * sd)


def correlation_pairs(x: np.ndarray, y: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The ``k`` column pairs whose correlation differs most between ``x`` and ``y``."""
    d = x.shape[1]
    if k <= 0 or d < 2 or len(x) < 3 or len(y) < 3:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(np.corrcoef(y, rowvar=False) - np.corrcoef(x, rowvar=False))
    iu = np.triu_indices(d, k=1)
    score = np.nan_to_num(diff[iu], nan=0.0)
    order = np.argsort(-score, kind="stable")[:k]
    return [(int(iu[0][i]), int(iu[1][i])) for i in order if score[i] > 0]


def _with_pairs(
    z: np.ndarray, pairs: list[tuple[int, int]], mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """``z`` with one column per pair: the product of the two standardised columns."""
    if not pairs:
        return z
    s = (z - mean) / scale
    a, b = np.array(pairs).T
    return np.concatenate([z, s[:, a] * s[:, b]], axis=1)


def classifier_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    trees: int = DEFAULT_TREES,
    depth: int = DEFAULT_DEPTH,
    bins: int = DEFAULT_BINS,
    learning_rate: float = 0.2,
    test_fraction: float = 0.5,
    pairs: int = DEFAULT_PAIRS,
    alpha: float = 0.05,
    seed: int = 0,
    budget_seconds: float | None = None,
) -> ClassifierResult:
    """Reference rows ``x`` against window rows ``y`` (see the module docstring).

    ``pairs``: products of the column pairs whose correlation differs most between the
    two training halves are added as features (chosen on training rows only, so the
    held-out AUC stays a valid test).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be 2-d with equal columns, got {x.shape} and {y.shape}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    deadline = Deadline(budget_seconds)
    rng = np.random.default_rng(seed)
    xi, yi = rng.permutation(len(x)), rng.permutation(len(y))
    mx, my = round(len(x) * test_fraction), round(len(y) * test_fraction)
    if min(mx, my, len(x) - mx, len(y) - my) < 2:
        raise ValueError(f"too few rows to split: {len(x)} reference and {len(y)} window rows")
    train_x, train_y = x[xi[mx:]], y[yi[my:]]
    train_raw = np.concatenate([train_x, train_y])
    mean = train_raw.mean(0)
    std = train_raw.std(0)
    scale = np.where(std > 0, std, 1.0)
    chosen = correlation_pairs(train_x, train_y, pairs)
    train = _with_pairs(train_raw, chosen, mean, scale)
    target = np.concatenate([np.zeros(len(train_x)), np.ones(len(train_y))])
    cuts = quantile_codes(train, bins)
    base, model = fit_boosting(
        apply_codes(train, cuts),
        target,
        trees=trees,
        depth=depth,
        learning_rate=learning_rate,
        deadline=deadline,
    )
    test_raw = np.concatenate([x[xi[:mx]], y[yi[:my]]])
    s = predict_boosting(base, model, apply_codes(_with_pairs(test_raw, chosen, mean, scale), cuts))
    auc, p_value = auc_test(s[mx:], s[:mx])
    # A feature counts as used when a tree splits on it or on a product it is part of.
    d = x.shape[1]
    used: set[int] = set()
    for f in {int(f) for t in model for f in t.feature if f >= 0}:
        used.update([f] if f < d else chosen[f - d])
    importance = np.zeros(d)
    for j in sorted(used):
        deadline.check()
        shuffled = test_raw.copy()
        shuffled[:, j] = rng.permutation(shuffled[:, j])
        codes = apply_codes(_with_pairs(shuffled, chosen, mean, scale), cuts)
        s_j = predict_boosting(base, model, codes)
        importance[j] = auc - _auc(s_j[mx:], s_j[:mx])
    return ClassifierResult(
        statistic=auc,
        p_value=p_value,
        threshold=auc_threshold(my, mx, alpha),
        importance=importance,
        test_rows_reference=mx,
        test_rows_window=my,
        trees=len(model),
    )


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC by ranks (ties count half), without a p-value."""
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))
