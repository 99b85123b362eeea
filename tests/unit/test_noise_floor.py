"""Noise floors of the distance tests: their limits checked by simulation, and the default
verdicts (confidence intervals whose half-width is the floor) on unchanged and on changed
data at the window sizes where a fixed effect-size threshold alone false-alarms."""

from __future__ import annotations

import dataclasses
import doctest
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from detectors import hellinger, jensen_shannon, ks, linf, noise_floor, psi, wasserstein
from detectors.calibration import calibrate
from detectors.evaluate import compare_windows, evaluate_window
from detectors.profile import Profile, build_profile
from detectors.results import TestResult
from detectors.schema import Schema
from detectors.settings import DEFAULT_THRESHOLDS, ColumnTest, DriftSettings
from detectors.sketch import WindowSketch
from detectors.stats import CategoricalBins, NumericBins, Stats

STATISTICS: dict[str, Callable[[CategoricalBins], Stats]] = {
    "psi": psi.binned,
    "jensen_shannon": jensen_shannon.binned,
    "hellinger": hellinger.binned,
    "linf": linf.binned,
}
# The statistic on its χ² scale: n_eff · PSI, 8 ln 2 · n_eff · JS², 8 · n_eff · H², and back.
TO_CHI2: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "psi": lambda s, n_eff: n_eff * s,
    "jensen_shannon": lambda s, n_eff: 8.0 * math.log(2.0) * n_eff * s**2,
    "hellinger": lambda s, n_eff: 8.0 * n_eff * s**2,
}
FROM_CHI2: dict[str, Callable[[float, float], float]] = {
    "psi": lambda c, n_eff: c / n_eff,
    "jensen_shannon": lambda c, n_eff: math.sqrt(c / (8.0 * math.log(2.0) * n_eff)),
    "hellinger": lambda c, n_eff: math.sqrt(c / (8.0 * n_eff)),
}


def within(rate: float, alpha: float, trials: int, sds: float = 4.0) -> bool:
    """``rate`` is ``alpha`` up to ``sds`` binomial standard deviations over ``trials``."""
    return abs(rate - alpha) <= sds * math.sqrt(alpha * (1 - alpha) / trials)


def zipf(k: int) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1)
    return w / w.sum()


# -- the multinomial floors ----------------------------------------------------------------


def test_divergences_follow_their_chi_square_limits() -> None:
    """Where every bin expects many rows, 8 ln 2 n_eff JS², n_eff PSI and 8 n_eff H² are
    χ²(K − 1) under no change (two multinomial samples), and the floor is that limit."""
    rng = np.random.default_rng(1)
    k, m, n, draws, alpha = 10, 50_000, 20_000, 4000, 0.05
    shares = rng.dirichlet(np.full(k, 20.0))
    assert min(m, n) * shares.min() >= noise_floor.DENSE_ROWS  # the χ² limit as it is
    bins = CategoricalBins(
        ("",) * draws,
        rng.multinomial(m, shares, size=draws),
        rng.multinomial(n, shares, size=draws),
    )
    n_eff = m * n / (m + n)
    for test, to_chi2 in TO_CHI2.items():
        t = to_chi2(STATISTICS[test](bins).statistic, n_eff)
        # the mean of χ²(K − 1) is K − 1; its variance 2(K − 1)
        assert abs(t.mean() - (k - 1)) <= 4 * math.sqrt(2 * (k - 1) / draws), test
        floor = noise_floor.multinomial_floor(test, (shares * m)[None], [m], [n], alpha)[0]
        assert to_chi2(np.array(floor), n_eff) == pytest.approx(stats.chi2.isf(alpha, k - 1))
        rate = float(np.mean(STATISTICS[test](bins).statistic >= floor))
        assert within(rate, alpha, draws), (test, rate)
    # L∞: the union bound over the bins' normal deviations, at most alpha
    floor = noise_floor.multinomial_floor("linf", (shares * m)[None], [m], [n], alpha)[0]
    rate = float(np.mean(linf.binned(bins).statistic >= floor))
    assert rate <= alpha + 4 * math.sqrt(alpha * (1 - alpha) / draws), rate


