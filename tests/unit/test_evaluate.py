"""Window evaluation: test choice, exact and binned modes, dataset verdict, corrections,
prediction drift and canary comparison; and the multiple-testing corrections themselves."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from detectors.evaluate import choose_test, compare_windows, evaluate_window, take_rows
from detectors.multiple_testing import benjamini_hochberg, bh_adjusted, bonferroni, correct
from detectors.profile import Profile, build_profile
from detectors.schema import Kind, Schema
from detectors.settings import DEFAULT_THRESHOLDS, ColumnTest, DriftSettings
from detectors.sketch import WindowSketch
from detectors.stats import CategoricalBins, NumericBins

# -- a wide synthetic model: 20 numeric shapes (heavy ties among them) + 3 categorical -----

Gen = Callable[[np.random.Generator, int], np.ndarray]
SHAPES: dict[str, Gen] = {
    "normal": lambda r, n: r.normal(0.0, 1.0, n),
    "lognormal": lambda r, n: r.lognormal(0.0, 1.0, n),
    "exponential": lambda r, n: r.exponential(2.0, n),
    "uniform": lambda r, n: r.uniform(-3.0, 3.0, n),
    "student_t3": lambda r, n: r.standard_t(3, n),
    "bimodal": lambda r, n: np.where(r.random(n) < 0.3, r.normal(-4, 1, n), r.normal(3, 0.5, n)),
    "gamma_half": lambda r, n: r.gamma(0.5, 1.0, n),
    "beta": lambda r, n: r.beta(0.5, 0.5, n),
    "pareto": lambda r, n: r.pareto(4.0, n),
    "laplace": lambda r, n: r.laplace(5.0, 2.0, n),
    "weibull": lambda r, n: r.weibull(1.5, n),
    "neg_skew": lambda r, n: -r.lognormal(0.0, 0.7, n),
    "large_scale": lambda r, n: r.normal(1e6, 1e4, n),
    "tiny_scale": lambda r, n: r.normal(0.0, 1e-6, n),
    "poisson_ties": lambda r, n: r.poisson(2.0, n).astype(float),
    "binary_ties": lambda r, n: r.integers(0, 2, n).astype(float),
    "five_ties": lambda r, n: r.integers(0, 5, n).astype(float),
    "rounded_ties": lambda r, n: np.round(r.normal(0.0, 1.0, n), 1),
    "zero_inflated": lambda r, n: np.where(r.random(n) < 0.6, 0.0, r.exponential(1.0, n)),
    "with_nan": lambda r, n: np.where(r.random(n) < 0.1, np.nan, r.normal(0.0, 1.0, n)),
}
CATEGORIES = {
    "device": (["web", "ios", "android", "kiosk"], [0.5, 0.3, 0.19, 0.01]),
    "plan": ([f"plan_{i}" for i in range(12)], None),
    "flag": (["y", "n"], [0.9, 0.1]),
}
WIDE_SCHEMA = Schema.build(
    numeric=list(SHAPES), categorical=list(CATEGORIES), prediction_numeric=["score"]
)


def wide_frame(n: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for name, gen in SHAPES.items():
        data[name] = gen(rng, n) + (shift or {}).get(name, 0.0)
    for name, (values, p) in CATEGORIES.items():
        data[name] = rng.choice(values, n, p=p)
    data["score"] = rng.beta(2.0, 5.0, n) + (shift or {}).get("score", 0.0)
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def wide_profile() -> Profile:
    return build_profile(wide_frame(100_000, seed=0), WIDE_SCHEMA)


@pytest.fixture(scope="module")
def small_profile(reference_factory: Callable, explicit_schema: Schema) -> Profile:
    """The shared test reference (tie-heavy, constant, skewed, missing...) at 20k rows."""
    return build_profile(reference_factory(20_000, 0), explicit_schema)


@pytest.fixture
def make_reference(reference_factory: Callable) -> Callable[..., pd.DataFrame]:
    def make(n: int, seed: int = 0) -> pd.DataFrame:
        return reference_factory(n, seed)

    return make


def sketch_of(profile: Profile, frame: pd.DataFrame, **kwargs) -> WindowSketch:
    sketch = WindowSketch(profile, **kwargs)
    sketch.update(frame)
    return sketch


# -- test choice and modes --------------------------------------------------------------


def test_small_window_uses_p_value_tests_on_raw_rows(
    make_reference: Callable, small_profile: Profile
) -> None:
    window = make_reference(500, seed=1)
    sketch = sketch_of(small_profile, window)
    assert sketch.complete
    features, predictions, _ = evaluate_window(small_profile, sketch)
    # Holm over the feature p-values, at their share of the window's 1% rate
    tested = features.tested_count + predictions.tested_count
    level = DriftSettings().window_false_alarm_rate * features.tested_count / tested
    p_values = np.array([c.p_value for c in features.columns if c.p_value is not None])
    holm = correct(p_values, level, "holm")
    assert features.correction == "holm"
    for col, threshold in zip(features.columns, holm.thresholds, strict=True):
        kind = small_profile.schema.column(col.feature).kind
        assert col.test == ("ks" if kind is Kind.NUMERIC else "chi_square")
        assert col.p_value is not None and 0.0 <= col.p_value <= 1.0
        assert col.threshold == pytest.approx(threshold)
        assert col.drifted == (col.p_value < col.threshold)
        assert col.effect is not None  # KS: D; chi-square: the Jensen–Shannon distance
        assert 0.0 <= col.effect.low <= col.effect.estimate <= col.effect.high <= 1.0
        if col.test == "ks":
            assert col.effect.low <= col.statistic <= col.effect.high
    # numeric columns run exactly: the raw window against the profile's raw sample
    for name in ("normal", "lognormal", "ties", "with_nan"):
        col = features.column(name)
        assert col.mode == "exact" and col.error_bound is None
        ref = small_profile.sample[name]
        cur = window[name].to_numpy(dtype=float)
        expected = stats.ks_2samp(ref[~np.isnan(ref)], cur[~np.isnan(cur)], method="asymp")
        assert col.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert col.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)
    assert not features.drifted


def test_large_window_uses_effect_sizes(make_reference: Callable, small_profile: Profile) -> None:
    sketch = sketch_of(small_profile, make_reference(5000, seed=2))
    assert not sketch.complete
    features, predictions, _ = evaluate_window(small_profile, sketch)
    for col in (*features.columns, *predictions.columns):
        kind = small_profile.schema.column(col.feature).kind
        assert col.test == ("wasserstein" if kind is Kind.NUMERIC else "jensen_shannon")
        assert col.mode == "binned"
        assert col.p_value is None
        assert col.threshold == DEFAULT_THRESHOLDS[col.test]  # the margin
        assert col.effect is not None and col.effect.low <= col.effect.high
        assert col.drifted == (col.effect.low > col.threshold)
    assert features.column("normal").error_bound is not None
    assert not features.drifted and features.drifted_count == 0


def test_exact_setting(make_reference: Callable, small_profile: Profile) -> None:
    window = make_reference(800, seed=3)
    never = evaluate_window(
        small_profile, sketch_of(small_profile, window), DriftSettings(exact="never")
    )
    assert {c.mode for c in never[0].columns} == {"binned"}
    # more rows than exact_max_rows: "auto" bins, "always" still runs exactly
    auto = DriftSettings(exact="auto", exact_max_rows=500)
    always = DriftSettings(exact="always", exact_max_rows=500)
    sketch = sketch_of(small_profile, window)
    assert evaluate_window(small_profile, sketch, auto)[0].column("normal").mode == "binned"
    assert evaluate_window(small_profile, sketch, always)[0].column("normal").mode == "exact"
    # a reservoir smaller than the window cannot run exactly, whatever the setting
    partial = sketch_of(small_profile, window, reservoir_size=100)
    assert evaluate_window(small_profile, partial, always)[0].column("normal").mode == "binned"


def test_binned_ks_brackets_exact(make_reference: Callable, small_profile: Profile) -> None:
    window = make_reference(600, seed=4)
    window["normal"] += 0.3
    sketch = sketch_of(small_profile, window)
    exact = evaluate_window(small_profile, sketch)[0]
    binned = evaluate_window(small_profile, sketch, DriftSettings(exact="never"))[0]
    for name in ("normal", "lognormal", "uniform"):
        b, e = binned.column(name), exact.column(name)
        assert b.error_bound is not None
        # binned vs full reference, exact vs the profile's 5000-row sample: allow the
        # sampling difference of the reference CDF (DKW bound at 1e-3 confidence)
        slack = np.sqrt(np.log(2 / 1e-3) / (2 * len(small_profile.sample[name])))
        assert b.statistic - slack <= e.statistic <= b.statistic + b.error_bound + slack


def test_untestable_column_is_reported_and_not_counted(
    make_reference: Callable, small_profile: Profile
) -> None:
    window = make_reference(3000, seed=5).drop(columns=["lognormal", "device"])
    features, _, quality = evaluate_window(small_profile, sketch_of(small_profile, window))
    for name in ("lognormal", "device"):
        col = features.column(name)
        assert np.isnan(col.statistic) and not col.drifted
    assert features.tested_count == len(small_profile.schema.features()) - 2
    assert set(quality.missing_columns) == {"lognormal", "device"}


def test_moved_constant_column_is_drifted(make_reference: Callable, small_profile: Profile) -> None:
    window = make_reference(5000, seed=24)
    window["constant"] = 2.0  # the reference is 1.5 everywhere: infinitely many stds away
    features, _, _ = evaluate_window(small_profile, sketch_of(small_profile, window))
    col = features.column("constant")
    assert col.statistic == np.inf and col.drifted
    assert features.drifted_count == 1 and features.tested_count == 8


def test_empty_window(small_profile: Profile) -> None:
    features, predictions, quality = evaluate_window(small_profile, WindowSketch(small_profile))
    assert features.tested_count == 0 and not features.drifted and features.share == 0.0
    assert predictions.tested_count == 0
    assert quality.rows == 0


# -- the defaults on wide data at scale -------------------------------------------------


def test_million_unchanged_rows_are_not_flagged(wide_profile: Profile) -> None:
    """p-values would flag this window; the default effect sizes must not."""
    sketch = WindowSketch(wide_profile)
    for seed in range(10):
        part = WindowSketch(wide_profile)
        part.update(wide_frame(100_000, seed=100 + seed))
        sketch = sketch.merge(part)
    assert sketch.rows == 1_000_000
    features, predictions, quality = evaluate_window(wide_profile, sketch)
    assert features.tested_count == len(SHAPES) + len(CATEGORIES)
    flagged = [(c.feature, c.test, c.statistic) for c in features.columns if c.drifted]
    assert flagged == []
    assert not features.drifted and not predictions.drifted
    assert {c.test for c in features.columns} == {"wasserstein", "jensen_shannon"}
    # the margin is wide, not a near miss
    assert max(c.statistic / c.threshold for c in features.columns) < 0.5
    assert not quality.breached


def test_quarter_std_shift_is_flagged_in_every_shifted_column(wide_profile: Profile) -> None:
    shifted = [n for i, n in enumerate(SHAPES) if i % 2 == 0]
    shift = {n: 0.25 * wide_profile.numeric[n].std for n in shifted}
    sketch = sketch_of(wide_profile, wide_frame(10_000, seed=7, shift=shift))
    features, _, _ = evaluate_window(wide_profile, sketch)
    for col in features.columns:
        assert col.test in ("wasserstein", "jensen_shannon")
        assert col.drifted == (col.feature in shifted), (col.feature, col.statistic)
    assert features.drifted_count == len(shifted)
    assert features.share == pytest.approx(len(shifted) / (len(SHAPES) + len(CATEGORIES)))
    # share 10/23 is under the default 0.5; a lower share threshold flips the verdict
    assert not features.drifted
    assert evaluate_window(wide_profile, sketch, DriftSettings(share_threshold=0.4))[0].drifted


def test_column_overrides(make_reference: Callable, small_profile: Profile) -> None:
    settings = DriftSettings(
        columns={
            "normal": ColumnTest(test="psi", threshold=0.5),
            "uniform": ColumnTest(threshold=0.01),
            "device": ColumnTest(test="jensen_shannon"),
        }
    )
    features, _, _ = evaluate_window(
        small_profile, sketch_of(small_profile, make_reference(5000, seed=8)), settings
    )
    assert (features.column("normal").test, features.column("normal").threshold) == ("psi", 0.5)
    uniform = features.column("uniform")
    assert (uniform.test, uniform.threshold) == ("wasserstein", 0.01)
    # the column's own margin, with the same confidence as the default one
    assert uniform.effect is not None
    assert uniform.drifted == (uniform.effect.low > 0.01)
    assert features.column("device").test == "jensen_shannon"
    # small window: the override still wins over the small-window default
    small = evaluate_window(
        small_profile, sketch_of(small_profile, make_reference(300, seed=9)), settings
    )[0]
    assert small.column("normal").test == "psi" and small.column("lognormal").test == "ks"


def test_override_with_a_test_of_the_wrong_kind_is_refused(
    make_reference: Callable, small_profile: Profile
) -> None:
    settings = DriftSettings(columns={"device": ColumnTest(test="ks")})
    with pytest.raises(ValueError, match="device"):
        evaluate_window(small_profile, sketch_of(small_profile, make_reference(100)), settings)
    with pytest.raises(ValueError, match="no_such_test"):
        choose_test("x", Kind.NUMERIC, 10, DriftSettings(columns={"x": ColumnTest("no_such_test")}))


def test_one_call_per_test_not_per_column(
    make_reference: Callable, small_profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detectors.evaluate as ev

    calls: list[tuple[str, int]] = []
    originals = dict(ev.TESTS)
    patched = {}
    for name, spec in originals.items():

        def spy(bins, *, epsilon=1e-4, _name=name, _fn=spec.binned):
            calls.append((_name, len(bins.names)))
            return _fn(bins, epsilon=epsilon)

        patched[name] = dataclasses.replace(spec, binned=spy)
    monkeypatch.setattr(ev, "TESTS", patched)
    ev.evaluate_window(small_profile, sketch_of(small_profile, make_reference(5000, seed=10)))
    # features: one Wasserstein call for 6 numeric, one JS call for 2 categorical;
    # predictions: one Wasserstein call for the prediction column
    assert sorted(calls) == sorted([("wasserstein", 6), ("jensen_shannon", 2), ("wasserstein", 1)])


def test_take_rows_selects_columns(make_reference: Callable, small_profile: Profile) -> None:
    sketch = sketch_of(small_profile, make_reference(1000, seed=11))
    num = NumericBins.from_profile(small_profile, sketch)
    part = take_rows(num, [2, 0])
    assert part.names == (num.names[2], num.names[0])
    np.testing.assert_array_equal(part.ref, num.ref[[2, 0]])
    np.testing.assert_array_equal(part.edges, num.edges[[2, 0]])
    np.testing.assert_array_equal(part.cur_max, num.cur_max[[2, 0]])
    cat = take_rows(CategoricalBins.from_profile(small_profile, sketch), [1])
    assert cat.names == ("device",) and cat.cur.shape[0] == 1


# -- dataset verdict and multiple testing -----------------------------------------------


CONTINUOUS = ["normal", "lognormal", "exponential", "uniform", "student_t3", "laplace"]
CONTINUOUS += ["weibull", "neg_skew", "large_scale", "gamma_half"]


def _borderline_window(profile: Profile) -> pd.DataFrame:
    """300 rows in which 10 continuous columns moved by 0.18 std: at this size several of
    their KS p-values fall between alpha / m and alpha (checked below, not assumed)."""
    shift = {n: 0.18 * profile.numeric[n].std for n in CONTINUOUS}
    return wide_frame(300, seed=2, shift=shift)


def test_corrections_change_the_verdict_as_defined(wide_profile: Profile) -> None:
    """Every correction at a window rate of 5%: the p-value family of the features gets
    its share 5% · m_p / m of the window's m tested columns (the prediction is one)."""
    sketch = sketch_of(wide_profile, _borderline_window(wide_profile))
    rate = 0.05

    def run(correction: str):
        settings = DriftSettings(
            share_threshold=0.4, correction=correction, window_false_alarm_rate=rate
        )
        return evaluate_window(wide_profile, sketch, settings)

    plain, predictions, _ = run("none")
    pvals = {c.feature: c.p_value for c in plain.columns}
    assert all(p is not None for p in pvals.values())
    names = list(pvals)
    p = np.array([pvals[n] for n in names])
    m = plain.tested_count + predictions.tested_count
    family = rate * len(p) / m
    # none: each column at its own threshold (0.05)
    assert plain.drifted_count == int((p < 0.05).sum())

    bonf = run("bonferroni")[0]
    assert [bonf.column(n).drifted for n in names] == list(p < rate / m)
    assert all(bonf.column(n).threshold == pytest.approx(rate / m) for n in names)

    holm = run("holm")[0]
    expected = multipletests(p, family, method="holm")[0]
    assert [holm.column(n).drifted for n in names] == list(expected)

    bh = run("benjamini_hochberg")[0]
    assert [bh.column(n).drifted for n in names] == list(
        stats.false_discovery_control(p, method="bh") < family
    )
    # the reported threshold is the effective one: drifted == p < threshold, for every rule
    for result in (plain, bonf, holm, bh):
        assert all(c.drifted == (c.p_value < c.threshold) for c in result.columns)
    # the data are borderline by construction: each correction flags fewer columns, Holm
    # at least what Bonferroni flags
    assert plain.drifted_count > bh.drifted_count >= holm.drifted_count >= bonf.drifted_count
    assert plain.drifted and not bonf.drifted
    assert bonf.correction == "bonferroni" and bh.correction == "benjamini_hochberg"


