"""Window state kept per source partition in the changelog: what is written when, which
slot a write may use, and how a newly assigned partition gets its windows back (from
memory when they were set aside at the committed offset, else from the changelog), with
the Kafka side replaced by an in-memory log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from detectors.profile import Profile
from monitor.runtime.aggregator_state import AggregatorChangelog
from monitor.runtime.checkpoint import Checkpoint, decode, encode
from monitor.runtime.partition_changelog import PartitionLog, PartitionManifest, writer_name
from monitor.runtime.partition_state import PartitionChangelog
from monitor.runtime.partitioned import PartitionedWindows
from monitor.runtime.windows import ClosedWindow
from tests.unit.kafka_configs import kafka_config, kafka_source
from tests.unit.test_aggregation import PARAMS, batch, profile, traffic

__all__ = ["profile"]  # the module-scoped fixture, shared

Key = tuple[str, int]


class MemoryLog:
    """PartitionLog's write and read, kept in a dict: (topic, partition, offset) -> the
    newest state written ending there."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, int, int], bytes] = {}
        self.writes: list[tuple[str, int, int]] = []
        self.reads = 0

    async def write(self, producer: object, states: list, committed: dict) -> None:
        for topic, partition, offset, data in states:
            self.states[(topic, partition, offset)] = data
            self.writes.append((topic, partition, offset))

    async def read(self, topic: str, partition: int, offset: int) -> Checkpoint | None:
        self.reads += 1
        data = self.states.get((topic, partition, offset))
        return None if data is None else decode(data)

    async def close(self) -> None:
        return None


class FakeSource:
    def __init__(self) -> None:
        self.owned: set[Key] = set()
        self.origins: dict[Key, tuple[int, bool]] = {}
        self.acked: dict[Key, int] = {}
        self.on_assign: Any = None

    def assigned(self) -> set[Key]:
        return set(self.owned)


class Lost:
    def __init__(self) -> None:
        self.count = 0

    def count_state_lost(self, n: int) -> None:
        self.count += n


def agent(profile: Profile, log: MemoryLog, tmp_path: Path) -> tuple[Any, PartitionedWindows]:
    config = kafka_config(aggregation={"role": "agent"}, state={"dir": str(tmp_path)})
    changelog = PartitionChangelog(config, "a", 1, "ref")
    changelog.log = log  # type: ignore[assignment]

    async def no_producer() -> object:
        return object()

    changelog._start = no_producer  # type: ignore[method-assign]
    windows = PartitionedWindows(profile, **PARAMS)
    windows.origin_of = lambda p: (0, True)
    changelog.attach(windows)
    changelog.bind(FakeSource())
    changelog.exporter = Lost()
    return changelog, windows


def offsets_after(data: dict[str, np.ndarray], upto: int) -> dict[Key, int]:
    """Next offset per partition once rows ``[0, upto)`` are read."""
    parts = data["partition"][:upto]
    return {("t", p): int(np.sum(parts == p)) for p in range(3)}


def checkpoint(offsets: dict[Key, int]) -> Checkpoint:
    return Checkpoint(offsets, b"", "ref", 1.0)


def rows(closed: list[ClosedWindow], p: int) -> list[tuple[float, int]]:
    return [(w.start, w.rows) for w in closed if w.partition == p]


def test_a_revoked_partition_is_restored_by_its_next_owner_as_if_never_moved(
    profile: Profile, tmp_path: Path
) -> None:
    data = traffic(3000)
    log = MemoryLog()
    a, wa = agent(profile, log, tmp_path / "a")
    run = asyncio.run
    assert run(a.on_assign({("t", p): None for p in range(3)})) == {}  # nothing committed
    a.source.owned = {("t", p) for p in range(3)}
    closed_by_a = wa.add(batch(data, np.arange(1500)), now=0.0).closed
    at = offsets_after(data, 1500)
    run(a.save(checkpoint(at)))
    assert sorted(log.writes) == [("t", p, at[("t", p)]) for p in range(3)]
    run(a.save(checkpoint(at)))
    assert len(log.writes) == 3, "unchanged states are not written again"

    # partition 1 is revoked: written (unchanged here, so not again) and set aside
    wa.release({1})
    run(a.save(checkpoint(at)))
    assert 1 not in wa.by_partition and len(log.writes) == 3
    a.source.owned.discard(("t", 1))

    # another agent is assigned it at the committed offset and restores it
    b, wb = agent(profile, log, tmp_path / "b")
    assert run(b.on_assign({("t", 1): at[("t", 1)]})) == {("t", 1): at[("t", 1)]}
    assert log.reads == 1 and b.exporter.count == 0

    # the rest of partition 1 read by B gives the windows one uninterrupted reader gives
    control = PartitionedWindows(profile, **PARAMS)
    control.origin_of = lambda p: (0, True)
    rest = np.arange(1500, 3000)
    of_1 = rest[data["partition"][rest] == 1]
    everything = np.arange(3000)
    want = control.add(batch(data, everything[data["partition"] == 1]), now=0.0).closed
    want += control.flush()
    got = wb.add(batch(data, of_1), now=0.0).closed + wb.flush()
    assert rows(closed_by_a, 1) and got
    assert rows(closed_by_a + got, 1) == rows(want, 1)
    assert wb.origins[1] == (0, True), "the same line of state: the same origin"