def test_sparse_bins_are_corrected_back_to_alpha() -> None:
    """100 Zipf-distributed categories in 1001-row windows: many bins expect a few rows,
    the χ² limit is exceeded far more often than alpha, and the simulated correction
    brings every statistic back to alpha."""
    rng = np.random.default_rng(2)
    shares, m, n, draws, alpha = zipf(100), 100_000, 1001, 4000, 0.05
    assert n * shares.min() < 5
    bins = CategoricalBins(
        ("",) * draws,
        rng.multinomial(m, shares, size=draws),
        rng.multinomial(n, shares, size=draws),
    )
    n_eff = m * n / (m + n)
    for test, statistic in STATISTICS.items():
        values = statistic(bins).statistic
        floor = noise_floor.multinomial_floor(test, (shares * m)[None], [m], [n], alpha)[0]
        rate = float(np.mean(values >= floor))
        assert within(rate, alpha, draws), (test, rate)
        if test in FROM_CHI2:  # the plain limit, for comparison: far too many alarms
            plain = FROM_CHI2[test](stats.chi2.isf(alpha, 99), n_eff)
            assert float(np.mean(values >= plain)) > 3 * alpha, test


def test_multinomial_floor_edge_cases() -> None:
    ref = np.array([[500, 0, 0], [0, 0, 0], [300, 300, 400]])
    floor = noise_floor.multinomial_floor(
        "jensen_shannon", ref, ref.sum(axis=1), [800, 800, 0], 0.01
    )
    assert floor[0] == 0.0  # one category: nothing can vary
    assert np.isnan(floor[1]) and np.isnan(floor[2])  # an empty side
    with pytest.raises(ValueError, match="alpha"):
        noise_floor.multinomial_floor("psi", ref, [1, 1, 1], [1, 1, 1], 1.5)
    with pytest.raises(ValueError, match="wasserstein"):
        noise_floor.multinomial_floor("wasserstein", ref, [1, 1, 1], [1, 1, 1], 0.01)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(noise_floor, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# -- the Wasserstein floor ---------------------------------------------------------------

SHAPES: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "normal": lambda r, s: r.normal(0.0, 1.0, s),
    "lognormal": lambda r, s: r.lognormal(0.0, 1.2, s),
    "ties": lambda r, s: r.poisson(1.5, s).astype(np.float64),  # a few values carry all
}


# NumericBins carries each bin's mean on both sides (the binned Wasserstein places the
# mass there).
HAS_BIN_MEANS = "ref_means" in {f.name for f in dataclasses.fields(NumericBins)}


