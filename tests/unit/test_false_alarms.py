"""One window judged alone: the family-wise false-alarm rate over many unchanged windows of
27 columns of mixed shapes, the power of the minimum-effect verdict at 100k rows, and the
coverage of the effect's confidence interval. Fixed seeds; every tolerance is stated."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from detectors import jensen_shannon, wasserstein
from detectors.evaluate import evaluate_window
from detectors.profile import Profile, build_profile
from detectors.schema import Schema
from detectors.settings import DEFAULT_THRESHOLDS, DriftSettings
from detectors.sketch import WindowSketch
from detectors.stats import CategoricalBins, NumericBins

RATE = DriftSettings().window_false_alarm_rate  # 0.01
CATEGORIES = np.array([f"c{i:03d}" for i in range(100)], dtype=object)
ZIPF = (1.0 / np.arange(1, 101)) / (1.0 / np.arange(1, 101)).sum()

Gen = Callable[[np.random.Generator, int], np.ndarray]
NUMERIC: dict[str, Gen] = {
    **{f"normal_{i}": (lambda r, n, i=i: r.normal(i, 1.0 + i, n)) for i in range(8)},
    **{f"t3_{i}": (lambda r, n: r.standard_t(3, n)) for i in range(4)},
    **{f"lognormal_{i}": (lambda r, n: r.lognormal(0.0, 1.2, n)) for i in range(4)},
    **{f"poisson_{i}": (lambda r, n: r.poisson(1.5, n).astype(np.float64)) for i in range(3)},
    **{f"int5_{i}": (lambda r, n: r.integers(0, 5, n).astype(np.float64)) for i in range(3)},
}
CATEGORICAL = [f"zipf_{i}" for i in range(5)]
assert len(NUMERIC) + len(CATEGORICAL) == 27


def frame(rng: np.random.Generator, n: int, names: list[str] | None = None) -> dict:
    """One window (or reference) of unchanged data, as the columnar batch the agent makes."""
    chosen = names or [*NUMERIC, *CATEGORICAL]
    out: dict[str, np.ndarray] = {}
    for name in chosen:
        if name in NUMERIC:
            out[name] = NUMERIC[name](rng, n)
        else:
            out[name] = CATEGORIES[rng.choice(100, n, p=ZIPF)]
    return out


def profile_of(names: list[str], rows: int, seed: int) -> Profile:
    data = frame(np.random.default_rng(seed), rows, names)
    schema = Schema.build(
        numeric=[n for n in names if n in NUMERIC],
        categorical=[n for n in names if n not in NUMERIC],
    )
    return build_profile(pd.DataFrame(data), schema)


@pytest.fixture(scope="module")
def wide() -> Profile:
    """27 columns, a 100 000-row reference."""
    return profile_of([*NUMERIC, *CATEGORICAL], 100_000, seed=1)


def flagged_windows(profile: Profile, rows: int, windows: int, seed: int) -> tuple[int, int]:
    """Unchanged windows in which any column was flagged, and columns flagged in all."""
    rng = np.random.default_rng(seed)
    names = profile.schema.names
    any_flag = columns = 0
    for _ in range(windows):
        sketch = WindowSketch(profile, seed=int(rng.integers(2**31)))
        sketch.update(frame(rng, rows, names))
        features, predictions, _ = evaluate_window(profile, sketch)
        assert features.tested_count == len(names)
        count = features.drifted_count + predictions.drifted_count
        # the dataset verdict needs a flagged column: the same bound holds for it
        assert not features.drifted or features.drifted_count > 0
        any_flag += count > 0
        columns += count
    return any_flag, columns


def within_rate(hits: int, trials: int) -> bool:
    """At most RATE, up to the binomial 99.9% quantile of RATE over ``trials``."""
    return hits <= stats.binom.ppf(0.999, trials, RATE)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("rows", "windows"), [(1000, 300), (10_000, 200)])
def test_any_column_flagged_at_most_the_window_rate(wide: Profile, rows: int, windows: int) -> None:
    """27 columns (normal, t₃, lognormal, Poisson, integers 0..4, 100-category Zipf): 1000-row
    windows get KS and chi-square (a Holm family), 10 000-row windows Wasserstein and
    Jensen–Shannon (intervals at 1% / 27). The share of unchanged windows with any column
    flagged is at most 1% (tolerance: binomial 99.9% quantile, 8 of 300, 6 of 200)."""
    hits, columns = flagged_windows(wide, rows, windows, seed=rows)
    assert within_rate(hits, windows), (rows, hits, columns)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("numeric", "categorical"),
    [("hellinger", "psi"), ("psi", "linf"), ("jensen_shannon", "hellinger")],
)
def test_every_distance_keeps_the_window_rate(
    wide: Profile, numeric: str, categorical: str
) -> None:
    """The other distances' intervals and margins, on the same 27 columns in 10 000-row
    windows: at most 1% of 100 unchanged windows with a flag (binomial 99.9% quantile: 4)."""
    settings = DriftSettings(numeric_large=numeric, categorical_large=categorical)
    rng = np.random.default_rng(17)
    names = wide.schema.names
    hits = 0
    for _ in range(100):
        sketch = WindowSketch(wide)
        sketch.update(frame(rng, 10_000, names))
        features = evaluate_window(wide, sketch, settings)[0]
        assert {c.test for c in features.columns} == {numeric, categorical}
        assert all(c.effect is not None for c in features.columns)
        hits += features.drifted_count > 0
    assert within_rate(hits, 100), (numeric, categorical, hits)


@pytest.mark.timeout(120)
def test_uncorrected_per_column_tests_would_alarm(wide: Profile) -> None:
    """The comparison the default replaces: each column at 5% on its own flags most
    unchanged 1000-row windows of 27 columns (1 − 0.95^27 = 75% for independent exact
    tests; ties make KS conservative). Measured on 40 windows: at least 40%."""
    rng = np.random.default_rng(5)
    names = wide.schema.names
    hits = 0
    for _ in range(40):
        sketch = WindowSketch(wide)
        sketch.update(frame(rng, 1000, names))
        features, _, _ = evaluate_window(wide, sketch, DriftSettings(correction="none"))
        hits += features.drifted_count > 0
    assert hits >= 16, hits


@pytest.fixture(scope="module")
def few() -> Profile:
    """One column of each shape, a 200 000-row reference, for 100 000-row windows."""
    names = ["normal_0", "t3_0", "lognormal_0", "poisson_0", "zipf_0"]
    return profile_of(names, 200_000, seed=2)


@pytest.mark.timeout(120)
def test_any_column_flagged_at_most_the_window_rate_at_100k_rows(few: Profile) -> None:
    """Five shapes, 100 000-row windows: at most 1% of 60 unchanged windows with a flag
    (tolerance: binomial 99.9% quantile, 3 of 60)."""
    hits, columns = flagged_windows(few, 100_000, 60, seed=3)
    assert within_rate(hits, 60), (hits, columns)


def shifted_windows(profile: Profile, shift: float, windows: int, seed: int) -> dict:
    """Per numeric column, the effect's lower end and the verdict in 100 000-row windows
    whose numeric columns moved by ``shift`` reference standard deviations."""
    rng = np.random.default_rng(seed)
    names = profile.schema.names
    numeric = profile.numeric_names
    low: dict[str, list[float]] = {n: [] for n in numeric}
    flags = dict.fromkeys(numeric, 0)
    for _ in range(windows):
        data = frame(rng, 100_000, names)
        for name in numeric:
            data[name] = data[name] + shift * profile.numeric[name].std
        sketch = WindowSketch(profile)
        sketch.update(data)
        for col in evaluate_window(profile, sketch)[0].columns:
            if col.feature in low:
                assert col.test == "wasserstein" and col.effect is not None
                low[col.feature].append(col.effect.low)
                flags[col.feature] += col.drifted
    return {"low": low, "flags": flags}


@pytest.mark.timeout(120)
def test_a_tenth_of_a_std_is_flagged_at_100k_rows(few: Profile) -> None:
    """A 0.1-std mean shift at 100 000 rows: flagged in every one of 40 windows on every
    numeric shape, and the lower bound's mean is at least 3 of its standard deviations
    above the 0.05 margin (so the power is above 99.8% under a normal approximation)."""
    result = shifted_windows(few, 0.1, 40, seed=7)
    margin = DEFAULT_THRESHOLDS["wasserstein"]
    for name, lows in result["low"].items():
        assert result["flags"][name] == 40, (name, result["flags"])
        z = (np.mean(lows) - margin) / np.std(lows, ddof=1)
        assert z >= 3.0, (name, z)


@pytest.mark.timeout(120)
def test_a_fiftieth_of_a_std_is_never_flagged(few: Profile) -> None:
    """A 0.02-std mean shift at 100 000 rows is a negligible change: never flagged in 40
    windows, and the lower bound stays 3 of its standard deviations below the margin."""
    result = shifted_windows(few, 0.02, 40, seed=8)
    margin = DEFAULT_THRESHOLDS["wasserstein"]
    for name, lows in result["low"].items():
        assert result["flags"][name] == 0, (name, result["flags"])
        spread = max(float(np.std(lows, ddof=1)), 1e-4)
        assert (margin - np.mean(lows)) / spread >= 3.0, name


# -- coverage of the effect's interval ---------------------------------------------------


def _normal_bins(edges: np.ndarray, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Shares and bin means of N(shift, 1) on ``edges`` (right-closed), outer bins included."""
    cuts = np.concatenate([[-np.inf], edges, [np.inf]]) - shift
    shares = np.diff(stats.norm.cdf(cuts))
    means = shift + (stats.norm.pdf(cuts[:-1]) - stats.norm.pdf(cuts[1:])) / shares
    return shares, means


