"""The agent at work: windows and their evaluation, records and the source, model
versions, checkpoints and state, scaling out (partials and the aggregator), identity and
rollback policies."""

from __future__ import annotations

from monitor.outputs.metrics.definition import EVALUATION_BUCKETS, WINDOW_LABELS, MetricDef

# -- windows -------------------------------------------------------------------------------
WINDOW_ROWS = MetricDef(
    "driftline_window_rows",
    "gauge",
    "Rows in the last closed window.",
    WINDOW_LABELS,
)
WINDOWS_CLOSED = MetricDef(
    "driftline_windows_closed_total",
    "counter",
    "Windows closed and evaluated (exemplar: a trace id of one of the window's records).",
    WINDOW_LABELS,
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
    WINDOW_LABELS,
    unit="seconds",
)
LAST_WINDOW_END = MetricDef(
    "driftline_last_window_end_timestamp_seconds",
    "gauge",
    "Event-time end of the last closed window (Unix seconds; time windows only).",
    WINDOW_LABELS,
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
    "Partials an agent sent to the partials topic, acknowledged, by kind: window, progress, "
    "handoff, or revision (a sent window's performance state revised by late labels).",
    ("model", "kind"),
)
PARTIALS_RECEIVED = MetricDef(
    "driftline_partials_received_total",
    "counter",
    "Partials the aggregator read, by outcome: accepted, repeated, stale (an older epoch), "
    "late (window already judged, or no longer kept for a revision), foreign (another model "
    "or reference), invalid.",
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
