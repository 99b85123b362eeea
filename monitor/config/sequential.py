"""``drift.sequential``: the sequential detectors over the stream of windows (Page's
CUSUM per column and for the dataset; docs/detectors.md, "False alarms over time")."""

from __future__ import annotations

from typing import Protocol

from pydantic import Field

from detectors.sequential import (
    DEFAULT_ALLOWANCE,
    DEFAULT_MIN_EFFECT,
    DEFAULT_NEW_CATEGORY_SHARE,
    SequentialSettings,
)
from monitor.config.rules import Duration, Section

__all__ = ["SequentialConfig"]

DEFAULT_EXPECTED_RUN_TIME = 90 * 86400.0
# Row windows have no clock: their expected run between false alarms is counted in rows.
DEFAULT_EXPECTED_RUN_ROWS = 100_000_000


class _Windows(Protocol):
    size: float
    slide: float | None
    rows: int | None


class SequentialConfig(Section):
    """Expected run time between false alarms per column, and the CUSUM's tuning."""

    enabled: bool = True
    expected_run_time: Duration = DEFAULT_EXPECTED_RUN_TIME
    expected_run_rows: int = Field(DEFAULT_EXPECTED_RUN_ROWS, ge=2)
    allowance: float = Field(DEFAULT_ALLOWANCE, gt=0, le=5)
    min_effect: float = Field(DEFAULT_MIN_EFFECT, ge=0, lt=1)
    new_category_share: float = Field(DEFAULT_NEW_CATEGORY_SHARE, gt=0, lt=1)

    def expected_run_windows(self, windows: _Windows) -> float:
        """The expected run in windows the detectors see: time windows of ``size`` (with
        a slide only the non-overlapping ones are fed), or windows of ``rows`` rows."""
        if windows.rows:
            return max(2.0, self.expected_run_rows / windows.rows)
        return max(2.0, self.expected_run_time / windows.size)

    def to_settings(self, windows: _Windows) -> SequentialSettings:
        return SequentialSettings(
            enabled=self.enabled,
            expected_run_windows=self.expected_run_windows(windows),
            allowance=self.allowance,
            min_effect=self.min_effect,
            new_category_share=self.new_category_share,
        )