@pytest.mark.timeout(120)
def test_effect_intervals_cover_the_true_distance() -> None:
    """Per-column level 10% (one column, window rate 0.1): the interval covers the
    population distance in at least 90% of 200 windows, up to 3 binomial standard
    deviations (2.1 points), for a normal column moved by 0.1 std (the binned Wasserstein
    distance between the two normal populations on the profile's bins, computed exactly)
    and for a 100-category column whose shares moved (the Jensen–Shannon distance of the
    two share vectors). The estimate is nearly unbiased (mean within 5% of the truth)."""
    settings = DriftSettings(window_false_alarm_rate=0.1)
    level, windows, rows = 0.1, 200, 10_000
    tolerance = 3 * math.sqrt(level * (1 - level) / windows)
    rng = np.random.default_rng(9)

    reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, 100_000)})
    numeric = build_profile(reference, Schema.build(numeric=["x"]))
    edges = numeric.numeric["x"].edges
    p_shares, p_means = _normal_bins(edges, 0.0)
    q_shares, q_means = _normal_bins(edges, 0.1)
    width = len(p_shares)
    population = NumericBins(
        names=("x",),
        ref=(p_shares * 1e12)[None],
        cur=(q_shares * 1e12)[None],
        edges=edges[None],
        nbins=np.array([width]),
        ref_min=np.array([edges[0]]),
        ref_max=np.array([edges[-1]]),
        ref_std=np.array([numeric.numeric["x"].std]),
        cur_min=np.array([edges[0]]),
        cur_max=np.array([edges[-1]]),
        ref_means=p_means[None],
        cur_means=q_means[None],
    )
    truth_w = float(wasserstein.binned(population).statistic[0])
    assert 0.09 < truth_w < 0.11

    moved = ZIPF.copy()
    moved[:10] *= 0.9
    moved[10:20] *= 1.3
    moved /= moved.sum()
    categorical = build_profile(
        pd.DataFrame({"c": CATEGORIES[rng.choice(100, 100_000, p=ZIPF)]}),
        Schema.build(categorical=["c"]),
    )
    truth_js = float(
        jensen_shannon.binned(CategoricalBins(("c",), ZIPF[None], moved[None])).statistic[0]
    )
    covered = {"wasserstein": 0, "jensen_shannon": 0}
    estimates: dict[str, list[float]] = {"wasserstein": [], "jensen_shannon": []}
    for _ in range(windows):
        for profile, column, data, truth in (
            (numeric, "x", rng.normal(0.1, 1.0, rows), truth_w),
            (categorical, "c", CATEGORIES[rng.choice(100, rows, p=moved)], truth_js),
        ):
            sketch = WindowSketch(profile)
            sketch.update({column: data})
            col = evaluate_window(profile, sketch, settings)[0].column(column)
            assert col.effect is not None
            covered[col.test] += col.effect.low <= truth <= col.effect.high
            estimates[col.test].append(col.effect.estimate)
    for test, count in covered.items():
        assert count / windows >= 1 - level - tolerance, (test, count)
    assert abs(np.mean(estimates["wasserstein"]) / truth_w - 1) < 0.05
    assert abs(np.mean(estimates["jensen_shannon"]) / truth_js - 1) < 0.05
