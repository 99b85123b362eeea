"""Properties every drift test must have, and known values computed by hand."""

from __future__ import annotations

import doctest
import math
from dataclasses import replace
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from detectors import (
    chi_square,
    cramer_von_mises,
    hellinger,
    jensen_shannon,
    ks,
    linf,
    psi,
    tests_registry,
    wasserstein,
)
from detectors.profile import build_profile
from detectors.schema import Column, Kind, Schema
from detectors.settings import CATEGORICAL_TESTS, NUMERIC_TESTS, P_VALUE_TESTS
from detectors.sketch import WindowSketch
from detectors.stats import CategoricalBins, NumericBins, Stats
from detectors.tests_registry import TESTS

MODULES = (ks, psi, jensen_shannon, wasserstein, hellinger, cramer_von_mises, chi_square, linf)


def _numeric_bins(seed: int = 0, shift: float = 0.4) -> NumericBins:
    g = np.random.default_rng(seed)
    reference = pd.DataFrame(
        {
            "a": g.normal(0, 1, 3000),
            "b": g.lognormal(0, 1, 3000),
            "c": g.integers(0, 6, 3000).astype(np.float64),
        }
    )
    window = pd.DataFrame(
        {
            "a": g.normal(shift, 1, 500),
            "b": g.lognormal(shift, 1, 500),
            "c": g.integers(0, 7, 500).astype(np.float64),
        }
    )
    schema = Schema(tuple(Column(n, Kind.NUMERIC) for n in reference.columns))
    profile = build_profile(reference, schema, bins=30)
    sketch = WindowSketch(profile, reservoir_size=0)
    sketch.update(window)
    return NumericBins.from_profile(profile, sketch)


def _categorical_bins(seed: int = 0) -> CategoricalBins:
    g = np.random.default_rng(seed)
    k = 7
    ref = g.integers(0, 200, (4, k + 2))
    cur = g.integers(0, 60, (4, k + 2))
    ref[:, -1] = 0  # "unseen" is zero in the reference by definition
    ref[1, 3] = cur[1, 3] = 0  # a category neither side has
    return CategoricalBins(("w", "x", "y", "z"), ref, cur)


def _pad_numeric(bins: NumericBins, extra: int) -> NumericBins:
    rows = len(bins.names)
    return replace(
        bins,
        ref=np.concatenate([bins.ref, np.zeros((rows, extra), np.int64)], axis=1),
        cur=np.concatenate([bins.cur, np.zeros((rows, extra), np.int64)], axis=1),
        edges=np.concatenate([bins.edges, np.full((rows, extra), np.inf)], axis=1),
        ref_means=np.concatenate([bins.ref_means, np.full((rows, extra), np.nan)], axis=1),
        cur_means=np.concatenate([bins.cur_means, np.full((rows, extra), np.nan)], axis=1),
    )


def _pad_categorical(bins: CategoricalBins, extra: int) -> CategoricalBins:
    """Zero columns between the vocabulary and "other"/"unseen", where the profile pads."""

    def pad(counts: np.ndarray) -> np.ndarray:
        zeros = np.zeros((len(counts), extra), np.int64)
        return np.concatenate([counts[:, :-2], zeros, counts[:, -2:]], axis=1)

    return replace(bins, ref=pad(bins.ref), cur=pad(bins.cur))


def _assert_same(a: Stats, b: Stats) -> None:
    for field in ("statistic", "p_value", "error_bound"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15, err_msg=field)


NUMERIC_BINNED = [
    ks.binned,
    cramer_von_mises.binned,
    wasserstein.binned,
    psi.binned,
    jensen_shannon.binned,
    hellinger.binned,
]
CATEGORICAL_BINNED = [
    chi_square.binned,
    psi.binned,
    jensen_shannon.binned,
    hellinger.binned,
    linf.binned,
]


@pytest.mark.parametrize("binned", NUMERIC_BINNED, ids=lambda f: f.__module__)
def test_zero_padding_changes_nothing_numeric(binned) -> None:
    bins = _numeric_bins()
    assert bins.nbins.min() < bins.ref.shape[1]  # the columns are padded already
    base = binned(bins)
    assert np.isfinite(base.statistic).all()
    for extra in (1, 17):
        _assert_same(binned(_pad_numeric(bins, extra)), base)


