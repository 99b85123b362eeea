"""Judge one window: every column's drift test, the verdict on the set, and data quality.

Per column the test is, in order of precedence:

1. the column's override (``drift.columns[name].test`` / ``.threshold``);
2. by kind and window size: ``rows <= small_window_rows`` gets a p-value test (KS for
   numeric, chi-square for categorical), a larger window a distance (Wasserstein
   normalised by the reference standard deviation, Jensen–Shannon distance), because on
   large windows every p-value is tiny;
3. the threshold is the column's override, else a calibrated threshold measured on the
   reference for windows of about this size (``mode="calibrated"``: drifted when
   ``statistic > threshold``), else ``drift.thresholds[test]``.

One window judged alone flags any column of unchanged data with probability at most
``drift.window_false_alarm_rate`` (α), over all its tested columns, features and
predictions together (m of them). Each column gets the level α / m:

- a distance flags its column when the lower end of its confidence interval at that
  level exceeds its threshold, the margin of a negligible change
  (``effect.low > threshold``; ``detectors.effects``);
- the p-value tests form one family per set, corrected by ``drift.correction`` (Holm by
  default) at the level α m_p / m for its m_p members, so the whole window stays within α
  (with ``correction: none`` each p-value test is at its own threshold instead);
- calibrated columns and p-value columns with their own threshold are taken as written,
  at the rate they were set for (docs/detectors.md).

The dataset verdict (``share >= share_threshold``, a positive share) needs a flagged
column, so it inherits the same bound.

All columns that share a kind, a test and a mode are tested by one call of the test's
vectorized function on the stacked (columns × bins) counts, never one call per column.
Exact mode runs the test on the raw rows (window reservoir against the profile's sample)
when the reservoir holds the whole window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np

from detectors import effects, jensen_shannon, noise_floor, reference_laws
from detectors.bridge_floor import BridgeLaw
from detectors.chi_square import category_counts
from detectors.multiple_testing import correct
from detectors.profile import Calibration, Profile
from detectors.quality import assess_quality
from detectors.results import DriftResult, Effect, QualityResult, TestResult
from detectors.schema import Column, Kind
from detectors.settings import DEFAULT_THRESHOLDS, DriftSettings, QualitySettings
from detectors.sketch import SketchMismatchError, WindowSketch
from detectors.stats import CategoricalBins, NumericBins, Stats
from detectors.tests_registry import TESTS, TestSpec
from detectors.wasserstein import _sample_std as sample_std

MODE_BINNED = "binned"
MODE_EXACT = "exact"
# A binned statistic compared with a threshold calibrated on the reference.
MODE_CALIBRATED = "calibrated"

# Where a column's threshold came from (``TestResult.threshold_source``).
SOURCE_DEFAULT = "default"
SOURCE_OVERRIDE = "override"
SOURCE_CALIBRATED = "calibrated"

# A calibration measured for w rows serves windows of w / 2 to 2 w rows. A statistic's
# spread under no drift shrinks like 1/sqrt(rows): a threshold calibrated on much larger
# windows would raise false alarms on small ones, so outside this range the configured
# thresholds apply.
CALIBRATION_MAX_RATIO = 2.0

_DEFAULT_DRIFT = DriftSettings()
_DEFAULT_QUALITY = QualitySettings()

BinsT = TypeVar("BinsT", bound=NumericBins | CategoricalBins)


def take_rows(bins: BinsT, rows: np.ndarray | Sequence[int]) -> BinsT:
    """The same comparison restricted to some columns (rows of every per-column array)."""
    idx = np.asarray(rows, dtype=np.intp)
    changes: dict[str, Any] = {}
    for f in fields(bins):
        value = getattr(bins, f.name)
        if f.name == "names":
            changes[f.name] = tuple(value[i] for i in idx)
        elif isinstance(value, np.ndarray):
            changes[f.name] = value[idx]
    return replace(bins, **changes)


def calibration_in_range(calibration: Calibration | None, rows: int) -> Calibration | None:
    """``calibration`` if it was measured for windows near ``rows`` in size, else None."""
    if calibration is None or rows <= 0:
        return None
    ratio = max(rows / calibration.window_rows, calibration.window_rows / rows)
    return calibration if ratio <= CALIBRATION_MAX_RATIO else None


@dataclass(frozen=True)
class Choice:
    """The test and threshold chosen for one column of one window, and where the
    threshold came from (``SOURCE_DEFAULT``, ``SOURCE_OVERRIDE`` or ``SOURCE_CALIBRATED``)."""

    test: str
    threshold: float
    calibrated: bool
    source: str = SOURCE_DEFAULT


def choose_test(
    name: str,
    kind: Kind,
    rows: int,
    drift: DriftSettings,
    calibration: Calibration | None = None,
) -> Choice:
    """Which test and threshold judge column ``name`` in a window of ``rows`` rows."""
    override = drift.columns.get(name)
    test = override.test if override is not None and override.test else None
    if test is None:
        small = rows <= drift.small_window_rows
        if kind is Kind.NUMERIC:
            test = drift.numeric_small if small else drift.numeric_large
        else:
            test = drift.categorical_small if small else drift.categorical_large
    spec = TESTS.get(test)
    if spec is None or kind not in spec.kinds:
        usable = sorted(t for t, s in TESTS.items() if kind in s.kinds)
        raise ValueError(
            f"column {name!r}: test {test!r} cannot test a {kind} column; use {usable}"
        )
    if override is not None and override.threshold is not None:
        return Choice(test, float(override.threshold), calibrated=False, source=SOURCE_OVERRIDE)
    if calibration is not None:
        measured = calibration.thresholds.get(name, {}).get(test)
        if measured is not None and math.isfinite(measured):
            return Choice(test, float(measured), calibrated=True, source=SOURCE_CALIBRATED)
    return Choice(test, float(drift.thresholds.get(test, DEFAULT_THRESHOLDS[test])), False)


@dataclass(frozen=True)
class _Sides:
    """What a set of columns is tested on: binned counts of both sides and, when exact
    mode applies, their raw rows (numeric: columns × rows float with NaN for missing or
    non-finite; categorical: one object array of strings per column, None for missing)."""

    numeric: NumericBins
    categorical: CategoricalBins
    rows: int
    exact: bool = False
    # The noise floors of the baseline side: a key to cache them under (the profile's
    # content hash; None for a baseline window) and where to read raw baseline values
    # (columns × rows, NaN for missing) that show each numeric bin's spread.
    floor_key: str | None = None
    floor_sample: Callable[[], np.ndarray | None] = lambda: None
    # bridges simulated for the Wasserstein noise: many when cached for a profile
    bridges: int = noise_floor.DEFAULT_SIMULATIONS
    # the reference's bridge law, stored in the profile or simulated once per profile
    # (detectors/reference_laws.py); None for a baseline window
    floor_law: Callable[[], BridgeLaw] | None = None
    # per column: whether both raw sides have a value (exact mode needs them)
    exact_numeric_ok: np.ndarray | None = None
    exact_categorical_ok: np.ndarray | None = None
    ref_numeric: np.ndarray | None = None
    cur_numeric: np.ndarray | None = None
    ref_categorical: tuple[np.ndarray, ...] = ()
    cur_categorical: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class _Plan:
    column: Column
    index: int  # row in the kind's stacked bins
    choice: Choice
    exact: bool


def _exact_allowed(drift: DriftSettings, complete: bool, rows: int) -> bool:
    if drift.exact == "never" or not complete or rows == 0:
        return False
    return drift.exact == "always" or rows <= drift.exact_max_rows


def _finite_or_nan(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, np.nan)


def _has_exact(spec: TestSpec, kind: Kind) -> bool:
    fn = spec.exact_numeric if kind is Kind.NUMERIC else spec.exact_categorical
    return fn is not None


def _exact_ok(sides: _Sides, kind: Kind) -> np.ndarray:
    ok = sides.exact_numeric_ok if kind is Kind.NUMERIC else sides.exact_categorical_ok
    return ok if ok is not None else np.zeros(0, dtype=bool)


def _with_raw(
    sides: _Sides,
    ref_numeric: np.ndarray,
    cur_numeric: np.ndarray,
    ref_categorical: tuple[np.ndarray, ...],
    cur_categorical: tuple[np.ndarray, ...],
) -> _Sides:
    """``sides`` with the raw rows for exact mode, noting which columns have values."""

    def any_value(arrays: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.array([any(v is not None for v in a) for a in arrays], dtype=bool)

    def any_number(x: np.ndarray) -> np.ndarray:
        return (~np.isnan(x)).any(axis=1)

    return replace(
        sides,
        exact=True,
        exact_numeric_ok=any_number(ref_numeric) & any_number(cur_numeric),
        exact_categorical_ok=any_value(ref_categorical) & any_value(cur_categorical),
        ref_numeric=ref_numeric,
        cur_numeric=cur_numeric,
        ref_categorical=ref_categorical,
        cur_categorical=cur_categorical,
    )


def _testable(bins: NumericBins | CategoricalBins) -> np.ndarray:
    """Columns with values on both sides; the others cannot be tested this window."""
    return (bins.ref.sum(axis=1) > 0) & (bins.cur.sum(axis=1) > 0)


def _run_group(
    spec: TestSpec, kind: Kind, idx: np.ndarray, exact: bool, sides: _Sides, epsilon: float
) -> Stats:
    """One vectorized call of ``spec`` on the columns ``idx`` of one kind."""
    if exact and kind is Kind.NUMERIC:
        assert spec.exact_numeric is not None and sides.ref_numeric is not None
        assert sides.cur_numeric is not None
        return spec.exact_numeric(sides.ref_numeric[idx], sides.cur_numeric[idx], epsilon=epsilon)
    if exact:
        assert spec.exact_categorical is not None
        return spec.exact_categorical(
            [sides.ref_categorical[i] for i in idx],
            [sides.cur_categorical[i] for i in idx],
            epsilon=epsilon,
        )
    bins = sides.numeric if kind is Kind.NUMERIC else sides.categorical
    return spec.binned(take_rows(bins, idx), epsilon=epsilon)


def _column_index(sides: _Sides) -> dict[str, tuple[Kind, int]]:
    index = {n: (Kind.NUMERIC, i) for i, n in enumerate(sides.numeric.names)}
    index.update({n: (Kind.CATEGORICAL, i) for i, n in enumerate(sides.categorical.names)})
    return index


def _evaluate_set(
    columns: Sequence[Column],
    sides: _Sides,
    drift: DriftSettings,
    calibration: Calibration | None,
    level: float,
) -> DriftResult:
    """Test ``columns`` and give the verdict on them as a set, each column at ``level``
    (the window's false-alarm rate over its number of tested columns)."""
    where = _column_index(sides)
    ok = {
        Kind.NUMERIC: _testable(sides.numeric),
        Kind.CATEGORICAL: _testable(sides.categorical),
    }
    plans: list[_Plan] = []
    for col in columns:
        kind, i = where[col.name]
        choice = choose_test(col.name, kind, sides.rows, drift, calibration)
        spec = TESTS[choice.test]
        exact = (
            sides.exact
            and not choice.calibrated
            and _has_exact(spec, kind)
            and bool(_exact_ok(sides, kind)[i])
        )
        plans.append(_Plan(col, i, choice, exact))

    # One call per (kind, test, mode) on the testable columns of the group.
    groups: dict[tuple[Kind, str, bool], list[int]] = {}
    for p, plan in enumerate(plans):
        kind = plan.column.kind
        if ok[kind][plan.index]:
            groups.setdefault((kind, plan.choice.test, plan.exact), []).append(p)
    n = len(plans)
    statistic = np.full(n, np.nan)
    p_value = np.full(n, np.nan)
    bound = np.full(n, np.nan)
    for (kind, test, exact), members in groups.items():
        idx = np.array([plans[p].index for p in members], dtype=np.intp)
        stats = _run_group(TESTS[test], kind, idx, exact, sides, drift.psi_epsilon)
        statistic[members] = np.asarray(stats.statistic, dtype=np.float64)
        if stats.p_value is not None:
            p_value[members] = np.asarray(stats.p_value, dtype=np.float64)
        if stats.error_bound is not None and not exact:
            bound[members] = np.asarray(stats.error_bound, dtype=np.float64)

    thresholds = np.array([plan.choice.threshold for plan in plans], dtype=np.float64)
    sources = [plan.choice.source for plan in plans]
    has_p = np.array([TESTS[plan.choice.test].has_p_value for plan in plans], dtype=bool)
    calibrated = np.array([plan.choice.calibrated for plan in plans], dtype=bool)
    # NaN: untestable. +inf is a result (a constant reference column that moved).
    tested = ~np.isnan(statistic) & (~has_p | calibrated | ~np.isnan(p_value))
    drifted = np.zeros(n, dtype=bool)
    found: list[Effect | None] = [None] * n
    # Calibrated: the statistic against the measured quantile of its no-drift spread.
    cal = tested & calibrated
    drifted[cal] = statistic[cal] > thresholds[cal]
    for (kind, test, exact), members in groups.items():
        judged = [p for p in members if tested[p] and not calibrated[p]]
        if not judged:
            continue
        idx = np.array([plans[p].index for p in judged], dtype=np.intp)
        if test == "ks":
            m, n_cur = _sizes(kind, idx, exact, sides)
            interval = effects.ks_interval(statistic[judged], bound[judged], m, n_cur, level)
        elif test in noise_floor.FLOOR_TESTS:
            half, square = _noise(test, kind, idx, exact, sides, drift, level)
            interval = effects.distance_interval(test, statistic[judged], half, square)
        elif test == "chi_square":
            # The effect of a category table: its Jensen–Shannon distance (the large-window
            # categorical measure, so a column's effect keeps one scale as windows grow).
            counts = _counts(kind, idx, exact, sides)
            table = CategoricalBins(tuple(str(i) for i in idx), *counts)
            js = np.asarray(jensen_shannon.binned(table).statistic, dtype=np.float64)
            half, square = _noise(
                "jensen_shannon", kind, idx, exact, sides, drift, level, counts=counts
            )
            interval = effects.distance_interval("jensen_shannon", js, half, square)
        else:
            continue
        for p, est, low, high in zip(judged, *interval, strict=True):
            if not (math.isnan(low) or math.isnan(high)):
                found[p] = Effect(float(est), float(low), float(high))
        if not TESTS[test].has_p_value:
            # Distances: drifted when the change exceeds the margin with confidence.
            low = np.asarray(interval[1])
            drifted[judged] = ~np.isnan(low) & (low > thresholds[judged])
    # p-values: one family per set, corrected for multiple testing at its share of the
    # window's rate; a column's own p-value threshold is taken as written.
    pvalue = tested & ~calibrated & has_p
    own = np.array([s == SOURCE_OVERRIDE for s in sources], dtype=bool)
    family = np.flatnonzero(pvalue & ~own) if drift.correction != "none" else np.zeros(0, int)
    alone = np.flatnonzero(pvalue & (own | (drift.correction == "none")))
    drifted[alone] = p_value[alone] < thresholds[alone]
    if len(family):
        corrected = correct(p_value[family], level * len(family), drift.correction)
        thresholds[family] = corrected.thresholds
        drifted[family] = corrected.rejected

    results = tuple(
        TestResult(
            feature=plan.column.name,
            test=plan.choice.test,
            statistic=float(statistic[p]),
            p_value=float(p_value[p]) if has_p[p] and not np.isnan(p_value[p]) else None,
            threshold=float(thresholds[p]),
            drifted=bool(drifted[p]),
            mode=MODE_CALIBRATED
            if plan.choice.calibrated
            else (MODE_EXACT if plan.exact else MODE_BINNED),
            error_bound=float(bound[p]) if np.isfinite(bound[p]) else None,
            threshold_source=sources[p],
            effect=found[p],
        )
        for p, plan in enumerate(plans)
    )
    tested_count = int(tested.sum())
    drifted_count = int(drifted.sum())
    share = drifted_count / tested_count if tested_count else 0.0
    return DriftResult(
        share=share,
        drifted_count=drifted_count,
        tested_count=tested_count,
        share_threshold=drift.share_threshold,
        drifted=bool(tested_count) and share >= drift.share_threshold,
        correction=drift.correction,
        columns=results,
    )


def _counts(
    kind: Kind, idx: np.ndarray, exact: bool, sides: _Sides
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of either side of the columns ``idx`` (the raw categories in exact mode,
    else the bins)."""
    if exact and kind is Kind.CATEGORICAL:
        return category_counts(
            [sides.ref_categorical[i] for i in idx], [sides.cur_categorical[i] for i in idx]
        )
    bins = sides.numeric if kind is Kind.NUMERIC else sides.categorical
    return bins.ref[idx], bins.cur[idx]


def _sizes(
    kind: Kind, idx: np.ndarray, exact: bool, sides: _Sides
) -> tuple[np.ndarray, np.ndarray]:
    """Values on either side of the columns ``idx``: raw rows in exact mode, else bins."""
    if exact and kind is Kind.NUMERIC:
        assert sides.ref_numeric is not None and sides.cur_numeric is not None
        ref, cur = sides.ref_numeric[idx], sides.cur_numeric[idx]
        return (~np.isnan(ref)).sum(axis=1), (~np.isnan(cur)).sum(axis=1)
    ref_counts, cur_counts = _counts(kind, idx, exact, sides)
    return ref_counts.sum(axis=1), cur_counts.sum(axis=1)


def _noise(
    test: str,
    kind: Kind,
    idx: np.ndarray,
    exact: bool,
    sides: _Sides,
    drift: DriftSettings,
    alpha: float,
    counts: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``1 − alpha`` no-change quantile of ``test`` on the columns ``idx`` of one kind,
    and its no-change mean square, for the sides the statistic was computed on (raw rows
    in exact mode, else the bins): the half-width and the bias of the effect's interval.
    ``counts``: the two sides' counts of a multinomial test, when already at hand."""
    if test == "wasserstein":
        bins = sides.numeric
        if sides.floor_law is not None:  # the reference's, every column at once
            law = sides.floor_law().take(idx)
        elif sides.floor_key is not None:  # every column at once, cached for the reference
            law = noise_floor.wasserstein_null(
                bins, sample_of=sides.floor_sample, key=sides.floor_key, simulations=sides.bridges
            ).take(idx)
        else:
            sample = sides.floor_sample()
            law = noise_floor.wasserstein_null(
                take_rows(bins, idx),
                sample=None if sample is None else sample[idx],
                simulations=sides.bridges,
            )
        n_ref, n_cur = _sizes(kind, idx, exact, sides)
        if exact:
            assert sides.ref_numeric is not None
            std = sample_std(sides.ref_numeric[idx])  # what exact mode divides by
        else:
            std = bins.ref_std[idx]
        half = noise_floor.wasserstein_floor(law.quantile(alpha), n_ref, n_cur, std)
        unit = noise_floor.wasserstein_floor(np.ones(len(idx)), n_ref, n_cur, std)
        return half, law.mean_square * unit**2
    ref_counts, cur_counts = counts if counts is not None else _counts(kind, idx, exact, sides)
    return noise_floor.multinomial_null(
        test,
        ref_counts,
        ref_counts.sum(axis=1),
        cur_counts.sum(axis=1),
        alpha,
        epsilon=drift.psi_epsilon,
        reuse=sides.floor_key is not None,
    )


def _family_size(columns: Sequence[Column], sides: _Sides) -> int:
    """Columns of ``columns`` with values on both sides: those a window tests."""
    where = _column_index(sides)
    ok = {Kind.NUMERIC: _testable(sides.numeric), Kind.CATEGORICAL: _testable(sides.categorical)}
    return sum(bool(ok[where[c.name][0]][where[c.name][1]]) for c in columns)


def _level(drift: DriftSettings, columns: Sequence[Column], sides: _Sides) -> float:
    """The per-column level: the window's false-alarm rate over its tested columns."""
    return drift.window_false_alarm_rate / max(_family_size(columns, sides), 1)


def _roles(profile: Profile) -> tuple[list[Column], list[Column]]:
    return profile.schema.features(), profile.schema.predictions()


def evaluate_window(
    profile: Profile,
    sketch: WindowSketch,
    drift: DriftSettings = _DEFAULT_DRIFT,
    quality: QualitySettings = _DEFAULT_QUALITY,
) -> tuple[DriftResult, DriftResult, QualityResult]:
    """Feature drift, prediction drift and data quality of a window against the reference.

    >>> import numpy as np, pandas as pd
    >>> from detectors.profile import build_profile
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=5000), "prediction": rng.random(5000)})
    >>> profile = build_profile(ref, prediction=["prediction"])
    >>> sketch = WindowSketch(profile)
    >>> _ = sketch.update({"x": rng.normal(1.0, size=500), "prediction": rng.random(500)})
    >>> features, predictions, _ = evaluate_window(profile, sketch)
    >>> features.column("x").test, features.drifted, predictions.drifted
    ('ks', True, False)
    """
    if sketch.profile.content_hash != profile.content_hash:
        raise SketchMismatchError("the window was sketched on a different reference profile")
    exact = _exact_allowed(drift, sketch.complete, sketch.rows)
    num = profile.numeric_names
    sides = _Sides(
        numeric=NumericBins.from_profile(profile, sketch),
        categorical=CategoricalBins.from_profile(profile, sketch),
        rows=sketch.rows,
        floor_key=profile.content_hash,
        floor_sample=lambda: reference_laws.reference_sample(profile),
        floor_law=lambda: reference_laws.bridge_law_for(profile),
    )
    if exact and _sample_covers(profile):
        cat = profile.categorical_names
        sides = _with_raw(
            sides,
            _stack_numeric([profile.sample[c] for c in num]),
            _finite_or_nan(sketch.res_numeric.T),
            tuple(profile.sample[c] for c in cat),
            tuple(sketch.res_categorical[:, j] for j in range(len(cat))),
        )
    calibration = (
        calibration_in_range(profile.calibration_for(sketch.rows), sketch.rows)
        if drift.use_calibration
        else None
    )
    features, predictions = _roles(profile)
    level = _level(drift, [*features, *predictions], sides)
    return (
        _evaluate_set(features, sides, drift, calibration, level),
        _evaluate_set(predictions, sides, drift, calibration, level),
        assess_quality(profile, sketch, quality),
    )


def compare_windows(
    baseline: WindowSketch,
    current: WindowSketch,
    drift: DriftSettings = _DEFAULT_DRIFT,
) -> tuple[DriftResult, DriftResult]:
    """Feature and prediction drift of a window (a canary version's) against another
    window (the stable version's) of the same period. Reference calibrations do not apply:
    the baseline is a window, not the reference."""
    if baseline.profile.content_hash != current.profile.content_hash:
        raise SketchMismatchError("the two windows were sketched on different profiles")
    rows = max(baseline.rows, current.rows)
    exact = _exact_allowed(drift, baseline.complete and current.complete, rows)
    sides = _Sides(
        numeric=NumericBins.from_sketches(baseline, current),
        categorical=CategoricalBins.from_sketches(baseline, current),
        rows=current.rows,
        floor_sample=lambda: _finite_or_nan(baseline.res_numeric.T) if baseline.rows else None,
        bridges=noise_floor.WINDOW_SIMULATIONS,
    )
    if exact and baseline.rows and current.rows:
        nc = len(baseline.profile.categorical_names)
        sides = _with_raw(
            sides,
            _finite_or_nan(baseline.res_numeric.T),
            _finite_or_nan(current.res_numeric.T),
            tuple(baseline.res_categorical[:, j] for j in range(nc)),
            tuple(current.res_categorical[:, j] for j in range(nc)),
        )
    features, predictions = _roles(baseline.profile)
    level = _level(drift, [*features, *predictions], sides)
    return (
        _evaluate_set(features, sides, drift, None, level),
        _evaluate_set(predictions, sides, drift, None, level),
    )


def _sample_covers(profile: Profile) -> bool:
    """The profile keeps a non-empty row sample of every column (exact mode needs it)."""
    return all(len(profile.sample.get(c, ())) > 0 for c in profile.schema.names)


def _stack_numeric(columns: list[np.ndarray]) -> np.ndarray:
    return _finite_or_nan(np.stack(columns)) if columns else np.empty((0, 0))
