"""The Wasserstein floor's bridge law, simulated once per reference (at ``reference build``
or at start-up) instead of in the first window: the same law, so the same verdicts."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from detectors import bridge_floor, reference_laws
from detectors.evaluate import evaluate_window
from detectors.null_laws import clear_cache
from detectors.profile import Profile, build_profile, load_profile
from detectors.settings import DriftSettings, QualitySettings
from detectors.sketch import WindowSketch
from monitor.cli import main
from monitor.runtime.evaluation import WindowEvaluator


def _frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0, rows),
            "b": rng.lognormal(0.0, 1.0, rows),
            "c": rng.poisson(4.0, rows).astype(float),
            "k": rng.choice(["x", "y", "z"], rows, p=[0.6, 0.3, 0.1]),
            "prediction": rng.random(rows),
        }
    )


@pytest.fixture(autouse=True)
def _fresh() -> None:
    clear_cache()
    reference_laws.forget()


@pytest.fixture(scope="module")
def profile() -> Profile:
    return build_profile(_frame(20_000, 0), prediction=["prediction"])


def _judge(profile: Profile, frame: pd.DataFrame) -> list[dict[str, object]]:
    sketch = WindowSketch(profile, seed=1)
    sketch.update({c: frame[c].to_numpy() for c in frame.columns})
    features, predictions, _ = evaluate_window(profile, sketch)
    return [asdict(c) for c in (*features.columns, *predictions.columns)]


def test_a_stored_law_survives_the_profile_file(profile: Profile, tmp_path) -> None:
    law = reference_laws.simulate_bridge_law(profile)
    stored = profile.with_bridge_law(law)
    path = tmp_path / "p.json"
    stored.save(path)
    back = load_profile(path)
    assert back.bridge_law is not None
    assert np.array_equal(back.bridge_law.tail.values, law.tail.values, equal_nan=True)
    assert np.array_equal(back.bridge_law.tail.levels, law.tail.levels)
    assert np.array_equal(back.bridge_law.mean_square, law.mean_square, equal_nan=True)
    assert np.array_equal(back.bridge_law.empty, law.empty)
    assert back.content_hash == stored.content_hash


def test_a_profile_from_before_the_stored_law_loads_and_judges(profile: Profile, tmp_path) -> None:
    body = profile.to_dict()
    assert "bridge_law" not in body  # a profile without it keeps its content hash
    old = Profile.from_dict(json.loads(json.dumps(body)))
    assert old.bridge_law is None and old.content_hash == profile.content_hash
    assert _judge(old, _frame(5000, 3)) == _judge(profile, _frame(5000, 3))


@pytest.mark.parametrize("shift", [0.0, 0.08])
def test_the_stored_law_gives_the_verdicts_of_the_simulated_one(
    profile: Profile, shift: float
) -> None:
    # Wasserstein and Jensen–Shannon at 5000 rows: the bridge law sets the floors.
    window = _frame(5000, 7, shift)
    simulated = _judge(profile, window)
    assert any(c["test"] == "wasserstein" and c["effect"] for c in simulated)
    clear_cache()
    reference_laws.forget()
    stored = profile.with_bridge_law(reference_laws.simulate_bridge_law(profile))
    calls = []
    original = bridge_floor.bridge_law

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    reference_laws.bridge_law = counted  # type: ignore[assignment]
    try:
        assert _judge(stored, window) == simulated  # every statistic, interval, verdict
    finally:
        reference_laws.bridge_law = original  # type: ignore[assignment]
    assert calls == []  # read from the profile, not simulated


def test_a_law_from_another_simulation_is_not_used(profile: Profile) -> None:
    other = reference_laws.simulate_bridge_law(profile, simulations=2000, seed=5)
    assert reference_laws.stored_bridge_law(profile.with_bridge_law(other)) is None
    assert reference_laws.stored_bridge_law(profile) is None


def test_the_evaluator_simulates_at_start_up_not_in_the_first_window(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    WindowEvaluator(profile, "m", DriftSettings(), QualitySettings())

    def refuse(*args, **kwargs):
        raise AssertionError("simulated in a window")

    monkeypatch.setattr(reference_laws, "bridge_law", refuse)
    monkeypatch.setattr(bridge_floor, "bridge_law", refuse)
    results = _judge(profile, _frame(5000, 11))
    assert any(c["test"] == "wasserstein" for c in results)


def test_reference_build_stores_the_law(tmp_path) -> None:
    _frame(3000, 0).to_csv(tmp_path / "ref.csv", index=False)
    out = tmp_path / "ref.json"
    rc = main(["reference", "build", "--data", str(tmp_path / "ref.csv"), "--prediction",
               "prediction", "--sequential-panes", "1000", "-o", str(out)])  # fmt: skip
    assert rc == 0
    built = load_profile(out)
    assert reference_laws.stored_bridge_law(built) is not None
    again = reference_laws.simulate_bridge_law(built)
    assert built.bridge_law is not None
    assert np.array_equal(built.bridge_law.tail.values, again.tail.values, equal_nan=True)


def test_grid_sizes_share_the_reference_draws_and_keep_their_laws() -> None:
    from detectors import noise_floor

    shares = 1.0 / np.arange(1, 201) ** 1.1
    shares /= shares.sum()
    laws = {}
    for remember in (True, False):  # kept reference draws, then a fresh generator each
        clear_cache()
        for n in (9742, 10173):  # two grid sizes of one column
            laws[remember, n] = noise_floor._simulated_law(
                "jensen_shannon", shares, 100_000, n, 1e-4, 1000, 7, remember=remember
            )
    for n in (9742, 10173):
        assert laws[True, n] == laws[False, n]
    assert laws[True, 9742].at(0.001) > laws[True, 10173].at(0.001)


def test_windows_under_one_percent_apart_get_floors_within_one_percent() -> None:
    # 200 Zipf categories at ~10k rows: sparse, so simulated on the size grid and
    # interpolated in log n; 9,873 and 9,951 rows (0.8% apart) straddle no gap wider than
    # the grid's 4.4%. Tolerance: 1% relative (the χ² limit moves by 0.4% between them).
    from detectors import noise_floor

    ref = np.round(100_000 / np.arange(1, 201) ** 1.1)[None, :]
    floors = {
        n: noise_floor.multinomial_null("jensen_shannon", ref, ref.sum(axis=1), [n], 1e-3)
        for n in (9873, 9951)
    }
    (f1, s1), (f2, s2) = floors[9873], floors[9951]
    assert f2[0] < f1[0] and abs(f2[0] / f1[0] - 1) < 0.01
    assert abs(s2[0] / s1[0] - 1) < 0.01
