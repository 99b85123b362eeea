"""Sequential detectors (detectors/sequential.py): calibrated false alarms over long
unchanged streams, detection delay of a 0.25-standard-deviation shift, where they fire,
the state's round trip and its resets. Fixed seeds; tolerances are stated per test."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from detectors.profile import Profile, build_profile
from detectors.results import DriftResult, Sequential, TestResult
from detectors.run_length import SequentialCalibration
from detectors.sequential import (
    SequentialDetector,
    SequentialSettings,
    siegmund_curve,
)
from detectors.sequential_calibration import calibrate_sequential, lundberg_exponent
from detectors.sketch import WindowSketch

ZIPF = (1 / np.arange(1, 21)) / (1 / np.arange(1, 21)).sum()


def _draw(rng: np.random.Generator, rows: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Normal, heavy-tailed (t3, unit variance), tied integers and a Zipf categorical."""
    return {
        "normal": rng.normal(size=rows) + shift,
        "heavy": rng.standard_t(3, size=rows) / math.sqrt(3.0) + shift,
        "ties": np.round(rng.normal(0.0, 1.5, size=rows) + 1.5 * shift),
        "cat": np.array([f"c{i}" for i in rng.choice(20, p=ZIPF, size=rows)], dtype=object),
    }


@pytest.fixture(scope="module")
def reference() -> tuple[Profile, pd.DataFrame]:
    frame = pd.DataFrame(_draw(np.random.default_rng(7), 50_000))
    return build_profile(frame), frame


@pytest.fixture(scope="module")
def calibrated(reference: tuple[Profile, pd.DataFrame]) -> Profile:
    profile, frame = reference
    return profile.with_sequential(calibrate_sequential(profile, frame, pane_rows=50, seed=1))


def _counts(profile: Profile, data: dict[str, np.ndarray], rows: int) -> tuple[np.ndarray, ...]:
    """Consecutive windows of ``rows`` rows as stacked counts, binned as the sketch bins."""
    windows = len(next(iter(data.values()))) // rows
    pane = np.repeat(np.arange(windows), rows)
    w_num, w_cat = profile.numeric_width, profile.categorical_width
    num = np.zeros((windows, len(profile.numeric_names), w_num), dtype=np.int64)
    for j, name in enumerate(profile.numeric_names):
        x = data[name][: windows * rows]
        slot = np.searchsorted(profile.numeric[name].edges, x, side="left")
        num[:, j] = np.bincount(pane * w_num + slot, minlength=windows * w_num).reshape(windows, -1)
    cat = np.zeros((windows, len(profile.categorical_names), w_cat), dtype=np.int64)
    for j, name in enumerate(profile.categorical_names):
        vocab = {v: i for i, v in enumerate(profile.categorical[name].vocabulary)}
        slot = np.array([vocab.get(v, w_cat - 1) for v in data[name][: windows * rows]])
        cat[:, j] = np.bincount(pane * w_cat + slot, minlength=windows * w_cat).reshape(windows, -1)
    return num, cat


def test_counts_helper_bins_like_the_sketch(calibrated: Profile) -> None:
    data = _draw(np.random.default_rng(0), 300)
    num, cat = _counts(calibrated, data, 300)
    sketch = WindowSketch(calibrated)
    sketch.update(data)
    np.testing.assert_array_equal(num[0], sketch.num_counts)
    np.testing.assert_array_equal(cat[0], sketch.cat_counts)


def test_calibration_of_normal_scores_matches_siegmund(calibrated: Profile) -> None:
    # Location scores of 50-row windows are close to N(0, 1), so the location CUSUM's
    # increments are N(−k', 1) with k' = k + margin = 0.5 + 0.005·sqrt(50): Siegmund's
    # ARL0 ≈ exp(2k'(h + 1.166)) / (2k'²), slope 2k'. Tolerances: 5% on the slope (the
    # Lundberg root of 20 000 increments), 0.4 on the intercept (measured from 25-60
    # alarms, about ±0.2, plus the binned scores' departure from normal).
    assert calibrated.sequential is not None
    curve = calibrated.sequential.columns["normal"]["location_up"]
    normal = siegmund_curve(0.5 + 0.005 * math.sqrt(50))
    assert curve.slope == pytest.approx(normal.slope, rel=0.05)
    assert curve.intercept == pytest.approx(normal.intercept, abs=0.4)
    small = calibrated.sequential.columns["normal"]["location_up_small"]
    assert small.slope == pytest.approx(siegmund_curve(0.2 + 0.005 * math.sqrt(50)).slope, rel=0.05)


def test_lundberg_exponent_of_normal_increments() -> None:
    # For N(−k, 1) increments the root of E exp(θx) = 1 is θ = 2k exactly.
    x = np.random.default_rng(1).normal(-0.5, 1.0, size=(200_000, 1))
    assert lundberg_exponent(x)[0] == pytest.approx(1.0, rel=0.03)
    assert math.isinf(lundberg_exponent(-np.abs(x))[0])


