"""Exact mode equals scipy: every column computed in one vectorized call, each compared
with scipy run on that column's valid values alone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from detectors import chi_square, cramer_von_mises, ks, wasserstein
from detectors.tests_registry import TESTS

TOL = 1e-9
SEEDS = range(12)

Draw = Callable[[np.random.Generator, int], np.ndarray]

SHAPES: dict[str, tuple[Draw, Draw]] = {
    "normal": (lambda g, k: g.normal(0, 1, k), lambda g, k: g.normal(0.2, 1.3, k)),
    "lognormal": (lambda g, k: g.lognormal(0, 1, k), lambda g, k: g.lognormal(0.1, 0.8, k)),
    "integers": (lambda g, k: g.integers(0, 5, k), lambda g, k: g.integers(1, 6, k)),
    "heavy_ties": (lambda g, k: np.round(g.normal(0, 1, k), 1), lambda g, k: g.integers(-1, 2, k)),
    "mixture": (
        lambda g, k: np.where(g.random(k) < 0.3, 0.0, g.normal(3, 1, k)),
        lambda g, k: np.where(g.random(k) < 0.5, 0.0, g.normal(2.5, 1, k)),
    ),
    "same_distribution": (lambda g, k: g.gamma(2, 1, k), lambda g, k: g.gamma(2, 1, k)),
    "disjoint": (lambda g, k: g.uniform(0, 1, k), lambda g, k: g.uniform(5, 6, k)),
}


def _stack(columns: list[np.ndarray]) -> np.ndarray:
    """(columns × rows) with NaN padding for the shorter columns."""
    width = max(len(c) for c in columns)
    out = np.full((len(columns), width), np.nan)
    for i, c in enumerate(columns):
        out[i, : len(c)] = c
    return out


def _columns(seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One column per shape and size pairing, with missing values sprinkled in."""
    g = np.random.default_rng(seed)
    sizes = [(7, 13), (13, 7), (40, 25), (200, 35), (2, 3), (500, 480)]
    ref_cols, cur_cols, labels = [], [], []
    for name, (draw_ref, draw_cur) in SHAPES.items():
        for m, n in sizes:
            x = draw_ref(g, m).astype(np.float64)
            y = draw_cur(g, n).astype(np.float64)
            if g.random() < 0.5:  # missing values, never all of them
                x[g.random(m) < 0.2] = np.nan
                x[0] = draw_ref(g, 1)[0]
                y[g.random(n) < 0.2] = np.nan
                y[-1] = draw_cur(g, 1)[0]
            if g.random() < 0.5:  # columns are compared column by column whatever the order
                y = g.permutation(y)
            ref_cols.append(x)
            cur_cols.append(y)
            labels.append(f"{name} {m}x{n}")
    return _stack(ref_cols), _stack(cur_cols), labels


def _valid(row: np.ndarray) -> np.ndarray:
    return row[~np.isnan(row)]


@pytest.mark.parametrize("seed", SEEDS)
def test_ks_equals_scipy_asymp(seed: int) -> None:
    ref, cur, labels = _columns(seed)
    res = ks.exact(ref, cur)
    assert res.statistic.shape == res.p_value.shape == (len(labels),)
    for i, label in enumerate(labels):
        x, y = _valid(ref[i]), _valid(cur[i])
        want = stats.ks_2samp(x, y, method="asymp")
        assert abs(res.statistic[i] - want.statistic) <= TOL, label
        assert abs(res.p_value[i] - want.pvalue) <= TOL, label
        assert abs(res.statistic[i] - stats.ks_2samp(x, y).statistic) <= TOL, label


@pytest.mark.parametrize("seed", SEEDS)
def test_cramer_von_mises_equals_scipy_asymptotic(seed: int) -> None:
    ref, cur, labels = _columns(seed)
    res = cramer_von_mises.exact(ref, cur)
    for i, label in enumerate(labels):
        x, y = _valid(ref[i]), _valid(cur[i])
        if len(x) < 2 or len(y) < 2:
            assert np.isnan(res.statistic[i]) and np.isnan(res.p_value[i]), label
            continue
        want = stats.cramervonmises_2samp(x, y, method="asymptotic")
        assert abs(res.statistic[i] - want.statistic) <= TOL, label
        assert abs(res.p_value[i] - want.pvalue) <= TOL, label