@pytest.mark.parametrize("binned", CATEGORICAL_BINNED, ids=lambda f: f.__module__)
def test_zero_padding_changes_nothing_categorical(binned) -> None:
    bins = _categorical_bins()
    base = binned(bins)
    assert np.isfinite(base.statistic).all()
    for extra in (1, 9):
        _assert_same(binned(_pad_categorical(bins, extra)), base)


def _swap(bins: NumericBins | CategoricalBins) -> NumericBins | CategoricalBins:
    return replace(bins, ref=bins.cur, cur=bins.ref)


@pytest.mark.parametrize(
    "binned",
    [ks.binned, cramer_von_mises.binned, psi.binned, jensen_shannon.binned, hellinger.binned],
    ids=lambda f: f.__module__,
)
def test_symmetric_statistics_numeric(binned) -> None:
    bins = _numeric_bins()
    a, b = binned(bins), binned(_swap(bins))
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-12)
    if a.p_value is not None:
        np.testing.assert_allclose(a.p_value, b.p_value, rtol=1e-12)


@pytest.mark.parametrize("binned", CATEGORICAL_BINNED, ids=lambda f: f.__module__)
def test_symmetric_statistics_categorical(binned) -> None:
    bins = _categorical_bins()
    swapped = _swap(bins)
    a, b = binned(bins), binned(swapped)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-12)
    if a.p_value is not None:
        np.testing.assert_allclose(a.p_value, b.p_value, rtol=1e-12)


def test_symmetric_exact_numeric() -> None:
    g = np.random.default_rng(4)
    x, y = g.normal(size=(3, 40)), g.standard_t(4, size=(3, 25))
    for exact in (ks.exact, cramer_von_mises.exact):
        a, b = exact(x, y), exact(y, x)
        np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-12)
        np.testing.assert_allclose(a.p_value, b.p_value, rtol=1e-12)
    a = wasserstein.exact(x, y, normalize=False)
    b = wasserstein.exact(y, x, normalize=False)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-12)


def test_identical_distributions_give_zero() -> None:
    bins = _numeric_bins()
    same = replace(
        bins,
        cur=bins.ref,
        cur_min=bins.ref_min,
        cur_max=bins.ref_max,
        cur_means=bins.ref_means,
    )
    for binned in (ks.binned, psi.binned, jensen_shannon.binned, hellinger.binned):
        assert np.all(binned(same).statistic == 0.0), binned.__module__
    assert np.all(ks.binned(same).p_value == 1.0)
    np.testing.assert_allclose(wasserstein.binned(same).statistic, 0.0, atol=1e-12)
    cat = _categorical_bins()
    cat_same = replace(cat, cur=cat.ref * 3)  # same shares, three times the rows
    for binned in (psi.binned, jensen_shannon.binned, hellinger.binned, linf.binned):
        np.testing.assert_allclose(binned(cat_same).statistic, 0.0, atol=1e-12)
    res = chi_square.binned(cat_same)
    np.testing.assert_allclose(res.statistic, 0.0, atol=1e-9)
    np.testing.assert_allclose(res.p_value, 1.0)
    g = np.random.default_rng(1)
    x = g.normal(size=(2, 31))
    for exact in (ks.exact, cramer_von_mises.exact):
        np.testing.assert_allclose(exact(x, x).statistic, 0.0, atol=1e-12)
    np.testing.assert_allclose(wasserstein.exact(x, x).statistic, 0.0, atol=1e-12)


def test_jensen_shannon_equals_scipy_on_bin_shares() -> None:
    for seed in range(5):
        for bins in (_numeric_bins(seed), _categorical_bins(seed)):
            got = jensen_shannon.binned(bins).statistic
            want = [jensenshannon(bins.ref[i], bins.cur[i], base=2) for i in range(len(bins.names))]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
            assert np.all((got >= 0) & (got <= 1))


def test_psi_known_two_bin_value() -> None:
    # shares (0.5, 0.5) → (0.25, 0.75): (−0.25)·ln(0.5) + 0.25·ln(1.5) = 0.25·ln 3
    bins = CategoricalBins(("plan",), np.array([[40, 40]]), np.array([[10, 30]]))
    assert psi.binned(bins).statistic[0] == pytest.approx(0.25 * math.log(3), rel=1e-12)


