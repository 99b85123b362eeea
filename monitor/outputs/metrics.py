"""Every metric driftline exports, defined once.

The exporter (Prometheus and OTLP), the Grafana dashboards and the alert rules read names
and labels from the constants here, so renaming a metric renames it everywhere and a
dashboard or rule can never point at a series that no longer exists.

Conventions (Prometheus; docs/architecture.md, decision 9): the ``driftline_`` prefix; base units
(seconds, ratios in 0..1) named as the last word of the name (``_seconds``, ``_ratio``);
``_total`` on counters and nowhere else; ``_info`` on info metrics. Labels come from
:data:`LABELS`, which has no room for a feature value or a request id, so the cardinality
of every family is bounded by the schema, the model versions and the partitions.

``python -m monitor.outputs.metrics --write docs/metrics.md`` regenerates the reference table in
the docs; a unit test fails when the two disagree.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["counter", "gauge", "histogram", "info"]
KINDS: tuple[str, ...] = ("counter", "gauge", "histogram", "info")

PREFIX = "driftline_"

# Every label any family may carry, with what its values are. Nothing here can hold a
# feature value, a request id or any other per-record value.
LABELS: dict[str, str] = {
    "model": "model name from monitor.yaml",
    "model_version": "model version of the window's records (empty when unknown; `other` for "
    "versions beyond exporter.max_model_versions)",
    "feature": "schema column name (a feature, or a prediction column)",
    "detector": "drift test name: ks, psi, jensen_shannon, wasserstein, chi_square, ...",
    "window": "window length, e.g. 60s (or 1000rows for row-count windows)",
    "baseline": "what the window was compared with: `reference` or `version:<v>`",
    "reason": "why a record was set aside (monitor.ingest.batch.FAILURE_REASONS), why an "
    "aggregated window is partial (coverage, overlap), or why a "
    "window's attributions were skipped (monitor.explain.window.SKIP_REASONS)",
    "check": "data-quality check: missing, out_of_range, unseen, type_error, non_finite",
    "outcome": "what happened to a record, a window evaluation or a rollback decision",
    "action": "rollback action name",
    "topic": "Kafka topic",
    "partition": "Kafka partition number",
    "reference": "short hash of the reference profile",
    "version": "driftline version",
    "python": "Python version",
    "metric": "model-performance metric: accuracy, precision, recall, f1, roc_auc, pr_auc, "
    "log_loss, brier, ece, mae, rmse, mape",
    "method": "performance estimator: cbpe (classifiers) or dle (regressors)",
    "kpi": "business KPI name from the kpis: section of monitor.yaml",
    "decile": "decile of the reference's predictions, 1 to 10",
    "kind": "what waits in the label join (predictions or labels), or what a partial is "
    "(window or progress)",
}
FORBIDDEN_LABELS: frozenset[str] = frozenset(
    {"value", "request_id", "trace_id", "span_id", "id", "row", "offset", "key"}
)

# Base units and the OpenTelemetry (UCUM) unit each maps to.
UNITS: dict[str, str] = {"": "", "seconds": "s", "ratio": "1"}

RECORD_OUTCOMES: tuple[str, ...] = ("decoded", "failed", "late", "duplicate")

EVALUATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


@dataclass(frozen=True)
class MetricDef:
    """One metric family: its full exposition name, type, help text, labels and unit.

    ``name`` is what a PromQL query uses: counters include ``_total``, info metrics
    ``_info``. ``unit`` is one of :data:`UNITS` and, when set, is the name's last word.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    unit: str = ""
    buckets: tuple[float, ...] | None = None

    @property
    def family(self) -> str:
        """The OpenMetrics family name: the name without ``_total`` / ``_info``."""
        if self.kind == "counter":
            return self.name.removesuffix("_total")
        if self.kind == "info":
            return self.name.removesuffix("_info")
        return self.name

    @property
    def otel_name(self) -> str:
        """The OpenTelemetry instrument name.

        A collector's Prometheus exporter adds ``_total`` to monotonic sums, so counters
        go out under their family name; everything else keeps its exposition name.
        """
        return self.family if self.kind == "counter" else self.name

    @property
    def otel_unit(self) -> str:
        return UNITS[self.unit]


