"""Realized performance metrics equal scikit-learn's, and the window state merges exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.preprocessing import label_binarize

from detectors.performance import (
    PerformanceState,
    evaluate_performance,
    learn_performance,
)
from detectors.performance import metrics as pm
from detectors.performance.calibration import fit_isotonic
from detectors.performance.state import realize
from detectors.profile import build_profile


def _binary(n: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(0, 1, n), r.normal(0, 1, n)
    logit = 1.5 * x1 - x2
    y = (r.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    score = np.round(1 / (1 + np.exp(-(0.8 * logit + 0.3))), 3)  # ties on purpose
    return pd.DataFrame({"x1": x1, "x2": x2, "score": score, "y": y})


def _multiclass(n: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    x = r.normal(0, 1, (n, 2))
    logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]]) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([r.choice(3, p=row) for row in p])
    names = np.array(["a", "b", "c"])
    q = np.exp(0.7 * logits) / np.exp(0.7 * logits).sum(axis=1, keepdims=True)
    return pd.DataFrame(
        {
            "x1": x[:, 0],
            "x2": x[:, 1],
            "p_a": q[:, 0],
            "p_b": q[:, 1],
            "p_c": q[:, 2],
            "y": names[y],
        }
    )


def _regression(n: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(0, 1, n), r.choice(["u", "v", "w"], n)
    y = 3 + 2 * x1 + r.normal(0, 0.5 + np.abs(x1), n)
    return pd.DataFrame({"x1": x1, "x2": x2, "pred": 3 + 2 * x1, "y": y})


def _state(ref, frame: pd.DataFrame) -> PerformanceState:
    state = PerformanceState(ref)
    p = ref.predictions({c: frame[c].to_numpy() for c in frame.columns})
    state.add_predictions(p, {c: frame[c].to_numpy() for c in frame.columns})
    y, ok = ref.encode_labels(frame["y"].to_numpy())
    assert ok.all()
    keys = np.arange(len(frame), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    state.add_labels(keys, p, y)
    return state


def _values(ref, state) -> dict[str, float]:
    return {r.metric: r.value for r in realize(ref, state)}


@pytest.fixture(scope="module")
def binary_ref():
    frame = _binary(4000, 0)
    profile = build_profile(frame.drop(columns="y"), prediction=["score"])
    return learn_performance(profile, frame, "y", threshold=0.4)


def test_binary_metrics_equal_scikit_learn(binary_ref) -> None:
    frame = _binary(3000, 1)
    got = _values(binary_ref, _state(binary_ref, frame))
    y, s = frame["y"].to_numpy(), frame["score"].to_numpy()
    yp = (s >= 0.4).astype(int)
    want = {
        "accuracy": skm.accuracy_score(y, yp),
        "precision": skm.precision_score(y, yp),
        "recall": skm.recall_score(y, yp),
        "f1": skm.f1_score(y, yp),
        "roc_auc": skm.roc_auc_score(y, s),
        "pr_auc": skm.average_precision_score(y, s),
        "log_loss": skm.log_loss(y, s),
        "brier": skm.brier_score_loss(y, s),
    }
    for metric, value in want.items():
        assert got[metric] == pytest.approx(value, abs=1e-12), metric
    true, pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], s), minlength=10)
    ece = np.sum(counts[counts > 0] / len(y) * np.abs(true - pred))
    assert got["ece"] == pytest.approx(ece, abs=1e-12)


def test_multiclass_metrics_equal_scikit_learn() -> None:
    train, test = _multiclass(3000, 2), _multiclass(2000, 3)
    profile = build_profile(train.drop(columns="y"), prediction=["p_a", "p_b", "p_c"])
    ref = learn_performance(profile, train, "y")
    assert ref.task == "multiclass" and ref.classes == ("a", "b", "c")
    got = _values(ref, _state(ref, test))
    probs = test[["p_a", "p_b", "p_c"]].to_numpy()
    y = test["y"].to_numpy()
    yp = np.array(["a", "b", "c"])[probs.argmax(axis=1)]
    onehot = label_binarize(y, classes=["a", "b", "c"])
    want = {
        "accuracy": skm.accuracy_score(y, yp),
        "precision": skm.precision_score(y, yp, average="macro"),
        "recall": skm.recall_score(y, yp, average="macro"),
        "f1": skm.f1_score(y, yp, average="macro"),
        "roc_auc": skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"),
        "pr_auc": skm.average_precision_score(onehot, probs, average="macro"),
        "log_loss": skm.log_loss(y, probs, labels=["a", "b", "c"]),
        "brier": np.mean(np.sum((probs - onehot) ** 2, axis=1)),
    }
    for metric, value in want.items():
        assert got[metric] == pytest.approx(value, abs=1e-9), metric


def test_regression_metrics_equal_scikit_learn() -> None:
    train, test = _regression(3000, 4), _regression(2000, 5)
    profile = build_profile(train.drop(columns="y"), prediction=["pred"])
    ref = learn_performance(profile, train, "y")
    assert ref.task == "regression"
    got = _values(ref, _state(ref, test))
    y, p = test["y"].to_numpy(), test["pred"].to_numpy()
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p), rel=1e-12)
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, p), rel=1e-12)


def test_state_merge_equals_state_of_union(binary_ref) -> None:
    frame = _binary(3000, 6)
    whole = _state(binary_ref, frame)
    merged = _state(binary_ref, frame.iloc[:1234]).merge(_state(binary_ref, frame.iloc[1234:]))
    a = evaluate_performance(binary_ref, whole, window_rows=3000)
    b = evaluate_performance(binary_ref, merged, window_rows=3000)
    assert a.labeled_rows == b.labeled_rows == 3000
    for x, y in zip(a.realized + a.estimated, b.realized + b.estimated, strict=True):  # type: ignore[operator]
        assert x.metric == y.metric and x.value == pytest.approx(y.value, abs=1e-12)
    restored = PerformanceState.from_dict(binary_ref, whole.to_dict())
    assert _values(binary_ref, restored) == _values(binary_ref, whole)


def test_sample_bounds_memory_and_stays_uniform(binary_ref) -> None:
    frame = _binary(6000, 7)
    state = PerformanceState(binary_ref, sample_size=1000)
    p = binary_ref.predictions({c: frame[c].to_numpy() for c in frame.columns})
    y, _ = binary_ref.encode_labels(frame["y"].to_numpy())
    rng = np.random.default_rng(0)
    state.add_labels(rng.integers(0, 2**63, 6000, dtype=np.uint64), p, y)
    assert len(state.sample_y) == 1000
    got = _values(binary_ref, state)
    exact = skm.roc_auc_score(frame["y"], frame["score"])
    assert abs(got["roc_auc"] - exact) < 0.04  # a 1000-row uniform sample, ~3 standard errors
    assert got["accuracy"] == pytest.approx(
        skm.accuracy_score(frame["y"], frame["score"] >= 0.4), abs=1e-12
    )  # confusion counts stay exact


def test_isotonic_equals_scikit_learn() -> None:
    r = np.random.default_rng(8)
    s = np.round(r.random(4000), 3)
    y = (r.random(4000) < s**2).astype(float)
    cal = fit_isotonic(s, y)
    iso = IsotonicRegression(out_of_bounds="clip").fit(s, y)
    q = np.r_[r.random(500) * 1.4 - 0.2, s[:200]]
    np.testing.assert_allclose(cal(q), iso.predict(q), atol=1e-12)


def test_intervals_cover_at_nominal_rate() -> None:
    """Wilson and Hanley–McNeil intervals cover the true value about 95 % of the time
    (200 draws, seed 9: the coverage must lie in [0.90, 0.99])."""
    r = np.random.default_rng(9)
    hits_acc = hits_auc = 0
    draws = 200
    for _ in range(draws):
        y = r.random(400) < 0.3
        s = np.where(y, r.normal(1, 1, 400), r.normal(0, 1, 400))
        lo, hi = pm.wilson(float((r.random(400) < 0.7).sum()), 400)
        hits_acc += lo <= 0.7 <= hi
        auc = pm.roc_auc(y, s)
        lo, hi = pm.auc_interval(auc, float(y.sum()), float((~y).sum()))
        hits_auc += lo <= 0.7602 <= hi  # Φ(1/√2): AUC of N(1,1) against N(0,1)
    assert 0.90 <= hits_acc / draws <= 0.99
    assert 0.90 <= hits_auc / draws <= 0.99
