"""Model performance (``labels:``, ``kpis:``): realized and estimated metrics, the label
join and business KPIs."""

from __future__ import annotations

from monitor.outputs.metrics.definition import WINDOW_LABELS, MetricDef

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
    WINDOW_LABELS,
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
