"""Calibrated thresholds: measured on the reference, they keep the chosen false-alarm rate
on fresh data from the same distribution, at any window size and feature shape."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from detectors.calibration import calibrate, conformal_quantile
from detectors.evaluate import CALIBRATION_MAX_RATIO, evaluate_window
from detectors.profile import Profile, build_profile
from detectors.schema import Schema
from detectors.settings import DEFAULT_THRESHOLDS, ColumnTest, DriftSettings
from detectors.sketch import WindowSketch
from detectors.tests_registry import TESTS

TARGET = 0.05
DRAWS = 1000  # calibration draws: the threshold's own sampling error stays small
WINDOWS = 400  # fresh windows on which the false-alarm rate is observed


def shapes(n: int, seed: int) -> pd.DataFrame:
    """A skewed feature and a heavy-tie feature (seven values carry almost all the mass)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "skewed": rng.lognormal(0.0, 1.2, n),
            "ties": rng.poisson(1.5, n).astype(float),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return shapes(60_000, seed=0)


@pytest.fixture(scope="module")
def profile(reference: pd.DataFrame) -> Profile:
    return build_profile(reference, Schema.build(numeric=["skewed", "ties"]))


@pytest.mark.parametrize("window_rows", [300, 3000])
def test_false_alarm_rate_on_fresh_data_is_the_target(
    reference: pd.DataFrame, profile: Profile, window_rows: int
) -> None:
    cal = calibrate(profile, reference, window_rows, false_alarm_rate=TARGET, draws=DRAWS)
    calibrated = profile.with_calibration(cal)
    fresh = shapes(window_rows * WINDOWS, seed=1)  # not the reference: new draws
    alarms = {"skewed": 0, "ties": 0}
    for w in range(WINDOWS):
        sketch = WindowSketch(calibrated)
        sketch.update(fresh.iloc[w * window_rows : (w + 1) * window_rows])
        features, _, _ = evaluate_window(calibrated, sketch)
        for col in features.columns:
            assert col.mode == "calibrated"
            assert col.threshold == cal.thresholds[col.feature][col.test]
            alarms[col.feature] += col.drifted
    # Spread of the observed rate: binomial over the windows, plus the threshold's own
    # error (a quantile from DRAWS draws); 4 standard deviations either side.
    sd = math.sqrt(TARGET * (1 - TARGET) * (1 / WINDOWS + 1 / DRAWS))
    for name, count in alarms.items():
        rate = count / WINDOWS
        assert abs(rate - TARGET) <= 4 * sd, (name, window_rows, rate)


def test_fixed_default_threshold_misses_the_target_both_ways(
    reference: pd.DataFrame, profile: Profile
) -> None:
    """Why calibration exists: at 3000 rows the default rule (the Wasserstein distance's
    lower confidence bound at the window's per-column level above the 0.05 margin) keeps
    unchanged windows far from flagging (a false alarm rate of 0, not the 5% asked for),
    and a real shift of 0.06 standard deviations goes unnoticed; the calibrated thresholds,
    at 5% per column, keep 5% (the test above) and catch that shift."""
    fresh = shapes(3000 * 100, seed=2)
    alarms = {"skewed": 0, "ties": 0}
    for w in range(100):
        sketch = WindowSketch(profile)
        sketch.update(fresh.iloc[w * 3000 : (w + 1) * 3000])
        for col in evaluate_window(profile, sketch)[0].columns:
            margin = DEFAULT_THRESHOLDS["wasserstein"]
            assert (col.test, col.threshold, col.mode) == ("wasserstein", margin, "binned")
            alarms[col.feature] += col.drifted
    assert alarms == {"skewed": 0, "ties": 0}
    cal = calibrate(profile, reference, 3000, false_alarm_rate=TARGET, draws=200)
    assert cal.thresholds["skewed"]["wasserstein"] < 0.06
    assert cal.thresholds["ties"]["wasserstein"] < 0.06
    calibrated = profile.with_calibration(cal)
    shifted = shapes(3000 * 20, seed=3)
    shifted["skewed"] += 0.06 * profile.numeric["skewed"].std
    caught = {"fixed": 0, "calibrated": 0}
    for w in range(20):
        for key, prof in (("fixed", profile), ("calibrated", calibrated)):
            sketch = WindowSketch(prof)
            sketch.update(shifted.iloc[w * 3000 : (w + 1) * 3000])
            columns = {c.feature: c for c in evaluate_window(prof, sketch)[0].columns}
            caught[key] += columns["skewed"].drifted
    assert caught["fixed"] <= 2 and caught["calibrated"] >= 18, caught


