"""``state``: where checkpoints live and how often they are written."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator

from monitor.config.durations import DURATION_HINT
from monitor.config.rules import Duration, Section, fail

__all__ = ["StateConfig", "changelog_topic_for"]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def changelog_topic_for(model: str) -> str:
    """The default changelog topic of a model: ``driftline.<model>.changelog``
    (characters Kafka does not allow in topic names become ``-``)."""
    return f"driftline.{re.sub(r'[^A-Za-z0-9._-]', '-', model)}.changelog"


class StateConfig(Section):
    """Checkpoints: offsets are committed only once their records are in one.

    With ``changelog`` on (the default for a Kafka source) each checkpoint also goes to a
    compacted topic, so an agent that lost its directory restores from Kafka
    (docs/agent.md, "State"); the directory stays as a local cache.
    """

    dir: Path = Path("./state")
    checkpoint_interval: Duration = 5.0
    changelog: bool = True
    changelog_topic: str | None = None  # default: driftline.<model>.changelog
    changelog_name: str | None = None  # distinguishes agents sharing one consumer group
    changelog_chunk_bytes: int = Field(512 * 1024, ge=1024, le=8 * 1024 * 1024)
    changelog_replication: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> StateConfig:
        if self.checkpoint_interval <= 0:
            raise fail("checkpoint_interval", f"must be longer than 0; {DURATION_HINT}")
        if self.changelog_topic is not None and not _TOPIC.match(self.changelog_topic):
            raise fail(
                "changelog_topic",
                "is not a Kafka topic name (letters, digits, '.', '_', '-'); "
                "e.g. driftline.fraud-scorer.changelog",
            )
        if self.changelog_name is not None and not _TOPIC.match(self.changelog_name):
            raise fail(
                "changelog_name",
                "must be letters, digits, '.', '_', '-' (e.g. the pod name of a StatefulSet)",
            )
        return self

    def topic(self, model: str) -> str:
        return self.changelog_topic or changelog_topic_for(model)