def test_psi_replaces_empty_shares_by_epsilon() -> None:
    # shares (1, 0) → (0.5, 0.5); the empty reference share becomes epsilon
    bins = CategoricalBins(("plan",), np.array([[80, 0]]), np.array([[5, 5]]))
    for eps in (1e-4, 1e-2):
        want = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - eps) * math.log(0.5 / eps)
        assert psi.binned(bins, epsilon=eps).statistic[0] == pytest.approx(want, rel=1e-12)
        assert TESTS["psi"].binned(bins, epsilon=eps).statistic[0] == pytest.approx(want)
    # only empty shares are replaced: a share below epsilon but above zero is kept
    rare = CategoricalBins(("plan",), np.array([[1, 99_999]]), np.array([[1, 1]]))
    want = (0.5 - 1e-5) * math.log(0.5 / 1e-5) + (0.5 - 0.99999) * math.log(0.5 / 0.99999)
    assert psi.binned(rare, epsilon=1e-3).statistic[0] == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="epsilon"):
        psi.binned(bins, epsilon=0.0)


def test_hellinger_and_linf_known_values() -> None:
    bins = CategoricalBins(("a",), np.array([[10, 10, 0]]), np.array([[20, 0, 0]]))
    # shares (1/2, 1/2) against (1, 0): H² = 1 − √(1/2)
    assert hellinger.binned(bins).statistic[0] == pytest.approx(math.sqrt(1 - math.sqrt(0.5)))
    assert linf.binned(bins).statistic[0] == pytest.approx(0.5)
    disjoint = CategoricalBins(("a",), np.array([[3, 0]]), np.array([[0, 9]]))
    assert hellinger.binned(disjoint).statistic[0] == pytest.approx(1.0)
    assert jensen_shannon.binned(disjoint).statistic[0] == pytest.approx(1.0)


def test_chi_square_keeps_unseen_categories() -> None:
    """A new category that takes 40% of the window: finite statistic, tiny p-value."""
    # vocabulary a, b; then "other" and "unseen"
    ref = np.array([[500, 500, 0, 0], [500, 500, 0, 0]])
    cur = np.array([[300, 300, 0, 400], [498, 500, 0, 2]])
    res = chi_square.binned(CategoricalBins(("big", "small"), ref, cur))
    assert np.isfinite(res.statistic).all()
    assert res.p_value[0] < 1e-50
    assert res.statistic[1] < res.statistic[0]
    # the shares of the known categories did not change: dropping the unseen column
    # would hide the change entirely
    without = chi_square.binned(CategoricalBins(("big",), ref[:1, :2], cur[:1, :2]))
    assert without.statistic[0] == pytest.approx(0.0, abs=1e-9)


