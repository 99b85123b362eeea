"""A WindowReport's drift, prediction-drift, attribution and performance blocks as the
values of their metric families (monitor/outputs/metrics/ defines them). The exporter
passes a ``put(defn, value, **labels)`` that stages one series of the window; a value
that is missing or not finite is never staged, so its series go away (see
monitor/outputs/exporter.py, "Stale series")."""

from __future__ import annotations

import math
from collections.abc import Callable

from detectors.performance.results import PerformanceResult
from detectors.results import AttributionResult, DriftResult, WindowReport
from monitor.outputs import metrics as m

# put(defn, value, **labels): stage one series of the window being exported
Put = Callable[..., None]


def finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def put_drift(put: Put, report: WindowReport) -> None:
    """Stage the feature and prediction drift sets: each tested column's statistic,
    p-value, threshold and verdict, its effect and interval, and the set's share and
    verdict."""
    put_set(
        put,
        report.drift,
        (
            m.FEATURE_DRIFT_STATISTIC,
            m.FEATURE_DRIFT_P_VALUE,
            m.FEATURE_DRIFT_THRESHOLD,
            m.FEATURE_DRIFTED,
        ),
        (m.DATASET_DRIFT_SHARE, m.DATASET_DRIFT_VERDICT),
    )
    put_effects(
        put,
        report.drift,
        (m.FEATURE_DRIFT_EFFECT, m.FEATURE_DRIFT_EFFECT_LOW, m.FEATURE_DRIFT_EFFECT_HIGH),
    )
    put_set(
        put,
        report.prediction_drift,
        (
            m.PREDICTION_DRIFT_STATISTIC,
            m.PREDICTION_DRIFT_P_VALUE,
            m.PREDICTION_DRIFT_THRESHOLD,
            m.PREDICTION_DRIFTED,
        ),
        (m.PREDICTION_DRIFT_SHARE, m.PREDICTION_DRIFT_VERDICT),
    )
    put_effects(
        put,
        report.prediction_drift,
        (
            m.PREDICTION_DRIFT_EFFECT,
            m.PREDICTION_DRIFT_EFFECT_LOW,
            m.PREDICTION_DRIFT_EFFECT_HIGH,
        ),
    )


def put_set(
    put: Put,
    result: DriftResult,
    column_defs: tuple[m.MetricDef, m.MetricDef, m.MetricDef, m.MetricDef],
    set_defs: tuple[m.MetricDef, m.MetricDef],
) -> None:
    statistic, p_value, threshold, drifted = column_defs
    for c in result.columns:
        if not finite(c.statistic):
            continue  # untestable in this window: its series go away
        labels = {"feature": c.feature, "detector": c.test}
        put(statistic, c.statistic, **labels)
        put(p_value, c.p_value, **labels)
        put(threshold, c.threshold, **labels)
        put(drifted, float(c.drifted), **labels)
    if result.tested_count > 0:
        share, verdict = set_defs
        put(share, result.share)
        put(verdict, float(result.drifted))


def put_effects(
    put: Put, result: DriftResult, defs: tuple[m.MetricDef, m.MetricDef, m.MetricDef]
) -> None:
    """Stage each column's effect and its confidence interval, where the test has one."""
    estimate, low, high = defs
    for c in result.columns:
        if c.effect is None or not finite(c.statistic):
            continue
        labels = {"feature": c.feature, "detector": c.test}
        put(estimate, c.effect.estimate, **labels)
        put(low, c.effect.low, **labels)
        put(high, c.effect.high, **labels)


def put_attribution(put: Put, result: AttributionResult) -> None:
    put(m.ATTRIBUTION_NDCG, result.ndcg)
    put(m.ATTRIBUTION_NDCG_THRESHOLD, result.ndcg_threshold)
    put(m.ATTRIBUTION_DRIFTED, float(result.drifted))
    for c in result.columns:
        put(m.FEATURE_ATTRIBUTION, c.window_mean_abs, feature=c.feature)
        put(m.FEATURE_ATTRIBUTION_REFERENCE, c.reference_mean_abs, feature=c.feature)
        put(m.FEATURE_ATTRIBUTION_DRIFTED, float(c.drifted), feature=c.feature)
    for item in result.impact:
        put(m.FEATURE_DRIFT_IMPACT, item.score, feature=item.feature)


# The families of the performance block, updated again when late labels revise it.
PERFORMANCE_FAMILIES = (
    m.PERFORMANCE_REALIZED,
    m.PERFORMANCE_REALIZED_LOW,
    m.PERFORMANCE_REALIZED_HIGH,
    m.PERFORMANCE_ESTIMATED,
    m.PERFORMANCE_ESTIMATED_LOW,
    m.PERFORMANCE_ESTIMATED_HIGH,
    m.PERFORMANCE_ESTIMATED_THRESHOLD,
    m.PERFORMANCE_ESTIMATED_ALERT,
    m.LABEL_COVERAGE,
    m.KPI_MEAN,
    m.KPI_CORRELATION,
    m.KPI_DECILE_MEAN,
)


def put_performance(put: Put, perf: PerformanceResult) -> None:
    """Stage a window's performance block: realized, estimated, coverage and KPIs."""
    put(m.LABEL_COVERAGE, perf.coverage)
    for r in perf.realized:
        put(m.PERFORMANCE_REALIZED, r.value, metric=r.metric)
        put(m.PERFORMANCE_REALIZED_LOW, r.low, metric=r.metric)
        put(m.PERFORMANCE_REALIZED_HIGH, r.high, metric=r.metric)
    for e in perf.estimated:
        labels = {"metric": e.metric, "method": e.method}
        put(m.PERFORMANCE_ESTIMATED, e.value, **labels)
        put(m.PERFORMANCE_ESTIMATED_LOW, e.low, **labels)
        put(m.PERFORMANCE_ESTIMATED_HIGH, e.high, **labels)
        put(m.PERFORMANCE_ESTIMATED_THRESHOLD, e.threshold, **labels)
        put(m.PERFORMANCE_ESTIMATED_ALERT, float(e.alert), **labels)
    for k in perf.kpis:
        put(m.KPI_MEAN, k.mean, kpi=k.name)
        put(m.KPI_CORRELATION, k.correlation_with_prediction, kpi=k.name)
        for i, v in enumerate(k.by_decile):
            put(m.KPI_DECILE_MEAN, v, kpi=k.name, decile=str(i + 1))