def _binned(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin means of every row of ``x`` (trials × values) on ``edges``."""
    trials, width = len(x), len(edges) + 1
    slot = np.searchsorted(edges, x, side="left") + (np.arange(trials) * width)[:, None]
    counts = np.bincount(slot.ravel(), minlength=trials * width).reshape(trials, width)
    sums = np.bincount(slot.ravel(), weights=x.ravel(), minlength=trials * width)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums.reshape(trials, width) / counts, np.nan)
    return counts, means


def test_wasserstein_floor_keeps_alpha_on_fresh_samples() -> None:
    """Binned Wasserstein between a fresh reference sample and a fresh window of the same
    distribution, on a profile's bins: it reaches the floor in alpha of the trials, for a
    normal, a heavy-tailed and a heavy-tie column at 1000, 3000 and 10 000 rows."""
    rng = np.random.default_rng(3)
    alpha, m, trials = 0.05, 5000, 300
    frame = pd.DataFrame({name: gen(rng, (100_000,)) for name, gen in SHAPES.items()})
    profile = build_profile(frame, Schema.build(numeric=list(SHAPES)))
    bins = NumericBins.from_profile(profile, WindowSketch(profile))
    sample = np.stack([profile.sample[name] for name in bins.names])
    quantile = noise_floor.wasserstein_quantile(bins, alpha, sample=sample)
    pooled = dict.fromkeys(SHAPES, 0)
    for j, (name, gen) in enumerate(SHAPES.items()):
        edges = profile.numeric[name].edges
        for n in (1000, 3000, 10_000):
            ref, cur = gen(rng, (trials, m)), gen(rng, (trials, n))
            ref_counts, ref_means = _binned(ref, edges)
            cur_counts, cur_means = _binned(cur, edges)
            means = {"ref_means": ref_means, "cur_means": cur_means}
            trial_bins = NumericBins(
                names=(name,) * trials,
                ref=ref_counts,
                cur=cur_counts,
                edges=np.tile(edges, (trials, 1)),
                nbins=np.full(trials, len(edges) + 1),
                ref_min=ref.min(axis=1),
                ref_max=ref.max(axis=1),
                ref_std=ref.std(axis=1, ddof=1),
                cur_min=cur.min(axis=1),
                cur_max=cur.max(axis=1),
                **(means if HAS_BIN_MEANS else {}),
            )
            statistic = wasserstein.binned(trial_bins).statistic
            floor = noise_floor.wasserstein_floor(
                np.full(trials, quantile[j]), m, n, trial_bins.ref_std
            )
            hits = int((statistic >= floor).sum())
            assert within(hits / trials, alpha, trials, sds=4.5), (name, n, hits)
            pooled[name] += hits
    for name, hits in pooled.items():
        assert within(hits / (3 * trials), alpha, 3 * trials), (name, hits)


def test_wasserstein_floor_scales_and_degenerates() -> None:
    q = np.array([3.0, 3.0, 3.0, 3.0])
    floor = noise_floor.wasserstein_floor(q, [10_000, 10_000, 10, 5], [10_000, 2_500, 10, 0], 1.0)
    # 1/sqrt(n_eff): n_eff 5000, then 2000
    assert floor[0] == pytest.approx(3.0 / math.sqrt(5000))
    assert floor[1] == pytest.approx(3.0 / math.sqrt(2000))
    assert np.isnan(floor[3])  # an empty window
    constant = noise_floor.wasserstein_floor(q[:1], [100], [100], [0.0])
    assert constant[0] == 0.0  # any move of a constant column is drift


# -- the defaults on windows of every size ------------------------------------------------

CATEGORIES = np.array([f"c{i:03d}" for i in range(100)], dtype=object)
NUMERIC = ("lognormal", "student_t3", "ties")
CATEGORICAL = ("zipf100", "uniform100")


def model_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Heavy-tailed and heavy-tie numeric columns, and two 100-category columns."""
    return pd.DataFrame(
        {
            "lognormal": rng.lognormal(0.0, 1.2, n),
            "student_t3": rng.standard_t(3, n),
            "ties": rng.poisson(1.5, n).astype(np.float64),
            "zipf100": CATEGORIES[rng.choice(100, n, p=zipf(100))],
            "uniform100": CATEGORIES[rng.integers(0, 100, n)],
        }
    )


@pytest.fixture(scope="module")
def model_profile() -> Profile:
    reference = model_frame(200_000, np.random.default_rng(10))
    return build_profile(
        reference, Schema.build(numeric=list(NUMERIC), categorical=list(CATEGORICAL))
    )


def window(profile: Profile, frame: pd.DataFrame) -> WindowSketch:
    sketch = WindowSketch(profile)
    sketch.update(frame)
    return sketch


@pytest.mark.parametrize(
    ("rows", "windows"), [(1001, 100), (3000, 100), (10_000, 100), (100_000, 40)]
)
def test_unchanged_windows_are_rarely_flagged(
    model_profile: Profile, rows: int, windows: int
) -> None:
    """At most 1% of unchanged windows flagged per column, at every size, with the
    default settings (the bound: the binomial 99.9% quantile of a 1% rate). The noise
    floor is the half-width of each distance's confidence interval: a column flags only
    when the interval's lower end clears the margin."""
    rng = np.random.default_rng(rows)
    flagged = dict.fromkeys((*NUMERIC, *CATEGORICAL), 0)
    plug_in = dict.fromkeys(CATEGORICAL, 0)
    for w in range(windows):
        sketch = window(model_profile, model_frame(rows, rng))
        for col in evaluate_window(model_profile, sketch)[0].columns:
            assert col.test in ("wasserstein", "jensen_shannon")
            assert col.threshold == DEFAULT_THRESHOLDS[col.test]
            assert col.effect is not None
            assert col.effect.low <= col.statistic <= col.effect.high
            assert col.drifted == (col.effect.low > col.threshold)
            flagged[col.feature] += col.drifted
            if col.feature in plug_in and w < 20:  # the plug-in distance alone
                plug_in[col.feature] += col.statistic >= col.threshold
    limit = stats.binom.ppf(0.999, windows, 0.01)
    assert all(count <= limit for count in flagged.values()), (rows, flagged)
    if rows == 1001:
        # the margin is far below the no-change noise of 100 categories at 1001 rows
        assert plug_in["uniform100"] >= 18, plug_in


def test_real_changes_are_still_flagged_at_1001_rows(model_profile: Profile) -> None:
    """A new category taking 20% of the rows, and a quarter-standard-deviation shift of
    the numeric columns, are flagged in every window just above small_window_rows."""
    rng = np.random.default_rng(11)
    for _ in range(10):
        frame = model_frame(1001, rng)
        new = rng.random(1001) < 0.2
        for name in CATEGORICAL:
            frame.loc[new, name] = "brand_new"
        for name in NUMERIC:
            frame[name] += 0.25 * model_profile.numeric[name].std
        features, _, _ = evaluate_window(model_profile, window(model_profile, frame))
        for col in features.columns:
            assert col.effect is not None
            assert col.drifted, (col.feature, col.statistic, col.effect, col.threshold)


def test_threshold_source_and_precedence(model_profile: Profile) -> None:
    rng = np.random.default_rng(12)
    sketch = window(model_profile, model_frame(1001, rng))
    features = evaluate_window(model_profile, sketch)[0]
    uniform = features.column("uniform100")
    assert uniform.threshold_source == "default"
    assert uniform.threshold == DEFAULT_THRESHOLDS["jensen_shannon"]
    assert uniform.mode == "exact"  # the reservoir holds the window: raw categories
    # the noise of 100 categories at 1001 rows: the interval is wide
    assert uniform.effect is not None and uniform.effect.high - uniform.statistic > 0.12
    # a column's own threshold is its margin, judged with the same confidence
    pinned = DriftSettings(columns={"uniform100": ColumnTest(threshold=0.05)})
    col = evaluate_window(model_profile, sketch, pinned)[0].column("uniform100")
    assert (col.threshold, col.threshold_source) == (0.05, "override")
    assert col.effect == uniform.effect and col.drifted == (col.effect.low > 0.05)
    # large windows: narrow intervals
    big = window(model_profile, model_frame(100_000, rng))
    for c in evaluate_window(model_profile, big)[0].columns:
        assert c.threshold_source == "default" and c.effect is not None
        assert c.effect.high - c.effect.low < 0.05
    # p-value tests: Holm's threshold at the window's rate
    small = evaluate_window(model_profile, window(model_profile, model_frame(500, rng)))[0]
    assert {c.threshold_source for c in small.columns} == {"default"}
    assert all(c.threshold <= 0.01 for c in small.columns)
    with pytest.raises(ValueError, match="window_false_alarm_rate"):
        DriftSettings(window_false_alarm_rate=0.0)
    with pytest.raises(ValueError, match="window_false_alarm_rate"):
        DriftSettings(window_false_alarm_rate=1.0)


def test_calibrated_thresholds_get_no_interval(model_profile: Profile) -> None:
    reference = model_frame(20_000, np.random.default_rng(13))
    cal = calibrate(
        model_profile, reference, 1000, false_alarm_rate=0.05, draws=100, tests=["wasserstein"]
    )
    calibrated = model_profile.with_calibration(cal)
    sketch = window(calibrated, model_frame(1001, np.random.default_rng(14)))
    features = evaluate_window(calibrated, sketch)[0]
    for name in NUMERIC:
        col = features.column(name)
        assert (col.mode, col.threshold_source) == ("calibrated", "calibrated")
        assert col.threshold == cal.thresholds[name]["wasserstein"]
        assert col.effect is None and col.drifted == (col.statistic > col.threshold)
    # the categorical columns had no calibration for their test: the margin and interval
    uniform = features.column("uniform100")
    assert uniform.threshold_source == "default" and uniform.effect is not None


def test_threshold_source_in_json() -> None:
    result = TestResult(
        "x", "jensen_shannon", 0.2, None, 0.16, True, threshold_source="noise_floor"
    )
    assert result.to_dict()["threshold_source"] == "noise_floor"
    assert TestResult.from_dict(result.to_dict()) == result
    older = result.to_dict()
    del older["threshold_source"]  # a report written before the field existed
    assert TestResult.from_dict(older).threshold_source == "default"


def test_canary_floors_come_from_the_baseline_window(model_profile: Profile) -> None:
    rng = np.random.default_rng(15)
    alarms = 0
    for _ in range(10):
        stable = window(model_profile, model_frame(3000, rng))
        canary = window(model_profile, model_frame(3000, rng))
        features, _ = compare_windows(stable, canary)
        alarms += features.drifted_count
        # n_eff 1500 for 100 categories: the interval is wider than the margin
        effect = features.column("uniform100").effect
        assert effect is not None and effect.high - effect.low > 0.1
    assert alarms <= 1
    moved = model_frame(3000, rng)
    moved.loc[rng.random(3000) < 0.2, "uniform100"] = "brand_new"
    moved["lognormal"] += 0.3 * model_profile.numeric["lognormal"].std
    features, _ = compare_windows(stable, window(model_profile, moved))
    assert {c.feature for c in features.columns if c.drifted} == {"uniform100", "lognormal"}


def test_floors_are_deterministic(model_profile: Profile) -> None:
    sketch = window(model_profile, model_frame(3000, np.random.default_rng(16)))
    first = evaluate_window(model_profile, sketch)[0]
    noise_floor.clear_cache()
    again = evaluate_window(model_profile, sketch)[0]
    assert [c.effect for c in first.columns] == [c.effect for c in again.columns]


# -- binned KS p-values on large windows -------------------------------------------------


def test_binned_ks_p_value_uses_the_limit_above_the_cutoff() -> None:
    """Above ``BINNED_LIMIT_ROWS`` the binned p-value is Kolmogorov's limit with Stephens'
    correction, within 1.5e-3 of ``kstwo``; at or below it, ``kstwo`` itself."""
    rng = np.random.default_rng(17)
    d = rng.uniform(0.0, 0.03, 10)
    for m, n in ((100_000, 12_000), (30_000, 20_000), (100_000, 8_000)):
        en = round(m * n / (m + n))
        p = ks.p_value(d, np.full(10, m), np.full(10, n), limit_above=ks.BINNED_LIMIT_ROWS)
        reference = stats.kstwo.sf(d, en)
        if en > ks.BINNED_LIMIT_ROWS:
            assert np.abs(p - reference).max() <= 1.5e-3
            root = math.sqrt(en)
            expected = stats.kstwobign.sf(d * (root + 0.12 + 0.11 / root))
            np.testing.assert_allclose(p, expected, rtol=1e-12)
        else:
            np.testing.assert_array_equal(p, reference)
    # exact mode keeps scipy's own computation
    np.testing.assert_array_equal(
        ks.p_value(d, np.full(10, 100_000), np.full(10, 12_000)),
        stats.kstwo.sf(d, round(100_000 * 12_000 / 112_000)),
    )
