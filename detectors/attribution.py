"""Attribution drift: did the model's reasons change, and does a feature's drift matter?

Inputs are SHAP values (rows × features, in the model's explained output units: log-odds
for a boosted classifier, the prediction for a regressor) on the reference sample and on a
window's reservoir rows. Everything here is numpy on those matrices; computing them is the
agent's business (monitor/explain/). Three measures, each with its uncertainty stated
(docs/architecture.md, decision 5):

1. **Ranking drift, nDCG** exactly as SageMaker Clarify's feature attribution drift
   monitor defines it ("Monitor Feature Attribution Drift for Models in Production",
   https://docs.aws.amazon.com/sagemaker/latest/dg/clarify-model-monitor-feature-attribution-drift.html).
   Let ``a(f)`` be feature ``f``'s global attribution (mean |SHAP|) on the reference,
   ``F`` the features sorted by ``a`` (the ideal order), ``F'`` the features sorted by
   their attribution on the window. Then

       DCG  = Σ_i a(F'_i) / log2(i + 1),    iDCG = Σ_i a(F_i) / log2(i + 1),
       nDCG = DCG / iDCG  ∈ (0, 1],

   and the ranking has drifted when nDCG < 0.90 (Clarify's threshold, the default here).
   Clarify's worked example (college admissions, SAT 0.70 / GPA 0.50 / class rank 0.05
   on the training data, ranking reversed on live data) gives 0.69.

2. **Per feature**, the change in mean |SHAP| with a percentile bootstrap interval over the
   window's rows (the reference mean's own sampling error drawn from its normal
   approximation), and a drift test of the feature's SHAP *distribution* against the
   reference SHAP distribution binned in the profile: the very test a numeric feature of
   that window size gets (detectors/evaluate.py: KS on small windows, normalised
   Wasserstein with its noise floor on large ones), so no new statistics to trust. A
   distribution test also flags changes the model barely feels, so a column is
   attribution drift only when, besides, the bootstrap interval of its change in mean
   |SHAP| or in mean SHAP lies wholly beyond a margin of ``min_share`` of the model's
   total reference attribution (default 5 %): a change that matters to the model, with
   the interval's confidence. ``share`` reports the Wasserstein distance between the two
   SHAP distributions as such a share.

3. **Impact**: each drifted *feature* (from the feature drift block) weighted by its
   importance, the share of the reference's total mean |SHAP|: ``score = drift ×
   importance`` with ``drift`` the statistic's exceedance of its threshold (``drift_ratio``,
   1 at the threshold). A shift in a feature the model ignores scores near 0; a small
   shift in its most important feature scores high. Because SHAP values add up to the
   output, the change in the mean explained output is exactly the sum of the per-feature
   changes in mean SHAP (``mean_shift``); features whose attributions drifted, largest
   ``|mean_shift|`` first, are the ``prediction_drivers``.

>>> round(ndcg(np.array([0.70, 0.50, 0.05]), np.array([0.10, 0.20, 0.70])), 2)
0.69
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from detectors import wasserstein
from detectors.evaluate import _evaluate_set, _level, _Sides
from detectors.profile import DEFAULT_BINS, AttributionProfile, profile_numeric
from detectors.results import (
    AttributionColumn,
    AttributionResult,
    DriftResult,
    ImpactItem,
    TestResult,
)
from detectors.schema import Column, Kind
from detectors.settings import P_VALUE_TESTS, DriftSettings
from detectors.stats import CategoricalBins, NumericBins

DEFAULT_NDCG_THRESHOLD = 0.90
DEFAULT_MIN_SHARE = 0.05
DEFAULT_BOOTSTRAP = 200
DEFAULT_LEVEL = 0.95
# drift_ratio of an infinite statistic or a zero p-value: far past any threshold, finite.
MAX_DRIFT_RATIO = 1000.0


@dataclass(frozen=True)
class AttributionSettings:
    """How attribution drift is judged (``explain:`` in monitor.yaml)."""

    ndcg_threshold: float = DEFAULT_NDCG_THRESHOLD
    min_share: float = DEFAULT_MIN_SHARE
    bootstrap: int = DEFAULT_BOOTSTRAP
    level: float = DEFAULT_LEVEL
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.ndcg_threshold <= 1.0:
            raise ValueError(f"ndcg_threshold must be in (0, 1], got {self.ndcg_threshold}")
        if not 0.0 <= self.min_share < 1.0:
            raise ValueError(f"min_share must be in [0, 1), got {self.min_share}")
        if self.bootstrap < 10:
            raise ValueError(f"bootstrap must be at least 10 draws, got {self.bootstrap}")
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {self.level}")


def ndcg(reference: np.ndarray, current: np.ndarray) -> float:
    """Clarify's nDCG of the current ranking against the reference (module docstring).

    ``reference`` and ``current`` are global attributions of the same features in the same
    order; gains are always the reference's. Ties in ``current`` keep feature order.
    NaN when the reference attributes nothing to any feature.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise ValueError(f"attributions of {ref.shape} and {cur.shape} features")
    discount = 1.0 / np.log2(np.arange(2, len(ref) + 2))
    ideal = float(np.sort(ref)[::-1] @ discount)
    if not ideal > 0:
        return float("nan")
    order = np.argsort(-cur, kind="stable")
    return float(ref[order] @ discount) / ideal


