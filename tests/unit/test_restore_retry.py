"""A changelog read the brokers do not answer when a partition is assigned is tried again
within a short budget before the partition's state counts as lost; a read that answered
with no usable state is not. The Kafka side is an in-memory log that fails on demand, and
the clock is fake: nothing waits for real."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka.errors import KafkaConnectionError

from detectors.profile import Profile
from monitor.runtime import partition_changelog
from monitor.runtime.aggregator_state import AggregatorChangelog
from monitor.runtime.changelog import ChangelogError, ChangelogUnreachable
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, encode
from monitor.runtime.partition_changelog import PartitionLog
from monitor.runtime.partition_state import PartitionChangelog
from monitor.runtime.partitioned import PartitionedWindows
from monitor.runtime.restore_retry import RESTORE_RETRY_BUDGET, RestoreRetry
from tests.unit.kafka_configs import kafka_config, kafka_source
from tests.unit.test_aggregation import batch, traffic
from tests.unit.test_partition_state import (
    FakeSource,
    MemoryLog,
    agent,
    checkpoint,
    offsets_after,
    profile,
)

__all__ = ["profile"]  # the module-scoped fixture, shared

Key = tuple[str, int]


class FlakyLog(MemoryLog):
    """A MemoryLog whose next ``unanswered`` reads raise ChangelogUnreachable, as
    PartitionLog.read does when the brokers do not answer; or that raises ``error``."""

    def __init__(self, states: dict, unanswered: int = 0, error: Exception | None = None):
        super().__init__()
        self.states = dict(states)
        self.unanswered = unanswered
        self.error = error

    async def read(self, topic: str, partition: int, offset: int) -> Checkpoint | None:
        if self.error is not None:
            self.reads += 1
            raise self.error
        if self.unanswered > 0:
            self.reads += 1
            self.unanswered -= 1
            raise ChangelogUnreachable(
                f"changelog c: state of {topic}-{partition} not read (KafkaConnectionError)"
            ) from KafkaConnectionError()
        return await super().read(topic, partition, offset)


class FakeClock:
    """``time.monotonic`` and ``asyncio.sleep`` whose sleeps move the clock at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def written_states(
    profile: Profile, tmp_path: Path
) -> tuple[dict, dict[Key, int], PartitionedWindows]:
    """The changelog's states of three partitions after 1200 rows, where they end, and
    the windows that wrote them."""
    log = MemoryLog()
    a, wa = agent(profile, log, tmp_path / "writer")
    asyncio.run(a.on_assign({("t", p): None for p in range(3)}))
    a.source.owned = {("t", p) for p in range(3)}
    wa.add(batch(traffic(1200), np.arange(1200)), now=0.0)
    at = offsets_after(traffic(1200), 1200)
    asyncio.run(a.save(checkpoint(at)))
    assert len(log.states) == 3
    return log.states, at, wa


def restorer(profile: Profile, log: MemoryLog, tmp_path: Path) -> tuple[Any, Any, FakeClock]:
    b, wb = agent(profile, log, tmp_path / "restorer")
    clock = FakeClock()
    b.retry = RestoreRetry(RESTORE_RETRY_BUDGET, clock=clock, sleep=clock.sleep)
    return b, wb, clock