def test_false_alarms_on_unchanged_stream_follow_the_calibrated_run_length(
    calibrated: Profile,
) -> None:
    """40 000 unchanged 50-row windows with an expected run of 2 000 windows per column:
    about 20 false alarms per column. The channels' Bonferroni split and Lorden's bound
    for ``unseen`` make a column's rate at most the target; tolerance: at most 40 alarms
    per column (the target's Poisson 99.99% bound is 38) and at least 5 (too
    conservative would waste detection delay)."""
    detector = SequentialDetector(
        calibrated, calibrated.sequential, SequentialSettings(expected_run_windows=2000)
    )
    num, cat = _counts(calibrated, _draw(np.random.default_rng(11), 40_000 * 50), 50)
    state = detector.new_state()
    alarms = dict.fromkeys(calibrated.schema.names, 0)
    dataset = 0
    for w in range(len(num)):
        step = detector.update_counts(state, num[w], cat[w], at=float(w))
        for name, seq in step.columns.items():
            alarms[name] += seq.fired
        dataset += step.dataset["features"].fired
    for name in ("normal", "heavy", "ties"):
        assert 5 <= alarms[name] <= 40, alarms
    assert alarms["cat"] <= 40, alarms
    assert dataset <= 40


def test_no_false_alarm_in_a_million_rows_at_the_default_run_time(calibrated: Profile) -> None:
    """Defaults for 50-row windows: 1e8 rows between false alarms per column, i.e. 2e6
    windows; 20 000 windows (1M rows) of each of four columns expect 0.04 alarms in all,
    so more than one would happen with probability < 1e-3."""
    settings = SequentialSettings(expected_run_windows=100_000_000 / 50)
    detector = SequentialDetector(calibrated, calibrated.sequential, settings)
    num, cat = _counts(calibrated, _draw(np.random.default_rng(12), 20_000 * 50), 50)
    state = detector.new_state()
    fired = 0
    for w in range(len(num)):
        step = detector.update_counts(state, num[w], cat[w], at=float(w))
        fired += sum(s.fired for s in step.columns.values())
        fired += step.dataset["features"].fired
    assert fired <= 1


def test_quarter_std_shift_found_with_bounded_delay_and_detected_at(calibrated: Profile) -> None:
    """A 0.25-std shift after 20 000 unchanged rows, 50-row windows, default run time:
    30 streams. Expected delay about 12 windows (600 rows: CUSUM drift 0.25·√50·0.97 − 0.5
    − margin per window against a threshold near 14). Bounds: every shift found within
    3 000 rows, the median within 1 200, never before the change; ``detected_at`` is the
    end of the window that fired."""
    settings = SequentialSettings(expected_run_windows=100_000_000 / 50)
    detector = SequentialDetector(calibrated, calibrated.sequential, settings)
    rng = np.random.default_rng(21)
    delays = []
    for _ in range(30):
        before = _draw(rng, 20_000)
        after = _draw(rng, 4_000, shift=0.25)
        data = {k: np.concatenate([before[k], after[k]]) for k in before}
        num, cat = _counts(calibrated, data, 50)
        state = detector.new_state()
        found = None
        for w in range(len(num)):
            step = detector.update_counts(state, num[w], cat[w], at=float((w + 1) * 50))
            seq = step.columns["normal"]
            if seq.fired:
                assert seq.detected_at == (w + 1) * 50
                assert seq.statistic > seq.threshold
                found = seq.detected_at
                break
        assert found is not None and found > 20_000
        delays.append(found - 20_000)
    assert max(delays) <= 3_000
    assert np.median(delays) <= 1_200


def test_new_category_and_variance_change_are_found(calibrated: Profile) -> None:
    detector = SequentialDetector(calibrated, calibrated.sequential, SequentialSettings())
    rng = np.random.default_rng(5)
    data = _draw(rng, 2_000)
    data["cat"][rng.random(2_000) < 0.05] = "brand-new"
    data["normal"] = data["normal"] * 1.5
    num, cat = _counts(calibrated, data, 50)
    state = detector.new_state()
    seen: dict[str, str] = {}
    for w in range(len(num)):
        step = detector.update_counts(state, num[w], cat[w], at=float(w))
        for name in ("cat", "normal"):
            if step.columns[name].fired and name not in seen:
                seen[name] = step.columns[name].channel or ""
    assert seen == {"cat": "unseen", "normal": "scale_up"}


def test_calibration_round_trips_through_the_profile_file(calibrated: Profile, tmp_path) -> None:
    from detectors.profile import load_profile

    path = calibrated.save(tmp_path / "p.json")
    loaded = load_profile(path)
    assert loaded.sequential == calibrated.sequential
    assert loaded.content_hash == calibrated.content_hash
    bare = Profile.from_dict({**calibrated.to_dict(), "sequential": None})
    assert bare.sequential is None and "sequential" not in bare.to_dict()
    body = json.loads(json.dumps(calibrated.sequential.to_dict()))
    assert SequentialCalibration.from_dict(body) == calibrated.sequential


def test_results_carry_sequential_blocks() -> None:
    seq = Sequential(statistic=14.2, threshold=13.1, detected_at=1234.0, channel="location_up")
    col = TestResult("x", "ks", 0.1, 0.2, 0.05, True, sequential=seq)
    result = DriftResult(1.0, 1, 1, 0.5, True, "none", (col,), sequential=Sequential(1.0, 9.0))
    back = DriftResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result
    assert back.columns[0].sequential.fired and not back.sequential.fired
    old = {k: v for k, v in col.to_dict().items() if k != "sequential"}
    assert TestResult.from_dict(old).sequential is None
