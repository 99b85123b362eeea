"""A revoked partition's offset is committed once, by the revocation's checkpoint, and
never again: if the partition comes back after another member read on and committed
further (this agent a zombie whose revocation commit was refused, or a plain rebalance),
a later checkpoint must not move the group's offset back to where this agent had been."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.kafka import KafkaSource
from monitor.runtime.resumed import take_resumed
from tests.unit.test_agent_checkpoint import RecordingSource, make_agent


def test_a_revoked_partitions_offset_is_not_committed_again(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    source = RecordingSource()
    agent.source = source  # type: ignore[assignment]
    agent.offsets = {("t", 0): 42, ("t", 1): 17}

    asyncio.run(agent._on_revoke({("t", 1)}))
    # the revocation commits where this agent's state ends, both partitions included
    assert source.commits == [{("t", 0): 42, ("t", 1): 17}]
    # while t-1 is not assigned its offset stays in the checkpoint: the windows still
    # hold its records, and a restart must resume after them (the sources commit only
    # assigned partitions)
    asyncio.run(agent.checkpoint())
    restored = agent.store.load()
    assert restored is not None and restored.offsets == {("t", 0): 42, ("t", 1): 17}

    # t-1 is assigned again, another member having read on and committed 30: the source
    # says it resumes there, and no checkpoint commits 17 again
    source.resumed = {("t", 1): 30}  # type: ignore[attr-defined]
    asyncio.run(agent.checkpoint())
    assert source.commits[-1] == {("t", 0): 42, ("t", 1): 30}
    restored = agent.store.load()
    assert restored is not None and restored.offsets == {("t", 0): 42, ("t", 1): 30}
    agent.executor.shutdown()


class GroupConsumer:
    """What ``seek_assigned`` and ``commit`` use of an aiokafka consumer, with the
    group's committed offsets shared with another member that reads on."""

    def __init__(self, committed: dict[tuple[str, int], int]) -> None:
        self.group = committed
        self.mine: set[TopicPartition] = set()
        self.positions: dict[tuple[str, int], int] = {}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.group.get((tp.topic, tp.partition))

    async def position(self, tp: TopicPartition) -> int:
        key = (tp.topic, tp.partition)
        return self.positions.get(key, self.group.get(key, 0))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[(tp.topic, tp.partition)] = offset

    def assignment(self) -> set[TopicPartition]:
        return set(self.mine)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            assert offset >= self.group.get((tp.topic, tp.partition), 0), "offset moved back"
            self.group[(tp.topic, tp.partition)] = offset


@pytest.mark.parametrize("from_changelog", [False, True])
def test_a_restored_offset_of_a_partition_assigned_later_is_not_committed(
    tmp_path: Path, from_changelog: bool
) -> None:
    """A lone agent restarted from a checkpoint ending at t-0 42 and t-1 17 is assigned
    t-0 only; another member reads t-1 on and commits 30, then t-1 comes back: t-1
    resumes at 30, and no checkpoint commits 17 (with a checkpoint from the changelog
    the same holds for a partition of the first assignment whose commit is ahead)."""
    first = make_agent(tmp_path)
    first.offsets = {("t", 0): 42, ("t", 1): 17}
    asyncio.run(first.checkpoint())  # no source: written, not committed
    first.executor.shutdown()

    agent = make_agent(tmp_path)
    start = agent._restore()
    assert start == {("t", 0): 42, ("t", 1): 17}
    cfg = KafkaSourceConfig(bootstrap_servers="k:9092", topics=["t"], group_id="g")
    source = KafkaSource(cfg, start, on_revoke=agent._on_revoke)
    source.foreign_commits = from_changelog
    group = GroupConsumer({("t", 0): 40, ("t", 1): 10})
    source.consumer, source.up = group, True  # type: ignore[assignment]
    agent.source = source

    t0, t1 = TopicPartition("t", 0), TopicPartition("t", 1)
    first_assignment = {t0, t1} if from_changelog else {t0}
    if from_changelog:
        group.group[("t", 1)] = 30  # committed by a member that read on past the checkpoint
    group.mine = set(first_assignment)
    asyncio.run(source.seek_assigned(first_assignment))
    asyncio.run(agent.checkpoint())
    if not from_changelog:
        assert group.group == {("t", 0): 42, ("t", 1): 10}  # t-1 is not this agent's
        group.group[("t", 1)] = 30  # another member reads t-1 on and commits
        group.mine = {t0, t1}
        asyncio.run(source.seek_assigned({t1}))
        asyncio.run(agent.checkpoint())
    # t-1 resumes at the group's committed offset, the one this agent's offset now is
    assert group.positions.get(("t", 1), 30) == 30
    assert group.group == {("t", 0): 42, ("t", 1): 30}
    restored = agent.store.load()
    assert restored is not None and restored.offsets == {("t", 0): 42, ("t", 1): 30}
    agent.executor.shutdown()


class RdkafkaConsumer:
    """What the librdkafka source's assignment callback uses of its consumer."""

    def __init__(self, committed: dict[tuple[str, int], int]) -> None:
        self.group = committed

    def committed(self, tps: list[Any], timeout: float) -> list[Any]:
        from confluent_kafka import TopicPartition as RdTopicPartition

        return [
            RdTopicPartition(
                tp.topic, tp.partition, self.group.get((tp.topic, tp.partition), -1001)
            )
            for tp in tps
        ]

    def assign(self, partitions: list[Any]) -> None:
        pass


def test_the_librdkafka_source_says_where_a_partition_assigned_later_resumes() -> None:
    """As with aiokafka: t-1, named by the checkpoint but assigned only after another
    member committed 30, resumes at 30, and the agent's offset of it becomes 30."""
    from confluent_kafka import TopicPartition as RdTopicPartition

    from monitor.ingest.confluent import ConfluentSource

    cfg = KafkaSourceConfig(
        bootstrap_servers="k:9092", topics=["t"], group_id="g", client="confluent"
    )
    source = ConfluentSource(cfg, {("t", 0): 42, ("t", 1): 17})
    consumer = RdkafkaConsumer({("t", 0): 40, ("t", 1): 10})
    offsets = {("t", 0): 42, ("t", 1): 17}  # as restored
    source._on_assign(consumer, [RdTopicPartition("t", 0)])
    take_resumed(offsets, source)
    assert offsets == {("t", 0): 42, ("t", 1): 17}  # t-1 kept, not assigned: not committed
    consumer.group[("t", 1)] = 30
    source._on_assign(consumer, [RdTopicPartition("t", 1)])
    take_resumed(offsets, source)
    assert offsets == {("t", 0): 42, ("t", 1): 30}
    assert source.resumed == {}
