"""Kernel MMD: the blocked, batched computation against the direct O(n²) one, its
permutation p-values under no change, its power, and the devices against each other."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.multivariate.backend import BudgetExceeded, cuda_available, torch_available
from detectors.multivariate.mmd import (
    median_bandwidth,
    mmd2_unbiased,
    mmd_test,
    permutation_labels,
)

needs_torch = pytest.mark.skipif(not torch_available(), reason="torch is not installed")
needs_cuda = pytest.mark.skipif(
    not cuda_available(),
    reason="no CUDA GPU on this machine; bench/gpu_check.sh runs these on a GPU machine",
)


def _samples(seed: int, m: int = 90, n: int = 70, d: int = 4, shift: float = 0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d))
    y = rng.normal(size=(n, d))
    y[:, 0] += shift
    return x, y


@pytest.mark.parametrize("block", [16, 37, 1000])
@pytest.mark.parametrize("scales", [(1.0,), (0.5, 1.0, 2.0)])
def test_statistic_and_null_equal_the_direct_computation(block, scales) -> None:
    x, y = _samples(1)
    z = np.concatenate([x, y])
    labels = permutation_labels(len(z), len(x), 25, seed=4)
    r = mmd_test(x, y, labels=labels, scales=scales, block=block)
    assert r.statistic == pytest.approx(mmd2_unbiased(x, y, r.bandwidth, scales), abs=1e-6)
    direct = [
        mmd2_unbiased(z[labels[:, p]], z[~labels[:, p]], r.bandwidth, scales) for p in range(25)
    ]
    np.testing.assert_allclose(r.null, direct, rtol=0, atol=1e-6)
    assert r.p_value == (1 + np.sum(r.null >= r.statistic)) / 26


def test_bandwidth_is_the_median_distance() -> None:
    x, y = _samples(2)
    z = np.concatenate([x, y])
    dist = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    assert median_bandwidth(z) == pytest.approx(np.median(dist[np.triu_indices(len(z), 1)]))


def test_relevance_is_the_derivative_in_each_features_weight() -> None:
    x, y = _samples(3)
    r = mmd_test(x, y, permutations=0, block=50)
    base = mmd2_unbiased(x, y, r.bandwidth)
    eps = 1e-5
    for j in range(x.shape[1]):
        w = np.ones(x.shape[1])
        w[j] += eps
        fd = (mmd2_unbiased(x, y, r.bandwidth, weights=w) - base) / eps
        assert r.relevance[j] == pytest.approx(fd, rel=1e-3, abs=1e-8)


def test_permutation_labels_are_uniform_splits() -> None:
    labels = permutation_labels(10, 3, 6000, seed=0)
    assert (labels.sum(0) == 3).all()
    # each row is called reference with probability 3/10
    hits = labels.sum(1)
    assert stats.chisquare(hits).pvalue > 1e-3


def test_p_values_are_uniform_without_a_change() -> None:
    """200 tests of two samples from one distribution: a KS test of their p-values against
    the uniform distribution must not reject (p-values live on a grid of 1/100, far finer
    than the KS test resolves with 200 values)."""
    p = []
    for seed in range(200):
        x, y = _samples(1000 + seed, m=30, n=40, d=3, shift=0.0)
        p.append(mmd_test(x, y, permutations=99, seed=seed).p_value)
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert abs(np.mean(np.asarray(p) < 0.05) - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 200)


def test_power_against_a_correlation_change() -> None:
    """Two of six features go from uncorrelated to a correlation of 0.8; marginals stay
    N(0, 1). Over 20 seeds with 300 rows a side the test must detect it at 5% nearly
    always, and rank the two features first by relevance."""
    detected, named = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(300, 6))
        y = rng.normal(size=(300, 6))
        y[:, 2] = 0.8 * y[:, 1] + 0.6 * y[:, 2]
        r = mmd_test(x, y, permutations=200, seed=seed)
        detected += r.p_value < 0.05
        named += set(np.argsort(-r.relevance)[:2].tolist()) == {1, 2}
    assert detected >= 18, detected
    assert named >= 18, named


def test_budget_is_checked_between_blocks() -> None:
    x, y = _samples(5)
    with pytest.raises(BudgetExceeded):
        mmd_test(x, y, permutations=10, block=8, budget_seconds=0.0)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="equal columns"):
        mmd_test(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_test(np.zeros((1, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="device"):
        mmd_test(np.zeros((5, 2)), np.ones((5, 2)), device="tpu")


@needs_torch
def test_torch_cpu_equals_numpy_on_the_same_permutations() -> None:
    x, y = _samples(6, m=150, n=120, d=5)
    labels = permutation_labels(270, 150, 60, seed=2)
    a = mmd_test(x, y, labels=labels, block=64, device="numpy")
    b = mmd_test(x, y, labels=labels, block=100, device="cpu")
    assert b.device == "torch-cpu"
    assert b.statistic == pytest.approx(a.statistic, abs=1e-6)
    np.testing.assert_allclose(b.null, a.null, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b.relevance, a.relevance, rtol=1e-4, atol=1e-8)


@needs_torch
def test_torch_draws_its_own_uniform_permutations() -> None:
    """On a torch device the permutations are drawn there; under no change their p-values
    are still uniform (KS over 100 tests)."""
    p = [
        mmd_test(
            *_samples(2000 + s, m=30, n=30, d=2, shift=0.0), permutations=99, seed=s, device="cpu"
        ).p_value
        for s in range(100)
    ]
    assert stats.kstest(p, "uniform").pvalue > 0.01


@needs_cuda
def test_cuda_equals_numpy_on_the_same_permutations() -> None:
    x, y = _samples(7, m=700, n=500, d=30)
    labels = permutation_labels(1200, 700, 100, seed=3)
    a = mmd_test(x, y, labels=labels, device="numpy")
    b = mmd_test(x, y, labels=labels, device="cuda", block=256)
    assert b.device == "cuda"
    assert b.statistic == pytest.approx(a.statistic, abs=1e-6)
    np.testing.assert_allclose(b.null, a.null, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b.relevance, a.relevance, rtol=1e-3, atol=1e-7)


@needs_cuda
def test_cuda_statistic_equals_direct_computation() -> None:
    x, y = _samples(8, m=200, n=260, d=6)
    r = mmd_test(x, y, permutations=50, device="cuda", block=128)
    assert r.statistic == pytest.approx(mmd2_unbiased(x, y, r.bandwidth), abs=1e-6)