def test_cramer_von_mises_limiting_cdf_across_its_range() -> None:
    """p-values from near 1 down to the far tail, where the series needs many terms."""
    g = np.random.default_rng(7)
    shifts = np.linspace(0.0, 3.0, 25)
    ref = g.normal(0, 1, (len(shifts), 60))
    cur = g.normal(shifts[:, None], 1, (len(shifts), 45))
    res = cramer_von_mises.exact(ref, cur)
    want = [stats.cramervonmises_2samp(ref[i], cur[i], method="asymptotic") for i in range(25)]
    np.testing.assert_allclose(res.statistic, [w.statistic for w in want], rtol=0, atol=TOL)
    np.testing.assert_allclose(res.p_value, [w.pvalue for w in want], rtol=0, atol=TOL)
    assert res.p_value.max() > 0.2 and res.p_value.min() < 1e-6


@pytest.mark.parametrize("seed", SEEDS)
def test_wasserstein_equals_scipy(seed: int) -> None:
    ref, cur, labels = _columns(seed)
    raw = wasserstein.exact(ref, cur, normalize=False)
    scaled = wasserstein.exact(ref, cur)
    for i, label in enumerate(labels):
        x, y = _valid(ref[i]), _valid(cur[i])
        want = stats.wasserstein_distance(x, y)
        assert abs(raw.statistic[i] - want) <= TOL * max(1.0, want), label
        std = np.std(x, ddof=1) if len(x) > 1 else 0.0
        if std == 0:  # a single reference value: 0 if nothing moved, else infinitely far
            assert scaled.statistic[i] == (0.0 if want == 0 else np.inf), label
            continue
        assert abs(scaled.statistic[i] - want / std) <= TOL * max(1.0, want / std), label


def _categories(g: np.random.Generator, k: int, letters: str, weights: np.ndarray) -> np.ndarray:
    values = g.choice(list(letters), size=k, p=weights / weights.sum()).astype(object)
    values[g.random(k) < 0.1] = None
    return values


@pytest.mark.parametrize("seed", SEEDS)
def test_chi_square_equals_scipy_chi2_contingency(seed: int) -> None:
    g = np.random.default_rng(seed)
    ref, cur = [], []
    for letters_ref, letters_cur, m, n in [
        ("ab", "ab", 30, 20),  # 2 × 2: Yates' correction
        ("ab", "ab", 400, 380),
        ("abcdef", "abcdef", 300, 120),
        ("abcd", "abcdeXY", 200, 90),  # categories the reference never had
        ("abcdefghij", "cdefg", 1000, 50),  # categories the window lacks
        ("ab", "abc", 9, 4),
        ("a", "ab", 15, 15),  # 2 × 2 again, through an unseen category
    ]:
        ref.append(_categories(g, m, letters_ref, g.random(len(letters_ref)) + 0.2))
        cur.append(_categories(g, n, letters_cur, g.random(len(letters_cur)) + 0.2))
    res = chi_square.exact(ref, cur)
    uncorrected = chi_square.exact(ref, cur, correction=False)
    for i in range(len(ref)):
        x = [v for v in ref[i] if v is not None]
        y = [v for v in cur[i] if v is not None]
        cats = sorted(set(x) | set(y))
        table = np.array([[x.count(c) for c in cats], [y.count(c) for c in cats]])
        want = stats.chi2_contingency(table)
        assert abs(res.statistic[i] - want.statistic) <= TOL * max(1.0, want.statistic)
        assert abs(res.p_value[i] - want.pvalue) <= TOL
        plain = stats.chi2_contingency(table, correction=False)
        assert abs(uncorrected.statistic[i] - plain.statistic) <= TOL * max(1.0, plain.statistic)
        assert abs(uncorrected.p_value[i] - plain.pvalue) <= TOL
    # the 2 × 2 columns are where Yates' correction applies, and it does change them
    assert not np.isclose(res.statistic[0], uncorrected.statistic[0])