def test_a_state_unanswered_a_few_times_is_restored_and_nothing_is_counted_lost(
    profile: Profile, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    states, at, wa = written_states(profile, tmp_path)
    log = FlakyLog(states, unanswered=3)
    b, wb, clock = restorer(profile, log, tmp_path)
    with caplog.at_level(logging.WARNING, logger="monitor.runtime.restore_retry"):
        assert asyncio.run(b.on_assign({("t", 1): at[("t", 1)]})) == {("t", 1): at[("t", 1)]}
    assert log.reads == 4 and clock.sleeps == [0.5, 1.0, 2.0]
    assert b.exporter.count == 0, "nothing counted lost"
    assert wb.by_partition[1].open_panes == wa.by_partition[1].open_panes > 0
    assert wb.origins[1] == wa.origins[1]
    retries = [r for r in caplog.records if r.name == "monitor.runtime.restore_retry"]
    assert [r.levelno for r in retries] == [logging.WARNING] * 3
    for r in retries:  # names the partition and the error, nothing of the state
        assert "state of t-1" in r.getMessage() and "KafkaConnectionError" in r.getMessage()
        assert all(not isinstance(arg, bytes | Checkpoint) for arg in r.args or ())


def test_a_state_unanswered_past_the_budget_is_counted_lost_and_the_next_assignment_retries(
    profile: Profile, tmp_path: Path
) -> None:
    states, at, _ = written_states(profile, tmp_path)
    log = FlakyLog(states, unanswered=1000)
    b, wb, clock = restorer(profile, log, tmp_path)
    assert asyncio.run(b.on_assign({("t", 1): at[("t", 1)]})) == {}  # no exception
    assert b.exporter.count == 1 and 1 not in wb.by_partition
    assert clock.sleeps == [0.5, 1.0, 2.0] and log.reads == 4  # a 4 s wait would pass 5 s
    assert clock.now <= RESTORE_RETRY_BUDGET
    # the next assignment has the whole budget again
    log.unanswered = 2
    assert asyncio.run(b.on_assign({("t", 2): at[("t", 2)]})) == {("t", 2): at[("t", 2)]}
    assert b.exporter.count == 1 and clock.sleeps[3:] == [0.5, 1.0]


def test_one_budget_serves_all_partitions_of_an_assignment(
    profile: Profile, tmp_path: Path
) -> None:
    states, at, _ = written_states(profile, tmp_path)
    log = FlakyLog(states, unanswered=1000)
    b, _, clock = restorer(profile, log, tmp_path)
    assert asyncio.run(b.on_assign(dict(at))) == {}
    assert b.exporter.count == 3
    assert sum(clock.sleeps) <= RESTORE_RETRY_BUDGET, "three partitions, one budget"
    assert clock.now <= RESTORE_RETRY_BUDGET and log.reads < 3 * 4


@pytest.mark.parametrize(
    "error",
    [
        ChangelogError("changelog c: written by two agents at once"),
        CheckpointError("changelog c state of g/t/1", "1 of 2 chunks missing"),
    ],
    ids=["changelog-error", "damaged-checkpoint"],
)
def test_a_changelog_that_answered_with_no_usable_state_is_not_retried(
    profile: Profile, tmp_path: Path, error: Exception
) -> None:
    states, at, _ = written_states(profile, tmp_path)
    log = FlakyLog(states, error=error)
    b, _, clock = restorer(profile, log, tmp_path)
    assert asyncio.run(b.on_assign({("t", 1): at[("t", 1)]})) == {}
    assert log.reads == 1 and clock.sleeps == [] and b.exporter.count == 1


def test_no_state_or_another_references_state_is_not_retried(
    profile: Profile, tmp_path: Path
) -> None:
    _, at, _ = written_states(profile, tmp_path)
    key = ("t", 1, at[("t", 1)])
    foreign = Checkpoint({("t", 1): at[("t", 1)]}, b"", "another reference", 1.0)
    log = FlakyLog({key: encode(foreign)})
    b, _, clock = restorer(profile, log, tmp_path)
    assert asyncio.run(b.on_assign({("t", 1): at[("t", 1)], ("t", 2): at[("t", 2)]})) == {}
    assert log.reads == 2 and clock.sleeps == [] and b.exporter.count == 2


def test_the_budget_is_cut_to_half_a_shorter_session_timeout(tmp_path: Path) -> None:
    def config(session_ms: int) -> Any:
        return kafka_config(
            kafka={"session_timeout_ms": session_ms, "heartbeat_interval_ms": 1000},
            aggregation={"role": "agent"},
            state={"dir": str(tmp_path)},
        )

    assert PartitionChangelog(config(10000), "a", 1, "ref").retry.budget == RESTORE_RETRY_BUDGET
    assert PartitionChangelog(config(4000), "a", 1, "ref").retry.budget == 2.0
    assert AggregatorChangelog(config(4000), "g-agg", "p", "ref").retry.budget == 2.0


def aggregator(tmp_path: Path, log: MemoryLog) -> tuple[AggregatorChangelog, list, FakeClock]:
    config = kafka_config(aggregation={"role": "aggregator"}, state={"dir": str(tmp_path)})
    changelog = AggregatorChangelog(config, "g-agg", "p", "ref")
    changelog.log = log  # type: ignore[assignment]
    applied: list[Checkpoint] = []
    changelog.bind(FakeSource(), applied.append)
    clock = FakeClock()
    changelog.retry = RestoreRetry(RESTORE_RETRY_BUDGET, clock=clock, sleep=clock.sleep)
    return changelog, applied, clock


def test_the_aggregator_retries_an_unanswered_read_within_the_budget(tmp_path: Path) -> None:
    state = Checkpoint({("p", 0): 40}, b"merge state", "ref", 2.0, {"held": []})
    log = FlakyLog({("p", 0, 40): encode(state)}, unanswered=2)
    changelog, applied, clock = aggregator(tmp_path, log)
    assert asyncio.run(changelog.on_assign({("p", 0): 40})) == {("p", 0): 40}
    assert [c.windows for c in applied] == [b"merge state"] and clock.sleeps == [0.5, 1.0]

    log.unanswered = 1000  # past the budget: read again from the committed offset
    changelog.local = {}
    assert asyncio.run(changelog.on_assign({("p", 0): 40})) == {}
    assert len(applied) == 1 and sum(clock.sleeps[2:]) <= RESTORE_RETRY_BUDGET

    log.unanswered, log.error = 0, ChangelogError("changelog c: written by two agents")
    reads = log.reads
    assert asyncio.run(changelog.on_assign({("p", 0): 40})) == {}
    assert log.reads == reads + 1 and len(clock.sleeps) == 5, "not retried"


def test_a_reader_that_did_not_start_is_stopped_before_the_read_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retry of an unanswered read makes a new reader: one that failed to start is
    stopped, so its client does not outlive it."""
    made: list[RefusedReader] = []

    class RefusedReader:
        def __init__(self, **settings: object) -> None:
            self.stopped = False
            made.append(self)

        async def start(self) -> None:
            raise KafkaConnectionError("refused")

        async def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(partition_changelog, "AIOKafkaConsumer", RefusedReader)
    kafka = kafka_source()
    log = PartitionLog(kafka, "c", 1000, "a", 1)
    clock = FakeClock()
    retry = RestoreRetry(RESTORE_RETRY_BUDGET, clock=clock, sleep=clock.sleep)
    with pytest.raises(ChangelogUnreachable, match="KafkaConnectionError"):
        asyncio.run(retry.read("state of t-0", partial(log.read, "t", 0, 10)))
    assert len(made) == 4 and all(r.stopped for r in made)
    assert log._reader is None
