"""A small gradient-boosted regression tree ensemble on pre-binned features, in numpy.

What the DLE estimator needs and no more: squared loss, depth-limited trees grown on
per-feature histograms of gradient sums (every split search is one ``bincount``), a
shrinkage rate and a minimum leaf size. Inputs are integer bin codes (``uint8``, a
column per feature), so numeric and categorical features are handled alike; the model is
a handful of arrays that serialise to JSON with the reference profile.

Reference: Friedman, J. H. (2001). Greedy function approximation: a gradient boosting
machine. Annals of Statistics 29(5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class BoostedTrees:
    """Trees stored level by level: for tree t and internal node i (heap order, root 0,
    children 2i+1 and 2i+2) ``feature[t, i]`` and ``split[t, i]`` (go left when the bin
    code is <= split); ``leaf[t, j]`` the value of leaf j; ``base`` the initial value."""

    depth: int
    base: float
    rate: float
    feature: np.ndarray
    split: np.ndarray
    leaf: np.ndarray

    def predict(self, codes: np.ndarray) -> np.ndarray:
        n = codes.shape[0]
        out = np.full(n, self.base)
        rows = np.arange(n)
        internal = 2**self.depth - 1
        for t in range(self.feature.shape[0]):
            node = np.zeros(n, dtype=np.int64)
            for _ in range(self.depth):
                f = self.feature[t, node]
                go_right = codes[rows, f] > self.split[t, node]
                node = 2 * node + 1 + go_right
            out += self.rate * self.leaf[t, node - internal]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "base": self.base,
            "rate": self.rate,
            "feature": self.feature.tolist(),
            "split": self.split.tolist(),
            "leaf": self.leaf.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoostedTrees:
        return cls(
            depth=int(d["depth"]),
            base=float(d["base"]),
            rate=float(d["rate"]),
            feature=np.asarray(d["feature"], dtype=np.int64),
            split=np.asarray(d["split"], dtype=np.int64),
            leaf=np.asarray(d["leaf"], dtype=np.float64),
        )


def fit_boosted_trees(
    codes: np.ndarray,
    target: np.ndarray,
    *,
    bins: int,
    trees: int = 150,
    depth: int = 3,
    rate: float = 0.1,
    min_leaf: int = 20,
) -> BoostedTrees:
    """Fit ``trees`` depth-``depth`` trees to ``target`` by least squares on bin codes
    in ``[0, bins)``."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    y = np.asarray(target, dtype=np.float64)
    n, d = codes.shape
    if n == 0 or d == 0:
        raise ValueError("boosted trees need at least one row and one feature")
    base = float(y.mean())
    pred = np.full(n, base)
    internal, leaves = 2**depth - 1, 2**depth
    feature = np.zeros((trees, internal), dtype=np.int64)
    split = np.full((trees, internal), bins, dtype=np.int64)  # default: all rows go left
    leaf = np.zeros((trees, leaves))
    flat = codes + np.arange(d) * bins  # one bincount over every (feature, bin)
    for t in range(trees):
        resid = y - pred
        node = np.zeros(n, dtype=np.int64)
        for level in range(depth):
            first = 2**level - 1
            for i in range(first, first + 2**level):
                member = node == i
                m = int(member.sum())
                if m < 2 * min_leaf:
                    continue
                r = resid[member]
                f_idx = flat[member].ravel()
                g = np.bincount(f_idx, weights=np.repeat(r, d), minlength=d * bins)
                c = np.bincount(f_idx, minlength=d * bins)
                g = g.reshape(d, bins).cumsum(axis=1)
                c = c.reshape(d, bins).cumsum(axis=1).astype(np.float64)
                total_g, total_c = g[:, -1:], c[:, -1:]
                right_c = total_c - c
                ok = (c >= min_leaf) & (right_c >= min_leaf)
                with np.errstate(invalid="ignore", divide="ignore"):
                    gain = g**2 / c + (total_g - g) ** 2 / right_c
                gain = np.where(ok, gain, -np.inf)
                best = int(np.argmax(gain))
                if not np.isfinite(gain.flat[best]):
                    continue
                feature[t, i], split[t, i] = divmod(best, bins)
            f = feature[t, node]
            node = 2 * node + 1 + (codes[np.arange(n), f] > split[t, node])
        slot = node - internal
        sums = np.bincount(slot, weights=resid, minlength=leaves)
        counts = np.bincount(slot, minlength=leaves)
        leaf[t] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        pred += rate * leaf[t, slot]
    return BoostedTrees(depth, base, rate, feature, split, leaf)
