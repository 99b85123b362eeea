"""Where a newly assigned partition's offset comes from (docs/agent.md, "Keying and
rebalances").

The agent keeps, per partition, the next offset its window state holds the records
before; a checkpoint commits them. A restored checkpoint names partitions this agent may
not be assigned now, and one it is assigned later may have been read on by another
member, whose commit is ahead of the checkpoint. Such an offset must not be committed
again: it would move the group's offset back, and the records in between would be read
and counted twice. So at each assignment the source records where every newly assigned
partition resumes (the offset it sought to, or the group's committed offset: the larger of
the committed offset and a trusted checkpoint's), and the agent takes those over its own
before it commits anything.
"""

from __future__ import annotations

from typing import Any

Offsets = dict[tuple[str, int], int]


def take_resumed(offsets: Offsets, source: Any) -> None:
    """Replace the offsets of partitions the source assigned since the last call by where
    each resumes; one whose resume point is unknown (``None``) is forgotten, so nothing
    of it is committed until its next records are read."""
    resumed: dict[tuple[str, int], int | None] | None = getattr(source, "resumed", None)
    if not resumed:
        return
    source.resumed = {}
    for key, offset in resumed.items():
        if offset is None:
            offsets.pop(key, None)
        else:
            offsets[key] = offset
