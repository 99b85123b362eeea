"""``drift``: what counts as drift; mirrors ``detectors.settings.DriftSettings``."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from detectors.settings import (
    CATEGORICAL_TESTS,
    DEFAULT_THRESHOLDS,
    NUMERIC_TESTS,
    P_VALUE_TESTS,
    ColumnTest,
    DriftSettings,
)
from monitor.config.errors import show
from monitor.config.rules import Section, fail, unknown_name
from monitor.config.sequential import SequentialConfig

__all__ = ["ALL_TESTS", "ColumnTestConfig", "DriftConfig"]

ALL_TESTS = tuple(dict.fromkeys(NUMERIC_TESTS + CATEGORICAL_TESTS))


class ColumnTestConfig(Section):
    """A per-column override of the test and/or its threshold."""

    test: str | None = None
    threshold: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        # `age: ks` is short for `age: {test: ks}`.
        return {"test": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ColumnTestConfig:
        if self.test is not None and self.test not in ALL_TESTS:
            raise fail("test", unknown_name(self.test, ALL_TESTS, "test"))
        if self.threshold is not None:
            _check_threshold(self.test, self.threshold, "threshold")
        if self.test is None and self.threshold is None:
            raise fail("test", "is missing; set test and/or threshold for this column")
        return self


def _check_threshold(test: str | None, value: float, key: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise fail(key, f"{show(value)} must be a positive number")
    if test in P_VALUE_TESTS and value >= 1:
        raise fail(key, f"{show(value)} is a p-value threshold for {test}; use e.g. 0.05")


class DriftConfig(Section):
    """What counts as drift; mirrors ``detectors.settings.DriftSettings``."""

    small_window_rows: int = Field(1000, ge=0)
    numeric_small: str = "ks"
    numeric_large: str = "wasserstein"
    categorical_small: str = "chi_square"
    categorical_large: str = "jensen_shannon"
    thresholds: dict[str, float] = Field(default_factory=dict)
    columns: dict[str, ColumnTestConfig] = Field(default_factory=dict)
    share_threshold: float = 0.5
    correction: Literal["none", "holm", "bonferroni", "benjamini_hochberg"] = "holm"
    # The chance that a window of unchanged data flags any column (docs/detectors.md).
    window_false_alarm_rate: float = Field(0.01, gt=0, lt=1)
    use_calibration: bool = True
    exact: Literal["auto", "never", "always"] = "auto"
    exact_max_rows: int = Field(5000, ge=0)
    psi_epsilon: float = Field(1e-4, gt=0, lt=1)
    # Page's CUSUM over the stream of windows (monitor/config/sequential.py)
    sequential: SequentialConfig = Field(default_factory=SequentialConfig)

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, value: object) -> object:
        if isinstance(value, dict) and "noise_floor_alpha" in value:
            raise fail(
                "noise_floor_alpha",
                "was replaced by window_false_alarm_rate (the chance that a window of "
                "unchanged data flags any column, default 0.01; each distance's confidence "
                "interval uses its share of it): remove noise_floor_alpha",
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> DriftConfig:
        for key in ("numeric_small", "numeric_large"):
            if getattr(self, key) not in NUMERIC_TESTS:
                raise fail(key, unknown_name(getattr(self, key), NUMERIC_TESTS, "numeric test"))
        for key in ("categorical_small", "categorical_large"):
            if getattr(self, key) not in CATEGORICAL_TESTS:
                raise fail(
                    key, unknown_name(getattr(self, key), CATEGORICAL_TESTS, "categorical test")
                )
        for test, value in self.thresholds.items():
            if test not in DEFAULT_THRESHOLDS:
                raise fail(
                    f"thresholds.{test}", unknown_name(test, tuple(DEFAULT_THRESHOLDS), "test")
                )
            _check_threshold(test, value, f"thresholds.{test}")
        if not 0.0 < self.share_threshold <= 1.0:
            raise fail(
                "share_threshold",
                f"{show(self.share_threshold)} is a share of features; use a number in (0, 1]"
                ", e.g. 0.5",
            )
        return self

    def to_settings(self) -> DriftSettings:
        """The detectors' settings: thresholds written here override the defaults."""
        return DriftSettings(
            small_window_rows=self.small_window_rows,
            numeric_small=self.numeric_small,
            numeric_large=self.numeric_large,
            categorical_small=self.categorical_small,
            categorical_large=self.categorical_large,
            thresholds={**DEFAULT_THRESHOLDS, **self.thresholds},
            columns={
                name: ColumnTest(test=c.test, threshold=c.threshold)
                for name, c in self.columns.items()
            },
            share_threshold=self.share_threshold,
            correction=self.correction,
            window_false_alarm_rate=self.window_false_alarm_rate,
            use_calibration=self.use_calibration,
            exact=self.exact,
            exact_max_rows=self.exact_max_rows,
            psi_epsilon=self.psi_epsilon,
        )
