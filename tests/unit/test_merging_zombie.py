"""A zombie's window pieces at the aggregator: an agent evicted from the group (frozen
past its session) whose partition's state another agent restored wakes up and closes
its open window on the rows it had read (idle, on waking), with the same line of state
(origin) as the new owner's piece. Whichever arrives last, the window keeps the piece
that read the whole window: the merged windows equal one agent's reading alone."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.profile import Profile
from tests.unit.test_aggregation import alone, assert_same, feed, run_agent, state, traffic

pytest_plugins = ["tests.unit.test_aggregation"]  # its ``profile`` fixture


@pytest.mark.parametrize("zombie_last", [True, False])
def test_a_zombies_idle_closed_piece_does_not_replace_the_owners(
    profile: Profile, zombie_last: bool
) -> None:
    data = traffic(3000)
    mine = int(np.sum(data["partition"] == 2))
    others, _ = run_agent(profile, data, {0, 1}, "a", generation=2)
    owner, _ = run_agent(profile, data, {2}, "b", generation=2)
    # the zombie read 60% of partition 2, then closed every open window (flush)
    zombie, _ = run_agent(profile, data, {2}, "z", rows=slice(0, int(0.6 * mine)))
    merge = state()
    feed(merge, others)
    if not zombie_last:
        feed(merge, zombie)
    feed(merge, owner)
    if zombie_last:
        got = [merge.receive(p, 0.0) for p in zombie]
        windows = [o for p, o in zip(zombie, got, strict=True) if p.is_window]
        # the windows it had closed before its freeze hold the owner's rows (taken
        # again); the one it closed on waking, with part of its rows, is refused
        assert windows[-1] == "stale" and "stale" not in windows[:-1], got
    assert_same(profile, merge, alone(profile, data))


def test_another_agents_piece_of_the_whole_window_replaces_a_zombies(profile: Profile) -> None:
    data = traffic(3000)
    mine = int(np.sum(data["partition"] == 2))
    zombie, _ = run_agent(profile, data, {2}, "z", rows=slice(0, int(0.6 * mine)))
    owner, _ = run_agent(profile, data, {2}, "b", generation=2)
    merge = state()
    feed(merge, zombie)
    last = [p for p in zombie if p.is_window][-1]
    assert last.window is not None and last.offsets is not None
    assert merge.windows[last.window][("v1", 2, 0)].agent_id == "z"
    feed(merge, owner)
    held = merge.windows[last.window][("v1", 2, 0)]
    assert held.agent_id == "b" and held.offsets is not None
    assert held.offsets[1] > last.offsets[1]