def test_windows_set_aside_come_back_without_a_read_and_a_missing_state_is_counted(
    profile: Profile, tmp_path: Path
) -> None:
    data = traffic(1200)
    log = MemoryLog()
    a, wa = agent(profile, log, tmp_path)
    run = asyncio.run
    run(a.on_assign({("t", p): None for p in range(3)}))
    a.source.owned = {("t", p) for p in range(3)}
    wa.add(batch(data, np.arange(1200)), now=0.0)
    at = offsets_after(data, 1200)
    run(a.save(checkpoint(at)))
    panes = wa.by_partition[2].open_panes
    wa.release({0, 1, 2})  # an eager rebalance revokes all
    run(a.save(checkpoint(at)))
    assert wa.by_partition == {}
    # partition 2 comes back at the offset it was set aside at: no read
    back = run(a.on_assign({("t", 2): at[("t", 2)]}))
    assert back == {("t", 2): at[("t", 2)]} and log.reads == 0
    assert wa.by_partition[2].open_panes == panes
    # a partition committed further than any state the changelog holds: counted, fresh
    assert run(a.on_assign({("t", 0): at[("t", 0)] + 5})) == {}
    assert a.exporter.count == 1 and 0 not in wa.by_partition


def test_a_write_never_reuses_the_last_slot_nor_the_committed_one() -> None:
    log = PartitionLog(
        kafka_source(),
        "c",
        1024,
        "agent one",
        3,
    )
    assert log.writer == writer_name("agent one", 3) == "agent-one.3"
    base = log.base("t", 4)
    assert base == "g/t/4"
    log._written[base] = {0: (100, 1, 1)}
    log._last_slot[base] = 0
    assert log._slot(base, committed=100) == 1
    log._written[base][1] = (150, 1, 2)  # its commit failed: 100 is still committed
    log._last_slot[base] = 1
    assert log._slot(base, committed=100) == 2
    log._written[base][2] = (180, 1, 3)
    log._last_slot[base] = 2
    assert log._slot(base, committed=180) == 0
    manifest = PartitionManifest(base, "t", 4, 180, 2, (7, 8), 10, "ff", 1.0, "agent one", 3)
    assert PartitionManifest.from_bytes(manifest.to_bytes()) == manifest


def test_the_aggregator_restores_its_state_unless_its_own_ends_at_the_commit(
    tmp_path: Path,
) -> None:
    config = kafka_config(aggregation={"role": "aggregator"}, state={"dir": str(tmp_path)})
    changelog = AggregatorChangelog(config, "g-agg", "p", "ref")
    assert changelog.log.base("p", 0) == "g-agg/p/0"
    log = MemoryLog()
    changelog.log = log  # type: ignore[assignment]
    applied: list[Checkpoint] = []
    source = FakeSource()
    changelog.bind(source, applied.append)
    state = Checkpoint({("p", 0): 40}, b"merge state", "ref", 2.0, {"held": []})
    log.states[("p", 0, 40)] = encode(state)
    changelog.local = {("p", 0): 40}  # the disk's checkpoint ends at the commit: kept
    assert asyncio.run(changelog.on_assign({("p", 0): 40})) == {} and log.reads == 0
    changelog.local = {}  # no disk: the changelog's state, and its offset
    assert asyncio.run(changelog.on_assign({("p", 0): 40})) == {("p", 0): 40}
    assert [c.windows for c in applied] == [b"merge state"]
    assert changelog.local == {("p", 0): 40}
    assert asyncio.run(changelog.on_assign({("p", 0): 41})) == {}  # none there: read again


def test_a_restored_writers_keys_get_tombstones_once_the_commit_passed_its_state() -> None:
    log = PartitionLog(
        kafka_source(),
        "c",
        1024,
        "b",
        1,
    )
    log.partitions = 3
    old = PartitionManifest("g/t/4", "t", 4, 180, 1, (7, 8), 10, "ff", 1.0, "a", 2)
    log._retire["g/t/4"] = old
    assert log._tombstones({("t", 4): 180}) == [], "the committed state may still be a's"
    keys = log._tombstones({("t", 4): 250})
    assert {part for part, _ in keys} == {4 % 3}
    names = {k.decode() for _, k in keys}
    assert {"g/t/4#a.2#m0", "g/t/4#a.2#m1", "g/t/4#a.2#m2", "g/t/4#a.2#1#1"} <= names
    assert not any(n.startswith("g/t/4#b.1") for n in names), "never its own keys"
    assert log._retire == {} and log._tombstones({("t", 4): 300}) == []
