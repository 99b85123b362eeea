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
The families are defined by subject in this package's modules (``drift``, ``operations``,
``performance``, ``attribution``, ``multivariate``; ``definition`` holds ``MetricDef``
and the labels); this module gathers them in :data:`ALL_METRICS`, the order of the
reference table, and keeps every name importable from ``monitor.outputs.metrics``.

``python -m monitor.outputs.metrics --write docs/metrics.md`` regenerates the reference table in
the docs; a unit test fails when the two disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.outputs.metrics.attribution import (
    ATTRIBUTION_DRIFTED,
    ATTRIBUTION_NDCG,
    ATTRIBUTION_NDCG_THRESHOLD,
    ATTRIBUTION_RECORDS_INVALID,
    ATTRIBUTION_SKIPPED,
    FEATURE_ATTRIBUTION,
    FEATURE_ATTRIBUTION_DRIFTED,
    FEATURE_ATTRIBUTION_REFERENCE,
    FEATURE_DRIFT_IMPACT,
)
from monitor.outputs.metrics.definition import (
    EVALUATION_BUCKETS,
    FORBIDDEN_LABELS,
    KINDS,
    LABELS,
    PREFIX,
    RECORD_OUTCOMES,
    UNITS,
    Kind,
    MetricDef,
)
from monitor.outputs.metrics.drift import (
    DATASET_DRIFT_SHARE,
    DATASET_DRIFT_VERDICT,
    DATASET_SEQUENTIAL_ALARM,
    DATASET_SEQUENTIAL_STATISTIC,
    DATASET_SEQUENTIAL_THRESHOLD,
    FEATURE_DRIFT_EFFECT,
    FEATURE_DRIFT_EFFECT_HIGH,
    FEATURE_DRIFT_EFFECT_LOW,
    FEATURE_DRIFT_P_VALUE,
    FEATURE_DRIFT_STATISTIC,
    FEATURE_DRIFT_THRESHOLD,
    FEATURE_DRIFTED,
    PREDICTION_DRIFT_EFFECT,
    PREDICTION_DRIFT_EFFECT_HIGH,
    PREDICTION_DRIFT_EFFECT_LOW,
    PREDICTION_DRIFT_P_VALUE,
    PREDICTION_DRIFT_SHARE,
    PREDICTION_DRIFT_STATISTIC,
    PREDICTION_DRIFT_THRESHOLD,
    PREDICTION_DRIFT_VERDICT,
    PREDICTION_DRIFTED,
    QUALITY_BREACHED,
    QUALITY_RATIO,
    SEQUENTIAL_ALARM,
    SEQUENTIAL_ALARMS,
    SEQUENTIAL_STATISTIC,
    SEQUENTIAL_THRESHOLD,
    WINDOW_QUALITY_BREACHED,
)
from monitor.outputs.metrics.multivariate import (
    MULTIVARIATE_DRIFTED,
    MULTIVARIATE_ONLINE_DETECTIONS,
    MULTIVARIATE_ONLINE_STATISTIC,
    MULTIVARIATE_ONLINE_THRESHOLD,
    MULTIVARIATE_P_VALUE,
    MULTIVARIATE_SKIPPED,
    MULTIVARIATE_STATISTIC,
)
from monitor.outputs.metrics.operations import (
    AGGREGATION_COVERAGE,
    AGGREGATION_LATENCY,
    AGGREGATION_OPEN_WINDOWS,
    AGGREGATION_PARTIAL_WINDOWS,
    BUILD_INFO,
    CHANGELOG_WRITES,
    CONSUMER_LAG,
    LAST_CHECKPOINT,
    LAST_WINDOW_CLOSE,
    LAST_WINDOW_END,
    MODEL_VERSIONS_EXPIRED,
    MODEL_VERSIONS_TRACKED,
    PARTIALS_PUBLISHED,
    PARTIALS_RECEIVED,
    RECORDS,
    RECORDS_FAILED,
    REFERENCE_INFO,
    REFERENCE_ROWS,
    ROLLBACK_DECISIONS,
    SOURCE_UP,
    STATE_LOST,
    UNTRACKED_VERSION_WINDOWS,
    WINDOW_EVALUATION_SECONDS,
    WINDOW_EVALUATIONS_FAILED,
    WINDOW_ROWS,
    WINDOWS_CLOSED,
)
from monitor.outputs.metrics.performance import (
    KPI_CORRELATION,
    KPI_DECILE_MEAN,
    KPI_MEAN,
    LABEL_COVERAGE,
    LABEL_JOIN_PENDING,
    LABEL_OUTCOMES,
    LABELS_TOTAL,
    PERFORMANCE_ESTIMATED,
    PERFORMANCE_ESTIMATED_ALERT,
    PERFORMANCE_ESTIMATED_HIGH,
    PERFORMANCE_ESTIMATED_LOW,
    PERFORMANCE_ESTIMATED_THRESHOLD,
    PERFORMANCE_REALIZED,
    PERFORMANCE_REALIZED_HIGH,
    PERFORMANCE_REALIZED_LOW,
    PERFORMANCE_REVISIONS,
)

