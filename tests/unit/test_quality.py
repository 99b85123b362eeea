"""Data-quality checks: each fires on its own injected problem and on nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.profile import Profile, build_profile
from detectors.quality import assess_quality
from detectors.schema import Schema
from detectors.settings import QualitySettings
from detectors.sketch import WindowSketch

ROWS = 2000


def _reference(n: int = 10_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    often_missing = rng.normal(size=n)
    often_missing[rng.random(n) < 0.3] = np.nan
    return pd.DataFrame(
        {
            "x": rng.normal(10.0, 2.0, n),
            "often_missing": often_missing,
            "c": rng.choice(["a", "b", "c"], n),
            "prediction": rng.random(n),
        }
    )


@pytest.fixture(scope="module")
def profile() -> Profile:
    schema = Schema.build(
        numeric=["x", "often_missing"], categorical=["c"], prediction_numeric=["prediction"]
    )
    return build_profile(_reference(), schema)


def _clean(n: int = ROWS, seed: int = 1) -> dict[str, np.ndarray]:
    frame = _reference(n, seed)
    # Stay inside the reference range so that clean data is clean by construction.
    frame["x"] = frame["x"].clip(6.0, 14.0)
    frame["prediction"] = frame["prediction"].clip(0.01, 0.99)
    return {c: frame[c].to_numpy() for c in frame.columns}


def _assess(profile: Profile, batch: dict, settings: QualitySettings | None = None):
    sketch = WindowSketch(profile)
    sketch.update(batch)
    return assess_quality(profile, sketch, settings or QualitySettings())


def _breaches(result) -> set[tuple[str, str]]:
    return {(c.feature, c.check) for c in result.breaches}


def test_clean_window_breaches_nothing(profile: Profile) -> None:
    result = _assess(profile, _clean())
    assert result.rows == ROWS
    assert _breaches(result) == set()
    assert not result.breached
    assert result.missing_columns == () and result.extra_columns == ()
    checks = {(c.feature, c.check) for c in result.checks}
    # every column reports its kind's checks, predictions included
    assert ("prediction", "out_of_range") in checks
    assert ("c", "unseen") in checks and ("c", "out_of_range") not in checks
    assert ("x", "type_error") in checks


def test_missing_spike(profile: Profile) -> None:
    batch = _clean()
    x = batch["x"].astype(float)
    x[: ROWS // 5] = np.nan
    batch["x"] = x
    result = _assess(profile, batch)
    assert _breaches(result) == {("x", "missing")}
    check = next(c for c in result.breaches)
    assert check.rate == pytest.approx(0.2)
    assert check.count == ROWS // 5


def test_missing_compared_with_reference_rate(profile: Profile) -> None:
    # The reference is 30% missing in this column: 30% in a window is normal, 45% is not.
    rng = np.random.default_rng(5)
    batch = _clean()
    normal = np.where(rng.random(ROWS) < 0.3, np.nan, rng.normal(size=ROWS).clip(-2, 2))
    result = _assess(profile, {**batch, "often_missing": normal})
    assert _breaches(result) == set()
    check = next(c for c in result.checks if c.feature == "often_missing" and c.check == "missing")
    assert check.reference_rate == pytest.approx(0.3, abs=0.02)
    spiked = np.where(rng.random(ROWS) < 0.45, np.nan, rng.normal(size=ROWS).clip(-2, 2))
    assert _breaches(_assess(profile, {**batch, "often_missing": spiked})) == {
        ("often_missing", "missing")
    }


def test_out_of_range(profile: Profile) -> None:
    batch = _clean()
    x = batch["x"].copy()
    x[:100] = profile.numeric["x"].max + 1.0  # above
    x[100:200] = profile.numeric["x"].min - 1.0  # below
    result = _assess(profile, {**batch, "x": x})
    assert _breaches(result) == {("x", "out_of_range")}
    assert result.breaches[0].count == 200


def test_non_finite(profile: Profile) -> None:
    batch = _clean()
    x = batch["x"].copy()
    x[:40] = np.inf
    x[40:60] = -np.inf
    result = _assess(profile, {**batch, "x": x})
    assert _breaches(result) == {("x", "non_finite")}
    assert result.breaches[0].count == 60


def test_strings_in_numeric_column_are_type_errors(profile: Profile) -> None:
    batch = _clean()
    x = batch["x"].astype(object)
    x[:50] = "not a number"
    result = _assess(profile, {**batch, "x": x})
    assert _breaches(result) == {("x", "type_error")}
    assert result.breaches[0].count == 50


def test_unseen_category(profile: Profile) -> None:
    batch = _clean()
    c = batch["c"].copy()
    c[:300] = "never-seen"
    result = _assess(profile, {**batch, "c": c})
    assert _breaches(result) == {("c", "unseen")}
    assert result.breaches[0].rate == pytest.approx(300 / ROWS)


def test_absent_column(profile: Profile) -> None:
    batch = _clean()
    del batch["x"]
    result = _assess(profile, batch)
    assert result.missing_columns == ("x",)
    assert result.breached
    # absent rows count as missing values too
    assert _breaches(result) == {("x", "missing")}
    assert result.breaches[0].rate == 1.0


def test_column_absent_in_some_batches_only_is_not_a_missing_column(profile: Profile) -> None:
    sketch = WindowSketch(profile)
    batch = _clean()
    sketch.update(batch)
    sketch.update({k: v for k, v in batch.items() if k != "x"})
    result = assess_quality(profile, sketch, QualitySettings())
    assert result.missing_columns == ()
    assert _breaches(result) == {("x", "missing")}  # half the rows lack it


def test_extra_column_is_reported_not_breached(profile: Profile) -> None:
    batch = {**_clean(), "debug_flag": np.ones(ROWS)}
    result = _assess(profile, batch)
    assert result.extra_columns == ("debug_flag",)
    assert not result.breached


def test_min_rows(profile: Profile) -> None:
    tiny = {k: v[:10] for k, v in _clean().items()}
    tiny["x"] = np.full(10, np.nan)
    tiny["often_missing"] = np.zeros(10)  # ten rows cannot show its usual 30% missing
    # ten rows, all missing: the rate is reported but a breach needs min_rows rows
    result = _assess(profile, tiny, QualitySettings(min_rows=20))
    check = next(c for c in result.checks if c.feature == "x" and c.check == "missing")
    assert check.rate == 1.0 and not check.breached
    assert _breaches(_assess(profile, tiny, QualitySettings(min_rows=10))) == {("x", "missing")}


def test_threshold_override_per_column(profile: Profile) -> None:
    batch = _clean()
    c = batch["c"].copy()
    c[:60] = "never-seen"  # 3% unseen: under the default 5%
    assert _breaches(_assess(profile, {**batch, "c": c})) == set()
    strict = QualitySettings(columns={"c": {"unseen": 0.01}})
    assert _breaches(_assess(profile, {**batch, "c": c}, strict)) == {("c", "unseen")}


def test_empty_window(profile: Profile) -> None:
    result = assess_quality(profile, WindowSketch(profile), QualitySettings())
    assert result.rows == 0
    assert not result.breached
    assert all(c.rate == 0.0 for c in result.checks)
