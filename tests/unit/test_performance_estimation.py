"""Label-free estimates track realized performance on generated data whose true
performance changes by a known amount (CBPE for classifiers, DLE for a regressor)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.performance import (
    PerformanceReference,
    PerformanceState,
    evaluate_performance,
    learn_performance,
)
from detectors.profile import Profile, build_profile, load_profile


def _binary(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """A miscalibrated score of a logistic ground truth; shifting x1 moves the class
    balance and hence accuracy, precision and recall, while the score-to-outcome link
    (what CBPE relies on) is unchanged."""
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(shift, 1, n), r.normal(0, 1, n)
    logit = 1.5 * x1 - x2
    y = (r.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    score = 1 / (1 + np.exp(-(0.8 * logit + 0.3)))
    return pd.DataFrame({"x1": x1, "x2": x2, "score": score, "y": y})


def _window(ref: PerformanceReference, frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    cols = {c: frame[c].to_numpy() for c in frame.columns}
    state = PerformanceState(ref)
    p = ref.predictions(cols)
    state.add_predictions(p, cols)
    y, _ = ref.encode_labels(frame["y"].to_numpy())
    state.add_labels(np.arange(len(frame), dtype=np.uint64) * np.uint64(2654435761), p, y)
    res = evaluate_performance(ref, state, window_rows=len(frame))
    realized = {r.metric: r.value for r in res.realized}
    return {e.metric: (e.value, realized[e.metric]) for e in res.estimated}


@pytest.fixture(scope="module")
def binary_ref() -> PerformanceReference:
    frame = _binary(20_000, 0)
    profile = build_profile(frame.drop(columns="y"), prediction=["score"])
    return learn_performance(profile, frame, "y")


# Tolerance. A window's realized metric itself varies by its sampling error (standard
# deviation 0.004-0.012 in a 5000-row window here), so: over 8 windows the mean error
# (the estimator's bias) is below 0.01, and no single window is off by more than 0.04
# (about three and a half sampling standard deviations of the noisiest metric).
TOL = 0.02
BIAS, WORST = 0.01, 0.04


@pytest.mark.parametrize("shift", [0.0, 1.0, -1.0])
def test_cbpe_binary_within_tolerance(binary_ref: PerformanceReference, shift: float) -> None:
    errors: dict[str, list[float]] = {}
    for seed in range(8):
        got = _window(binary_ref, _binary(5000, 100 + seed, shift))
        assert set(got) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
        for metric, (est, real) in got.items():
            errors.setdefault(metric, []).append(est - real)
    for metric, errs in errors.items():
        assert abs(np.mean(errs)) < BIAS, (metric, errs)
        assert np.max(np.abs(errs)) < WORST, (metric, errs)


def test_cbpe_tracks_a_known_change(binary_ref: PerformanceReference) -> None:
    """Shifting x1 by -1 lowers realized F1 by about 0.15; the estimate moves with it
    (its change is within 0.03 of the realized change) and raises the F1 alert."""
    before = _window(binary_ref, _binary(5000, 21))
    after = _window(binary_ref, _binary(5000, 22, -1.0))
    real_change = after["f1"][1] - before["f1"][1]
    est_change = after["f1"][0] - before["f1"][0]
    assert real_change < -0.1
    assert abs(est_change - real_change) < 0.03
    frame = _binary(5000, 22, -1.0)
    cols = {c: frame[c].to_numpy() for c in frame.columns}
    state = PerformanceState(binary_ref)
    state.add_predictions(binary_ref.predictions(cols))
    res = evaluate_performance(binary_ref, state, window_rows=5000)
    f1 = next(e for e in res.estimated if e.metric == "f1")
    assert f1.alert and f1.value < f1.threshold
    assert res.labeled_rows == 0 and res.realized == ()


def test_cbpe_no_alert_on_reference_like_windows(binary_ref: PerformanceReference) -> None:
    """Ten windows from the reference distribution: no estimated-metric alert."""
    alerts = 0
    for seed in range(30, 40):
        frame = _binary(2000, seed)
        cols = {c: frame[c].to_numpy() for c in frame.columns}
        state = PerformanceState(binary_ref)
        state.add_predictions(binary_ref.predictions(cols))
        res = evaluate_performance(binary_ref, state, window_rows=2000)
        alerts += res.alert
    assert alerts == 0


def _multiclass(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    x = r.normal(0, 1, (n, 2))
    x[:, 0] += shift
    logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]]) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    u = r.random(n)[:, None]
    y = (u > np.cumsum(p, axis=1)).sum(axis=1)
    q = np.exp(0.7 * logits) / np.exp(0.7 * logits).sum(axis=1, keepdims=True)
    names = np.array(["a", "b", "c"])
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


@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_cbpe_multiclass_within_tolerance(shift: float) -> None:
    train = _multiclass(20_000, 1)
    profile = build_profile(train.drop(columns="y"), prediction=["p_a", "p_b", "p_c"])
    ref = learn_performance(profile, train, "y")
    for metric, (est, real) in _window(ref, _multiclass(5000, 50, shift)).items():
        assert abs(est - real) < TOL, (metric, est, real, shift)


def _regression(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Noise grows with |x1|: moving x1 away from 0 raises the errors by a known amount."""
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(shift, 1, n), r.choice(["u", "v", "w"], n)
    noise = 0.5 + np.abs(x1) + (x2 == "w")
    y = 10 + 2 * x1 + r.normal(0, noise, n)
    return pd.DataFrame({"x1": x1, "x2": x2, "pred": 10 + 2 * x1, "y": y})


def test_dle_tracks_regression_error(tmp_path) -> None:
    train = _regression(20_000, 2)
    profile = build_profile(train.drop(columns="y"), prediction=["pred"])
    ref = learn_performance(profile, train, "y")
    # the learnt models travel in the profile file
    from dataclasses import replace

    path = replace(profile, performance=ref).save(tmp_path / "p.json")
    loaded: Profile = load_profile(path)
    assert loaded.performance is not None and loaded.performance.task == "regression"
    base = _window(loaded.performance, _regression(5000, 60))
    moved = _window(loaded.performance, _regression(5000, 61, 1.0))
    assert moved["mae"][1] > base["mae"][1] * 1.2  # the errors really grew
    for got in (base, moved):
        for metric in ("mae", "rmse"):
            est, real = got[metric]
            assert abs(est - real) / real < 0.06, (metric, est, real)