# Every name other modules use as ``metrics.X``.
__all__ = [
    "AGGREGATION_COVERAGE",
    "AGGREGATION_LATENCY",
    "AGGREGATION_OPEN_WINDOWS",
    "AGGREGATION_PARTIAL_WINDOWS",
    "ALL_METRICS",
    "ATTRIBUTION_DRIFTED",
    "ATTRIBUTION_NDCG",
    "ATTRIBUTION_NDCG_THRESHOLD",
    "ATTRIBUTION_RECORDS_INVALID",
    "ATTRIBUTION_SKIPPED",
    "BUILD_INFO",
    "BY_NAME",
    "CHANGELOG_WRITES",
    "CONSUMER_LAG",
    "DATASET_DRIFT_SHARE",
    "DATASET_DRIFT_VERDICT",
    "DATASET_SEQUENTIAL_ALARM",
    "DATASET_SEQUENTIAL_STATISTIC",
    "DATASET_SEQUENTIAL_THRESHOLD",
    "EVALUATION_BUCKETS",
    "FEATURE_ATTRIBUTION",
    "FEATURE_ATTRIBUTION_DRIFTED",
    "FEATURE_ATTRIBUTION_REFERENCE",
    "FEATURE_DRIFTED",
    "FEATURE_DRIFT_EFFECT",
    "FEATURE_DRIFT_EFFECT_HIGH",
    "FEATURE_DRIFT_EFFECT_LOW",
    "FEATURE_DRIFT_IMPACT",
    "FEATURE_DRIFT_P_VALUE",
    "FEATURE_DRIFT_STATISTIC",
    "FEATURE_DRIFT_THRESHOLD",
    "FORBIDDEN_LABELS",
    "KINDS",
    "KPI_CORRELATION",
    "KPI_DECILE_MEAN",
    "KPI_MEAN",
    "LABELS",
    "LABELS_TOTAL",
    "LABEL_COVERAGE",
    "LABEL_JOIN_PENDING",
    "LABEL_OUTCOMES",
    "LAST_CHECKPOINT",
    "LAST_WINDOW_CLOSE",
    "LAST_WINDOW_END",
    "MODEL_VERSIONS_EXPIRED",
    "MODEL_VERSIONS_TRACKED",
    "MULTIVARIATE_DRIFTED",
    "MULTIVARIATE_ONLINE_DETECTIONS",
    "MULTIVARIATE_ONLINE_STATISTIC",
    "MULTIVARIATE_ONLINE_THRESHOLD",
    "MULTIVARIATE_P_VALUE",
    "MULTIVARIATE_SKIPPED",
    "MULTIVARIATE_STATISTIC",
    "PARTIALS_PUBLISHED",
    "PARTIALS_RECEIVED",
    "PERFORMANCE_ESTIMATED",
    "PERFORMANCE_ESTIMATED_ALERT",
    "PERFORMANCE_ESTIMATED_HIGH",
    "PERFORMANCE_ESTIMATED_LOW",
    "PERFORMANCE_ESTIMATED_THRESHOLD",
    "PERFORMANCE_REALIZED",
    "PERFORMANCE_REALIZED_HIGH",
    "PERFORMANCE_REALIZED_LOW",
    "PERFORMANCE_REVISIONS",
    "PREDICTION_DRIFTED",
    "PREDICTION_DRIFT_EFFECT",
    "PREDICTION_DRIFT_EFFECT_HIGH",
    "PREDICTION_DRIFT_EFFECT_LOW",
    "PREDICTION_DRIFT_P_VALUE",
    "PREDICTION_DRIFT_SHARE",
    "PREDICTION_DRIFT_STATISTIC",
    "PREDICTION_DRIFT_THRESHOLD",
    "PREDICTION_DRIFT_VERDICT",
    "PREFIX",
    "QUALITY_BREACHED",
    "QUALITY_RATIO",
    "RECORDS",
    "RECORDS_FAILED",
    "RECORD_OUTCOMES",
    "REFERENCE_INFO",
    "REFERENCE_ROWS",
    "ROLLBACK_DECISIONS",
    "SEQUENTIAL_ALARM",
    "SEQUENTIAL_ALARMS",
    "SEQUENTIAL_STATISTIC",
    "SEQUENTIAL_THRESHOLD",
    "SOURCE_UP",
    "STATE_LOST",
    "TABLE_BEGIN",
    "TABLE_END",
    "UNITS",
    "UNTRACKED_VERSION_WINDOWS",
    "WINDOWS_CLOSED",
    "WINDOW_EVALUATIONS_FAILED",
    "WINDOW_EVALUATION_SECONDS",
    "WINDOW_QUALITY_BREACHED",
    "WINDOW_ROWS",
    "Kind",
    "MetricDef",
    "generated_block",
    "get",
    "labels_table",
    "main",
    "markdown_table",
    "rewrite_doc",
]

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
    ATTRIBUTION_RECORDS_INVALID,
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
