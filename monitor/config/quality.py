"""``quality``: data-quality limits; mirrors ``detectors.settings.QualitySettings``."""

from __future__ import annotations

from pydantic import Field, model_validator

from detectors.settings import DEFAULT_QUALITY_THRESHOLDS, QUALITY_CHECKS, QualitySettings
from monitor.config.errors import show
from monitor.config.rules import Section, fail, unknown_name

__all__ = ["CATEGORICAL_ONLY_CHECKS", "NUMERIC_ONLY_CHECKS", "QualityConfig"]

# Quality checks that only make sense for one kind of column.
NUMERIC_ONLY_CHECKS = frozenset({"out_of_range", "non_finite"})
CATEGORICAL_ONLY_CHECKS = frozenset({"unseen"})


class QualityConfig(Section):
    """Data-quality limits; mirrors ``detectors.settings.QualitySettings``."""

    thresholds: dict[str, float] = Field(default_factory=dict)
    columns: dict[str, dict[str, float]] = Field(default_factory=dict)
    min_rows: int = Field(20, ge=0)

    @model_validator(mode="after")
    def _check(self) -> QualityConfig:
        items = [(f"thresholds.{k}", k, v) for k, v in self.thresholds.items()]
        for column, checks in self.columns.items():
            items += [(f"columns.{column}.{k}", k, v) for k, v in checks.items()]
        for key, check, value in items:
            if check not in QUALITY_CHECKS:
                raise fail(key, unknown_name(check, QUALITY_CHECKS, "quality check"))
            if not 0.0 <= value <= 1.0:
                raise fail(
                    key,
                    f"{show(value)} is a rate above the reference's; use a number in "
                    "[0, 1], e.g. 0.05",
                )
        return self

    def to_settings(self) -> QualitySettings:
        """The detectors' settings: thresholds written here override the defaults."""
        return QualitySettings(
            thresholds={**DEFAULT_QUALITY_THRESHOLDS, **self.thresholds},
            columns={c: dict(checks) for c, checks in self.columns.items()},
            min_rows=self.min_rows,
        )
