"""Attribution drift (``explain:``): the model's SHAP ranking and per-feature attributions
against the reference's."""

from __future__ import annotations

from monitor.outputs.metrics.definition import WINDOW_LABELS, MetricDef

# -- attributions (explain:) ----------------------------------------------------------------
_ATTRIBUTION_LABELS = ("model", "model_version", "feature", "window")
ATTRIBUTION_NDCG = MetricDef(
    "driftline_attribution_ndcg",
    "gauge",
    "nDCG of the window's feature ranking by mean |SHAP| against the reference's (SageMaker "
    "Clarify's measure; 1 = same ranking).",
    WINDOW_LABELS,
)
ATTRIBUTION_NDCG_THRESHOLD = MetricDef(
    "driftline_attribution_ndcg_threshold",
    "gauge",
    "nDCG below which the ranking has drifted (explain.ndcg_threshold).",
    WINDOW_LABELS,
)
ATTRIBUTION_DRIFTED = MetricDef(
    "driftline_attribution_drifted",
    "gauge",
    "1 when the window's attributions drifted (nDCG below its threshold, or a feature's "
    "attribution distribution moved materially), else 0.",
    WINDOW_LABELS,
)
FEATURE_ATTRIBUTION = MetricDef(
    "driftline_feature_attribution_mean_abs",
    "gauge",
    "Mean |SHAP| of a feature over the window's explained rows (model output units).",
    _ATTRIBUTION_LABELS,
)
FEATURE_ATTRIBUTION_REFERENCE = MetricDef(
    "driftline_feature_attribution_reference_mean_abs",
    "gauge",
    "Mean |SHAP| of a feature on the reference sample (model output units).",
    _ATTRIBUTION_LABELS,
)
FEATURE_ATTRIBUTION_DRIFTED = MetricDef(
    "driftline_feature_attribution_drifted",
    "gauge",
    "1 when the feature's SHAP distribution drifted materially in the last window, else 0.",
    _ATTRIBUTION_LABELS,
)
FEATURE_DRIFT_IMPACT = MetricDef(
    "driftline_feature_drift_impact_score",
    "gauge",
    "Impact of a drifted feature: its drift (statistic over threshold) times its share of "
    "the model's reference attributions; absent for features that did not drift.",
    _ATTRIBUTION_LABELS,
)
ATTRIBUTION_SKIPPED = MetricDef(
    "driftline_attribution_windows_skipped_total",
    "counter",
    "Windows whose attributions were not computed, by reason: budget (too few rows "
    "explained within explain.budget_seconds), too_few_rows, error.",
    ("model", "reason"),
)
ATTRIBUTION_RECORDS_INVALID = MetricDef(
    "driftline_attribution_records_invalid_total",
    "counter",
    "Records whose logged attributions (explain.source: record) could not be read, by "
    "reason: missing, bad_type, wrong_length, missing_feature, not_numeric. The record "
    "itself is kept and counts for feature drift.",
    ("model", "reason"),
)
