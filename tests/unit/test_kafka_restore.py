"""Partitions assigned while the state of some of them is restored: records the consumer
fetches meanwhile are set aside, and every partition is then read from where its records
were set aside, or from its restored state; none is skipped (a labels topic's partition
has no state of its own and must not lose the labels fetched during the restore)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.kafka import KafkaSource

ROWS, LABELS = TopicPartition("preds", 0), TopicPartition("labels", 0)


@dataclass
class Record:
    offset: int


class FakeConsumer:
    """What ``seek_assigned`` and ``poll`` use of an aiokafka consumer."""

    def __init__(self, committed: dict[tuple[str, int], int], fetches: list[dict]) -> None:
        self._committed = committed
        self.fetches = fetches
        self.seeks: dict[tuple[str, int], int] = {}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._committed.get((tp.topic, tp.partition))

    async def position(self, tp: TopicPartition) -> int:
        return self._committed.get((tp.topic, tp.partition), 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[(tp.topic, tp.partition)] = offset

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        return self.fetches.pop(0) if self.fetches else {}

    def assignment(self) -> set[TopicPartition]:
        return set()


def source(fetches: list[dict]) -> tuple[KafkaSource, FakeConsumer]:
    cfg = KafkaSourceConfig(bootstrap_servers="k:9092", topics=["preds"], group_id="g")
    src = KafkaSource(cfg, {}, extra_topics=["labels"])
    consumer = FakeConsumer({("preds", 0): 250, ("labels", 0): 170}, fetches)
    src.consumer = consumer  # type: ignore[assignment]
    return src, consumer


def test_records_fetched_during_a_restore_are_read_again() -> None:
    fetched = {ROWS: [Record(250), Record(251)], LABELS: [Record(170), Record(171)]}
    src, consumer = source([fetched])

    async def on_assign(committed: dict[tuple[str, int], int | None]) -> dict[tuple[str, int], int]:
        assert committed == {("preds", 0): 250, ("labels", 0): 170}
        assert await src.poll() == []  # fetched while restoring: set aside
        return {("preds", 0): 250}  # the rows' partition's state was restored there

    src.on_assign = on_assign
    asyncio.run(src.seek_assigned({ROWS, LABELS}))
    assert consumer.seeks == {("preds", 0): 250, ("labels", 0): 170}
    assert src.polled == {}


def test_a_failed_restore_reads_every_partition_from_what_was_set_aside() -> None:
    fetched = {ROWS: [Record(250)], LABELS: [Record(170)]}
    src, consumer = source([fetched])

    async def on_assign(committed: dict[tuple[str, int], int | None]) -> dict[tuple[str, int], int]:
        await src.poll()
        raise RuntimeError("changelog unreadable")

    src.on_assign = on_assign
    asyncio.run(src.seek_assigned({ROWS, LABELS}))
    assert consumer.seeks == {("preds", 0): 250, ("labels", 0): 170}


def test_nothing_fetched_during_the_restore_moves_nothing() -> None:
    src, consumer = source([])

    async def on_assign(committed: dict[tuple[str, int], int | None]) -> dict[tuple[str, int], int]:
        return {}

    src.on_assign = on_assign
    asyncio.run(src.seek_assigned({ROWS, LABELS}))
    assert consumer.seeks == {}
