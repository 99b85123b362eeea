"""Binned mode against exact mode on real profiles and window sketches: each binned
statistic keeps its stated error bound, and drift moves every statistic the right way."""

from __future__ import annotations

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
    assert max(ratios["wasserstein"]) > 0.3


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
