"""A zombie's window pieces at the aggregator: an agent evicted from the group (frozen
past its session) whose partition's state another agent restored wakes up and closes
its open window on the rows it had read (idle, on waking), with the same line of state
(origin) as the new owner's piece. Whichever arrives last, the window keeps the piece
that read the whole window: the merged windows equal one agent's reading alone."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from detectors.profile import Profile
from monitor.runtime.partials import Partial
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


def _revision(piece: Partial, state: bytes, **who: Any) -> Partial:
    """A revision partial of ``piece``'s window (rows as its sender sent them), from ``who``."""
    return replace(piece, kind="revision", offsets=None, sketch=b"", performance=state, **who)


def _pieces(profile: Profile) -> tuple[Partial, Partial]:
    """Of partition 2's last window, the owner's piece (the whole window) and the zombie's
    (closed on waking with part of its rows): what each would revise."""
    data = traffic(3000)
    mine = int(np.sum(data["partition"] == 2))
    owner, _ = run_agent(profile, data, {2}, "b", generation=2)
    zombie, _ = run_agent(profile, data, {2}, "z", rows=slice(0, int(0.6 * mine)))
    last = [p for p in zombie if p.is_window][-1]
    mine_last = next(p for p in owner if p.is_window and p.window == last.window)
    assert mine_last.rows > last.rows
    return replace(mine_last, performance=b"owner"), replace(last, performance=b"zombie")


@pytest.mark.parametrize("zombie_piece_first", [True, False])
def test_a_zombies_revision_does_not_replace_the_owners_performance_state(
    profile: Profile, zombie_piece_first: bool
) -> None:
    owner, zombie = _pieces(profile)
    assert owner.window is not None
    merge = state()
    feed(merge, [zombie, owner] if zombie_piece_first else [owner])
    if not zombie_piece_first:
        assert merge.receive(zombie, 0.0) == "stale"
    key = ("v1", 2, 0)
    # the zombie revises what it had read: refused, before and after the owner's revision
    assert merge.receive(_revision(zombie, b"zombie late"), 0.0) == "stale"
    assert merge.windows[owner.window][key].performance == b"owner"
    assert merge.receive(_revision(owner, b"owner late"), 0.0) == "accepted"
    assert merge.receive(_revision(zombie, b"zombie later"), 0.0) == "stale"
    assert merge.windows[owner.window][key].performance == b"owner late"
    # the owner restarted (a later epoch) revises again; its earlier epoch is stale
    assert merge.receive(_revision(owner, b"restarted", epoch=2), 0.0) == "accepted"
    assert merge.receive(_revision(owner, b"before restart"), 0.0) == "stale"
    assert merge.windows[owner.window][key].performance == b"restarted"


def test_a_revision_answers_to_the_agent_that_set_the_state_last(profile: Profile) -> None:
    """Agent ``a`` sent the window (generation 1) and was evicted while frozen; ``b``
    restored the partition's state (generation 2) and revises ``a``'s piece. ``a`` wakes
    and revises its own piece: refused, the state is ``b``'s now. Without a group
    (generation -1) another agent's revision over the piece's rows applies."""
    owner, _ = _pieces(profile)
    assert owner.window is not None
    key = ("v1", 2, 0)
    merge = state()
    a = replace(owner, agent_id="a", generation=1)
    assert merge.receive(a, 0.0) == "accepted"
    assert merge.receive(_revision(a, b"a late"), 0.0) == "accepted"  # its own, not moved
    assert merge.receive(_revision(a, b"b late", agent_id="b", generation=2), 0.0) == "accepted"
    assert merge.receive(_revision(a, b"a zombie"), 0.0) == "stale"
    assert merge.windows[owner.window][key].performance == b"b late"
    unknown = state()
    loose = replace(owner, agent_id="a", generation=-1)
    assert unknown.receive(loose, 0.0) == "accepted"
    assert unknown.receive(_revision(loose, b"c", agent_id="c"), 0.0) == "accepted"
    fewer = _revision(loose, b"d", agent_id="d", rows=loose.rows - 1)
    assert unknown.receive(fewer, 0.0) == "stale"
    # the revised piece is checkpointed with who set its state
    again = state()
    again.restore(merge.snapshot(), 0.0)
    assert again.receive(_revision(a, b"a zombie"), 0.0) == "stale"
