"""``record``: how one message becomes prediction rows (see monitor.ingest.decoder)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from monitor.config.durations import DURATION_HINT
from monitor.config.rules import Duration, Section, check_path, fail

__all__ = ["RecordConfig", "pairs_topic_for"]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def pairs_topic_for(model: str) -> str:
    """The default pairs topic of a model: ``driftline.<model>.pairs``."""
    return f"driftline.{re.sub(r'[^A-Za-z0-9._-]', '-', model)}.pairs"


class RecordConfig(Section):
    """How one message becomes prediction rows (see monitor.ingest.decoder)."""

    format: Literal["driftline", "kserve_v2"] = "driftline"
    max_bytes: int = Field(1_048_576, ge=1)
    features_field: str = "features"
    prediction_field: str = "prediction"
    request_id_field: str = "request_id"
    event_time_field: str = "timestamp"
    model_version_field: str = "model_version"
    default_model_version: str = "unknown"
    require_event_time: bool = False
    # A message holding several predictions: {"predictions": [...]} (or a JSON array).
    batch_field: str = "predictions"
    # KServe v2: a single 2-D input (output) tensor's columns, in order.
    kserve_input_columns: list[str] = Field(default_factory=list)
    kserve_output_columns: list[str] = Field(default_factory=list)
    # KServe's logger `mode`: which halves it sends. With "all" a row needs both.
    kserve_logger_mode: Literal["all", "request", "response"] = "all"
    kserve_pair_ttl: Duration = 60.0
    kserve_max_pending: int = Field(100_000, ge=1)
    # Halves land on any partition (KServe sends them unkeyed): with several agents in
    # one group, forward them keyed by CloudEvent id through the pairs topic so both
    # halves reach one agent (docs/agent.md, "KServe pairs across partitions").
    kserve_repartition: bool = False
    kserve_pairs_topic: str | None = None  # default: driftline.<model>.pairs
    # The CloudEvent attribute holding the model version (e.g. "source", or an extension
    # such as "modelversion"); default: the response body's model_version.
    kserve_version_attribute: str | None = None

    @model_validator(mode="after")
    def _check(self) -> RecordConfig:
        for key in (
            "prediction_field",
            "request_id_field",
            "event_time_field",
            "model_version_field",
            "batch_field",
        ):
            check_path(getattr(self, key), key)
        if self.features_field:  # "" means: the record itself holds the columns
            check_path(self.features_field, "features_field")
        for key in ("kserve_input_columns", "kserve_output_columns"):
            names = getattr(self, key)
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise fail(key, f"names {dupes} twice; list each column once")
        if self.kserve_pair_ttl <= 0:
            raise fail("kserve_pair_ttl", f"must be positive; {DURATION_HINT}")
        if self.kserve_pairs_topic is not None and not _TOPIC.match(self.kserve_pairs_topic):
            raise fail(
                "kserve_pairs_topic",
                "is not a Kafka topic name (letters, digits, '.', '_', '-'); "
                "e.g. driftline.fraud-scorer.pairs",
            )
        if self.kserve_repartition and self.format != "kserve_v2":
            raise fail("kserve_repartition", "applies to format: kserve_v2 only")
        return self
