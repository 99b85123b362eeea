"""Time the agent did not run is not its partitions' silence (``windows.idle_timeout``).

The loop turn below is the agent's (monitor/runtime/agent.py ``_consume``): observe the
gap since the previous turn, shift the idle clocks by it, add the poll's rows, tick. A
process frozen for twice ``idle_timeout`` that then reads its backlog loses nothing to
lateness and closes whole windows; without the shift the same run closes the open window
early and counts rows late. A partition really quiet while the loop keeps turning is
still idle after ``idle_timeout``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from detectors.profile import Profile
from monitor.runtime.loop_gap import LoopGap
from monitor.runtime.partitioned import PartitionedWindows
from monitor.runtime.windows import ClosedWindow, WindowManager
from tests.unit.test_partition_horizon import Consumer, hooks_for, progress
from tests.unit.test_watermarks import BASE, batch, manager, profile, stream

__all__ = ["profile"]  # the fixture, shared with test_watermarks

IDLE = 30.0


def turn(
    m: WindowManager,
    gaps: LoopGap | None,
    data: dict[str, np.ndarray],
    rows: np.ndarray,
    now: float,
) -> list[ClosedWindow]:
    """One turn of the agent's loop at processing time ``now`` (None: no gap detection)."""
    if gaps is not None and (gap := gaps.observe(now)):
        m.shift(gap)
    return m.add(batch(data, rows), now).closed + m.tick(now)


def frozen_run(
    m: WindowManager, gaps: LoopGap | None, data: dict[str, np.ndarray]
) -> list[ClosedWindow]:
    """Live rows of partitions 0 and 1 up to half the stream, one poll a second; then the
    process is frozen for 2 × idle_timeout; then the backlog, partition by partition."""
    m.assign({0, 1}, now=0.0)
    mine = np.flatnonzero(data["partition"] < 2)
    live = mine[np.argsort(data["t"][mine], kind="stable")]
    half = live[data["t"][live] < BASE + 50.0]
    closed: list[ClosedWindow] = []
    now = 0.0
    for chunk in np.array_split(half, 5):
        now += 1.0
        closed += turn(m, gaps, data, chunk, now)
    now += 2 * IDLE  # SIGSTOP, a paused node, a sleeping laptop
    backlog = np.setdiff1d(mine, half)  # partition 0's rows, then partition 1's
    for chunk in np.array_split(backlog, 8):
        closed += turn(m, gaps, data, chunk, now)
        now += 0.2
    return closed + m.flush()


