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

Which features separate: held-out permutation importance, the AUC lost when one column's
test values are shuffled (Breiman 2001) — measured on rows the classifier never saw, so a
feature it merely overfitted scores about zero.

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


def classifier_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    trees: int = DEFAULT_TREES,
    depth: int = DEFAULT_DEPTH,
    bins: int = DEFAULT_BINS,
    learning_rate: float = 0.2,
    test_fraction: float = 0.5,
    alpha: float = 0.05,
    seed: int = 0,
    budget_seconds: float | None = None,
) -> ClassifierResult:
    """Reference rows ``x`` against window rows ``y`` (see the module docstring)."""
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
    train = np.concatenate([x[xi[mx:]], y[yi[my:]]])
    target = np.concatenate([np.zeros(len(x) - mx), np.ones(len(y) - my)])
    cuts = quantile_codes(train, bins)
    base, model = fit_boosting(
        apply_codes(train, cuts),
        target,
        trees=trees,
        depth=depth,
        learning_rate=learning_rate,
        deadline=deadline,
    )
    test_x, test_y = apply_codes(x[xi[:mx]], cuts), apply_codes(y[yi[:my]], cuts)
    sx, sy = predict_boosting(base, model, test_x), predict_boosting(base, model, test_y)
    auc, p_value = auc_test(sy, sx)
    importance = np.zeros(x.shape[1])
    used = {int(f) for t in model for f in t.feature if f >= 0}
    test = np.concatenate([test_x, test_y])
    for j in sorted(used):
        deadline.check()
        shuffled = test.copy()
        shuffled[:, j] = rng.permutation(shuffled[:, j])
        s = predict_boosting(base, model, shuffled)
        importance[j] = auc - _auc(s[mx:], s[:mx])
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
