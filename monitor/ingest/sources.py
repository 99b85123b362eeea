"""The Kafka source for ``source.kafka.client``: aiokafka's (pure Python on asyncio) or
librdkafka's (confluent-kafka, records fetched and parsed in C). Both are consumer-group
members with the same keys and the same at-least-once guarantees (docs/architecture.md,
decision 7); only the client library, imported when chosen, differs."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from monitor.ingest.batch import SourceMessage

Offsets = dict[tuple[str, int], int]

#: Seconds between broker reachability probes while connected (both clients).
PROBE_INTERVAL = 1.0
#: Seconds a probe, a committed-offset lookup or a seek may take before it counts as failed.
PROBE_TIMEOUT = 3.0
#: Seconds a commit (and each step of closing a producer) may take.
COMMIT_TIMEOUT = 5.0

#: How a partition's resume point is logged when another member read on past the
#: checkpoint (``foreign_commits``): the partition resumes at the committed offset.
FOREIGN_AHEAD = "committed offset, ahead of the checkpoint (another member read on)"


class Source(Protocol):
    """What the agent uses of a Kafka source."""

    consumer: Any
    up: bool
    polled: Offsets
    foreign_commits: bool
    resumed: dict[tuple[str, int], int | None]

    async def start(self, stop: asyncio.Event) -> bool: ...
    async def poll(self, timeout_ms: int = 200) -> list[SourceMessage]: ...
    def assigned(self) -> set[tuple[str, int]]: ...
    def partition_count(self, topic: str) -> int | None: ...
    def lag(self) -> dict[tuple[str, int], int]: ...
    async def commit(self, offsets: Offsets) -> None: ...
    async def stop(self) -> None: ...
