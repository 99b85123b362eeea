"""Isotonic calibration of model scores: the map from a score to the probability that the
row is positive, learnt on the labelled reference.

Pool-adjacent-violators on the reference's distinct scores (ties averaged first), then
linear interpolation between the fitted points and clipping outside them, which is what
``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip")`` does. Only the points where
the fitted step function changes are kept, so a calibrator is a few hundred numbers at
most and travels in the reference profile.

Reference: Zadrozny, B. and Elkan, C. (2002). Transforming classifier scores into accurate
multiclass probability estimates. KDD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class IsotonicCalibrator:
    """A non-decreasing piecewise-linear map from score to probability."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, score: np.ndarray) -> np.ndarray:
        s = np.asarray(score, dtype=np.float64)
        if len(self.x) == 1:
            return np.full(s.shape, float(self.y[0]))
        out = np.interp(s, self.x, self.y)
        return np.where(np.isnan(s), np.nan, out)

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsotonicCalibrator:
        x = np.asarray(d["x"], dtype=np.float64)
        y = np.asarray(d["y"], dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
            raise ValueError("an isotonic calibrator needs equal, non-empty x and y lists")
        return cls(x, y)


def fit_isotonic(score: np.ndarray, target: np.ndarray) -> IsotonicCalibrator:
    """Fit the isotonic (non-decreasing) regression of ``target`` on ``score``."""
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    keep = np.isfinite(s) & np.isfinite(t)
    s, t = s[keep], t[keep]
    if len(s) == 0:
        raise ValueError("isotonic calibration needs at least one finite score")
    xs, inverse = np.unique(s, return_inverse=True)
    w = np.bincount(inverse).astype(np.float64)
    ys = np.bincount(inverse, weights=t) / w
    fitted = _pava(ys, w)
    # keep the first and last point of every constant run (sklearn's redundant-point rule)
    if len(xs) > 2:
        same_prev = np.r_[False, fitted[1:] == fitted[:-1]]
        same_next = np.r_[fitted[:-1] == fitted[1:], False]
        keep = ~(same_prev & same_next)
        xs, fitted = xs[keep], fitted[keep]
    return IsotonicCalibrator(xs, fitted)


def _pava(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool adjacent violators: the weighted least-squares non-decreasing fit."""
    n = len(y)
    level = np.empty(n)
    weight = np.empty(n)
    size = np.empty(n, dtype=np.int64)
    top = -1
    for i in range(n):
        top += 1
        level[top], weight[top], size[top] = y[i], w[i], 1
        while top > 0 and level[top - 1] >= level[top]:
            tw = weight[top - 1] + weight[top]
            level[top - 1] = (level[top - 1] * weight[top - 1] + level[top] * weight[top]) / tw
            weight[top - 1] = tw
            size[top - 1] += size[top]
            top -= 1
    return np.repeat(level[: top + 1], size[: top + 1])