_DRIFT_LABELS = ("model", "model_version", "feature", "detector", "window", "baseline")
_SET_LABELS = ("model", "model_version", "window", "baseline")
_WINDOW_LABELS = ("model", "model_version", "window")
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
    _WINDOW_LABELS,
)
DATASET_SEQUENTIAL_THRESHOLD = MetricDef(
    "driftline_dataset_sequential_threshold",
    "gauge",
    "Threshold of the dataset-level sequential detector.",
    _WINDOW_LABELS,
)
DATASET_SEQUENTIAL_ALARM = MetricDef(
    "driftline_dataset_sequential_alarm",
    "gauge",
    "1 from the window where the dataset-level sequential detector fired until an operator "
    "acknowledges it, else 0.",
    _WINDOW_LABELS,
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
    _WINDOW_LABELS,
)

# -- windows -------------------------------------------------------------------------------
WINDOW_ROWS = MetricDef(
    "driftline_window_rows",
    "gauge",
    "Rows in the last closed window.",
    _WINDOW_LABELS,
)
WINDOWS_CLOSED = MetricDef(
    "driftline_windows_closed_total",
    "counter",
    "Windows closed and evaluated (exemplar: a trace id of one of the window's records).",
    _WINDOW_LABELS,
)
WINDOW_EVALUATIONS_FAILED = MetricDef(
    "driftline_window_evaluations_failed_total",
    "counter",
    "Window evaluations that raised, by outcome: retry (the window's sketch is kept under "
    "state.dir/failed-windows and tried again) or given_up (the files stay for an operator).",
    ("model", "window", "outcome"),
)
WINDOW_EVALUATION_SECONDS = MetricDef(
    "driftline_window_evaluation_seconds",
    "histogram",
    "Time to run every test on a closed window (exemplar: a trace id of one of its records).",
    ("model", "window"),
    unit="seconds",
    buckets=EVALUATION_BUCKETS,
)
LAST_WINDOW_CLOSE = MetricDef(
    "driftline_last_window_close_timestamp_seconds",
    "gauge",
    "Unix time at which the last window was closed and evaluated.",
    _WINDOW_LABELS,
    unit="seconds",
)
LAST_WINDOW_END = MetricDef(
    "driftline_last_window_end_timestamp_seconds",
    "gauge",
    "Event-time end of the last closed window (Unix seconds; time windows only).",
    _WINDOW_LABELS,
    unit="seconds",
)

# -- records and the source ----------------------------------------------------------------
RECORDS = MetricDef(
    "driftline_records_total",
    "counter",
    "Records by outcome: decoded, failed, late (after the allowed lateness) or duplicate "
    "(request id seen before). Failed records are also counted by reason in "
    "driftline_records_failed_total.",
    ("model", "model_version", "outcome"),
)
RECORDS_FAILED = MetricDef(
    "driftline_records_failed_total",
    "counter",
    "Records set aside because they could not be decoded, by reason.",
    ("model", "reason"),
)
MODEL_VERSIONS_TRACKED = MetricDef(
    "driftline_model_versions_tracked",
    "gauge",
    "Model versions that have series of their own now (at most exporter.max_model_versions; "
    'the others are counted under model_version="other").',
    ("model",),
)
UNTRACKED_VERSION_WINDOWS = MetricDef(
    "driftline_untracked_version_windows_total",
    "counter",
    "Windows of model versions beyond exporter.max_model_versions: counted under "
    'model_version="other" in driftline_windows_closed_total, their per-window series not '
    "exported.",
    ("model",),
)
MODEL_VERSIONS_EXPIRED = MetricDef(
    "driftline_model_versions_expired_total",
    "counter",
    "Tracked model versions dropped, with all their series, after sending nothing for "
    "exporter.model_version_idle.",
    ("model",),
)
CONSUMER_LAG = MetricDef(
    "driftline_consumer_lag_records",
    "gauge",
    "Records in the partition not yet consumed (high watermark minus position).",
    ("model", "topic", "partition"),
)
SOURCE_UP = MetricDef(
    "driftline_source_up",
    "gauge",
    "1 while the source is connected and consuming, else 0.",
    ("model",),
)
LAST_CHECKPOINT = MetricDef(
    "driftline_last_checkpoint_timestamp_seconds",
    "gauge",
    "Unix time of the last durable checkpoint (age: time() - this).",
    ("model",),
    unit="seconds",
)
STATE_LOST = MetricDef(
    "driftline_state_lost_partitions_total",
    "counter",
    "Source partitions an agent resumed at the group's committed offsets with no window "
    "state (no checkpoint in the state directory or the changelog): the windows open "
    "there are reported partial, with partial_reason state_lost.",
    ("model",),
)
CHANGELOG_WRITES = MetricDef(
    "driftline_changelog_writes_total",
    "counter",
    "Checkpoints written to the changelog topic, by outcome: acknowledged, or failed "
    "(the offsets stay uncommitted until a later write is acknowledged).",
    ("model", "outcome"),
)