def test_chi_square_single_category_is_no_evidence() -> None:
    ref = [np.array(["a"] * 10, dtype=object)]
    cur = [np.array(["a"] * 4 + [None], dtype=object)]
    res = chi_square.exact(ref, cur)
    want = stats.chi2_contingency(np.array([[10], [4]]))
    assert res.statistic[0] == want.statistic == 0.0
    assert res.p_value[0] == want.pvalue == 1.0


def test_category_counts_over_the_union_of_categories() -> None:
    ref = [np.array(["b", "a", None, "a"], dtype=object), np.array(["x"], dtype=object)]
    cur = [np.array(["c", "a", np.nan], dtype=object), np.array(["y", "y", "x"], dtype=object)]
    ref_counts, cur_counts = chi_square.category_counts(ref, cur)
    # first column: categories a, b, c in some order; second: x, y and one zero pad
    assert ref_counts.shape == cur_counts.shape == (2, 3)
    pairs = sorted(zip(ref_counts[0].tolist(), cur_counts[0].tolist(), strict=True))
    assert pairs == [(0, 1), (1, 0), (2, 1)]
    pairs = sorted(zip(ref_counts[1].tolist(), cur_counts[1].tolist(), strict=True))
    assert pairs == [(0, 0), (0, 2), (1, 1)]


def test_empty_window_and_missing_columns_are_untested() -> None:
    """An empty side (no values, or every value missing) gives NaN, never a number."""
    g = np.random.default_rng(3)
    ref = np.vstack([g.normal(size=20), np.full(20, np.nan), g.normal(size=20)])
    cur = np.vstack([np.full(8, np.nan), g.normal(size=8), g.normal(size=8)])
    for test in (ks, cramer_von_mises):
        res = test.exact(ref, cur)
        assert np.isnan(res.statistic[:2]).all() and np.isnan(res.p_value[:2]).all()
        assert np.isfinite(res.statistic[2]) and np.isfinite(res.p_value[2])
    res = wasserstein.exact(ref, cur)
    assert np.isnan(res.statistic[:2]).all() and np.isfinite(res.statistic[2])
    res = ks.exact(np.empty((3, 0)), np.empty((3, 0)))
    assert np.isnan(res.statistic).all()
    res = chi_square.exact([np.array(["a", "b"], dtype=object)], [np.array([None], dtype=object)])
    assert np.isnan(res.statistic[0]) and np.isnan(res.p_value[0])


def test_constant_reference() -> None:
    ref = np.full((3, 30), 4.0)
    cur = np.vstack([np.full(10, 4.0), np.full(10, 4.5), np.r_[np.full(9, 4.0), 7.0]])
    res = ks.exact(ref, cur)
    for i in range(3):
        want = stats.ks_2samp(ref[i], cur[i], method="asymp")
        assert abs(res.statistic[i] - want.statistic) <= TOL
        assert abs(res.p_value[i] - want.pvalue) <= TOL
    w = wasserstein.exact(ref, cur)
    # a column that never varied: unchanged is 0, any move is infinitely many std
    assert w.statistic.tolist() == [0.0, np.inf, np.inf]
    raw = wasserstein.exact(ref, cur, normalize=False).statistic
    np.testing.assert_allclose(raw, [0.0, 0.5, 0.3], rtol=1e-12)


def test_registry_exact_functions_are_the_modules() -> None:
    g = np.random.default_rng(11)
    ref, cur = g.normal(size=(4, 50)), g.normal(0.5, size=(4, 30))
    for name, module in [("ks", ks), ("cramer_von_mises", cramer_von_mises)]:
        via_registry = TESTS[name].exact_numeric(ref, cur, epsilon=1e-3)
        direct = module.exact(ref, cur)
        np.testing.assert_array_equal(via_registry.statistic, direct.statistic)
        np.testing.assert_array_equal(via_registry.p_value, direct.p_value)
