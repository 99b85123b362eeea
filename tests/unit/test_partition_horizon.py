"""How far a partition's windows are closed when the partition moves to another agent:
the next owner reports the horizon of the state it restored, and the aggregator keeps
the horizon an earlier owner of the same line of state had reported, so the windows
that owner closed and sent are judged complete without waiting for
``aggregation.deadline`` — also when the partition then stays silent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.profile import Profile
from monitor.config.windows import WindowsConfig
from monitor.runtime.changelog import ChangelogError
from monitor.runtime.merging import MergeState
from monitor.runtime.partials import Partial, PartitionProgress
from monitor.runtime.partitioned import PartitionedWindows
from monitor.runtime.publishing import AgentPartials
from monitor.runtime.windows import ClosedWindow
from tests.unit.test_aggregation import PARAMS, batch, profile, publisher, traffic
from tests.unit.test_partition_state import FakeSource, MemoryLog, agent, checkpoint

__all__ = ["profile"]  # the module-scoped fixture, shared

IDLE = float(PARAMS["idle_timeout"])
N = 1500
KEY = ("t", 0)


class Coordinator:
    def __init__(self, generation: int) -> None:
        self.generation = generation


class Consumer:
    """The group membership a progress reads, and the committed offset a hand-off reads."""

    def __init__(self, generation: int, committed: int | None = None) -> None:
        self._coordinator = Coordinator(generation)
        self._committed = committed

    async def committed(self, tp: object) -> int | None:
        return self._committed


def hooks_for(name: str, path: Path, sent: list[Partial] | None = None) -> AgentPartials:
    hooks = AgentPartials(publisher(name), WindowsConfig(size=10.0, idle_timeout=IDLE), path)
    if sent is not None:

        async def send(topic: str, key: bytes, value: bytes) -> None:
            sent.append(Partial.from_bytes(value))

        hooks.publisher._send = send
    return hooks


def member(
    profile: Profile, log: MemoryLog, path: Path, generation: int
) -> tuple[Any, AgentPartials]:
    """An agent's partition changelog (over ``log``) and partials hooks, in ``generation``,
    owning partition 0 of topic t."""
    changelog, _ = agent(profile, log, path)
    changelog.source.consumer = Consumer(generation)
    changelog.source.owned = {KEY}
    return changelog, hooks_for(path.name, path)


def progress(hooks: AgentPartials, source: Any, windows: PartitionedWindows, now: float) -> Partial:
    owned, generation = hooks._owned(source, windows, now)
    return hooks.publisher.progress(owned, generation)


def one_partition() -> dict[str, np.ndarray]:
    data = traffic(N)
    data["partition"] = np.zeros(N, dtype=np.int64)
    return data


def sent_windows(
    hooks: AgentPartials, closed: list[ClosedWindow], windows: PartitionedWindows, merge: Any
) -> None:
    msgs = hooks.publisher.window_partials(closed, 1, dict(windows.origins))
    assert {merge.receive(m, 0.0) for m in msgs} == {"accepted"}


def complete(merge: MergeState, bounds: list[tuple[float, float]], now: float = 1.0) -> bool:
    """Every window in ``bounds`` due at ``now`` (before the deadline) with full coverage."""
    due = {d.bounds: d for d in merge.due(now)}
    return all(b in due and due[b].complete and due[b].coverage.reported == (0,) for b in bounds)


def merge_state() -> MergeState:
    return MergeState("m", "ref", 1, deadline=60.0, allowed_lateness=1.0)


def test_the_next_owner_reports_the_horizon_of_a_state_with_no_open_window(
    profile: Profile, tmp_path: Path
) -> None:
    """The state's windows are all closed: it still holds how far (``closed_to``), and
    the next owner reports it, then reports the silent partition idle."""
    data, log, merge = one_partition(), MemoryLog(), merge_state()
    a, ha = member(profile, log, tmp_path / "a", 1)
    asyncio.run(a.on_assign({KEY: None}))
    a.source.origins = {KEY: (0, True)}
    wa: PartitionedWindows = a.windows
    closed = wa.add(batch(data, np.arange(N)), now=0.0).closed + wa.tick(IDLE + 1.0)
    assert wa.by_partition[0].open_panes == 0
    sent_windows(ha, closed, wa, merge)
    merge.receive(progress(ha, a.source, wa, IDLE + 1.0), 0.0)
    asyncio.run(a.save(checkpoint({KEY: N})))
    bounds = sorted({(w.start, w.end) for w in closed})
    # a is killed; b is assigned partition 0 in the next generation and restores it
    b, hb = member(profile, log, tmp_path / "b", 2)
    assert asyncio.run(b.on_assign({KEY: N})) == {KEY: N}
    restored_at = time.time()
    sent = progress(hb, b.source, b.windows, restored_at)
    assert sent.owned[0] == PartitionProgress(0, True, bounds[-1][1], False, wa.first_time[0])
    merge.receive(sent, 1.0)
    assert merge.owners()[0][0].agent_id == "b"
    assert complete(merge, bounds) and merge.carried == {0: (0, True, bounds[-1][1])}
    # nothing more comes: idle once idle_timeout has passed since the restore
    later = progress(hb, b.source, b.windows, restored_at + IDLE + 1.0).owned[0]
    assert later.idle and later.horizon == bounds[-1][1]


def test_windows_sent_after_the_restored_state_are_not_held_for_the_next_owner(
    profile: Profile, tmp_path: Path
) -> None:
    """The owner is killed after closing and sending windows but before its next
    checkpoint: the next owner restores the state at the committed offset, written before
    any window closed (closed to before the first), and must read the records again (or,
    for the windows closed as idle, wait ``idle_timeout``). The aggregator keeps the horizon the
    same line of state reached, so those windows are complete at once."""
    data, log, merge = one_partition(), MemoryLog(), merge_state()
    a, ha = member(profile, log, tmp_path / "a", 1)
    asyncio.run(a.on_assign({KEY: None}))
    a.source.origins = {KEY: (0, True)}
    wa: PartitionedWindows = a.windows
    cut = 100  # about 4 s of rows: no window closed yet
    assert not wa.add(batch(data, np.arange(cut)), now=0.0).closed
    asyncio.run(a.save(checkpoint({KEY: cut})))
    merge.receive(progress(ha, a.source, wa, 0.0), 0.0)
    closed = wa.add(batch(data, np.arange(cut, N)), now=0.0).closed + wa.tick(IDLE + 1.0)
    sent_windows(ha, closed, wa, merge)
    merge.receive(progress(ha, a.source, wa, IDLE + 1.0), 0.0)  # ... and a is killed
    bounds = sorted({(w.start, w.end) for w in closed})
    assert sum(w.rows for w in closed) == N
    b, hb = member(profile, log, tmp_path / "b", 2)
    assert asyncio.run(b.on_assign({KEY: cut})) == {KEY: cut}
    restored_at = time.time()
    sent = progress(hb, b.source, b.windows, restored_at)
    behind = sent.owned[0].horizon
    assert behind is not None and behind < bounds[0][1] and not sent.owned[0].idle
    merge.receive(sent, 1.0)
    assert complete(merge, bounds), merge.waiting_for(bounds[0])
    for d in merge.due(1.0):
        merge.done(d.bounds, 1.0)
    # b reads the records again and closes the same windows: judged already, dropped
    again = b.windows.add(batch(data, np.arange(cut, N)), now=restored_at).closed
    again += b.windows.tick(restored_at + IDLE + 1.0)
    assert sorted({(w.start, w.end) for w in again}) == bounds
    msgs = hb.publisher.window_partials(again, 2, dict(b.windows.origins))
    assert {merge.receive(m, 2.0) for m in msgs} == {"late"}
    last = progress(hb, b.source, b.windows, restored_at + IDLE + 1.0).owned[0]
    assert last.idle and last.horizon == bounds[-1][1]


def test_a_claim_of_another_line_or_of_an_earlier_generation_carries_nothing(
    profile: Profile,
) -> None:
    merge = merge_state()
    far = 1e12

    def claim(agent: str, generation: int, prog: PartitionProgress, epoch: int = 1) -> None:
        merge.receive(publisher(agent, epoch).progress({0: prog}, generation), 0.0)

    claim("a", 1, PartitionProgress(0, True, far, False, 1.0))
    claim("a", 1, PartitionProgress(0, True, far, False, 1.0))  # its own word again
    assert merge.carried == {}
    claim("b", 2, PartitionProgress(0, True, None, False, 1.0))  # b restored a's line
    assert merge.carried == {0: (0, True, far)}
    claim("a", 1, PartitionProgress(0, True, 2 * far, True, 1.0))  # a zombie: nothing
    assert merge.carried == {0: (0, True, far)}
    assert merge._horizon(0, merge.owners()[0][1]) == far
    back = merge_state()
    back.restore(merge.snapshot(), now=5.0)
    assert back.carried == merge.carried
    claim("c", 3, PartitionProgress(40, False, None, False, None))  # another line
    assert merge.carried == {} and merge._horizon(0, merge.owners()[0][1]) is None
    claim("c", 3, PartitionProgress(40, False, 5.0, False, 1.0), epoch=2)  # c restarted
    claim("c", 3, PartitionProgress(40, False, None, False, 1.0), epoch=3)  # again
    assert merge.carried == {0: (40, False, 5.0)}


def test_a_partition_handed_off_with_the_changelog_off_is_covered_by_the_hand_off(
    profile: Profile, tmp_path: Path
) -> None:
    """With the changelog off the next owner starts fresh windows at the hand-off's
    offset and says "closed to None" until it closes one: the windows the previous owner
    closed are covered by the hand-off's horizon, the ones it handed off open once the
    next owner is idle."""
    data, merge = one_partition(), merge_state()
    sent: list[Partial] = []
    ha = hooks_for("a", tmp_path / "a", sent)
    wa = PartitionedWindows(profile, **PARAMS)
    wa.origin_of = lambda p: (0, True)
    cut = 900
    closed = wa.add(batch(data, np.arange(cut)), now=0.0).closed
    assert closed and wa.by_partition[0].open_panes
    source_a = FakeSource()
    source_a.consumer = Consumer(1, committed=cut)  # type: ignore[attr-defined]
    source_a.owned, source_a.origins = {KEY}, {KEY: (0, True)}
    sent_windows(ha, closed, wa, merge)
    merge.receive(progress(ha, source_a, wa, 0.0), 0.0)
    wa.release({0})
    source_a.owned = set()
    asyncio.run(ha.progress(source_a, wa, {KEY: cut}, 0.0))
    assert {merge.receive(m, 0.0) for m in sent} == {"accepted"}
    handoff = next(m for m in sent if m.kind == "handoff")
    assert handoff.at == cut and handoff.horizon == closed[-1].end
    open_bounds = [m.window for m in sent if m.kind == "window"]
    source_b = FakeSource()
    source_b.consumer = Consumer(2)  # type: ignore[attr-defined]
    source_b.owned, source_b.origins = {KEY}, {KEY: (cut, False)}
    hb = hooks_for("b", tmp_path / "b")
    wb = PartitionedWindows(profile, **PARAMS)
    now = 100.0
    first = progress(hb, source_b, wb, now)
    assert first.owned[0] == PartitionProgress(cut, False, None, False, None)
    merge.receive(first, 1.0)
    closed_bounds = sorted({(w.start, w.end) for w in closed})
    assert complete(merge, closed_bounds)
    assert open_bounds and not any(d.bounds in open_bounds for d in merge.due(1.0))
    assert "closed to None" in merge.waiting_for(open_bounds[0])  # type: ignore[arg-type]
    idle = progress(hb, source_b, wb, now + IDLE).owned[0]
    assert idle.idle and idle.horizon is None
    merge.receive(progress(hb, source_b, wb, now + IDLE), 2.0)
    assert complete(merge, closed_bounds + open_bounds)  # type: ignore[operator]


def test_a_partition_left_by_a_failed_revocation_comes_back_with_its_horizon(
    profile: Profile, tmp_path: Path
) -> None:
    """The revocation's checkpoint failed, so the windows stayed in memory; the partition
    comes back at the committed offset: the committed state wins (its horizon, not "closed
    to None"), and the windows closed after it, sent already, are not held."""
    data, log, merge = one_partition(), MemoryLog(), merge_state()
    a, ha = member(profile, log, tmp_path / "a", 1)
    asyncio.run(a.on_assign({KEY: None}))
    a.source.origins = {KEY: (0, True)}
    wa: PartitionedWindows = a.windows
    closed = wa.add(batch(data, np.arange(900)), now=0.0).closed
    asyncio.run(a.save(checkpoint({KEY: 900})))
    committed_horizon = wa.by_partition[0].closed_until
    closed += wa.add(batch(data, np.arange(900, 1200)), now=0.0).closed
    sent_windows(ha, closed, wa, merge)
    merge.receive(progress(ha, a.source, wa, 0.0), 0.0)
    assert committed_horizon is not None and closed[-1].end > committed_horizon

    async def refused(producer: object, states: list, committed: dict) -> None:
        raise OSError("broker away")

    wa.release({0})
    log.write = refused  # type: ignore[method-assign]
    with pytest.raises(ChangelogError):
        asyncio.run(a.save(checkpoint({KEY: 1200})))
    assert 0 in wa.by_partition  # left in memory
    a.source.consumer = Consumer(2)
    assert asyncio.run(a.on_assign({KEY: 900})) == {KEY: 900}
    assert wa.by_partition[0].closed_until == committed_horizon
    sent = progress(ha, a.source, wa, 1.0)
    assert sent.owned[0].horizon == committed_horizon
    merge.receive(sent, 1.0)
    assert complete(merge, sorted({(w.start, w.end) for w in closed}))


def test_a_restored_state_without_rows_reports_its_origin_and_goes_idle(
    profile: Profile, tmp_path: Path
) -> None:
    """A partition read with no row reaching the windows (its records set aside) has a
    state with no windows at all (``adopt(p, None, ...)``): its next owner reports the
    line's origin, closed to None, idle after ``idle_timeout``, which covers the windows
    of the other partitions."""
    log = MemoryLog()
    a, _ = member(profile, log, tmp_path / "a", 1)
    asyncio.run(a.on_assign({KEY: None}))
    a.source.origins = {KEY: (0, True)}
    asyncio.run(a.save(checkpoint({KEY: 5})))  # five records read, none a row
    assert log.writes == [("t", 0, 5)]
    b, hb = member(profile, log, tmp_path / "b", 2)
    assert asyncio.run(b.on_assign({KEY: 5})) == {KEY: 5}
    assert b.windows.by_partition == {} and b.windows.known_origins == {0: (0, True)}
    now = 100.0
    first = progress(hb, b.source, b.windows, now)
    assert first.owned[0] == PartitionProgress(0, True, None, False, None)
    data = traffic(900)
    data["partition"] = np.ones(900, dtype=np.int64)
    other = PartitionedWindows(profile, **PARAMS)
    other.origin_of = lambda p: (0, True)
    closed = other.add(batch(data, np.arange(900)), now=0.0).closed + other.flush()
    merge = MergeState("m", "ref", 2, deadline=60.0, allowed_lateness=1.0)
    pub = publisher("c")
    msgs = pub.window_partials(closed, 1, dict(other.origins))
    msgs.append(pub.progress({1: PartitionProgress(0, True, closed[-1].end, True, 0.0)}, 2))
    for m in [*msgs, first]:
        merge.receive(m, 0.0)
    assert merge.due(1.0) == []
    assert "0: b closed to None" in merge.waiting_for(next(iter(merge.windows)))
    idle = progress(hb, b.source, b.windows, now + IDLE)
    assert idle.owned[0].idle
    merge.receive(idle, 1.0)
    due = merge.due(1.0)
    assert len(due) == len(closed) and all(d.complete for d in due)