# -- scaling out: partials and the aggregator (docs/agent.md, "Scaling out") -------------
PARTIALS_PUBLISHED = MetricDef(
    "driftline_partials_published_total",
    "counter",
    "Partials an agent sent to the partials topic, acknowledged, by kind: window or progress.",
    ("model", "kind"),
)
PARTIALS_RECEIVED = MetricDef(
    "driftline_partials_received_total",
    "counter",
    "Partials the aggregator read, by outcome: accepted, repeated, stale (an older epoch), "
    "late (window already judged), foreign (another model or reference), invalid.",
    ("model", "outcome"),
)
AGGREGATION_LATENCY = MetricDef(
    "driftline_aggregation_latency_seconds",
    "histogram",
    "From the last agent closing a window to the aggregator publishing its report.",
    ("model",),
    unit="seconds",
    buckets=EVALUATION_BUCKETS,
)
AGGREGATION_COVERAGE = MetricDef(
    "driftline_aggregation_coverage_ratio",
    "gauge",
    "Share of the source partitions the last aggregated window covered (1: all of them).",
    ("model",),
    unit="ratio",
)
AGGREGATION_PARTIAL_WINDOWS = MetricDef(
    "driftline_aggregation_partial_windows_total",
    "counter",
    "Aggregated windows reported as partial, by reason: coverage (the deadline passed "
    "before every partition reported) or overlap (two agents' partials share offsets).",
    ("model", "reason"),
)
AGGREGATION_OPEN_WINDOWS = MetricDef(
    "driftline_aggregation_open_windows",
    "gauge",
    "Windows the aggregator holds partials of, not judged yet.",
    ("model",),
)

# -- identity ------------------------------------------------------------------------------
BUILD_INFO = MetricDef(
    "driftline_build_info",
    "info",
    "driftline and Python versions of the running agent.",
    ("version", "python"),
)
REFERENCE_INFO = MetricDef(
    "driftline_reference_info",
    "info",
    "The reference profile the agent compares windows with.",
    ("model", "reference"),
)
REFERENCE_ROWS = MetricDef(
    "driftline_reference_rows",
    "gauge",
    "Rows the reference profile was built from.",
    ("model",),
)

# -- policies ------------------------------------------------------------------------------
ROLLBACK_DECISIONS = MetricDef(
    "driftline_rollback_decisions_total",
    "counter",
    "Rollback decisions taken by the policy, by action and outcome.",
    ("model", "model_version", "action", "outcome"),
)

