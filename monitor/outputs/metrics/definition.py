"""What a metric is: its kinds, base units and the labels any family may carry, and
``MetricDef``, the one record of a family's name, type, help, labels and unit. The
conventions are in this package's docstring (monitor/outputs/metrics/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass
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
    "aggregated window is partial (coverage, overlap), why a "
    "window's attributions were skipped (monitor.explain.window.SKIP_REASONS), or why a "
    "record's logged attributions could not be read "
    "(monitor.ingest.attributions.ATTRIBUTION_FAILURE_REASONS)",
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


WINDOW_LABELS = ("model", "model_version", "window")