def test_corrections_leave_distance_tests_alone(wide_profile: Profile) -> None:
    shift = {n: 0.25 * wide_profile.numeric[n].std for n in list(SHAPES)[:5]}
    sketch = sketch_of(wide_profile, wide_frame(5000, seed=14, shift=shift))
    plain = evaluate_window(wide_profile, sketch)[0]
    bonf = evaluate_window(wide_profile, sketch, DriftSettings(correction="bonferroni"))[0]
    assert {c.test for c in plain.columns} == {"wasserstein", "jensen_shannon"}
    assert plain.drifted_count == 5
    assert bonf.columns == plain.columns


def test_bh_matches_scipy() -> None:
    rng = np.random.default_rng(15)
    for m in (1, 2, 7, 50, 400):
        p = np.concatenate([rng.uniform(0, 1, m - m // 3), rng.uniform(0, 0.01, m // 3)])
        p[: m // 10] = p[m // 10 : 2 * (m // 10)]  # ties
        expected = stats.false_discovery_control(p, method="bh")
        np.testing.assert_allclose(bh_adjusted(p), expected, rtol=1e-12, atol=0)
        for alpha in (0.01, 0.05, 0.2):
            c = benjamini_hochberg(p, alpha)
            np.testing.assert_array_equal(c.rejected, expected < alpha)
            np.testing.assert_array_equal(c.rejected, p < c.thresholds)


def test_bh_with_levels_per_column() -> None:
    rng = np.random.default_rng(16)
    p = rng.uniform(0, 0.05, 40)
    alpha = np.where(np.arange(40) % 2 == 0, 0.01, 0.1)
    c = benjamini_hochberg(p, alpha)
    adjusted = stats.false_discovery_control(p, method="bh")
    np.testing.assert_array_equal(c.rejected, adjusted < alpha)
    np.testing.assert_array_equal(c.rejected, p < c.thresholds)


def test_bonferroni_by_definition() -> None:
    p = np.array([0.001, 0.004, 0.0051, 0.01, 0.3, 0.0049, 1.0, 0.0, 0.04, 0.02])
    c = bonferroni(p, 0.05)
    np.testing.assert_array_equal(c.rejected, p < 0.005)
    np.testing.assert_allclose(c.thresholds, 0.005)
    assert correct(p, 0.05, "none").rejected.sum() == int((p < 0.05).sum())
    with pytest.raises(ValueError):
        correct(p, 0.05, "sidak")
    with pytest.raises(ValueError, match="NaN"):
        bonferroni(np.array([0.1, np.nan]), 0.05)


# -- prediction drift and canary comparison ---------------------------------------------


def test_prediction_drift_is_reported_separately(wide_profile: Profile) -> None:
    moved = wide_frame(5000, seed=17, shift={"score": 0.1})
    features, predictions, _ = evaluate_window(wide_profile, sketch_of(wide_profile, moved))
    assert [c.feature for c in predictions.columns] == ["score"]
    assert "score" not in {c.feature for c in features.columns}
    assert predictions.drifted and predictions.tested_count == 1
    assert not features.drifted and features.drifted_count == 0
    steady = wide_frame(5000, seed=18)
    _, predictions, _ = evaluate_window(wide_profile, sketch_of(wide_profile, steady))
    assert not predictions.drifted


def test_canary_against_stable(wide_profile: Profile) -> None:
    stable = sketch_of(wide_profile, wide_frame(20_000, seed=19))
    same = sketch_of(wide_profile, wide_frame(20_000, seed=20))
    features, predictions = compare_windows(stable, same, DriftSettings())
    assert features.drifted_count == 0 and not predictions.drifted
    shifted = list(SHAPES)[:12]
    shift = {n: 0.5 * wide_profile.numeric[n].std for n in shifted} | {"score": 0.1}
    canary = sketch_of(wide_profile, wide_frame(20_000, seed=21, shift=shift))
    features, predictions = compare_windows(stable, canary, DriftSettings())
    assert {c.feature for c in features.columns if c.drifted} == set(shifted)
    assert features.drifted and predictions.drifted


def test_canary_small_windows_run_exactly(make_reference: Callable, small_profile: Profile) -> None:
    base_frame, canary_frame = make_reference(400, seed=22), make_reference(300, seed=23)
    canary_frame["normal"] += 3.0
    base, canary = sketch_of(small_profile, base_frame), sketch_of(small_profile, canary_frame)
    features, _ = compare_windows(base, canary)
    col = features.column("normal")
    assert col.mode == "exact" and col.test == "ks" and col.drifted
    expected = stats.ks_2samp(base_frame["normal"], canary_frame["normal"], method="asymp")
    assert col.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert col.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
