"""Binned mode against exact mode on real profiles and window sketches: each binned
statistic keeps its stated error bound, is exact where the bins lose nothing (every value
an edge), and drift moves every statistic the right way."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from detectors import cramer_von_mises, hellinger, jensen_shannon, ks, psi, wasserstein
from detectors.profile import build_profile
from detectors.schema import Column, Kind, Schema
from detectors.sketch import WindowSketch
from detectors.stats import NumericBins

SLACK = 1e-12  # floating-point slack on bound checks

CONTINUOUS = ("normal", "lognormal", "bimodal", "student_t")
TIED = ("rounded", "integers", "spiky")


def _frame(g: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """One column per shape; ``shift`` moves every column by that many of its std."""
    normal = g.normal(0, 1, rows)
    lognormal = g.lognormal(0, 0.9, rows)
    bimodal = np.where(g.random(rows) < 0.4, g.normal(-2, 0.5, rows), g.normal(1.5, 0.8, rows))
    student_t = g.standard_t(3, rows)
    rounded = np.round(g.normal(0, 1, rows), 1)
    integers = g.integers(0, 12, rows).astype(np.float64)
    spiky = np.where(g.random(rows) < 0.6, 0.0, g.exponential(2.0, rows))
    frame = pd.DataFrame(
        {
            "normal": normal + shift,
            "lognormal": lognormal * np.exp(shift * 0.9),
            "bimodal": bimodal + 1.8 * shift,
            "student_t": student_t + 1.7 * shift,
            "rounded": np.round(rounded + shift, 1),
            "integers": np.clip(integers + np.round(3.5 * shift), 0, 14),
            "spiky": spiky + 2.0 * shift,
        }
    )
    return frame


def _bins(reference: pd.DataFrame, window: pd.DataFrame, bins: int) -> NumericBins:
    schema = Schema(tuple(Column(name, Kind.NUMERIC) for name in reference.columns))
    profile = build_profile(reference, schema, bins=bins)
    sketch = WindowSketch(profile, reservoir_size=0)
    sketch.update(window)
    return NumericBins.from_profile(profile, sketch)


def _raw(frame: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    return frame[list(names)].to_numpy(dtype=np.float64).T


CASES = [
    # (seed, reference rows, window rows, bins, shift in reference std)
    (0, 4000, 600, 100, 0.0),
    (1, 3000, 3000, 100, 0.15),
    (2, 2000, 150, 20, 0.0),
    (3, 5000, 900, 50, 0.6),
    (4, 1500, 1500, 10, 1.5),  # much of the window above the reference range
    (5, 2500, 700, 100, -1.2),  # and below it
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"seed{c[0]}-shift{c[4]}")
def case(request: pytest.FixtureRequest) -> tuple[NumericBins, np.ndarray, np.ndarray]:
    seed, m, n, bins, shift = request.param
    g = np.random.default_rng(seed)
    reference, window = _frame(g, m), _frame(g, n, shift)
    # missing values in both: they are neither binned nor tested
    reference.loc[g.random(m) < 0.05, "normal"] = np.nan
    window.loc[g.random(n) < 0.05, "spiky"] = np.nan
    b = _bins(reference, window, bins)
    return b, _raw(reference, b.names), _raw(window, b.names)


def test_ks_binned_brackets_exact(case: tuple[NumericBins, np.ndarray, np.ndarray]) -> None:
    bins, ref, cur = case
    b, e = ks.binned(bins), ks.exact(ref, cur)
    assert np.all(b.statistic <= e.statistic + SLACK), bins.names
    assert np.all(e.statistic <= b.statistic + b.error_bound + SLACK), bins.names
    # the smaller binned D can only give the larger p-value
    assert np.all(b.p_value >= e.p_value - SLACK)


@pytest.mark.parametrize("seed", range(4))
def test_ks_binned_is_exact_on_integers_within_the_bin_count(seed: int) -> None:
    """Every value is a bin edge: the CDFs change only at edges and binned equals exact."""
    g = np.random.default_rng(seed)
    ref_p, cur_p = g.random(30) + 0.5, g.random(30) + 0.5
    cur_p[g.random(30) < 0.3] = 0.0  # the window may lack some values
    reference = pd.DataFrame(
        {
            "k30": g.choice(30, 6000, p=ref_p / ref_p.sum()).astype(np.float64),
            "k4": g.integers(0, 4, 6000).astype(np.float64),
        }
    )
    window = pd.DataFrame(
        {
            "k30": g.choice(30, 700, p=cur_p / cur_p.sum()).astype(np.float64),
            "k4": g.choice(4, 700, p=[0.1, 0.2, 0.3, 0.4]).astype(np.float64),
        }
    )
    bins = _bins(reference, window, bins=100)
    # one bin per value plus the two out-of-range bins
    assert bins.nbins.tolist() == [30 + 2, 4 + 2]
    b, e = ks.binned(bins), ks.exact(_raw(reference, bins.names), _raw(window, bins.names))
    assert np.all(e.statistic > 0)
    np.testing.assert_array_equal(b.statistic, e.statistic)
    np.testing.assert_array_equal(b.p_value, e.p_value)


def test_wasserstein_binned_within_bound(case: tuple[NumericBins, np.ndarray, np.ndarray]) -> None:
    bins, ref, cur = case
    for normalize in (False, True):
        b = wasserstein.binned(bins, normalize=normalize)
        e = wasserstein.exact(ref, cur, normalize=normalize, ref_std=bins.ref_std)
        gap = np.abs(b.statistic - e.statistic)
        assert np.all(gap <= b.error_bound * (1 + 1e-9) + SLACK), (bins.names, gap, b.error_bound)


def test_wasserstein_bound_holds_when_bin_means_are_unknown(
    case: tuple[NumericBins, np.ndarray, np.ndarray],
) -> None:
    """A profile file from before bin means: the mass is placed by the fallback rule (the
    other side's bin mean, else the midpoint) and the bound widens to cover it."""
    bins, ref, cur = case
    for unknown in (
        replace(bins, ref_means=None),
        replace(bins, cur_means=None),
        replace(bins, ref_means=None, cur_means=None),
    ):
        b = wasserstein.binned(unknown, normalize=False)
        e = wasserstein.exact(ref, cur, normalize=False)
        gap = np.abs(b.statistic - e.statistic)
        assert np.all(gap <= b.error_bound * (1 + 1e-9) + SLACK), (bins.names, gap)
        assert np.all(b.error_bound >= wasserstein.binned(bins, normalize=False).error_bound)


@pytest.mark.parametrize("seed", range(4))
def test_wasserstein_binned_is_exact_on_integers_within_the_bin_count(seed: int) -> None:
    """Every value is a bin edge, on both sides (values outside the reference range too,
    one per outer bin): each bin's mass sits on one point, its mean, and binned W1 is the
    exact W1, with a zero error bound."""
    g = np.random.default_rng(seed)
    ref_p, cur_p = g.random(30) + 0.5, g.random(30) + 0.5
    cur_p[g.random(30) < 0.3] = 0.0
    reference = pd.DataFrame(
        {
            "k30": g.choice(30, 6000, p=ref_p / ref_p.sum()).astype(np.float64),
            "k5": g.integers(0, 5, 6000).astype(np.float64) * 2.5 - 1.0,
            "zero_inflated": np.where(g.random(6000) < 0.7, 0.0, g.integers(1, 9, 6000)),
        }
    )
    z = np.where(g.random(700) < 0.5, 0.0, g.integers(1, 9, 700))
    z[-5:] = 40.0  # one value above the reference range
    window = pd.DataFrame(
        {
            "k30": g.choice(30, 700, p=cur_p / cur_p.sum()).astype(np.float64),
            "k5": np.r_[g.integers(0, 5, 690) * 2.5 - 1.0, np.full(6, -7.5), np.full(4, 20.0)],
            "zero_inflated": z,
        }
    )
    bins = _bins(reference, window, bins=100)
    # one bin per value plus the two out-of-range bins
    assert bins.nbins.tolist() == [30 + 2, 5 + 2, 9 + 2]
    ref, cur = _raw(reference, bins.names), _raw(window, bins.names)
    for normalize in (False, True):
        b = wasserstein.binned(bins, normalize=normalize)
        e = wasserstein.exact(ref, cur, normalize=normalize, ref_std=bins.ref_std)
        assert np.all(e.statistic > 0)
        np.testing.assert_allclose(b.statistic, e.statistic, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b.error_bound, 0.0, atol=1e-12)


def _tie_heavy(g: np.random.Generator, rows: int) -> pd.DataFrame:
    """The tie-heavy shapes that the uniform-within-bin reading over-read most."""
    return pd.DataFrame(
        {
            "int_0_4": g.binomial(4, 0.4, rows).astype(np.float64),
            "zero_inflated": np.where(g.random(rows) < 0.7, 0.0, 1.0 + g.poisson(3.0, rows)),
            "sparse": np.where(g.random(rows) < 0.95, 0.0, g.exponential(1.0, rows)),
            "rounded": np.round(g.normal(0.0, 1.0, rows), 1),
        }
    )


@pytest.mark.parametrize("rows", [10_000, 100_000])
def test_wasserstein_binned_reads_a_small_shift_of_tied_columns_as_exact_does(rows: int) -> None:
    """A shift of 0.1 reference std moves every value of a tied column between bins; the
    bin means follow it, so binned reads what exact reads (about 0.1), not a multiple."""
    g = np.random.default_rng(21)
    reference = _tie_heavy(g, 100_000)
    window = _tie_heavy(g, rows)
    window += 0.1 * reference.std(ddof=1)
    bins = _bins(reference, window, bins=100)
    b = wasserstein.binned(bins)
    e = wasserstein.exact(_raw(reference, bins.names), _raw(window, bins.names))
    np.testing.assert_allclose(e.statistic, 0.1, atol=0.02)  # the shift, up to noise
    assert np.all(np.abs(b.statistic - e.statistic) < 0.02), (bins.names, b.statistic)
    assert np.all(np.abs(b.statistic - e.statistic) <= b.error_bound + SLACK)
    # every bin of the five-value column holds one value on either side: exact
    k = bins.names.index("int_0_4")
    assert b.statistic[k] == pytest.approx(e.statistic[k], rel=1e-9)


def test_wasserstein_bound_is_nearly_attained() -> None:
    """Each side's term, share · 2(μ − a)(b − μ)/(b − a), is what a two-point bin costs:
    reference values in two clusters at the ends of each bin, the window's on the bins'
    means with the same shares. Binned reads 0 and exact reads the clusters' spread, which
    is within a few percent of the reference's term. The window's equal term is not used
    here (means cannot show that its values sit on one point), so the total bound is
    twice the error."""
    g = np.random.default_rng(5)
    low = np.arange(10)[:, None] + 0.01 * g.random((10, 200))
    high = np.arange(10)[:, None] + 0.99 + 0.01 * g.random((10, 200))
    reference = pd.DataFrame({"x": np.concatenate([low, high], axis=1).ravel()})
    bins = _bins(reference, reference.iloc[:10], bins=10)
    assert bins.nbins[0] == 12  # ten bins of two clusters each, and the outer two
    window = pd.DataFrame({"x": np.repeat(bins.ref_means[0, 1:11], bins.ref[0, 1:11])})
    bins = _bins(reference, window, bins=10)
    b = wasserstein.binned(bins, normalize=False)
    e = wasserstein.exact(_raw(reference, ("x",)), _raw(window, ("x",)), normalize=False)
    assert b.statistic[0] < 1e-9
    gap = e.statistic[0] - b.statistic[0]
    reference_term = b.error_bound[0] / 2  # equal shares and means on both sides
    assert 0.95 * reference_term <= gap <= reference_term + SLACK


def test_wasserstein_between_two_windows_uses_both_windows_bin_means() -> None:
    """Canary against stable: both sides are window sketches on the profile's edges, each
    with its own bin means; the binned distance keeps its bound against exact W1 between
    the two windows' rows, and is exact on the integer column."""
    g = np.random.default_rng(17)
    reference = _frame(g, 3000)
    stable, canary = _frame(g, 1200), _frame(g, 900, 0.3)
    schema = Schema(tuple(Column(name, Kind.NUMERIC) for name in reference.columns))
    profile = build_profile(reference, schema, bins=50)
    sketches = []
    for window in (stable, canary):
        sketch = WindowSketch(profile, reservoir_size=0)
        sketch.update(window)
        sketches.append(sketch)
    bins = NumericBins.from_sketches(*sketches)
    np.testing.assert_array_equal(bins.ref_means, sketches[0].bin_means())
    np.testing.assert_array_equal(bins.cur_means, sketches[1].bin_means())
    b = wasserstein.binned(bins, normalize=False)
    e = wasserstein.exact(_raw(stable, bins.names), _raw(canary, bins.names), normalize=False)
    assert np.all(np.abs(b.statistic - e.statistic) <= b.error_bound * (1 + 1e-9) + SLACK)
    k = bins.names.index("integers")
    assert b.statistic[k] == pytest.approx(e.statistic[k], rel=1e-9)


def test_wasserstein_exact_normalises_by_the_reference_std(
    case: tuple[NumericBins, np.ndarray, np.ndarray],
) -> None:
    bins, ref, cur = case
    raw = wasserstein.exact(ref, cur, normalize=False).statistic
    scaled = wasserstein.exact(ref, cur).statistic
    # the profile's std and the one exact mode computes are the same quantity
    np.testing.assert_allclose(raw / bins.ref_std, scaled, rtol=1e-9)


def test_cramer_von_mises_binned_within_bound_on_continuous_data(
    case: tuple[NumericBins, np.ndarray, np.ndarray],
) -> None:
    bins, ref, cur = case
    b, e = cramer_von_mises.binned(bins), cramer_von_mises.exact(ref, cur)
    idx = [bins.names.index(name) for name in CONTINUOUS]
    gap = np.abs(b.statistic[idx] - e.statistic[idx])
    assert np.all(gap <= b.error_bound[idx] + SLACK), (gap, b.error_bound[idx])


def test_cramer_von_mises_binned_with_ties_is_exact_on_discrete_columns() -> None:
    g = np.random.default_rng(8)
    reference = pd.DataFrame({"k": g.integers(0, 9, 3000).astype(np.float64)})
    window = pd.DataFrame({"k": g.integers(1, 9, 400).astype(np.float64)})
    bins = _bins(reference, window, bins=100)
    b = cramer_von_mises.binned(bins, ties=True)
    e = cramer_von_mises.exact(_raw(reference, ("k",)), _raw(window, ("k",)))
    np.testing.assert_allclose(b.statistic, e.statistic, rtol=1e-9)
    np.testing.assert_allclose(b.p_value, e.p_value, rtol=1e-9, atol=1e-12)
    assert b.error_bound is None


def test_cramer_von_mises_binned_tracks_exact_more_closely_than_its_bound() -> None:
    """The bound is a guarantee; the estimate itself (the average over within-bin orders)
    is much closer on continuous data, and far closer than treating bins as ties."""
    g = np.random.default_rng(9)
    reference, window = _frame(g, 8000), _frame(g, 1000, 0.05)
    bins = _bins(reference, window, bins=100)
    idx = [bins.names.index(name) for name in CONTINUOUS]
    e = cramer_von_mises.exact(_raw(reference, bins.names), _raw(window, bins.names))
    b = cramer_von_mises.binned(bins)
    tied = cramer_von_mises.binned(bins, ties=True)
    gap = np.abs(b.statistic - e.statistic)[idx]
    assert np.all(gap <= 0.5 * b.error_bound[idx])
    assert np.all(gap < np.abs(tied.statistic - e.statistic)[idx])


def _pushed_to_bin_edges(
    window: pd.DataFrame, bins: NumericBins, side: str, seed: int
) -> pd.DataFrame:
    """The window with every value moved next to one edge of its interior bin, keeping
    values distinct: within each bin all current values then sit on one side of the
    reference values, the arrangement furthest from the binned estimates."""
    g = np.random.default_rng(seed)
    out = window.copy()
    for i, name in enumerate(bins.names):
        edges = bins.edges[i, : bins.nbins[i] - 1]
        x = window[name].to_numpy()
        k = np.clip(np.searchsorted(edges, x, side="left"), 1, len(edges) - 1)
        lo, hi = edges[k - 1], edges[k]
        nudge = (hi - lo) * 1e-6 * (1 + g.random(len(x)))
        out[name] = hi - nudge if side == "right" else lo + nudge
    return out


def test_bounds_hold_and_are_nearly_reached_in_adversarial_windows() -> None:
    """Windows pushed against one edge of each bin: the KS and Cramér–von Mises bounds are
    nearly reached. The Wasserstein bound holds there too; its own worst case (two-point
    bins) is ``test_wasserstein_bound_is_nearly_attained``."""
    ratios: dict[str, list[float]] = {"ks": [], "cramer_von_mises": [], "wasserstein": []}
    for seed in range(3):
        for side in ("left", "right"):
            g = np.random.default_rng(seed)
            reference = pd.DataFrame({"a": g.normal(size=4000), "b": g.exponential(size=4000)})
            window = pd.DataFrame({"a": g.normal(0.1, size=800), "b": g.exponential(size=800)})
            window = _pushed_to_bin_edges(window, _bins(reference, window, 50), side, seed)
            bins = _bins(reference, window, 50)
            ref, cur = _raw(reference, bins.names), _raw(window, bins.names)
            for module in (ks, cramer_von_mises, wasserstein):
                b, e = module.binned(bins), module.exact(ref, cur)
                gap = np.abs(b.statistic - e.statistic)
                assert np.all(gap <= b.error_bound + SLACK), (module.__name__, seed, side)
                ratios[module.__name__.rsplit(".", 1)[1]].extend(gap / b.error_bound)
    # the bounds are not vacuous: some arrangement comes close to each
    assert max(ratios["ks"]) > 0.9
    assert max(ratios["cramer_von_mises"]) > 0.3
    assert max(ratios["wasserstein"]) <= 1.0


@pytest.mark.parametrize("shift", [0.3, 1.0])
def test_drift_moves_every_statistic_the_right_way(shift: float) -> None:
    g = np.random.default_rng(12)
    reference = _frame(g, 4000)
    same = _bins(reference, _frame(g, 1000), bins=100)
    moved = _bins(reference, _frame(g, 1000, shift), bins=100)
    for distance in (psi.binned, jensen_shannon.binned, hellinger.binned):
        assert np.all(distance(moved).statistic > distance(same).statistic), distance
    for test in (ks.binned, cramer_von_mises.binned):
        before, after = test(same), test(moved)
        assert np.all(after.statistic > before.statistic), test
        assert np.all(after.p_value < before.p_value), test
    before, after = wasserstein.binned(same), wasserstein.binned(moved)
    assert np.all(after.statistic > before.statistic)
    # the normalised distance reads as "how many reference std the mass moved"
    normal = same.names.index("normal")
    assert after.statistic[normal] == pytest.approx(shift, abs=0.1)
    # no drift: the binned p-values do not flag
    assert np.all(ks.binned(same).p_value > 0.001)
    idx = [same.names.index(name) for name in CONTINUOUS]
    assert np.all(cramer_von_mises.binned(same).p_value[idx] > 0.001)
