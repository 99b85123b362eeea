"""Attribution drift statistics (detectors/attribution.py) on SHAP matrices given directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from detectors.attribution import (
    AttributionSettings,
    attribution_drift,
    attribution_profile,
    bootstrap_change,
    drift_ratio,
    edge_bins,
    impact,
    ndcg,
    window_bins,
)
from detectors.profile import AttributionProfile, build_profile, load_profile
from detectors.results import AttributionResult, DriftResult, TestResult, WindowReport
from detectors.settings import DriftSettings

FEATURES = ("a", "b", "c", "d")


def test_ndcg_clarify_worked_example() -> None:
    # SageMaker Clarify's college-admissions example: SAT 0.70, GPA 0.50, class rank 0.05
    # on the training data; on live data 0.10, 0.20, 0.70 (ranking reversed): nDCG 0.69.
    ref = np.array([0.70, 0.50, 0.05])
    live = np.array([0.10, 0.20, 0.70])
    ideal = 0.70 / math.log2(2) + 0.50 / math.log2(3) + 0.05 / math.log2(4)
    dcg = 0.05 / math.log2(2) + 0.50 / math.log2(3) + 0.70 / math.log2(4)
    assert ndcg(ref, live) == pytest.approx(dcg / ideal, rel=1e-12)
    assert round(ndcg(ref, live), 2) == 0.69
    assert ndcg(ref, live) < 0.90  # Clarify's violation threshold


def test_ndcg_equals_scikit_learn_with_reference_gains() -> None:
    # Clarify's nDCG is the standard nDCG with the reference attributions as relevance and
    # the live attributions as scores (scikit-learn's ndcg_score, log2 discount).
    rng = np.random.default_rng(3)
    for _ in range(20):
        ref, live = rng.random(7), rng.random(7)
        expected = ndcg_score(ref[None, :], live[None, :])
        assert ndcg(ref, live) == pytest.approx(expected, rel=1e-12)


def test_ndcg_same_ranking_is_one_and_values_do_not_matter() -> None:
    ref = np.array([3.0, 2.0, 1.0, 0.0])
    assert ndcg(ref, ref) == 1.0
    assert ndcg(ref, np.array([30.0, 0.2, 0.1, 0.0])) == 1.0
    assert math.isnan(ndcg(np.zeros(3), np.ones(3)))
    # Swapping two low-importance features costs little, two top ones much more.
    ref = np.array([0.5, 0.3, 0.02, 0.01])
    assert ndcg(ref, np.array([0.5, 0.3, 0.01, 0.02])) > ndcg(ref, np.array([0.3, 0.5, 0.02, 0.01]))


def _reference(rng: np.random.Generator, rows: int = 5000) -> tuple[AttributionProfile, np.ndarray]:
    phi = np.c_[
        rng.normal(0, 2.0, rows), rng.normal(0, 1.0, rows), rng.normal(0, 0.3, rows), np.zeros(rows)
    ]
    return attribution_profile(
        FEATURES, phi, method="tree", library="test", expected_value=0.5
    ), phi


def test_profile_keeps_importance_ranking_and_distributions() -> None:
    rng = np.random.default_rng(0)
    ref, phi = _reference(rng)
    assert ref.ranking == ("a", "b", "c", "d")
    np.testing.assert_allclose(ref.mean_abs, np.abs(phi).mean(axis=0))
    np.testing.assert_allclose(ref.mean, phi.mean(axis=0))
    assert ref.importance.sum() == pytest.approx(1.0)
    assert ref.importance[3] == 0.0
    bins = window_bins(ref, phi)
    # the reference's own rows land exactly in its bins
    np.testing.assert_array_equal(bins.cur, bins.ref)


def test_profile_with_attributions_round_trips_and_old_profiles_keep_their_hash(tmp_path) -> None:
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f: rng.normal(size=500) for f in FEATURES})
    plain = build_profile(frame)
    ref, _ = _reference(rng, 500)
    from dataclasses import replace

    with_attr = replace(plain, attribution=ref)
    assert with_attr.content_hash != plain.content_hash
    assert plain.to_dict().get("attribution") is None  # an old profile's body is unchanged
    loaded = load_profile(with_attr.save(tmp_path / "p.json.gz"))
    assert loaded.content_hash == with_attr.content_hash
    assert loaded.attribution is not None
    np.testing.assert_array_equal(loaded.attribution.mean_abs, ref.mean_abs)
    assert loaded.attribution.ranking == ref.ranking
    assert load_profile(plain.save(tmp_path / "old.json")).attribution is None


def test_bootstrap_interval_covers_the_true_change_at_its_level() -> None:
    # Window rows drawn from the reference distribution scaled by 1.1 on feature a: the
    # true change of mean |SHAP| is 0.1 · E|N(0, 2)|. Over 200 windows the 95 % interval
    # should cover it about 95 % of the time (binomial sd 1.5 %; tolerance 88-99 %).
    rng = np.random.default_rng(7)
    ref, _ = _reference(rng, 20000)
    true_ref = 2.0 * math.sqrt(2 / math.pi)
    covered = 0
    trials = 200
    for seed in range(trials):
        r = np.random.default_rng(1000 + seed)
        w = np.c_[
            r.normal(0, 2.2, 500), r.normal(0, 1.0, 500), r.normal(0, 0.3, 500), np.zeros(500)
        ]
        changes = bootstrap_change(ref, w, draws=300, seed=seed)
        # the window's true mean |SHAP| minus the reference's true one (the interval
        # accounts for both sides' sampling error)
        truth = 0.1 * true_ref
        covered += changes.abs_low[0] <= truth <= changes.abs_high[0]
    assert 0.88 <= covered / trials <= 0.99


def test_drift_ratio_is_one_at_the_threshold_for_every_kind_of_test() -> None:
    def col(test: str, statistic: float, p: float | None, threshold: float) -> TestResult:
        return TestResult("x", test, statistic, p, threshold, True)

    assert drift_ratio(col("ks", 0.1, 0.05, 0.05)) == pytest.approx(1.0)
    assert drift_ratio(col("ks", 0.1, 0.0025, 0.05)) == pytest.approx(2.0)
    assert drift_ratio(col("wasserstein", 0.3, None, 0.1)) == pytest.approx(3.0)
    assert drift_ratio(col("psi", math.inf, None, 0.2)) == 1000.0
    assert drift_ratio(col("ks", 0.9, 0.0, 0.05)) > 100


def test_impact_ranks_drifted_features_by_drift_times_importance() -> None:
    rng = np.random.default_rng(2)
    ref, _ = _reference(rng)
    columns = (
        TestResult("a", "wasserstein", 0.12, None, 0.1, True),  # small drift, top feature
        TestResult("c", "wasserstein", 0.40, None, 0.1, True),  # larger drift, minor feature
        TestResult("d", "wasserstein", 5.00, None, 0.1, True),  # huge drift, ignored feature
        TestResult("b", "wasserstein", 0.05, None, 0.1, False),
    )
    result = DriftResult(0.75, 3, 4, 0.5, True, "none", columns)
    items = impact(result, ref)
    assert [i.feature for i in items] == ["a", "c", "d"]
    share = ref.importance
    assert items[0].score == pytest.approx(1.2 * share[0])
    assert items[2].importance == 0.0 and items[2].score == 0.0


def test_unchanged_attributions_are_not_drift_and_a_shifted_one_is() -> None:
    rng = np.random.default_rng(4)
    ref, _ = _reference(rng)
    drift = DriftSettings()
    false_alarms = 0
    detected = 0
    for seed in range(10):
        r = np.random.default_rng(seed)
        same = np.c_[
            r.normal(0, 2, 1024), r.normal(0, 1, 1024), r.normal(0, 0.3, 1024), np.zeros(1024)
        ]
        res = attribution_drift(ref, same, drift, floor_key="t")
        false_alarms += res.drifted
        assert res.ndcg == 1.0
        moved = same.copy()
        moved[:, 1] += 0.8  # feature b's attributions move by 0.8 output units
        res = attribution_drift(ref, moved, drift, floor_key="t")
        detected += res.column("b").drifted and not res.column("a").drifted
        assert res.prediction_drivers[:1] == ("b",)
        assert res.column("b").mean_shift == pytest.approx(0.8 + same[:, 1].mean() - ref.mean[1])
    assert false_alarms == 0
    assert detected == 10


def test_ranking_reversal_is_ndcg_drift() -> None:
    rng = np.random.default_rng(5)
    ref, _ = _reference(rng)
    r = np.random.default_rng(9)
    swapped = np.c_[r.normal(0, 0.3, 800), r.normal(0, 1, 800), r.normal(0, 2, 800), np.zeros(800)]
    res = attribution_drift(ref, swapped, DriftSettings(), settings=AttributionSettings())
    assert res.ndcg < 0.9
    assert res.drifted


def test_attribution_block_round_trips_in_the_window_report() -> None:
    rng = np.random.default_rng(6)
    ref, phi = _reference(rng)
    features = DriftResult(
        0.25, 1, 4, 0.5, False, "none", (TestResult("a", "ks", 0.2, 1e-6, 0.05, True),)
    )
    res = attribution_drift(ref, phi[:900], DriftSettings(), features)
    report = WindowReport(
        model="m",
        model_version="1",
        window_start=0.0,
        window_end=900.0,
        reference_hash="h",
        rows=900,
        drift=features,
        prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none"),
        quality=__import__("detectors.results").results.QualityResult(rows=900),
        attribution=res,
    )
    back = WindowReport.from_json(report.to_json())
    assert isinstance(back.attribution, AttributionResult)
    assert back.attribution.to_dict() == res.to_dict()
    d = report.to_dict()["attribution"]
    assert set(d) >= {"method", "ndcg", "ndcg_threshold", "drifted", "columns", "impact"}
    assert set(d["columns"][0]) >= {
        "feature",
        "reference_mean_abs",
        "window_mean_abs",
        "change",
        "drifted",
    }
    assert set(d["impact"][0]) >= {"feature", "drift", "importance", "score"}
    # a report without the block (an older one) still loads
    old = report.to_dict()
    del old["attribution"]
    assert WindowReport.from_dict(old).attribution is None


def test_a_value_an_ulp_from_an_edge_is_binned_as_the_edge() -> None:
    """SHAP values equal up to summation order stay in their bin (the reference's
    minimum included); all others are binned as ``searchsorted(side="left")`` bins them."""
    from detectors.column_profiles import numeric_edges

    rng = np.random.default_rng(3)
    reference = np.round(rng.normal(0, 2, 3000), 2)  # few distinct values, as a tree's
    edges = numeric_edges(reference, 20)
    exact = np.searchsorted(edges, reference, side="left")
    for jitter in (4e-16, -4e-16, 2e-15, -2e-15):
        assert np.array_equal(edge_bins(edges, reference * (1 + jitter) + jitter), exact)
    assert np.array_equal(edge_bins(edges, np.nextafter(reference, np.inf)), exact)
    assert np.array_equal(edge_bins(edges, np.nextafter(reference, -np.inf)), exact)
    other = rng.normal(0, 3, 2000)  # away from every edge: searchsorted's bins
    other = other[np.min(np.abs(other[:, None] - edges[None, :]), axis=1) > 1e-6]
    assert np.array_equal(edge_bins(edges, other), np.searchsorted(edges, other, side="left"))
    below = reference.min() - 1e-3  # truly below the minimum: the first bin
    assert edge_bins(edges, np.array([below]))[0] == 0
