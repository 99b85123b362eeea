"""``state``: where checkpoints live and how often they are written."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from monitor.config.durations import DURATION_HINT
from monitor.config.rules import Duration, Section, fail

__all__ = ["StateConfig"]


class StateConfig(Section):
    """Checkpoints: offsets are committed only once their records are in one."""

    dir: Path = Path("./state")
    checkpoint_interval: Duration = 5.0

    @model_validator(mode="after")
    def _check(self) -> StateConfig:
        if self.checkpoint_interval <= 0:
            raise fail("checkpoint_interval", f"must be longer than 0; {DURATION_HINT}")
        return self