def attribution_profile(
    features: Sequence[str],
    shap_values: np.ndarray,
    *,
    method: str,
    library: str,
    expected_value: float,
    bins: int = DEFAULT_BINS,
    model_sha256: str = "",
    output: int | None = None,
) -> AttributionProfile:
    """The reference side: global importances and binned SHAP distributions."""
    phi = _finite_rows(shap_values, len(features))
    if len(phi) == 0:
        raise ValueError("no reference row has finite attributions")
    absphi = np.abs(phi)
    return AttributionProfile(
        method=method,
        library=library,
        features=tuple(features),
        mean_abs=absphi.mean(axis=0),
        abs_std=absphi.std(axis=0, ddof=1) if len(phi) > 1 else np.zeros(len(features)),
        mean=phi.mean(axis=0),
        expected_value=float(expected_value),
        rows=len(phi),
        distributions={f: profile_numeric(f, phi[:, j], bins) for j, f in enumerate(features)},
        model_sha256=model_sha256,
        output=output,
    )


def window_bins(reference: AttributionProfile, shap_values: np.ndarray) -> NumericBins:
    """Reference and window SHAP histograms on the reference's edges, as the drift tests
    take them (one row per feature, laid out like ``NumericBins.from_profile``)."""
    phi = _finite_rows(shap_values, len(reference.features))
    dists = [reference.distributions[f] for f in reference.features]
    width = max(p.bins for p in dists)
    d = len(dists)
    ref = np.zeros((d, width), dtype=np.int64)
    cur = np.zeros((d, width), dtype=np.int64)
    ref_means = np.full((d, width), np.nan)
    cur_means = np.full((d, width), np.nan)
    edges = np.full((d, max(width - 1, 0)), np.inf)
    for j, p in enumerate(dists):
        ref[j, : p.bins] = p.counts
        ref_means[j, : p.bins] = p.bin_means
        edges[j, : len(p.edges)] = p.edges
        slot = edge_bins(p.edges, phi[:, j])
        counts = np.bincount(slot, minlength=p.bins)
        sums = np.bincount(slot, weights=phi[:, j], minlength=p.bins)
        cur[j, : p.bins] = counts
        with np.errstate(invalid="ignore", divide="ignore"):
            cur_means[j, : p.bins] = np.where(counts > 0, sums / counts, np.nan)
    empty = len(phi) == 0
    return NumericBins(
        names=tuple(reference.features),
        ref=ref,
        cur=cur,
        edges=edges,
        nbins=np.array([p.bins for p in dists], dtype=np.int64),
        ref_min=np.array([p.min for p in dists]),
        ref_max=np.array([p.max for p in dists]),
        ref_std=np.array([p.std for p in dists]),
        cur_min=np.full(d, np.inf) if empty else phi.min(axis=0),
        cur_max=np.full(d, -np.inf) if empty else phi.max(axis=0),
        ref_means=ref_means,
        cur_means=cur_means,
    )


#: Relative distance (to the edges' scale) within which a SHAP value is taken to be the
#: edge itself. A tree model's SHAP values are few distinct numbers and the reference's
#: quantile edges are among them; the same value computed in another summation order (a
#: window's explainer, or the model server's own) lands 1e-15 away, on either side.
EDGE_TOLERANCE = 1e-9


