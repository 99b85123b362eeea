"""What the reference teaches the performance estimators, stored in the profile: the
task, the score columns and classes, the calibrators, score and decile edges, the DLE
models and the reference chunks' statistics (``learn_performance``, in
detectors/performance/learn.py, says how each is learnt), and how a window's batch is
read with them.

It imports nothing that imports the profile, so the profile can load it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.categories import category_strings
from detectors.performance.calibration import IsotonicCalibrator
from detectors.performance.dle import DleModel

TASKS = ("binary", "multiclass", "regression")
SCORE_BINS = 256


class PerformanceError(ValueError):
    """A labelled reference the estimators cannot learn from; the message says why."""


@dataclass(frozen=True)
class Predictions:
    """One batch's predictions as the estimators read them.

    ``scores`` is (rows × score columns): the positive class's score for a binary model,
    one probability per class for a multiclass one, the predicted value for a regressor.
    ``predicted`` is the predicted class index (-1 for regression); ``valid`` marks rows
    whose scores are all finite (the others are left out of every performance figure).
    """

    scores: np.ndarray
    predicted: np.ndarray
    valid: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.valid)

    def take(self, idx: np.ndarray) -> Predictions:
        return Predictions(self.scores[idx], self.predicted[idx], self.valid[idx])

    def value(self) -> np.ndarray:
        """One number per row to correlate KPIs with: the positive score, the predicted
        class's probability, or the predicted value."""
        if self.scores.shape[1] == 1:
            return self.scores[:, 0]
        rows = np.arange(len(self.predicted))
        return self.scores[rows, np.maximum(self.predicted, 0)]


@dataclass(frozen=True, eq=False)
class PerformanceReference:
    task: str
    label: str
    score_columns: tuple[str, ...]
    classes: tuple[str, ...] = ()
    threshold: float = 0.5
    calibrators: tuple[IsotonicCalibrator, ...] = ()
    score_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    decile_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    chunk_rows: int = 0
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    dle: DleModel | None = None
    rows: int = 0

    @property
    def classification(self) -> bool:
        return self.task != "regression"

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    # -- reading a batch ---------------------------------------------------------------

    def predictions(self, columns: dict[str, Any]) -> Predictions:
        """The score columns of a decoded batch (missing or non-numeric values invalid)."""
        n = _batch_len(columns)
        scores = np.full((n, len(self.score_columns)), np.nan)
        for j, name in enumerate(self.score_columns):
            raw = columns.get(name)
            if raw is not None:
                scores[:, j] = _as_float(raw)
        valid = np.isfinite(scores).all(axis=1)
        if self.task == "binary":
            predicted = (scores[:, 0] >= self.threshold).astype(np.int64)
        elif self.task == "multiclass":
            predicted = np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)
        else:
            predicted = np.full(n, -1, dtype=np.int64)
        return Predictions(scores, predicted, valid)

    def encode_labels(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label values as class indices (classification) or floats (regression), and a
        mask of the ones that are usable (a known class, a finite number)."""
        if not self.classification:
            y = _as_float(values)
            return y, np.isfinite(y)
        strings, miss = category_strings(_booleans_as_ints(values))
        lookup = {c: i for i, c in enumerate(self.classes)}
        idx = np.array([lookup.get(s, -1) for s in strings.tolist()], dtype=np.int64)
        ok = (idx >= 0) & ~miss
        return idx, ok

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, (rows × classes)."""
        if self.task == "binary":
            p = np.clip(self.calibrators[0](scores[:, 0]), 0.0, 1.0)
            return np.column_stack([1.0 - p, p])
        p = np.column_stack([c(scores[:, k]) for k, c in enumerate(self.calibrators)])
        p = np.clip(p, 0.0, 1.0)
        total = p.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, p / total, 1.0 / p.shape[1])

    def threshold_for(self, metric: str, rows: int) -> float:
        """The alert threshold of an estimated metric for a window of ``rows`` rows:
        the reference chunks' mean estimate −3 standard deviations (+3 for errors),
        the deviation scaled from ``chunk_rows`` to ``rows`` rows."""
        s = self.stats.get(metric)
        if not s or rows <= 0 or self.chunk_rows <= 0:
            return math.nan
        spread = 3.0 * s["estimated_std"] * math.sqrt(self.chunk_rows / rows)
        if metric in LOWER_IS_BETTER:
            return s["estimated_mean"] + spread
        return s["estimated_mean"] - spread

    def sampling_std(self, metric: str, rows: int) -> float:
        """Standard deviation of the realized metric over windows of ``rows`` rows, from
        the reference chunks' spread."""
        s = self.stats.get(metric)
        if not s or rows <= 0 or self.chunk_rows <= 0:
            return math.nan
        return s["realized_std"] * math.sqrt(self.chunk_rows / rows)

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "label": self.label,
            "score_columns": list(self.score_columns),
            "classes": list(self.classes),
            "threshold": self.threshold,
            "calibrators": [c.to_dict() for c in self.calibrators],
            "score_edges": self.score_edges.tolist(),
            "decile_edges": self.decile_edges.tolist(),
            "chunk_rows": self.chunk_rows,
            "stats": self.stats,
            "dle": None if self.dle is None else self.dle.to_dict(),
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceReference:
        if d["task"] not in TASKS:
            raise ValueError(f"unknown performance task {d['task']!r}")
        return cls(
            task=d["task"],
            label=d["label"],
            score_columns=tuple(d["score_columns"]),
            classes=tuple(d["classes"]),
            threshold=float(d["threshold"]),
            calibrators=tuple(IsotonicCalibrator.from_dict(c) for c in d["calibrators"]),
            score_edges=np.asarray(d["score_edges"], dtype=np.float64).reshape(
                len(d["score_edges"]), -1 if d["score_edges"] else 0
            ),
            decile_edges=np.asarray(d["decile_edges"], dtype=np.float64),
            chunk_rows=int(d["chunk_rows"]),
            stats={m: {k: float(v) for k, v in s.items()} for m, s in d["stats"].items()},
            dle=None if d.get("dle") is None else DleModel.from_dict(d["dle"]),
            rows=int(d.get("rows", 0)),
        )


LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "mae", "rmse", "mape"})


def _booleans_as_ints(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype == object:
        return np.array([int(v) if isinstance(v, bool) else v for v in arr.tolist()], dtype=object)
    return arr


def _as_float(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    out = np.full(len(arr), np.nan)
    for i, v in enumerate(arr.tolist()):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = float(v)
    return out


def _batch_len(columns: dict[str, Any]) -> int:
    for v in columns.values():
        return len(v)
    return 0