# -- model performance (labels:, kpis:) ---------------------------------------------------
_PERFORMANCE_LABELS = ("model", "model_version", "metric", "window")
_ESTIMATED_LABELS = ("model", "model_version", "metric", "method", "window")
_KPI_LABELS = ("model", "model_version", "kpi", "window")
LABEL_OUTCOMES: tuple[str, ...] = (
    "joined",
    "duplicate",
    "no_prediction",
    "expired",
    "evicted",
    "invalid",
    "no_reference",
)
PERFORMANCE_REALIZED = MetricDef(
    "driftline_performance_realized",
    "gauge",
    "A performance metric measured on the labelled rows of the latest window (revised when "
    "late labels for that window arrive).",
    _PERFORMANCE_LABELS,
)
PERFORMANCE_REALIZED_LOW = MetricDef(
    "driftline_performance_realized_low",
    "gauge",
    "Lower bound of the realized metric's 95% confidence interval.",
    _PERFORMANCE_LABELS,
)
PERFORMANCE_REALIZED_HIGH = MetricDef(
    "driftline_performance_realized_high",
    "gauge",
    "Upper bound of the realized metric's 95% confidence interval.",
    _PERFORMANCE_LABELS,
)
PERFORMANCE_ESTIMATED = MetricDef(
    "driftline_performance_estimated",
    "gauge",
    "A performance metric estimated without labels (CBPE for classifiers, DLE for regressors).",
    _ESTIMATED_LABELS,
)
PERFORMANCE_ESTIMATED_LOW = MetricDef(
    "driftline_performance_estimated_low",
    "gauge",
    "Lower bound of the estimate's 95% band (the metric's sampling spread at this window size).",
    _ESTIMATED_LABELS,
)
PERFORMANCE_ESTIMATED_HIGH = MetricDef(
    "driftline_performance_estimated_high",
    "gauge",
    "Upper bound of the estimate's 95% band.",
    _ESTIMATED_LABELS,
)
PERFORMANCE_ESTIMATED_THRESHOLD = MetricDef(
    "driftline_performance_estimated_threshold",
    "gauge",
    "Alert threshold of the estimate, from the reference (its chunks' mean estimate minus 3 "
    "standard deviations; plus 3 for errors).",
    _ESTIMATED_LABELS,
)
PERFORMANCE_ESTIMATED_ALERT = MetricDef(
    "driftline_performance_estimated_alert",
    "gauge",
    "1 when the estimate crossed its threshold in the latest window, else 0.",
    _ESTIMATED_LABELS,
)
LABEL_COVERAGE = MetricDef(
    "driftline_performance_label_coverage_ratio",
    "gauge",
    "Share of the latest window's predictions that have a joined label.",
    _WINDOW_LABELS,
    unit="ratio",
)
PERFORMANCE_REVISIONS = MetricDef(
    "driftline_performance_revisions_total",
    "counter",
    "Window reports sent again because labels arrived after the window closed.",
    ("model", "model_version"),
)
LABELS_TOTAL = MetricDef(
    "driftline_labels_total",
    "counter",
    "Labels and predictions by what the join did with them: joined, duplicate (label), "
    "no_prediction (label), expired and evicted (prediction left unlabelled), invalid "
    "(unreadable label record or unknown class), no_reference (profile without labels).",
    ("model", "outcome"),
)
LABEL_JOIN_PENDING = MetricDef(
    "driftline_label_join_pending",
    "gauge",
    "Predictions waiting for their label, and labels waiting for their prediction.",
    ("model", "kind"),
)
KPI_MEAN = MetricDef(
    "driftline_kpi_mean",
    "gauge",
    "Mean of a business KPI over the latest window.",
    _KPI_LABELS,
)
KPI_CORRELATION = MetricDef(
    "driftline_kpi_prediction_correlation",
    "gauge",
    "Pearson correlation of a business KPI with the model's prediction in the latest window.",
    _KPI_LABELS,
)
KPI_DECILE_MEAN = MetricDef(
    "driftline_kpi_decile_mean",
    "gauge",
    "Mean of a business KPI over the latest window's rows in one decile of the reference's "
    "predictions.",
    ("model", "model_version", "kpi", "decile", "window"),
)

