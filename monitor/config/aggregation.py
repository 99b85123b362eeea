"""``aggregation``: several agents sharing one model's traffic, one verdict per window.

``role: none`` (the default) is one agent judging what it reads. With ``agent`` the
agent publishes each closed window's partial sketch to the partials topic instead of
judging it; ``aggregator`` merges those partials into the model's windows and judges
them; ``both`` does the two in one process. See docs/agent.md, "Scaling out".
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from monitor.config.durations import DURATION_HINT
from monitor.config.rules import Duration, Section, fail

__all__ = ["AggregationConfig", "Role", "partials_topic_for"]

Role = Literal["none", "agent", "aggregator", "both"]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def partials_topic_for(model: str) -> str:
    """The default partials topic of a model: ``driftline.<model>.partials`` (characters
    Kafka does not allow in topic names become ``-``)."""
    return f"driftline.{re.sub(r'[^A-Za-z0-9._-]', '-', model)}.partials"


class AggregationConfig(Section):
    """Partials topic, aggregator group and how long a window waits for every partition."""

    role: Role = "none"
    partials_topic: str | None = None  # default: driftline.<model>.partials
    group_id: str | None = None  # the aggregators' group; default: <source group>-aggregator
    deadline: Duration = 30.0
    agent_id: str | None = None  # default: generated once and kept with the window state
    source_partitions: int | None = Field(None, ge=1)  # default: from the topics' metadata
    # create the partials topic at start when missing (false: topic creation is locked down)
    create_topic: bool = True

    @model_validator(mode="after")
    def _check(self) -> AggregationConfig:
        if self.deadline <= 0:
            raise fail("deadline", f"must be longer than 0; {DURATION_HINT}")
        if self.partials_topic is not None and not _TOPIC.match(self.partials_topic):
            raise fail(
                "partials_topic",
                "is not a Kafka topic name (letters, digits, '.', '_', '-'); "
                "e.g. driftline.fraud-scorer.partials",
            )
        return self

    @property
    def publishes(self) -> bool:
        """Whether this process's agent publishes partials instead of judging windows."""
        return self.role in ("agent", "both")

    @property
    def aggregates(self) -> bool:
        return self.role in ("aggregator", "both")

    def topic(self, model: str) -> str:
        return self.partials_topic or partials_topic_for(model)
