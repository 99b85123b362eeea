"""What a window's data looks like against its baseline: per-feature and prediction drift,
the sequential detectors over the stream of windows, the dataset verdict and data quality."""

from __future__ import annotations

from monitor.outputs.metrics.definition import WINDOW_LABELS, MetricDef

_DRIFT_LABELS = ("model", "model_version", "feature", "detector", "window", "baseline")
_SET_LABELS = ("model", "model_version", "window", "baseline")
_QUALITY_LABELS = ("model", "model_version", "feature", "check", "window")

# -- per-feature drift ---------------------------------------------------------------------
FEATURE_DRIFT_STATISTIC = MetricDef(
    "driftline_feature_drift_statistic",
    "gauge",
    "Drift test statistic of a feature in the last closed window (its scale depends on the "
    "detector).",
    _DRIFT_LABELS,
)
FEATURE_DRIFT_P_VALUE = MetricDef(
    "driftline_feature_drift_p_value",
    "gauge",
    "p-value of the feature's drift test in the last closed window; absent for tests that "
    "define none (distances, PSI).",
    _DRIFT_LABELS,
)
FEATURE_DRIFT_THRESHOLD = MetricDef(
    "driftline_feature_drift_threshold",
    "gauge",
    "Threshold the feature's drift test was judged against (a p-value for ks, chi_square "
    "and cramer_von_mises, else a distance).",
    _DRIFT_LABELS,
)
FEATURE_DRIFTED = MetricDef(
    "driftline_feature_drifted",
    "gauge",
    "1 when the feature drifted in the last closed window, else 0.",
    _DRIFT_LABELS,
)
FEATURE_DRIFT_EFFECT = MetricDef(
    "driftline_feature_drift_effect",
    "gauge",
    "The feature's distance to the reference corrected for its no-change bias (effect.estimate "
    "in the report); absent for tests without an effect.",
    _DRIFT_LABELS,
)
FEATURE_DRIFT_EFFECT_LOW = MetricDef(
    "driftline_feature_drift_effect_low",
    "gauge",
    "Lower end of the confidence interval of the feature's distance, at the per-column level "
    "of drift.window_false_alarm_rate; a distance drifts when it exceeds the threshold.",
    _DRIFT_LABELS,
)
FEATURE_DRIFT_EFFECT_HIGH = MetricDef(
    "driftline_feature_drift_effect_high",
    "gauge",
    "Upper end of the confidence interval of the feature's distance.",
    _DRIFT_LABELS,
)

# -- sequential detectors (Page's CUSUM over the windows; docs/detectors.md) ----------------
_SEQUENTIAL_LABELS = ("model", "model_version", "feature", "window")
SEQUENTIAL_STATISTIC = MetricDef(
    "driftline_sequential_statistic",
    "gauge",
    "CUSUM of the column's leading sequential channel after the last window it saw "
    "(features and prediction columns); it alarms above driftline_sequential_threshold.",
    _SEQUENTIAL_LABELS,
)
SEQUENTIAL_THRESHOLD = MetricDef(
    "driftline_sequential_threshold",
    "gauge",
    "Threshold of the column's leading sequential channel, calibrated for "
    "drift.sequential.expected_run_time between false alarms.",
    _SEQUENTIAL_LABELS,
)
SEQUENTIAL_ALARM = MetricDef(
    "driftline_sequential_alarm",
    "gauge",
    "1 from the window where the column's sequential detector fired until an operator "
    "acknowledges it (POST /v1/sequential/reset), else 0.",
    _SEQUENTIAL_LABELS,
)
SEQUENTIAL_ALARMS = MetricDef(
    "driftline_sequential_alarms_total",
    "counter",
    "Times the column's sequential detector fired (it restarts from 0 after each).",
    _SEQUENTIAL_LABELS,
)
DATASET_SEQUENTIAL_STATISTIC = MetricDef(
    "driftline_dataset_sequential_statistic",
    "gauge",
    "CUSUM of the features' pooled evidence (the dataset-level sequential detector).",
    WINDOW_LABELS,
)
DATASET_SEQUENTIAL_THRESHOLD = MetricDef(
    "driftline_dataset_sequential_threshold",
    "gauge",
    "Threshold of the dataset-level sequential detector.",
    WINDOW_LABELS,
)
DATASET_SEQUENTIAL_ALARM = MetricDef(
    "driftline_dataset_sequential_alarm",
    "gauge",
    "1 from the window where the dataset-level sequential detector fired until an operator "
    "acknowledges it, else 0.",
    WINDOW_LABELS,
)

