"""Which Kafka source ``source.kafka.client`` names, built with the client library imported
only when chosen (``monitor.ingest.sources`` holds what both share)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.sources import Offsets, Source


def make_source(
    cfg: KafkaSourceConfig,
    start_offsets: Offsets | None = None,
    on_revoke: Callable[[set[tuple[str, int]]], Awaitable[None]] | None = None,
    extra_topics: Sequence[str] = (),
) -> Source:
    """The configured client's source."""
    if cfg.client == "confluent":
        from monitor.ingest.confluent import ConfluentSource

        return ConfluentSource(cfg, start_offsets, on_revoke=on_revoke, extra_topics=extra_topics)
    from monitor.ingest.kafka import KafkaSource

    return KafkaSource(cfg, start_offsets, on_revoke=on_revoke, extra_topics=extra_topics)
