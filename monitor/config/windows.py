"""``windows``: event-time windows (or row counts), lateness, deduplication, sampling."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from monitor.config.durations import DURATION_HINT, format_duration
from monitor.config.rules import Duration, OptionalDuration, Section, fail

__all__ = ["WindowsConfig"]


class WindowsConfig(Section):
    """Event-time windows (or row counts), lateness, deduplication and sampling."""

    size: Duration = 60.0
    slide: OptionalDuration = None
    rows: int | None = Field(None, ge=1)
    allowed_lateness: Duration = 10.0
    idle_timeout: Duration = 30.0
    # Records dated further ahead of the clock are set aside (monitor/runtime/event_time.py).
    max_event_skew: OptionalDuration = 300.0
    dedupe: bool = True
    dedupe_max_ids: int = Field(1_000_000, ge=1)
    reservoir_size: int = Field(1024, ge=0)
    segment_by_version: bool = True
    stable_version: str | None = None

    @model_validator(mode="after")
    def _check(self) -> WindowsConfig:
        if self.rows is not None:
            if "size" in self.model_fields_set:
                raise fail(
                    "rows",
                    "and windows.size are both set; a window is either a duration (size) "
                    "or a row count (rows): remove one",
                )
            if self.slide is not None:
                raise fail(
                    "slide",
                    "needs time windows; remove slide, or use size instead of rows",
                )
        if self.size <= 0:
            raise fail("size", f"must be longer than 0; {DURATION_HINT}")
        if self.slide is not None:
            if self.slide <= 0 or self.slide > self.size:
                raise fail(
                    "slide",
                    f"{format_duration(self.slide)} must be positive and at most size "
                    f"({format_duration(self.size)})",
                )
            panes = self.size / self.slide
            if abs(panes - round(panes)) > 1e-9 * max(1.0, panes):
                raise fail(
                    "slide",
                    f"{format_duration(self.slide)} does not divide size "
                    f"({format_duration(self.size)}); use a slide such as "
                    f"{_divisor_hint(self.size, self.slide)}",
                )
        if self.max_event_skew is not None and self.max_event_skew < 0:
            raise fail(
                "max_event_skew", f"must be 0 or longer, or null to turn it off; {DURATION_HINT}"
            )
        if self.idle_timeout <= 0:
            raise fail("idle_timeout", f"must be longer than 0; {DURATION_HINT}")
        if self.stable_version is not None and not self.segment_by_version:
            raise fail(
                "stable_version",
                "compares versions, which needs segment_by_version: true; set it or remove "
                "stable_version",
            )
        return self


_NICE_SLIDES = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)


def _divisor_hint(size: float, slide: float) -> str:
    """A slide near the one written that divides the window size."""
    divisors = [d for d in _NICE_SLIDES if d <= size and (size / d).is_integer()]
    if not divisors:
        return format_duration(size / max(1, round(size / slide)))
    return format_duration(min(divisors, key=lambda d: abs(math.log(d / slide))))
