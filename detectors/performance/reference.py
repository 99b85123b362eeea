"""What the reference teaches the performance estimators, stored in the profile.

``learn_performance`` reads the labelled reference once: the task (binary, multiclass or
regression, from the label column), the score columns and classes, an isotonic
calibrator per class for CBPE, quantile bins of each score (where a window's estimated
ROC AUC is counted), the prediction's deciles (for KPIs by decile), for regression the
DLE error models, and, from reference chunks of ``chunk_rows`` rows, each metric's mean
and spread — realized and estimated — from which a window's band and alert threshold
are derived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detectors.performance.calibration import IsotonicCalibrator, fit_isotonic
from detectors.performance.dle import DleModel, fit_dle
from detectors.profile import Profile, category_strings
from detectors.schema import Kind

TASKS = ("binary", "multiclass", "regression")
SCORE_BINS = 256
# A numeric label with more distinct values than this is a regression target.
MAX_CLASSES = 50


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


def learn_performance(
    profile: Profile,
    frame: pd.DataFrame,
    label: str,
    *,
    threshold: float = 0.5,
    chunk_rows: int | None = None,
    task: str | None = None,
) -> PerformanceReference:
    """Everything the performance estimators need, from the labelled reference ``frame``
    whose columns are the profile's schema plus ``label``."""
    if label not in frame.columns:
        raise PerformanceError(f"label column {label!r} is not in the reference data")
    preds = [c for c in profile.schema.predictions() if c.kind is Kind.NUMERIC]
    if not preds:
        raise PerformanceError(
            "performance estimation needs numeric prediction columns (a score or a value); "
            "the schema has none: pass --prediction or a schema with `prediction:`"
        )
    raw_label = frame[label].to_numpy()
    task = task or _infer_task(raw_label, len(preds))
    if task not in TASKS:
        raise PerformanceError(f"task must be one of {TASKS}, got {task!r}")
    if task == "regression":
        if len(preds) != 1:
            raise PerformanceError(
                f"a regressor has one prediction column, the schema has {len(preds)}"
            )
        ref = PerformanceReference(task, label, (preds[0].name,))
    else:
        classes = _classes(raw_label)
        if task == "binary":
            if len(classes) != 2:
                raise PerformanceError(
                    f"label {label!r} has {len(classes)} classes; a binary model needs 2"
                )
            if len(preds) != 1:
                raise PerformanceError(
                    "a binary classifier needs one score column (the positive class's, "
                    f"{classes[1]!r}); the schema has {[c.name for c in preds]}"
                )
            score_columns: tuple[str, ...] = (preds[0].name,)
        else:
            score_columns = _match_score_columns([c.name for c in preds], classes)
        ref = PerformanceReference(
            task, label, score_columns, classes=classes, threshold=float(threshold)
        )
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    p = ref.predictions(columns)
    y, ok = ref.encode_labels(raw_label)
    keep = p.valid & ok
    if keep.sum() < 20:
        raise PerformanceError(
            f"only {int(keep.sum())} reference rows have both a valid prediction and a label"
        )
    p = p.take(keep)
    y = y[keep]
    sub = {k: v[keep] for k, v in columns.items()}
    value = p.value()
    deciles = np.quantile(value, np.linspace(0.1, 0.9, 9))
    if ref.classification:
        k_cols = p.scores.shape[1]
        calibrators: tuple[IsotonicCalibrator, ...]
        if ref.task == "binary":
            calibrators = (fit_isotonic(p.scores[:, 0], y == 1),)
        else:
            calibrators = tuple(fit_isotonic(p.scores[:, k], y == k) for k in range(k_cols))
        qs = np.linspace(0.0, 1.0, SCORE_BINS + 1)[1:-1]
        edges = np.vstack([np.quantile(p.scores[:, k], qs) for k in range(k_cols)])
        ref = _replace(ref, calibrators=calibrators, score_edges=edges, decile_edges=deciles)
    else:
        dle = fit_dle(profile, sub, p.scores[:, 0], y)
        ref = _replace(ref, dle=dle, decile_edges=deciles)
    n = len(y)
    m = int(chunk_rows) if chunk_rows else max(50, min(1000, n // 10))
    stats = _chunk_stats(ref, sub, p, y, m)
    return _replace(ref, chunk_rows=m, stats=stats, rows=n)


def _replace(ref: PerformanceReference, **changes: Any) -> PerformanceReference:
    from dataclasses import replace

    return replace(ref, **changes)


def _chunk_stats(
    ref: PerformanceReference, columns: dict[str, Any], p: Predictions, y: np.ndarray, m: int
) -> dict[str, dict[str, float]]:
    """Realized and estimated metrics on consecutive reference chunks of ``m`` rows."""
    from detectors.performance.state import PerformanceState, estimate, realize

    n = len(y)
    chunks = n // m
    if chunks < 2:
        raise PerformanceError(
            f"{n} labelled reference rows make fewer than two chunks of {m}; "
            "lower the chunk size or label more rows"
        )
    realized: dict[str, list[float]] = {}
    estimated: dict[str, list[float]] = {}
    keys = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for c in range(chunks):
        sl = slice(c * m, (c + 1) * m)
        state = PerformanceState(ref, sample_size=m)
        part = {k: v[sl] for k, v in columns.items()}
        pp = Predictions(p.scores[sl], p.predicted[sl], p.valid[sl])
        state.add_predictions(pp, part)
        state.add_labels(keys[sl], pp, y[sl])
        for r in realize(ref, state):
            realized.setdefault(r.metric, []).append(r.value)
        for metric, value in estimate(ref, state).items():
            estimated.setdefault(metric, []).append(value)
    out: dict[str, dict[str, float]] = {}
    for metric, values in realized.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        entry = {
            "realized_mean": float(arr.mean()) if len(arr) else math.nan,
            "realized_std": float(arr.std(ddof=1)) if len(arr) > 1 else math.nan,
        }
        est = np.asarray(estimated.get(metric, []), dtype=np.float64)
        est = est[np.isfinite(est)]
        if len(est) > 1:
            entry["estimated_mean"] = float(est.mean())
            entry["estimated_std"] = float(est.std(ddof=1))
        out[metric] = {k: v for k, v in entry.items() if math.isfinite(v)}
    return out


def _infer_task(values: np.ndarray, n_scores: int) -> str:
    arr = _booleans_as_ints(values)
    if arr.dtype.kind in "fiu":
        finite = arr[np.isfinite(arr.astype(np.float64))]
        distinct = np.unique(finite)
        if len(distinct) > MAX_CLASSES or not np.all(distinct == np.round(distinct)):
            return "regression"
    return "binary" if n_scores == 1 else "multiclass"


def _classes(values: np.ndarray) -> tuple[str, ...]:
    strings, miss = category_strings(_booleans_as_ints(values))
    distinct = sorted(set(strings[~miss].tolist()), key=_class_order)
    return tuple(distinct)


def _class_order(s: str) -> tuple[int, float | str]:
    try:
        return (0, float(s))
    except ValueError:
        return (1, s)


def _match_score_columns(names: list[str], classes: tuple[str, ...]) -> tuple[str, ...]:
    """One score column per class: the column whose name ends with the class name, else
    the columns in schema order for the classes in sorted order."""
    if len(names) != len(classes):
        raise PerformanceError(
            f"a multiclass model needs one score column per class: {len(classes)} classes "
            f"{list(classes)}, {len(names)} prediction columns {names}"
        )
    by_suffix = []
    for c in classes:
        match = [n for n in names if n.endswith(str(c))]
        if len(match) != 1:
            return tuple(names)
        by_suffix.append(match[0])
    return tuple(by_suffix) if len(set(by_suffix)) == len(classes) else tuple(names)


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
