"""A revoked partition's offset is committed once, by the revocation's checkpoint, and
never again: if the partition comes back after another member read on and committed
further (this agent a zombie whose revocation commit was refused, or a plain rebalance),
a later checkpoint must not move the group's offset back to where this agent had been."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.test_agent_checkpoint import RecordingSource, make_agent


def test_a_revoked_partitions_offset_is_not_committed_again(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    source = RecordingSource()
    agent.source = source  # type: ignore[assignment]
    agent.offsets = {("t", 0): 42, ("t", 1): 17}

    asyncio.run(agent._on_revoke({("t", 1)}))
    # the revocation commits where this agent's state ends, both partitions included
    assert source.commits == [{("t", 0): 42, ("t", 1): 17}]

    # the partition is assigned again, another member having committed 30: nothing read
    # since, so the next checkpoint has no offset of it to commit (not 17)
    asyncio.run(agent.checkpoint())
    assert source.commits[-1] == {("t", 0): 42}
    restored = agent.store.load()
    assert restored is not None and restored.offsets == {("t", 0): 42}
    agent.executor.shutdown()
