"""Event-time progress per source partition, and the watermark they make together.

Each partition's progress is the largest event time read from it. The windows' progress
is the smallest progress over the *active* partitions (docs/architecture.md, "Windows"),
as in Flink and Kafka Streams: a window closes only when the slowest active partition has
passed it. One global maximum would let a partition that is ahead — the first one read
while catching up on a backlog — close windows the others still have rows for, which
then arrive late.

A partition is active when it is assigned to this agent (when the agent says which
partitions it owns: :meth:`PartitionClock.assign`) and has had a record within
``idle_timeout`` seconds of processing time. An assigned partition that has sent
nothing yet holds the windows back (its progress is unknown) until it has been idle that
long, so a partition without traffic delays windows by at most ``idle_timeout``. A
partition the agent does not yet know of counts from its first row on: which rows see
which progress does not depend on where the stream is cut into batches.

Partitions are told apart by number: with several topics, partitions of one number
share a progress (the larger event time of the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

NEG_INF = -math.inf


@dataclass
class _Partition:
    progress: float = NEG_INF  # largest event time seen; -inf before the first row
    last_seen: float = NEG_INF  # processing time of the last row (or of the assignment)


class PartitionClock:
    """Per-partition event-time progress and the minimum over the active partitions."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = float(idle_timeout)
        self._parts: dict[int, _Partition] = {}
        self._assigned: set[int] | None = None  # None: every partition seen counts

    # -- ownership --------------------------------------------------------------------------

    def assign(self, partitions: set[int] | None, now: float) -> None:
        """The partitions this agent owns now (None: not known, all count).

        A newly assigned partition's idle clock starts now; a partition no longer owned
        stops holding the windows back at once (its rows so far are in them).
        """
        if partitions is None:
            self._assigned = None
            return
        new = set(partitions)
        if self._assigned == new:
            return
        for p in new - (self._assigned or set()):
            part = self._parts.setdefault(p, _Partition())
            part.last_seen = max(part.last_seen, now)
        self._assigned = new

    @property
    def assigned(self) -> set[int] | None:
        return None if self._assigned is None else set(self._assigned)

    def _active(self, p: int, part: _Partition, now: float) -> bool:
        if self._assigned is not None and p not in self._assigned:
            return False
        return now - part.last_seen < self.idle_timeout

    # -- progress ---------------------------------------------------------------------------

    def advance(self, t: np.ndarray, partition: np.ndarray, now: float) -> np.ndarray:
        """Per row, the windows' event-time progress once that row is read (-inf: none).

        Row ``i`` sees the largest event time of each active partition among the rows up
        to and including ``i`` (and before the batch), and the minimum of those. The
        partitions' state then moves past the batch.
        """
        n = len(t)
        parts = np.asarray(partition, dtype=np.int64)
        in_batch = np.unique(parts).tolist()
        out = np.full(n, math.inf)
        for p in sorted(set(self._parts) | set(in_batch)):
            state = self._parts.get(p)
            # a partition counts before its first row here only if it is active already
            counts_before = state is not None and self._active(p, state, now)
            if p not in in_batch and not counts_before:
                continue
            mine = parts == p
            running = np.maximum.accumulate(np.where(mine, t, NEG_INF))
            if state is not None and counts_before:
                running = np.maximum(running, state.progress)  # -inf: holds the windows
            else:
                running[: int(np.argmax(mine))] = math.inf
            out = np.minimum(out, running)
        for p in in_batch:
            mine = parts == p
            part = self._parts.setdefault(p, _Partition())
            part.progress = max(part.progress, float(t[mine].max()))
            part.last_seen = now
        out[np.isposinf(out)] = NEG_INF
        return out

    def progress(self, now: float) -> float:
        """The windows' progress now: the minimum over active partitions (-inf: none)."""
        values = [part.progress for p, part in self._parts.items() if self._active(p, part, now)]
        return min(values) if values else NEG_INF

    def partitions(self) -> dict[int, float]:
        """Each known partition's progress (largest event time; -inf before its first row)."""
        return {p: part.progress for p, part in sorted(self._parts.items())}

    def shift(self, gap: float) -> None:
        """Move every idle clock forward by ``gap`` seconds the agent did not run
        (loop_gap.py): time nobody watched is not a partition's silence."""
        for part in self._parts.values():
            if math.isfinite(part.last_seen):
                part.last_seen += gap

    def idle(self, now: float) -> set[int]:
        """Known partitions (owned ones, when ownership is known) that are idle now."""
        return {
            p
            for p, part in self._parts.items()
            if (self._assigned is None or p in self._assigned)
            and now - part.last_seen >= self.idle_timeout
        }

    # -- checkpoints ------------------------------------------------------------------------

    def to_json(self) -> list[list[Any]]:
        return [
            [p, _finite(part.progress), _finite(part.last_seen)]
            for p, part in sorted(self._parts.items())
        ]

    def load_json(self, rows: list[list[Any]], now: float | None) -> None:
        """Restore :meth:`to_json`; with ``now`` the idle clocks restart at ``now`` (time the
        agent was down does not make a partition idle)."""
        self._parts = {}
        for p, progress, last_seen in rows:
            seen = NEG_INF if last_seen is None else float(last_seen)
            if now is not None:
                seen = float(now)
            self._parts[int(p)] = _Partition(NEG_INF if progress is None else float(progress), seen)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
