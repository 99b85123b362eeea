"""``multivariate``: row-level drift tests (kernel MMD, classifier two-sample test, online
MMD); mirrors ``detectors.multivariate.settings.MultivariateSettings``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from detectors.multivariate.mmd import DEFAULT_SCALES
from detectors.multivariate.settings import MultivariateSettings, OnlineSettings
from monitor.config.durations import DURATION_HINT
from monitor.config.rules import Duration, Section, fail

__all__ = ["MultivariateConfig", "OnlineMMDConfig"]


class OnlineMMDConfig(Section):
    """The online MMD detector: a sliding window of recent rows, checked on every row."""

    enabled: bool = False
    window: int = Field(100, ge=2, description="rows in the sliding window")
    expected_run_time: int = Field(
        5000, ge=10, description="rows seen between false alarms on unchanged data, on average"
    )
    simulations: int | None = Field(None, ge=100)
    sample_fraction: float = Field(0.1, gt=0.0, le=1.0)
    reference_rows: int = Field(2000, ge=10)

    def to_settings(self) -> OnlineSettings:
        return OnlineSettings(
            enabled=self.enabled,
            window=self.window,
            expected_run_time=self.expected_run_time,
            simulations=self.simulations,
            sample_fraction=self.sample_fraction,
            reference_rows=self.reference_rows,
        )


class MultivariateConfig(Section):
    """Tests on whole rows: the window's reservoir against the profile's row sample."""

    enabled: bool = False
    test: Literal["mmd", "classifier", "both"] = "both"
    device: Literal["auto", "cpu", "cuda", "numpy"] = "auto"
    reference_rows: int = Field(5000, ge=10)
    min_rows: int = Field(100, ge=10)
    permutations: int = Field(500, ge=0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    time_budget: Duration = 30.0
    top_k: int = Field(10, ge=1)
    kernel_scales: list[float] = Field(default_factory=lambda: list(DEFAULT_SCALES))
    trees: int = Field(100, ge=1)
    online: OnlineMMDConfig = Field(default_factory=OnlineMMDConfig)

    @model_validator(mode="after")
    def _check(self) -> MultivariateConfig:
        if self.time_budget <= 0:
            raise fail("time_budget", f"must be longer than 0; {DURATION_HINT}")
        if not self.kernel_scales or any(s <= 0 for s in self.kernel_scales):
            raise fail("kernel_scales", "must be positive multiples of the median distance")
        if self.device == "cuda":
            from detectors.multivariate.backend import cuda_available

            if not cuda_available():
                raise fail(
                    "device",
                    "is cuda but torch finds no CUDA GPU here; use auto (GPU when present) "
                    "or cpu, or install driftline[gpu] on a GPU node",
                )
        return self

    def to_settings(self) -> MultivariateSettings:
        return MultivariateSettings(
            enabled=self.enabled,
            test=self.test,
            device=self.device,
            reference_rows=self.reference_rows,
            min_rows=self.min_rows,
            permutations=self.permutations,
            alpha=self.alpha,
            budget_seconds=self.time_budget,
            top_k=self.top_k,
            kernel_scales=tuple(self.kernel_scales),
            trees=self.trees,
            online=self.online.to_settings(),
        )
