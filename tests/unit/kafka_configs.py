"""Monitor configurations with a Kafka source, for unit tests of what reads one (the
changelog, partition state, topic creation); no broker is contacted."""

from __future__ import annotations

from typing import Any

from monitor.config.loader import parse_config
from monitor.config.model import MonitorConfig
from monitor.config.source import KafkaSourceConfig

#: The source every such test reads: topic ``t``, group ``g``.
KAFKA: dict[str, Any] = {"bootstrap_servers": "k:9092", "topics": ["t"], "group_id": "g"}


def kafka_config(
    *, model: str = "m", kafka: dict[str, Any] | None = None, **sections: Any
) -> MonitorConfig:
    """``monitor.yaml`` with the Kafka source (``kafka`` overrides its keys) and
    ``sections`` (``aggregation={...}``, ``state={...}``, ...)."""
    source = {"kind": "kafka", "kafka": {**KAFKA, **(kafka or {})}}
    return parse_config({"model": model, "reference": "ref.json", "source": source, **sections})


def kafka_source(**kafka: Any) -> KafkaSourceConfig:
    """The source's own settings (``kafka`` overrides its keys)."""
    source = kafka_config(kafka=kafka).source.kafka
    assert source is not None
    return source
