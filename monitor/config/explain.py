"""``explain``: whose SHAP attributions are monitored (the model file's, or those the
records log), how they are computed and judged; mirrors
``monitor.explain.window.ExplainSettings`` (docs/explainability.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from detectors.attribution import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_MIN_SHARE,
    DEFAULT_NDCG_THRESHOLD,
    AttributionSettings,
)
from monitor.config.rules import Section, check_path, fail

if TYPE_CHECKING:
    from monitor.explain.window import ExplainSettings

__all__ = ["ExplainConfig"]


class ExplainConfig(Section):
    """Attribution drift; off while ``model`` is unset and ``source`` is ``model``."""

    # model: explain each window's rows with the model file; record: read the
    # attributions each prediction record logged at record_field (no model file)
    source: Literal["model", "record"] = "model"
    record_field: str = "attributions"
    model: Path | None = Field(None, description="the model file (XGBoost, LightGBM, skops)")
    format: Literal["auto", "xgboost", "lightgbm", "skops", "joblib"] = "auto"
    explainer: Literal["auto", "tree", "linear", "permutation", "kernel"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    budget_seconds: float = Field(2.0, gt=0)
    min_rows: int = Field(100, ge=10)
    max_rows: int | None = Field(None, ge=10)
    max_evals: int | None = Field(None, ge=1)
    output: int | None = Field(None, ge=0)
    features: list[str] | None = None
    trust_pickle: bool = False
    trusted_types: list[str] = Field(default_factory=list)
    threads: int | None = Field(None, ge=1)
    # auto: driftline's TreeSHAP kernel where it applies (fast, loads shap and numba);
    # library: the model library's own TreeSHAP (slower, less memory for boosters)
    tree_kernel: Literal["auto", "library"] = "auto"
    ndcg_threshold: float = Field(DEFAULT_NDCG_THRESHOLD, gt=0, le=1)
    min_share: float = Field(DEFAULT_MIN_SHARE, ge=0, lt=1)
    bootstrap: int = Field(DEFAULT_BOOTSTRAP, ge=10)

    @model_validator(mode="after")
    def _check(self) -> ExplainConfig:
        check_path(self.record_field, "record_field")
        if self.source == "record" and self.model is not None:
            raise fail(
                "model",
                "is not used with source: record (the attributions come from the records); "
                "remove explain.model, or set source: model to explain windows with it",
            )
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise fail(
                "max_rows",
                f"{self.max_rows} is below min_rows ({self.min_rows}): no window could be "
                "explained; raise max_rows or lower min_rows",
            )
        if self.format == "joblib" and not self.trust_pickle:
            raise fail(
                "format",
                "joblib files are pickles, which run code when loaded; set trust_pickle: "
                "true if you trust the file, or save the model with skops",
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.model is not None or self.source == "record"

    def to_settings(self) -> ExplainSettings:
        """The agent's settings (model libraries load only when a model is)."""
        from monitor.explain.window import ExplainSettings

        return ExplainSettings(
            source=self.source,
            record_field=self.record_field,
            model=None if self.model is None else str(self.model),
            format=self.format,
            explainer=self.explainer,
            device=self.device,
            budget_seconds=self.budget_seconds,
            min_rows=self.min_rows,
            max_rows=self.max_rows,
            max_evals=self.max_evals,
            output=self.output,
            features=None if self.features is None else tuple(self.features),
            trust_pickle=self.trust_pickle,
            trusted_types=tuple(self.trusted_types),
            threads=self.threads,
            tree_kernel=self.tree_kernel,
            attribution=AttributionSettings(
                ndcg_threshold=self.ndcg_threshold,
                min_share=self.min_share,
                bootstrap=self.bootstrap,
            ),
        )
