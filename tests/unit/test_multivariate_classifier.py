"""Classifier two-sample test: its AUC and p-value against scipy and scikit-learn, its
p-values under no change, and a correlation change detected with its two features named."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.multivariate.classifier import (
    _auc,
    apply_codes,
    auc_test,
    auc_threshold,
    classifier_test,
    fit_boosting,
    predict_boosting,
    quantile_codes,
)


def _correlated(seed: int, n_ref: int = 2000, n_win: int = 1000, d: int = 30, rho: float = 0.8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_ref, d))
    y = rng.normal(size=(n_win, d))
    y[:, 4] = rho * y[:, 3] + np.sqrt(1 - rho**2) * y[:, 4]
    return x, y


def test_auc_and_p_value_match_scikit_learn_and_scipy() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(0.3, 1, 80), 1)  # rounded: ties, as trees produce
    neg = np.round(rng.normal(0.0, 1, 120), 1)
    auc, p = auc_test(pos, neg)
    labels = np.r_[np.ones(80), np.zeros(120)]
    assert auc == pytest.approx(sklearn_metrics.roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)
    assert _auc(pos, neg) == pytest.approx(auc, abs=1e-12)
    ref = stats.mannwhitneyu(pos, neg, alternative="greater")
    assert p == pytest.approx(ref.pvalue, rel=1e-12)
    # the threshold is where the normal approximation crosses alpha
    t = auc_threshold(80, 120, 0.05)
    sd = np.sqrt((80 + 120 + 1) / (12 * 80 * 120))
    assert stats.norm.sf((t - 0.5) / sd) == pytest.approx(0.05, rel=1e-9)


def test_boosting_learns_an_interaction() -> None:
    """An XOR of two features: no single split separates it, depth-2 trees do."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 3))
    target = ((z[:, 0] > 0) ^ (z[:, 1] > 0)).astype(float)
    cuts = quantile_codes(z[:2000], 32)
    accuracy = {}
    for depth in (1, 2):
        base, trees = fit_boosting(
            apply_codes(z[:2000], cuts), target[:2000], trees=50, depth=depth
        )
        score = predict_boosting(base, trees, apply_codes(z[2000:], cuts))
        accuracy[depth] = np.mean((score > 0) == (target[2000:] > 0.5))
    assert accuracy[2] > 0.8 and accuracy[1] < 0.6, accuracy


def test_p_values_are_uniform_without_a_change() -> None:
    """100 tests on samples from one distribution (a KS test of the p-values) and a
    false-alarm rate at 5% within three binomial standard deviations."""
    p = []
    for seed in range(100):
        rng = np.random.default_rng(500 + seed)
        p.append(
            classifier_test(
                rng.normal(size=(150, 4)), rng.normal(size=(100, 4)), trees=20, seed=seed
            ).p_value
        )
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert np.mean(np.asarray(p) < 0.05) < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 100)


def test_correlation_change_is_detected_and_its_two_features_named() -> None:
    """30 features; two go from uncorrelated to a correlation of 0.8, every marginal
    stays N(0, 1). 1000 window rows against 2000 reference rows, 8 seeds: detected at
    p < 0.01 every time, and the two features are the two most important."""
    for seed in range(8):
        x, y = _correlated(seed)
        r = classifier_test(x, y, seed=seed)
        assert r.p_value < 0.01, (seed, r.p_value)
        assert r.statistic > r.threshold
        assert set(np.argsort(-r.importance)[:2].tolist()) == {3, 4}, (seed, r.importance)
        # the rest lose next to nothing when shuffled
        rest = np.delete(r.importance, [3, 4])
        assert rest.max() < 0.3 * r.importance[[3, 4]].min()


def test_too_few_rows_and_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="too few rows"):
        classifier_test(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="equal columns"):
        classifier_test(np.zeros((30, 2)), np.zeros((30, 3)))
