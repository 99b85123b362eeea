"""Online MMD: run length without a change near the expected run time it was calibrated
to, detection of a correlation change, and batch-size independence."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.multivariate.online_mmd import OnlineMMD


def _correlated(rng: np.random.Generator, n: int, d: int = 4) -> np.ndarray:
    y = rng.normal(size=(n, d))
    y[:, 1] = 0.8 * y[:, 0] + 0.6 * y[:, 1]
    return y


@pytest.fixture(scope="module")
def detector() -> OnlineMMD:
    rng = np.random.default_rng(0)
    return OnlineMMD(
        rng.normal(size=(1200, 4)), window=20, expected_run_time=100, simulations=2000, seed=1
    )


def test_run_length_without_change_matches_the_expected_run_time(detector: OnlineMMD) -> None:
    """120 runs on unchanged data: the mean run length (from the first full window) must be
    within three standard errors of 100 (a geometric run length has sd ≈ its mean) plus
    10% for the calibration's own sampling error."""
    rng = np.random.default_rng(7)
    lengths = []
    for _ in range(120):
        detector.reset()
        hit = None
        while hit is None:
            steps_before = detector.steps
            hit = detector.update(rng.normal(size=(100, 4)))
        lengths.append(hit.step - (detector.window - 1))
        assert hit.step >= steps_before
    mean = float(np.mean(lengths))
    assert abs(mean - 100) < 3 * 100 / np.sqrt(120) + 10, mean


def test_correlation_change_is_detected_quickly(detector: OnlineMMD) -> None:
    rng = np.random.default_rng(8)
    delays = []
    for _ in range(10):
        detector.reset()
        hit = detector.update(_correlated(rng, 600))
        assert hit is not None
        delays.append(hit.index)
    # far sooner than the 100-row expected run time without a change
    assert np.median(delays) < 60, delays


def test_rows_one_at_a_time_give_the_same_detection_as_one_batch(detector: OnlineMMD) -> None:
    rng = np.random.default_rng(9)
    rows = np.concatenate([rng.normal(size=(30, 4)), _correlated(rng, 300)])
    detector.reset()
    whole = detector.update(rows)
    detector.reset()
    single = None
    for i, row in enumerate(rows):
        single = detector.update(row[None, :])
        if single is not None:
            assert whole is not None and i == whole.index
            assert single.statistic == pytest.approx(whole.statistic, abs=1e-9)
            break
    assert single is not None and whole is not None and single.step == whole.step


def test_thresholds_are_calibrated_per_step_and_settle(detector: OnlineMMD) -> None:
    t = detector.thresholds
    assert len(t) == 3 * detector.window and np.all(np.isfinite(t))
    assert detector.threshold_at(10_000) == t[-1]


def test_a_reference_too_small_for_the_window_is_named() -> None:
    with pytest.raises(ValueError, match="too small for a window"):
        OnlineMMD(np.zeros((50, 2)), window=40)


def test_a_run_saved_and_restored_detects_where_the_uninterrupted_run_does(
    detector: OnlineMMD,
) -> None:
    """A checkpoint in the middle of a run (through JSON, as the agent's checkpoint holds
    it): the restored detector fires at the same step with the same statistic."""
    import json

    rng = np.random.default_rng(10)
    before, after = rng.normal(size=(45, 4)), _correlated(rng, 300)
    detector.reset()
    whole = detector.update(np.concatenate([before, after]))
    assert whole is not None and whole.index >= len(before)

    detector.reset()
    assert detector.update(before) is None
    saved = json.loads(json.dumps(detector.state()))
    restored = detector.copy()
    assert restored.steps == 0
    restored.restore(saved)
    hit = restored.update(after)
    assert hit is not None
    assert hit.step == whole.step
    assert hit.statistic == pytest.approx(whole.statistic, rel=1e-12)
    # without the saved run the detector starts again and cannot fire at that step
    fresh = detector.copy().update(after)
    assert fresh is None or fresh.step != whole.step


def test_a_run_of_another_detector_is_refused(detector: OnlineMMD) -> None:
    detector.reset()
    detector.update(np.random.default_rng(11).normal(size=(30, 4)))
    saved = detector.state()
    for key, value in (("window", 21), ("expected_run_time", 50), ("dims", 3)):
        with pytest.raises(ValueError, match="another detector"):
            detector.copy().restore({**saved, key: value})
    with pytest.raises(ValueError, match="do not match"):
        detector.copy().restore({**saved, "steps": 3})