def edge_bins(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bins ``(e[i-1], e[i]]`` of ``values`` on a profile's ``edges``, as
    ``searchsorted(side="left")`` but with values within :data:`EDGE_TOLERANCE` of a
    reference value counted as that value: rounding must not move attributions between
    bins. The edges are reference values except the first, one ulp below the minimum
    (``numeric_edges``), so a value just below the minimum counts as the minimum."""
    slot = np.searchsorted(edges, values, side="left")
    if len(edges) < 2:
        return slot
    scale = float(np.max(np.abs(edges[np.isfinite(edges)]), initial=0.0)) or 1.0
    tol = EDGE_TOLERANCE * scale
    below = np.maximum(slot - 1, 1)
    down = (slot >= 2) & (values - edges[below] <= tol)  # just above a reference value
    up = (slot == 0) & (np.nextafter(edges[0], np.inf) - values <= tol)  # just below the min
    return np.where(down, slot - 1, np.where(up, 1, slot))


def distribution_tests(
    reference: AttributionProfile,
    bins: NumericBins,
    drift: DriftSettings,
    floor_key: str | None = None,
) -> DriftResult:
    """Each feature's SHAP distribution tested as a numeric feature of the window's size
    would be (per-column overrides and reference calibrations do not apply: they were
    set for the features' values, not their attributions)."""
    rows = int(bins.cur.sum(axis=1).max()) if len(bins.names) else 0
    sides = _Sides(
        numeric=bins,
        categorical=CategoricalBins((), np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)),
        rows=rows,
        floor_key=None if floor_key is None else f"{floor_key}:attribution",
    )
    columns = [Column(f, Kind.NUMERIC) for f in reference.features]
    settings = replace(drift, columns={})
    # the window's false-alarm rate spread over the attribution columns, as for features
    return _evaluate_set(columns, sides, settings, None, _level(settings, columns, sides))


@dataclass(frozen=True)
class Changes:
    """Per feature, percentile bootstrap intervals of the change in mean |SHAP|
    (``abs_low``, ``abs_high``) and in mean SHAP (``mean_low``, ``mean_high``)."""

    abs_low: np.ndarray
    abs_high: np.ndarray
    mean_low: np.ndarray
    mean_high: np.ndarray

    def beyond(self, margin: float) -> np.ndarray:
        """Features whose change, in either measure, is larger than ``margin`` with the
        interval's confidence: the whole interval lies outside ``[-margin, margin]``."""
        out = np.zeros(len(self.abs_low), dtype=bool)
        for low, high in ((self.abs_low, self.abs_high), (self.mean_low, self.mean_high)):
            with np.errstate(invalid="ignore"):
                out |= (low > margin) | (high < -margin)
        return out


def bootstrap_change(
    reference: AttributionProfile,
    shap_values: np.ndarray,
    draws: int = DEFAULT_BOOTSTRAP,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Changes:
    """Percentile intervals of ``window mean − reference mean`` of |SHAP| and of SHAP.

    Window rows are resampled (as counts per row: one matrix product for all draws, no row
    copies); the reference means, from a sample of ``reference.rows`` rows, are drawn
    from their normal approximation (the signed mean's spread from |SHAP|'s second moment,
    which the profile keeps as ``abs_std`` and ``mean_abs``).
    """
    phi = _finite_rows(shap_values, len(reference.features))
    n, d = phi.shape
    if n == 0:
        nan = np.full(d, np.nan)
        return Changes(nan, nan, nan, nan)
    rng = np.random.default_rng(seed)
    # each draw's resampling counts, from one bincount over all draws' row indices
    picks = rng.integers(0, n, size=(draws, n)) + np.arange(draws)[:, None] * n
    weights = np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n) / n
    root_n = math.sqrt(max(reference.rows, 1))
    abs_se = reference.abs_std / root_n
    # sd(φ)² = E φ² − (E φ)², and E φ² = sd(|φ|)² + (E|φ|)²
    second = reference.abs_std**2 + reference.mean_abs**2
    mean_se = np.sqrt(np.maximum(second - reference.mean**2, 0.0)) / root_n
    z = rng.standard_normal((2, draws, d))
    tail = (1.0 - level) / 2.0
    q = [tail, 1.0 - tail]
    abs_change = weights @ np.abs(phi) - (reference.mean_abs + z[0] * abs_se)
    mean_change = weights @ phi - (reference.mean + z[1] * mean_se)
    abs_low, abs_high = np.quantile(abs_change, q, axis=0)
    mean_low, mean_high = np.quantile(mean_change, q, axis=0)
    return Changes(abs_low, abs_high, mean_low, mean_high)


def drift_ratio(result: TestResult) -> float:
    """How far a column's drift statistic went past its threshold, 1 at the threshold.

    Distances (and calibrated statistics): ``statistic / threshold``. p-value tests:
    ``log p / log threshold`` (p = threshold gives 1, p = threshold² gives 2). One scale
    for every test, so drifted features of different kinds can be ranked together.
    """
    if result.p_value is not None and result.test in P_VALUE_TESTS and result.mode != "calibrated":
        p = max(float(result.p_value), 1e-300)
        t = min(max(result.threshold, 1e-300), 1.0 - 1e-12)
        ratio = math.log(p) / math.log(t)
    elif result.threshold > 0 and not math.isnan(result.statistic):
        ratio = result.statistic / result.threshold
    else:
        return 0.0
    return float(min(ratio, MAX_DRIFT_RATIO)) if not math.isnan(ratio) else 0.0


def impact(
    features: DriftResult,
    reference: AttributionProfile,
    mean_shift: Mapping[str, float] | None = None,
) -> tuple[ImpactItem, ...]:
    """The drifted features, each drift weighted by the model's reliance on the feature,
    highest score first. A drifted feature the model does not read has importance 0.
    ``mean_shift`` (feature → change in mean SHAP) fills ``prediction_shift``."""
    share = dict(zip(reference.features, reference.importance.tolist(), strict=True))
    shift = mean_shift or {}
    items = [
        ImpactItem(
            feature=c.feature,
            drift=drift_ratio(c),
            importance=share.get(c.feature, 0.0),
            score=drift_ratio(c) * share.get(c.feature, 0.0),
            prediction_shift=float(shift.get(c.feature, 0.0)),
        )
        for c in features.columns
        if c.drifted
    ]
    return tuple(sorted(items, key=lambda i: (-i.score, -i.drift, i.feature)))


def attribution_drift(
    reference: AttributionProfile,
    shap_values: np.ndarray,
    drift: DriftSettings,
    features: DriftResult | None = None,
    settings: AttributionSettings | None = None,
    *,
    floor_key: str | None = None,
    seconds: float = 0.0,
    device: str = "cpu",
) -> AttributionResult:
    """The ``attribution`` block of a window from its rows' SHAP values.

    ``features`` is the window's feature drift result (for the impact ranking);
    ``floor_key`` caches the reference side's noise floors (the profile's hash).
    """
    settings = settings or AttributionSettings()
    d = len(reference.features)
    phi = _finite_rows(shap_values, d)
    n = len(phi)
    window_abs = np.abs(phi).mean(axis=0) if n else np.full(d, np.nan)
    window_mean = phi.mean(axis=0) if n else np.full(d, np.nan)
    score = ndcg(reference.mean_abs, window_abs) if n else float("nan")
    bins = window_bins(reference, phi)
    tests = distribution_tests(reference, bins, drift, floor_key)
    total = float(reference.mean_abs.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        w1 = np.asarray(wasserstein.binned(bins, normalize=False).statistic, dtype=np.float64)
        shares = w1 / total if total > 0 else np.full(d, np.nan)
    changes = bootstrap_change(reference, phi, settings.bootstrap, settings.level, settings.seed)
    material = changes.beyond(settings.min_share * total)
    deciles = np.quantile(phi, np.linspace(0.0, 1.0, 11), axis=0) if n else np.empty((11, d))
    columns = []
    for j, f in enumerate(reference.features):
        t = tests.column(f)
        columns.append(
            AttributionColumn(
                feature=f,
                reference_mean_abs=float(reference.mean_abs[j]),
                window_mean_abs=float(window_abs[j]),
                change=float(window_abs[j] - reference.mean_abs[j]),
                change_low=float(changes.abs_low[j]),
                change_high=float(changes.abs_high[j]),
                test=t.test,
                statistic=t.statistic,
                p_value=t.p_value,
                threshold=t.threshold,
                share=float(shares[j]),
                drifted=bool(t.drifted and material[j]),
                mean_shift=float(window_mean[j] - reference.mean[j]),
                mean_shift_low=float(changes.mean_low[j]),
                mean_shift_high=float(changes.mean_high[j]),
                quantiles=tuple(float(q) for q in deciles[:, j]) if n else (),
            )
        )
    drivers = sorted(
        (c for c in columns if c.drifted), key=lambda c: (-abs(c.mean_shift), c.feature)
    )
    ranking_drift = bool(np.isfinite(score) and score < settings.ndcg_threshold)
    return AttributionResult(
        method=reference.method,
        ndcg=score,
        ndcg_threshold=settings.ndcg_threshold,
        drifted=ranking_drift or any(c.drifted for c in columns),
        rows=n,
        columns=tuple(columns),
        impact=(
            impact(features, reference, {c.feature: c.mean_shift for c in columns})
            if features is not None
            else ()
        ),
        prediction_drivers=tuple(c.feature for c in drivers),
        seconds=seconds,
        device=device,
    )


def _finite_rows(shap_values: np.ndarray, features: int) -> np.ndarray:
    """(rows × features) float64, without rows where any attribution is not finite."""
    phi = np.asarray(shap_values, dtype=np.float64)
    if phi.ndim != 2 or phi.shape[1] != features:
        raise ValueError(f"attributions of shape {phi.shape} for {features} features")
    return phi[np.isfinite(phi).all(axis=1)]


__all__ = [
    "DEFAULT_NDCG_THRESHOLD",
    "AttributionSettings",
    "attribution_drift",
    "attribution_profile",
    "bootstrap_change",
    "distribution_tests",
    "drift_ratio",
    "impact",
    "ndcg",
    "window_bins",
]
