"""Windows kept per source partition: what an agent that publishes partials keeps.

When agents share a model's traffic, a partition moves between agents in a rebalance,
and its windows must move with it — otherwise the next owner, whose own partitions are
further along in event time, would count the partition's rows late. So an agent with
``aggregation.role: agent`` keeps one ``WindowManager`` per partition it reads, each
closing its windows on its own partition's event-time progress, and every closed window
is a partial of one partition (docs/agent.md, "Scaling out"). When a partition leaves
the agent, its open windows are *handed off*: published as they are, with the offset
they end at, and dropped; the next owner starts that partition's windows from that
offset, and the aggregator merges both pieces exactly.

Each partition's windows remember their *origin*: the offset this line of state started
at and whether that was the partition's beginning (no committed offset), which is what
the aggregator follows back through hand-offs to know a partition's window is whole.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors.profile import Profile
from monitor.ingest.batch import DecodedBatch
from monitor.runtime.panes import AddResult, ClosedWindow, _add_counts
from monitor.runtime.watermarks import PartitionClock
from monitor.runtime.window_snapshot import SnapshotError
from monitor.runtime.windows import WindowManager, WindowsSettings, window_params

_MAGIC = b"DLWP"
_HEAD = struct.Struct("<4sI")
_LEN = struct.Struct("<I")

Origin = tuple[int, bool]  # (first offset of this line of state, the partition's start?)


class PartitionedWindows(WindowManager):
    """A ``WindowManager`` per partition behind the ``WindowManager`` interface."""

    def __init__(self, profile: Profile, **params: Any) -> None:
        super().__init__(profile, **params)
        self._params_kw = dict(params)
        self.by_partition: dict[int, WindowManager] = {}
        self.origins: dict[int, Origin] = {}
        self.first_time: dict[int, float] = {}  # event time of each state's first row
        # Where a partition new to this agent starts (the source knows; set by the agent).
        self.origin_of: Callable[[int], Origin | None] = lambda p: None
        # Origins of partitions restored from the changelog with no open window yet: they
        # win over ``origin_of`` when the partition's first row comes.
        self.known_origins: dict[int, Origin] = {}
        self._owned: set[int] | None = None
        self._released: set[int] = set()

    @classmethod
    def from_config(  # type: ignore[override]
        cls, profile: Profile, windows_config: WindowsSettings, *, seed: int | None = None
    ) -> PartitionedWindows:
        return cls(profile, seed=seed, **window_params(windows_config))

    def _manager(self, p: int, origin: Origin) -> WindowManager:
        m = self.by_partition.get(p)
        if m is None:
            m = WindowManager(self.profile, **self._params_kw)
            self.by_partition[p] = m
            self.origins[p] = origin
        return m

    # -- rows ------------------------------------------------------------------------------

    def add(self, batch: DecodedBatch, now: float) -> AddResult:
        """Each partition's rows to its own windows (a partition new to this agent starts
        where ``origin_of`` says, else at its first row's offset)."""
        result = AddResult()
        n = batch.rows
        if n == 0:
            result.closed = self.tick(now)
            return result
        parts = np.asarray(batch.partition, dtype=np.int64)
        pane = np.full(n, -1, dtype=np.int64)
        segment = np.empty(n, dtype=object)
        for p in np.unique(parts).tolist():
            mine = np.flatnonzero(parts == p)
            if p not in self.by_partition:
                known = self.known_origins.pop(p, None) or self.origin_of(p)
                first = int(np.min(batch.offset[mine]))
                self._manager(p, known if known is not None else (first, False))
                self.first_time[p] = float(np.nanmin(batch.event_time[mine]))
            r = self.by_partition[p].add(batch.take(mine), now)
            for w in r.closed:
                w.partition = p
            result.closed += r.closed
            _add_counts(result.late, r.late)
            _add_counts(result.duplicates, r.duplicates)
            result.accepted += r.accepted
            if r.pane is not None:
                pane[mine] = r.pane
            if r.segment is not None:
                segment[mine] = r.segment
        result.closed += self.tick(now)
        result.closed.sort(key=lambda w: (w.end, w.model_version, w.partition or 0))
        result.pane, result.segment, result.partition = pane, segment, parts
        self.accepted_total += result.accepted
        _add_counts(self.late_total, result.late)
        _add_counts(self.duplicates_total, result.duplicates)
        return result

    def tick(self, now: float) -> list[ClosedWindow]:
        out: list[ClosedWindow] = []
        for p, m in self.by_partition.items():
            for w in m.tick(now):
                w.partition = p
                out.append(w)
        return out

    def shift(self, gap: float) -> None:
        for m in self.by_partition.values():
            m.shift(gap)

    def flush(self) -> list[ClosedWindow]:
        out: list[ClosedWindow] = []
        for p, m in self.by_partition.items():
            for w in m.flush():
                w.partition = p
                out.append(w)
        return out

    # -- ownership -------------------------------------------------------------------------

    def assign(self, partitions: set[int] | None, now: float) -> None:
        self._owned = None if partitions is None else set(partitions)

    def release(self, partitions: set[int]) -> None:
        """Partitions revoked: their windows are to be handed off before the next commit."""
        self._released |= set(partitions) & set(self.by_partition)

    def to_hand_off(self, joined: bool) -> set[int]:
        """Partitions whose windows this agent holds but no longer owns (released, or —
        once it has joined its group — not in its assignment, e.g. after a restart)."""
        out = set(self._released)
        if joined and self._owned is not None:
            out |= set(self.by_partition) - self._owned
        return out & set(self.by_partition)

    def hand_off(self, p: int) -> tuple[list[ClosedWindow], Origin, float | None]:
        """Close and drop partition ``p``'s windows: its open windows, its origin, and
        how far its windows were closed before."""
        m = self.by_partition.pop(p)
        horizon = m.closed_until
        origin = self.origins.pop(p)
        self.first_time.pop(p, None)
        self._released.discard(p)
        closed = m.flush()
        for w in closed:
            w.partition = p
        return closed, origin, horizon

    def take(self, p: int) -> tuple[WindowManager | None, Origin | None, float | None]:
        """Remove partition ``p``'s windows as they are (no flush): its state has been
        written to the changelog, and the partition's next owner restores it there."""
        self._released.discard(p)
        origin = self.origins.pop(p, None) or self.known_origins.pop(p, None)
        return self.by_partition.pop(p, None), origin, self.first_time.pop(p, None)

    def adopt(
        self, p: int, manager: WindowManager | None, origin: Origin, first: float | None
    ) -> None:
        """Take partition ``p``'s windows restored from its state (``manager`` None: it
        had no open window, only where its line of state began)."""
        self._released.discard(p)
        if manager is None:
            self.known_origins[p] = origin
            return
        self.by_partition[p], self.origins[p] = manager, origin
        if first is not None:
            self.first_time[p] = first

    def horizon(self, p: int) -> float | None:
        m = self.by_partition.get(p)
        return None if m is None else m.closed_until

    def holds_rows(self, p: int) -> bool:
        m = self.by_partition.get(p)
        return m is not None and m.open_panes > 0

    # -- what the agent's metrics and checks read ---------------------------------------------

    @property
    def watermark(self) -> float | None:
        marks = [m.watermark for m in self.by_partition.values() if m.watermark is not None]
        return min(marks) if marks else None

    @property
    def open_panes(self) -> int:
        return sum(m.open_panes for m in self.by_partition.values())

    @property
    def dedupe_size(self) -> int:
        return sum(m.dedupe_size for m in self.by_partition.values())

    @property
    def dedupe_evicted(self) -> int:
        return sum(m.dedupe_evicted for m in self.by_partition.values())

    @property
    def closed_until(self) -> float | None:
        marks = [m.closed_until for m in self.by_partition.values()]
        known = [x for x in marks if x is not None]
        return min(known) if known and len(known) == len(marks) else None

    @property
    def partitions(self) -> PartitionClock:
        clock = PartitionClock(self.idle_timeout)
        for m in self.by_partition.values():
            clock._parts.update(m.partitions._parts)
        return clock

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(self, only: set[int] | None = None) -> bytes:
        """The window state (of the partitions in ``only``: one partition's state in the
        changelog, docs/agent.md "State")."""
        parts = sorted(self.by_partition if only is None else only & set(self.by_partition))
        blobs = [(p, self.by_partition[p].snapshot()) for p in parts]
        head = json.dumps(
            {
                "partitions": [
                    [p, *self.origins[p], self.first_time.get(p), len(b)] for p, b in blobs
                ],
                # the agent's own totals and hand-offs: not a partition's state
                "released": sorted(self._released) if only is None else [],
                "accepted_total": self.accepted_total if only is None else 0,
                "late_total": self.late_total if only is None else {},
                "duplicates_total": self.duplicates_total if only is None else {},
            }
        ).encode()
        buf = io.BytesIO()
        buf.write(_HEAD.pack(_MAGIC, len(head)) + head)
        for _, b in blobs:
            buf.write(b)
        return buf.getvalue()

    @classmethod
    def restore(  # type: ignore[override]
        cls,
        profile: Profile,
        data: bytes,
        *,
        config: WindowsSettings | None = None,
        now: float | None = None,
        **params: Any,
    ) -> PartitionedWindows:
        if config is not None:
            params = {**window_params(config), **params}
        if len(data) < _HEAD.size or data[:4] != _MAGIC:
            raise SnapshotError("not the window state of an agent that publishes partials")
        _, n = _HEAD.unpack_from(data)
        try:
            head = json.loads(data[_HEAD.size : _HEAD.size + n])
            out = cls(profile, **params)
            pos = _HEAD.size + n
            for p, start, fresh, first, length in head["partitions"]:
                blob = data[pos : pos + length]
                pos += length
                out.by_partition[int(p)] = WindowManager.restore(profile, blob, now=now, **params)
                out.origins[int(p)] = (int(start), bool(fresh))
                if first is not None:
                    out.first_time[int(p)] = float(first)
            out._released = {int(p) for p in head["released"]}
            out.accepted_total = int(head["accepted_total"])
            out.late_total = {str(k): int(v) for k, v in head["late_total"].items()}
            out.duplicates_total = {str(k): int(v) for k, v in head["duplicates_total"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt partitioned window state: {exc}") from exc
        return out