def test_ks_threshold_follows_its_null_distribution(reference: pd.DataFrame) -> None:
    """For a continuous column the calibrated KS threshold is the (1 − rate) quantile of
    Smirnov's distribution for the chunk and rest sizes, and shrinks like 1/sqrt(rows)."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=50_000)})
    profile = build_profile(frame, Schema.build(numeric=["x"]))
    levels = {}
    for rows in (250, 1000):
        cal = calibrate(profile, frame, rows, false_alarm_rate=0.05, draws=1000, tests=["ks"])
        levels[rows] = cal.thresholds["x"]["ks"]
        effective_n = round(rows * (50_000 - rows) / 50_000)
        # binned D is slightly below exact D (100 bins), hence a one-sided allowance
        assert 0.85 < levels[rows] / stats.kstwo.isf(0.05, effective_n) < 1.08
    assert 1.7 < levels[250] / levels[1000] < 2.3


def test_every_shape_and_kind_gets_every_applicable_test(
    reference_factory: Callable, explicit_schema: Schema
) -> None:
    frame = reference_factory(20_000, 4)  # constant, missing, heavy ties, long-tail text
    profile = build_profile(frame, explicit_schema)
    cal = calibrate(profile, frame, 500, false_alarm_rate=0.02, draws=100)
    assert (cal.window_rows, cal.false_alarm_rate, cal.draws) == (500, 0.02, 100)
    for col in explicit_schema.columns:
        expected = {t for t, spec in TESTS.items() if col.kind in spec.kinds}
        assert set(cal.thresholds[col.name]) == expected, col.name
        assert all(math.isfinite(v) and v >= 0 for v in cal.thresholds[col.name].values())
    # a constant column never moves within the reference: its distances calibrate to 0
    assert cal.thresholds["constant"]["wasserstein"] == 0.0
    assert cal.thresholds["constant"]["ks"] == 0.0
    # a chosen subset of tests
    only = calibrate(profile, frame, 500, false_alarm_rate=0.02, draws=100, tests=["psi"])
    assert {t for ts in only.thresholds.values() for t in ts} == {"psi"}
    assert only.thresholds["city"]["psi"] == cal.thresholds["city"]["psi"]  # same seed


def test_chunks_are_compared_with_the_rest(profile: Profile, reference: pd.DataFrame) -> None:
    """Each chunk is compared with the rest of the reference, as a window (independent of
    the reference) is compared with the profile. Against the whole reference, which
    contains the chunk, every CDF gap would be halved for a chunk of half the reference."""
    small = reference.iloc[:2000]
    p = build_profile(small, Schema.build(numeric=["skewed", "ties"]))
    cal = calibrate(p, small, 1000, false_alarm_rate=0.05, draws=200, tests=["ks"])
    # against the whole (which contains the chunk) the quantile would be about half this
    expected = stats.kstwo.isf(0.05, 500)
    assert 0.8 < cal.thresholds["skewed"]["ks"] / expected < 1.1


def test_refuses_windows_larger_than_half_the_reference(
    profile: Profile, reference: pd.DataFrame
) -> None:
    with pytest.raises(ValueError, match="more than half the reference"):
        calibrate(profile, reference, len(reference) // 2 + 1)
    with pytest.raises(ValueError, match="draws"):
        calibrate(profile, reference, 100, false_alarm_rate=0.001, draws=200)
    with pytest.raises(ValueError, match="unknown tests"):
        calibrate(profile, reference, 100, tests=["nope"])
    with pytest.raises(ValueError, match="lacks"):
        calibrate(profile, reference.drop(columns=["ties"]), 100)


def test_deterministic_for_a_seed(profile: Profile, reference: pd.DataFrame) -> None:
    a = calibrate(profile, reference, 500, false_alarm_rate=0.05, draws=100, seed=7)
    b = calibrate(profile, reference, 500, false_alarm_rate=0.05, draws=100, seed=7)
    c = calibrate(profile, reference, 500, false_alarm_rate=0.05, draws=100, seed=8)
    assert a == b
    assert a.thresholds != c.thresholds


def test_where_calibration_applies(profile: Profile, reference: pd.DataFrame) -> None:
    cal = calibrate(profile, reference, 1000, false_alarm_rate=0.05, draws=100)
    calibrated = profile.with_calibration(cal)
    window = shapes(5000, seed=5)

    def first(rows: int, settings: DriftSettings | None = None):
        sketch = WindowSketch(calibrated)
        sketch.update(window.iloc[:rows])
        return evaluate_window(calibrated, sketch, settings or DriftSettings())[0].column("skewed")

    near = first(1500)
    assert near.mode == "calibrated" and near.test == "wasserstein"
    assert near.threshold == cal.thresholds["skewed"]["wasserstein"]
    assert near.drifted == (near.statistic > near.threshold)
    # far from the calibrated size (more than CALIBRATION_MAX_RATIO): configured thresholds
    far = first(int(1000 * CALIBRATION_MAX_RATIO) + 500)
    assert far.mode == "binned" and far.threshold == DEFAULT_THRESHOLDS["wasserstein"]
    # switched off, or overridden for the column
    off = first(1000, DriftSettings(use_calibration=False))
    assert off.mode == "exact" and off.test == "ks"  # 1000 rows: small-window KS
    assert off.p_value is not None and off.drifted == (off.p_value < off.threshold)
    assert off.threshold <= DriftSettings().window_false_alarm_rate  # Holm's level
    pinned = first(1500, DriftSettings(columns={"skewed": ColumnTest(threshold=0.3)}))
    assert pinned.mode == "binned" and pinned.threshold == 0.3


def test_conformal_quantile() -> None:
    values = np.arange(1.0, 100.0)  # 99 values
    # rank ceil(100 · 0.95) = 95: a new exchangeable value exceeds it with probability 5/100
    assert conformal_quantile(values, 0.05) == 95.0
    assert conformal_quantile(np.append(values, np.nan), 0.05) == 95.0
    assert conformal_quantile(values, 0.001) == 99.0  # capped at the largest
    assert math.isnan(conformal_quantile(np.array([np.nan]), 0.05))