def _categorical_profile(g: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = pd.DataFrame(
        {
            "colour": g.choice(["red", "green", "blue"], 2000, p=[0.5, 0.3, 0.2]),
            "city": g.choice([f"c{i}" for i in range(12)], 2000),
            "flag": g.choice(["yes", "no"], 2000, p=[0.8, 0.2]),
        }
    )
    window = pd.DataFrame(
        {
            "colour": g.choice(["red", "green", "blue", "purple"], 300, p=[0.4, 0.3, 0.2, 0.1]),
            "city": g.choice([f"c{i}" for i in range(12)], 300),
            "flag": g.choice(["yes", "no", None], 300, p=[0.7, 0.2, 0.1]),
        }
    )
    return reference, window


def test_categorical_binned_equals_exact_when_the_vocabulary_covers_all() -> None:
    g = np.random.default_rng(6)
    reference, window = _categorical_profile(g)
    schema = Schema(tuple(Column(n, Kind.CATEGORICAL) for n in reference.columns))
    profile = build_profile(reference, schema, top_k=20)
    sketch = WindowSketch(profile, reservoir_size=0)
    sketch.update(window)
    bins = CategoricalBins.from_profile(profile, sketch)
    assert bins.cur[bins.names.index("colour"), -1] > 0  # "purple" is unseen
    ref_raw = [reference[n].to_numpy(dtype=object) for n in bins.names]
    cur_raw = [window[n].to_numpy(dtype=object) for n in bins.names]
    for name in ("chi_square", "psi", "jensen_shannon", "hellinger", "linf"):
        spec = TESTS[name]
        b = spec.binned(bins, epsilon=1e-3)
        e = spec.exact_categorical(ref_raw, cur_raw, epsilon=1e-3)
        np.testing.assert_allclose(b.statistic, e.statistic, rtol=1e-9, err_msg=name)
        if spec.has_p_value:
            np.testing.assert_allclose(b.p_value, e.p_value, rtol=1e-9, err_msg=name)


def test_empty_window_is_untested() -> None:
    bins = _numeric_bins()
    empty = replace(
        bins,
        cur=np.zeros_like(bins.cur),
        cur_min=np.full(len(bins.names), np.inf),
        cur_max=np.full(len(bins.names), -np.inf),
    )
    for binned in NUMERIC_BINNED:
        res = binned(empty)
        assert np.isnan(res.statistic).all(), binned.__module__
        if res.p_value is not None:
            assert np.isnan(res.p_value).all()
    cat = _categorical_bins()
    cat_empty = replace(cat, cur=np.zeros_like(cat.cur))
    for binned in CATEGORICAL_BINNED:
        res = binned(cat_empty)
        assert np.isnan(res.statistic).all(), binned.__module__
        if res.p_value is not None:
            assert np.isnan(res.p_value).all()


def test_constant_reference_column() -> None:
    reference = pd.DataFrame({"k": np.full(500, 3.0), "x": np.linspace(0, 1, 500)})
    schema = Schema((Column("k", Kind.NUMERIC), Column("x", Kind.NUMERIC)))
    profile = build_profile(reference, schema)
    for values, moved in (
        (np.full(50, 3.0), False),
        (np.r_[np.full(45, 3.0), np.full(5, 3.5)], True),
    ):
        sketch = WindowSketch(profile, reservoir_size=0)
        sketch.update(pd.DataFrame({"k": values, "x": np.linspace(0, 1, 50)}))
        bins = NumericBins.from_profile(profile, sketch)
        res = ks.binned(bins)
        assert res.statistic[0] == pytest.approx(0.1 if moved else 0.0)
        w = wasserstein.binned(bins).statistic[0]
        assert w == (np.inf if moved else 0.0)
        assert np.isfinite(wasserstein.binned(bins, normalize=False).statistic[0])


def test_kinds_are_enforced() -> None:
    num, cat = _numeric_bins(), _categorical_bins()
    for binned in (ks.binned, cramer_von_mises.binned, wasserstein.binned):
        with pytest.raises(TypeError, match="numeric"):
            binned(cat)
    for binned in (chi_square.binned, linf.binned):
        with pytest.raises(TypeError, match="categorical"):
            binned(num)


def test_no_columns() -> None:
    bins = _numeric_bins()
    none = NumericBins(
        names=(),
        ref=np.zeros((0, 1), np.int64),
        cur=np.zeros((0, 1), np.int64),
        edges=np.zeros((0, 0)),
        nbins=np.zeros(0, np.int64),
        ref_min=np.zeros(0),
        ref_max=np.zeros(0),
        ref_std=np.zeros(0),
        cur_min=np.zeros(0),
        cur_max=np.zeros(0),
    )
    for binned in NUMERIC_BINNED:
        assert binned(none).statistic.shape == (0,)
    assert ks.exact(np.zeros((0, 5)), np.zeros((0, 3))).statistic.shape == (0,)
    assert chi_square.exact([], []).statistic.shape == (0,)
    assert bins.names  # the helper itself is not empty


def test_registry_agrees_with_the_settings() -> None:
    assert {n for n, s in TESTS.items() if s.applies_to(Kind.NUMERIC)} == set(NUMERIC_TESTS)
    assert {n for n, s in TESTS.items() if s.applies_to(Kind.CATEGORICAL)} == set(CATEGORICAL_TESTS)
    assert {n for n, s in TESTS.items() if s.has_p_value} == set(P_VALUE_TESTS)
    num, cat = _numeric_bins(), _categorical_bins()
    for name, spec in TESTS.items():
        assert spec.name == name
        for kind, bins in ((Kind.NUMERIC, num), (Kind.CATEGORICAL, cat)):
            if spec.applies_to(kind):
                res = spec.binned(bins, epsilon=1e-4)
                assert res.statistic.shape == (len(bins.names),)
                assert (res.p_value is not None) == spec.has_p_value
        if Kind.NUMERIC not in spec.kinds:
            assert spec.exact_numeric is None


@pytest.mark.parametrize("module", [*MODULES, tests_registry], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0
