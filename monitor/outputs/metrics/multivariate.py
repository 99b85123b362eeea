"""Multivariate drift (``multivariate:``): the row-level tests on a window's reservoir and
the online MMD."""

from __future__ import annotations

from monitor.outputs.metrics.definition import WINDOW_LABELS, MetricDef

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
    WINDOW_LABELS,
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
