"""``labels`` and ``kpis``: where ground truth comes from, how it is joined to the
predictions, which performance metrics are reported, and which business KPIs are
followed (docs/performance.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from monitor.config.durations import DURATION_HINT
from monitor.config.rules import Duration, Section, check_path, fail

__all__ = ["REALIZED_METRICS", "KpiConfig", "LabelsConfig"]

REALIZED_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "mae",
    "rmse",
    "mape",
)


class LabelsConfig(Section):
    """Ground truth joined to predictions by request id.

    ``source: kafka`` reads ``topic`` with the agent's own consumer group (so its offsets
    are committed with the same checkpoints as the predictions'); ``source: file`` is
    for ``driftline replay`` (or pass ``--labels``). A label record is a JSON object;
    the ``*_field`` settings are dotted paths in it.
    """

    source: Literal["none", "kafka", "file"] = "none"
    topic: str | None = None
    file: Path | None = None
    request_id_field: str = "request_id"
    label_field: str = "label"
    event_time_field: str = "timestamp"
    # How long after its event time a prediction waits for its label.
    join_horizon: Duration = 7 * 86400.0
    # How long (event time) a label whose prediction has not been seen yet waits for it.
    wait_for_prediction: Duration = 600.0
    max_pending_predictions: int = Field(1_000_000, ge=1)
    max_pending_labels: int = Field(100_000, ge=1)
    # Labelled rows per window kept for the rank metrics (ROC AUC, PR AUC).
    sample_size: int = Field(20_000, ge=100)
    # Reports whose performance block a late label may still revise.
    max_revisable_windows: int = Field(1000, ge=1)
    # Realized metrics reported (those that apply to the model's task).
    metrics: list[str] = Field(default_factory=lambda: list(REALIZED_METRICS))

    @model_validator(mode="after")
    def _check(self) -> LabelsConfig:
        for key in ("request_id_field", "label_field", "event_time_field"):
            check_path(getattr(self, key), key)
        if self.source == "kafka" and not self.topic:
            raise fail("topic", "is required with source: kafka; name the labels topic")
        if self.source == "file" and self.file is None:
            raise fail("file", "is required with source: file; name the labels file")
        for metric in self.metrics:
            if metric not in REALIZED_METRICS:
                raise fail(
                    "metrics",
                    f"{metric!r} is not a performance metric; use some of "
                    + ", ".join(REALIZED_METRICS),
                )
        if self.join_horizon <= 0 or self.wait_for_prediction < 0:
            raise fail("join_horizon", f"must be longer than 0; {DURATION_HINT}")
        return self

    @property
    def enabled(self) -> bool:
        return self.source != "none"


class KpiConfig(Section):
    """A numeric business KPI (revenue, conversion ...) followed per window."""

    name: str
    # Dotted path in the label record (``from: labels``), or a numeric column of the
    # prediction records' schema (``from: predictions``).
    field: str | None = None
    from_: Literal["labels", "predictions"] = Field("labels", alias="from")

    @model_validator(mode="after")
    def _check(self) -> KpiConfig:
        if not self.name.strip() or not self.name.replace("_", "").isalnum():
            raise fail("name", "use letters, digits and underscores (it becomes a metric label)")
        check_path(self.path, "field")
        return self

    @property
    def path(self) -> str:
        return self.field or self.name