# -- dataset verdict -----------------------------------------------------------------------
DATASET_DRIFT_SHARE = MetricDef(
    "driftline_dataset_drift_share_ratio",
    "gauge",
    "Fraction of tested features that drifted in the last closed window.",
    _SET_LABELS,
    unit="ratio",
)
DATASET_DRIFT_VERDICT = MetricDef(
    "driftline_dataset_drift_verdict",
    "gauge",
    "1 when the window's drift share reached the share threshold, else 0.",
    _SET_LABELS,
)

# -- prediction drift ----------------------------------------------------------------------
PREDICTION_DRIFT_STATISTIC = MetricDef(
    "driftline_prediction_drift_statistic",
    "gauge",
    "Drift test statistic of a prediction column (in the feature label) in the last closed window.",
    _DRIFT_LABELS,
)
PREDICTION_DRIFT_P_VALUE = MetricDef(
    "driftline_prediction_drift_p_value",
    "gauge",
    "p-value of the prediction column's drift test; absent for tests that define none.",
    _DRIFT_LABELS,
)
PREDICTION_DRIFT_THRESHOLD = MetricDef(
    "driftline_prediction_drift_threshold",
    "gauge",
    "Threshold the prediction column's drift test was judged against.",
    _DRIFT_LABELS,
)
PREDICTION_DRIFTED = MetricDef(
    "driftline_prediction_drifted",
    "gauge",
    "1 when the prediction column drifted in the last closed window, else 0.",
    _DRIFT_LABELS,
)
PREDICTION_DRIFT_EFFECT = MetricDef(
    "driftline_prediction_drift_effect",
    "gauge",
    "The prediction column's distance to the reference corrected for its no-change bias.",
    _DRIFT_LABELS,
)
PREDICTION_DRIFT_EFFECT_LOW = MetricDef(
    "driftline_prediction_drift_effect_low",
    "gauge",
    "Lower end of the confidence interval of the prediction column's distance.",
    _DRIFT_LABELS,
)
PREDICTION_DRIFT_EFFECT_HIGH = MetricDef(
    "driftline_prediction_drift_effect_high",
    "gauge",
    "Upper end of the confidence interval of the prediction column's distance.",
    _DRIFT_LABELS,
)
PREDICTION_DRIFT_SHARE = MetricDef(
    "driftline_prediction_drift_share_ratio",
    "gauge",
    "Fraction of tested prediction columns that drifted in the last closed window.",
    _SET_LABELS,
    unit="ratio",
)
PREDICTION_DRIFT_VERDICT = MetricDef(
    "driftline_prediction_drift_verdict",
    "gauge",
    "1 when the window's prediction drift share reached the share threshold, else 0.",
    _SET_LABELS,
)

# -- data quality --------------------------------------------------------------------------
QUALITY_RATIO = MetricDef(
    "driftline_quality_ratio",
    "gauge",
    "Rate of a data-quality problem (check) of a feature in the last closed window.",
    _QUALITY_LABELS,
    unit="ratio",
)
QUALITY_BREACHED = MetricDef(
    "driftline_quality_breached",
    "gauge",
    "1 when the check's rate exceeded the reference rate plus its threshold, else 0.",
    _QUALITY_LABELS,
)
WINDOW_QUALITY_BREACHED = MetricDef(
    "driftline_window_quality_breached",
    "gauge",
    "1 when any quality check breached or a schema column was missing from the window.",
    WINDOW_LABELS,
)
