"""Learning from a labelled reference, once, at ``driftline reference build --labels``:
the task (binary, multiclass or regression, from the label column), the score columns and
classes, an isotonic calibrator per class for CBPE, quantile bins of each score (where a
window's estimated ROC AUC is counted), the prediction's deciles (for KPIs by decile), for
regression the DLE error models, and, from reference chunks of ``chunk_rows`` rows, each
metric's mean and spread — realized and estimated — from which a window's band and alert
threshold are derived. What is learnt is a ``PerformanceReference``
(detectors/performance/reference.py), stored in the profile.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.categories import category_strings
from detectors.performance.calibration import IsotonicCalibrator, fit_isotonic
from detectors.performance.dle import BINS, EPS, PREDICTION, DleModel, _Encoder, _floats
from detectors.performance.gbdt import fit_boosted_trees
from detectors.performance.reference import (
    SCORE_BINS,
    TASKS,
    PerformanceError,
    PerformanceReference,
    Predictions,
    _booleans_as_ints,
)
from detectors.profile import Profile
from detectors.schema import Kind

if TYPE_CHECKING:
    import pandas as pd

# A numeric label with more distinct values than this is a regression target.
MAX_CLASSES = 50


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


def fit_dle(
    profile: Profile,
    columns: dict[str, Any],
    prediction: np.ndarray,
    y: np.ndarray,
    *,
    trees: int = 100,
) -> DleModel:
    """Fit the loss models on reference rows (features from ``columns``)."""
    encoders: list[_Encoder] = []
    qs = np.linspace(0.0, 1.0, BINS - 2)[1:-1]
    for col in profile.schema.features():
        if col.name not in columns:
            continue
        if col.kind is Kind.NUMERIC:
            x = _floats(columns[col.name])
            finite = x[np.isfinite(x)]
            if not len(finite):
                continue
            encoders.append(_Encoder(col.name, np.unique(np.quantile(finite, qs))))
        else:
            strings, miss = category_strings(columns[col.name])
            values, counts = np.unique(strings[~miss].astype(str), return_counts=True)
            top = values[np.argsort(-counts, kind="stable")][: BINS - 2]
            encoders.append(_Encoder(col.name, None, tuple(str(v) for v in top)))
    encoders.append(_Encoder(PREDICTION, np.unique(np.quantile(prediction, qs))))
    model = DleModel(tuple(encoders), {})
    codes = model.encode(columns, prediction)
    err = np.abs(np.asarray(y, dtype=np.float64) - prediction)
    targets = {
        "mae": err,
        "rmse": err**2,
        "mape": err / np.maximum(np.abs(y), EPS),
    }
    models = {k: fit_boosted_trees(codes, t, bins=BINS, trees=trees) for k, t in targets.items()}
    return DleModel(tuple(encoders), models)