# -- attributions (explain:) ----------------------------------------------------------------
_ATTRIBUTION_LABELS = ("model", "model_version", "feature", "window")
ATTRIBUTION_NDCG = MetricDef(
    "driftline_attribution_ndcg",
    "gauge",
    "nDCG of the window's feature ranking by mean |SHAP| against the reference's (SageMaker "
    "Clarify's measure; 1 = same ranking).",
    _WINDOW_LABELS,
)
ATTRIBUTION_NDCG_THRESHOLD = MetricDef(
    "driftline_attribution_ndcg_threshold",
    "gauge",
    "nDCG below which the ranking has drifted (explain.ndcg_threshold).",
    _WINDOW_LABELS,
)
ATTRIBUTION_DRIFTED = MetricDef(
    "driftline_attribution_drifted",
    "gauge",
    "1 when the window's attributions drifted (nDCG below its threshold, or a feature's "
    "attribution distribution moved materially), else 0.",
    _WINDOW_LABELS,
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

# -- multivariate (multivariate: in monitor.yaml) ------------------------------------------
_MULTIVARIATE_LABELS = ("model", "model_version", "detector", "window")
MULTIVARIATE_STATISTIC = MetricDef(
    "driftline_multivariate_statistic",
    "gauge",
    "Row-level test of the latest window against the reference rows: MMD² (detector mmd) "
    "or held-out AUC (detector classifier).",
    _MULTIVARIATE_LABELS,
)
MULTIVARIATE_P_VALUE = MetricDef(
    "driftline_multivariate_p_value",
    "gauge",
    "p-value of the row-level test (permutation test for mmd, Mann-Whitney for classifier).",
    _MULTIVARIATE_LABELS,
)
MULTIVARIATE_DRIFTED = MetricDef(
    "driftline_multivariate_drifted",
    "gauge",
    "1 when the row-level tests flagged the latest window (combined verdict), else 0.",
    _WINDOW_LABELS,
)
MULTIVARIATE_SKIPPED = MetricDef(
    "driftline_multivariate_windows_skipped_total",
    "counter",
    "Windows whose row-level tests did not run, by reason: too_few_rows, budget "
    "(multivariate.time_budget exceeded), error.",
    ("model", "reason"),
)
MULTIVARIATE_ONLINE_STATISTIC = MetricDef(
    "driftline_multivariate_online_statistic",
    "gauge",
    "Online MMD² of the latest sliding window of rows against the reference.",
    ("model", "model_version"),
)
MULTIVARIATE_ONLINE_THRESHOLD = MetricDef(
    "driftline_multivariate_online_threshold",
    "gauge",
    "Threshold of the online MMD at its current step (calibrated to the expected run time).",
    ("model", "model_version"),
)
MULTIVARIATE_ONLINE_DETECTIONS = MetricDef(
    "driftline_multivariate_online_detections_total",
    "counter",
    "Times the online MMD crossed its threshold (it restarts after each).",
    ("model", "model_version"),
)

ALL_METRICS: tuple[MetricDef, ...] = (
    FEATURE_DRIFT_STATISTIC,
    FEATURE_DRIFT_P_VALUE,
    FEATURE_DRIFT_THRESHOLD,
    FEATURE_DRIFTED,
    FEATURE_DRIFT_EFFECT,
    FEATURE_DRIFT_EFFECT_LOW,
    FEATURE_DRIFT_EFFECT_HIGH,
    SEQUENTIAL_STATISTIC,
    SEQUENTIAL_THRESHOLD,
    SEQUENTIAL_ALARM,
    SEQUENTIAL_ALARMS,
    DATASET_SEQUENTIAL_STATISTIC,
    DATASET_SEQUENTIAL_THRESHOLD,
    DATASET_SEQUENTIAL_ALARM,
    DATASET_DRIFT_SHARE,
    DATASET_DRIFT_VERDICT,
    PREDICTION_DRIFT_STATISTIC,
    PREDICTION_DRIFT_P_VALUE,
    PREDICTION_DRIFT_THRESHOLD,
    PREDICTION_DRIFTED,
    PREDICTION_DRIFT_EFFECT,
    PREDICTION_DRIFT_EFFECT_LOW,
    PREDICTION_DRIFT_EFFECT_HIGH,
    PREDICTION_DRIFT_SHARE,
    PREDICTION_DRIFT_VERDICT,
    QUALITY_RATIO,
    QUALITY_BREACHED,
    WINDOW_QUALITY_BREACHED,
    WINDOW_ROWS,
    WINDOWS_CLOSED,
    WINDOW_EVALUATIONS_FAILED,
    WINDOW_EVALUATION_SECONDS,
    LAST_WINDOW_CLOSE,
    LAST_WINDOW_END,
    RECORDS,
    RECORDS_FAILED,
    MODEL_VERSIONS_TRACKED,
    UNTRACKED_VERSION_WINDOWS,
    MODEL_VERSIONS_EXPIRED,
    CONSUMER_LAG,
    SOURCE_UP,
    LAST_CHECKPOINT,
    STATE_LOST,
    CHANGELOG_WRITES,
    PARTIALS_PUBLISHED,
    PARTIALS_RECEIVED,
    AGGREGATION_LATENCY,
    AGGREGATION_COVERAGE,
    AGGREGATION_PARTIAL_WINDOWS,
    AGGREGATION_OPEN_WINDOWS,
    BUILD_INFO,
    REFERENCE_INFO,
    REFERENCE_ROWS,
    ROLLBACK_DECISIONS,
    MULTIVARIATE_STATISTIC,
    MULTIVARIATE_P_VALUE,
    MULTIVARIATE_DRIFTED,
    MULTIVARIATE_SKIPPED,
    MULTIVARIATE_ONLINE_STATISTIC,
    MULTIVARIATE_ONLINE_THRESHOLD,
    MULTIVARIATE_ONLINE_DETECTIONS,
    PERFORMANCE_REALIZED,
    PERFORMANCE_REALIZED_LOW,
    PERFORMANCE_REALIZED_HIGH,
    PERFORMANCE_ESTIMATED,
    PERFORMANCE_ESTIMATED_LOW,
    PERFORMANCE_ESTIMATED_HIGH,
    PERFORMANCE_ESTIMATED_THRESHOLD,
    PERFORMANCE_ESTIMATED_ALERT,
    LABEL_COVERAGE,
    PERFORMANCE_REVISIONS,
    LABELS_TOTAL,
    LABEL_JOIN_PENDING,
    KPI_MEAN,
    KPI_CORRELATION,
    KPI_DECILE_MEAN,
    ATTRIBUTION_NDCG,
    ATTRIBUTION_NDCG_THRESHOLD,
    ATTRIBUTION_DRIFTED,
    FEATURE_ATTRIBUTION,
    FEATURE_ATTRIBUTION_REFERENCE,
    FEATURE_ATTRIBUTION_DRIFTED,
    FEATURE_DRIFT_IMPACT,
    ATTRIBUTION_SKIPPED,
)

BY_NAME: dict[str, MetricDef] = {m.name: m for m in ALL_METRICS}


def get(name: str) -> MetricDef:
    """The definition named ``name`` (the exposition name, e.g. with ``_total``)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no driftline metric named {name!r}") from None


TABLE_BEGIN = "<!-- BEGIN METRICS TABLE (generated by python -m monitor.outputs.metrics) -->"
TABLE_END = "<!-- END METRICS TABLE -->"


def markdown_table() -> str:
    """The reference table of every metric, as it appears in docs/metrics.md."""
    rows = [
        "| metric | type | unit | labels | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in ALL_METRICS:
        labels = ", ".join(f"`{lb}`" for lb in m.labels)
        help_text = m.help.replace("|", "\\|")
        rows.append(f"| `{m.name}` | {m.kind} | {m.unit or '-'} | {labels} | {help_text} |")
    return "\n".join(rows)


def labels_table() -> str:
    rows = ["| label | values |", "| --- | --- |"]
    rows += [f"| `{name}` | {desc} |" for name, desc in LABELS.items()]
    return "\n".join(rows)


def generated_block() -> str:
    """What sits between the markers in docs/metrics.md."""
    return "\n".join(
        [TABLE_BEGIN, "", markdown_table(), "", "Labels:", "", labels_table(), "", TABLE_END]
    )


def rewrite_doc(text: str) -> str:
    """``text`` with its generated block replaced by the current one."""
    start, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError("the document has no metrics table markers")
    return text[:start] + generated_block() + text[end + len(TABLE_END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="print or refresh the metrics reference")
    parser.add_argument("--write", type=Path, help="rewrite the table in this markdown file")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(generated_block() + "\n")
        return 0
    args.write.write_text(rewrite_doc(args.write.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