def expected_rows(data: dict[str, np.ndarray]) -> dict[float, int]:
    t = data["t"][data["partition"] < 2]
    starts = BASE + 10.0 * np.floor((t - BASE) / 10.0)
    values, counts = np.unique(starts, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def rows_by_window(closed: list[ClosedWindow]) -> dict[float, int]:
    out: dict[float, int] = {}
    for w in closed:
        out[w.start] = out.get(w.start, 0) + w.rows
    return out


def test_a_frozen_agent_reading_its_backlog_loses_nothing(
    profile: Profile, caplog: pytest.LogCaptureFixture
) -> None:
    data = stream(seed=11)
    m = manager(profile, idle_timeout=IDLE)
    with caplog.at_level(logging.WARNING, logger="monitor.runtime.loop_gap"):
        closed = frozen_run(m, LoopGap(poll_timeout=0.2), data)
    assert sum(m.late_total.values()) == 0
    assert [w.start for w in closed] == sorted({w.start for w in closed})  # each window once
    assert rows_by_window(closed) == expected_rows(data)  # every window whole
    assert "did not run for 60.0 s" in caplog.text


def test_without_discounting_the_pause_the_backlog_is_late(profile: Profile) -> None:
    """The same run as the agent ran before: the pause counted as silence."""
    data = stream(seed=11)
    m = manager(profile, idle_timeout=IDLE)
    closed = frozen_run(m, None, data)
    assert sum(m.late_total.values()) > 0
    assert rows_by_window(closed) != expected_rows(data)


def test_a_partition_quiet_while_the_loop_turns_is_still_idle(profile: Profile) -> None:
    data = stream(seed=12)
    m, gaps = manager(profile, idle_timeout=IDLE), LoopGap(poll_timeout=0.2)
    m.assign({0, 1, 2}, now=0.0)
    mine = np.flatnonzero(data["partition"] < 2)
    live = mine[np.argsort(data["t"][mine], kind="stable")]
    chunks = np.array_split(live, 40)
    closed: list[ClosedWindow] = []
    for i in range(29):  # one poll a second, partition 2 silent
        closed += turn(m, gaps, data, chunks[i], float(i + 1))
    assert closed == [] and m.partitions.idle(29.0) == set()  # 2 holds the windows
    closed += turn(m, gaps, data, chunks[29], 30.0)  # 2 silent for idle_timeout
    assert m.partitions.idle(30.0) == {2}
    assert [w.start for w in closed][:1] == [BASE]


def test_a_quiet_model_still_closes_its_windows_while_the_loop_turns(profile: Profile) -> None:
    data = stream(seed=13)
    m, gaps = manager(profile, idle_timeout=IDLE), LoopGap(poll_timeout=0.2)
    zero = np.flatnonzero(data["partition"] == 0)[:500]
    assert turn(m, gaps, data, zero, 0.0) == []
    empty = zero[:0]
    for now in np.arange(0.5, IDLE, 0.5):  # no record, the loop turning
        assert turn(m, gaps, data, empty, float(now)) == []
    closed = turn(m, gaps, data, empty, IDLE)
    assert sum(w.rows for w in closed) == 500


def test_partitioned_windows_shift_every_partitions_clock(profile: Profile) -> None:
    data = stream(seed=14)
    w = PartitionedWindows(profile, **{**manager(profile)._params(), "idle_timeout": IDLE})
    first = np.flatnonzero(data["t"] < BASE + 5.0)
    w.add(batch(data, first), now=0.0)
    assert w.tick(IDLE + 1.0) != []  # without a shift: idle
    w2 = PartitionedWindows(profile, **{**manager(profile)._params(), "idle_timeout": IDLE})
    w2.add(batch(data, first), now=0.0)
    w2.shift(IDLE)
    assert w2.tick(IDLE + 1.0) == [] and w2.partitions.idle(IDLE + 1.0) == set()
    assert w2.tick(2 * IDLE) != []


class OwnsPartitionZero:
    consumer = Consumer(1)

    def assigned(self) -> set[tuple[str, int]]:
        return {("t", 0)}


def test_a_partition_without_windows_is_not_idle_for_the_pause(
    profile: Profile, tmp_path: Path
) -> None:
    """A partition owned with no row yet (its origin known) is reported idle to the
    aggregator after idle_timeout of observed silence, not of the agent's pause."""
    hooks, source = hooks_for("a", tmp_path), OwnsPartitionZero()
    w = PartitionedWindows(profile, **{**manager(profile)._params(), "idle_timeout": IDLE})
    w.known_origins = {0: (0, True)}
    assert not progress(hooks, source, w, 0.0).owned[0].idle
    hooks.shift(2 * IDLE)  # frozen for 2 × idle_timeout
    assert not progress(hooks, source, w, 2 * IDLE).owned[0].idle
    assert progress(hooks, source, w, 3 * IDLE).owned[0].idle


def test_only_a_gap_far_beyond_a_poll_counts() -> None:
    gaps = LoopGap(poll_timeout=0.2)  # threshold: max(0.4 s, 5 s)
    assert gaps.threshold == 5.0
    assert gaps.observe(100.0) == 0.0  # the first turn
    assert gaps.observe(104.9) == 0.0  # a slow turn, not a freeze
    assert gaps.observe(120.0) == pytest.approx(15.1)
    assert gaps.observe(110.0) == 0.0  # the clock stepped back
    assert LoopGap(poll_timeout=10.0).threshold == 20.0
