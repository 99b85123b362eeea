"""An agent's window state kept per source partition in the changelog, and restored by
whichever member of the group is assigned the partition, before it reads it.

Used by agents that keep windows per partition (``aggregation.role: agent`` or ``both``,
``monitor/runtime/partitioned.py``) when ``state.changelog`` is on; a lone agent (role
``none``), whose windows mix partitions, keeps one state per agent
(``monitor/runtime/changelog.py``). docs/agent.md, "State":

* at every checkpoint, after the partials of the windows closed so far are acknowledged,
  each owned partition's windows (their origin, open panes and request-id dedupe memory)
  and the offset they end at are written under that partition's keys
  (``monitor/runtime/partition_changelog.py``), unchanged ones skipped; only once every
  write is acknowledged are the offsets committed (docs/architecture.md, decision 7);
* when a partition is revoked, its state is written and committed like that, then set
  aside in memory; it does not go out as a hand-off. If the partition comes back at the
  offset it was set aside at (an eager rebalance gives most partitions back), the windows
  are taken back as they are; else the member assigned it — this agent restarted with no
  disk, another agent, a new pod — restores the state ending at the group's committed
  offset from the changelog and resumes there, continuing the same line of state (the
  same origin), so the aggregator sees one set of window pieces per partition;
* at start-up the state directory's checkpoint, when there is one, is set aside the same
  way: it is used for a partition whose committed offset it ends at (the local cache).

With a labelled profile each partition's state also holds its performance state (the
tracker's ``partition_state``: panes, windows that may be revised, predictions waiting
for a label), so a window's partial carries the whole partition's performance whoever
closes it; the tracker keeps the state of partitions owned or set aside here, and drops
it when the partition's state comes from elsewhere (docs/agent.md, "Scaling out").

A partition with a committed offset and no state ending there (the changelog was off, or
its records are gone) starts at the committed offset with fresh windows: the loss is
logged and counted (``driftline_state_lost_partitions_total``), and the aggregator
reports the windows it hit as partial.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from monitor.config.model import MonitorConfig
from monitor.config.record import pairs_topic_for
from monitor.runtime.changelog import (
    REQUEST_TIMEOUT,
    Changelog,
    ChangelogError,
    ensure_compacted,
)
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, CheckpointStore, encode
from monitor.runtime.partition_changelog import PartitionLog
from monitor.runtime.partitioned import Origin, PartitionedWindows
from monitor.runtime.restore_retry import RestoreRetry
from monitor.runtime.window_snapshot import SnapshotError
from monitor.runtime.windows import WindowManager

log = logging.getLogger(__name__)

Key = tuple[str, int]


@dataclass
class Parked:
    """A partition's windows set aside, and the offset they end at."""

    offset: int
    manager: WindowManager | None
    origin: Origin
    first: float | None


class PartitionChangelog(Changelog):
    """The agent's ``changelog`` when its windows are kept per partition: ``save`` writes
    each partition's state; ``on_assign`` (called by the source before it reads newly
    assigned partitions) restores them."""

    per_partition = True

    def __init__(
        self, config: MonitorConfig, agent_id: str, epoch: int, reference_hash: str
    ) -> None:
        kafka = config.source.kafka
        assert kafka is not None
        super().__init__(kafka, config.state, config.model)
        self.key = f"{kafka.group_id}/<topic>/<partition>"
        self.log = PartitionLog(
            kafka, self.topic, config.state.changelog_chunk_bytes, agent_id, epoch
        )
        self.state_dir = config.state.dir
        self.reference_hash = reference_hash
        # An assignment's reads the brokers do not answer are tried again, briefly
        self.retry = RestoreRetry.for_session(kafka.session_timeout_ms)
        pairs = config.record.kserve_pairs_topic or pairs_topic_for(config.model)
        self.row_topics = {pairs} if config.record.kserve_repartition else set(kafka.topics)
        self.windows: PartitionedWindows | None = None
        self.source: Any = None
        self.exporter: Any = None
        # The agent's PerformanceTracker (monitor/labels/tracker.py), or None.
        self.performance: Any = None
        self._written: dict[Key, tuple[int, bytes, Origin]] = {}
        self._parked: dict[Key, Parked] = {}
        self._owned: set[Key] = set()  # assigned row partitions, until revoked
        self._resumed: dict[Key, int] = {}  # where each restored partition resumed

    @classmethod
    def for_agent(
        cls, config: MonitorConfig, agent_id: str, epoch: int, reference_hash: str
    ) -> PartitionChangelog | None:
        """None when the changelog is off or the source is not Kafka."""
        if config.source.kafka is None or not config.state.changelog:
            return None
        return cls(config, agent_id, epoch, reference_hash)

    def attach(self, windows: WindowManager) -> None:
        """The agent's windows, which states are written from and restored into."""
        assert isinstance(windows, PartitionedWindows)
        self.windows = windows

    def bind(self, source: Any) -> None:
        """Restore on ``source``'s assignments, before it reads the partitions."""
        self.source = source
        source.on_assign = self.on_assign

    # -- start -------------------------------------------------------------------------------

    async def ensure_topic(self) -> None:
        """Create the topic, compacted, with a partition per source partition (the
        largest count of the row topics), when it does not exist."""
        await ensure_partitioned(self, self.log, self.row_topics)

    async def load(self, timeout: float = 60.0) -> Checkpoint | None:
        """Nothing to restore before the group assigns partitions: the topic is made
        ready, and the state directory's checkpoint set aside as a cache."""
        await self.ensure_topic()
        try:
            local = CheckpointStore(self.state_dir).load(reference_hash=self.reference_hash)
        except CheckpointError as exc:
            log.warning("state directory's checkpoint not used: %s", exc)
            local = None
        if local is not None:
            self._park_checkpoint(local)
            saved = local.extra.get("performance")
            if self.performance is not None and saved is not None:
                try:  # every partition's; those restored from elsewhere are replaced
                    self.performance.restore(saved)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("state directory's performance state not used: %s", exc)
        return None

    def _park_checkpoint(self, checkpoint: Checkpoint) -> None:
        assert self.windows is not None
        params = self.windows._params_kw
        try:
            windows = PartitionedWindows.restore(self.windows.profile, checkpoint.windows, **params)
        except SnapshotError as exc:
            log.warning("state directory's window state not used (%s)", exc)
            return
        for p, manager in windows.by_partition.items():
            for key, offset in checkpoint.offsets.items():
                if key[1] == p and key[0] in self.row_topics:
                    origin = windows.origins[p]
                    self._parked[key] = Parked(offset, manager, origin, windows.first_time.get(p))

    # -- saving ------------------------------------------------------------------------------

    async def save(self, checkpoint: Checkpoint) -> None:
        """Each owned (or just revoked) partition's state at ``checkpoint.offsets``;
        ``ChangelogError`` unless all are acknowledged. Revoked partitions are then set
        aside.

        Owned means assigned here and restored or started since (``on_assign``), not the
        consumer's assignment, which still names revoked partitions while a rebalance is
        under way: their state is no longer this agent's to write.
        """
        windows, source = self.windows, self.source
        if windows is None or source is None:
            return
        released = {k for k in self._owned if k[1] in windows._released}
        states: list[tuple[str, int, int, bytes]] = []
        changed: dict[Key, tuple[int, bytes, Origin]] = {}
        for key in sorted(self._owned):
            p = key[1]
            offset = checkpoint.offsets.get(key, self._resumed.get(key))
            origin = (
                windows.origins.get(p)
                or windows.known_origins.get(p)
                or _source_origin(source, key)
            )
            if offset is None or origin is None:
                continue  # nothing read yet: nothing to keep
            new = p not in windows.by_partition and p not in windows.known_origins
            if new and offset == origin[0]:
                continue  # nothing read since the partition's start here
            blob = windows.snapshot(only={p})
            extra: dict[str, Any] = {"origin": [origin[0], origin[1]]}
            mark = blob
            if self.performance is not None:
                extra["performance"] = self.performance.partition_state(p)
                mark = blob + orjson.dumps(extra["performance"])
            if self._written.get(key) == (offset, mark, origin):
                continue
            state = Checkpoint(
                offsets={key: offset},
                windows=blob,
                reference_hash=self.reference_hash,
                created_at=checkpoint.created_at,
                extra=extra,
            )
            states.append((key[0], p, offset, encode(state)))
            changed[key] = (offset, mark, origin)
        if states:
            producer = await self._start()
            acked = getattr(source, "acked", {})
            try:
                await asyncio.wait_for(self.log.write(producer, states, acked), REQUEST_TIMEOUT)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise ChangelogError(
                    f"{self.where}: partition states not acknowledged ({type(exc).__name__})"
                ) from exc
            self._written.update(changed)
            log.debug("partition states written: %s", sorted(changed.items()))
        for key in sorted(released):
            manager, origin, first = windows.take(key[1])
            offset = checkpoint.offsets.get(key, self._resumed.get(key))
            if origin is not None and offset is not None:
                self._parked[key] = Parked(offset, manager, origin, first)
            self._owned.discard(key)
            self._written.pop(key, None)
            self._resumed.pop(key, None)
        for p in list(windows._released):  # nothing of it was read here: nothing to keep
            windows.take(p)

    # -- restoring ---------------------------------------------------------------------------

    async def on_assign(self, committed: dict[Key, int | None]) -> dict[Key, int]:
        """Restore newly assigned partitions' windows; returns where each restored one
        resumes (the committed offset its state ends at)."""
        windows = self.windows
        assert windows is not None
        out: dict[Key, int] = {}
        lost = []
        self.retry.start()
        for key in [k for k in self._parked if k not in committed]:
            del self._parked[key]  # another member's now: it restores from the changelog
            self._forget_performance(key[1])
        for key, offset in sorted(committed.items(), key=lambda kv: kv[0]):
            if key[0] not in self.row_topics:
                continue
            if key[1] in windows.by_partition or key[1] in windows.known_origins:
                windows.take(key[1])  # left by a revocation whose checkpoint failed: the
                # committed state wins, and the records after it are read again
            self._owned.add(key)
            self._written.pop(key, None)
            parked = self._parked.pop(key, None)
            if offset is None:
                self._forget_performance(key[1])
                continue  # nothing committed: read from the start, windows fresh
            if parked is not None and parked.offset == offset:
                log.info("partition %s-%d: windows taken back at offset %d", *key, offset)
                windows.adopt(key[1], parked.manager, parked.origin, parked.first)
            else:
                self._forget_performance(key[1])  # of another line of state, if any
                restored = await self._restore(key, offset)
                if restored is None:
                    lost.append((key, offset))
                    continue
                windows.adopt(key[1], *restored)
            self._resumed[key] = out[key] = offset
        if lost:
            log.warning(
                "no window state in the changelog for %s: resuming at the committed offsets "
                "with fresh windows (rows before them in windows still open are not in them)",
                ", ".join(f"{t}-{p} at offset {o}" for (t, p), o in lost),
            )
            if self.exporter is not None:
                self.exporter.count_state_lost(len(lost))
        return out

    async def _restore(
        self, key: Key, offset: int
    ) -> tuple[WindowManager | None, Origin, float | None] | None:
        try:
            checkpoint = await self.retry.read(
                f"state of {key[0]}-{key[1]}", partial(self.log.read, key[0], key[1], offset)
            )
        except (ChangelogError, CheckpointError) as exc:  # unanswered past the retries too
            log.warning("state of %s-%d not restored: %s", key[0], key[1], exc)
            return None
        if checkpoint is None:
            return None
        if checkpoint.reference_hash != self.reference_hash:
            log.warning("state of %s-%d was built on another reference; not used", *key)
            return None
        assert self.windows is not None
        try:
            restored = PartitionedWindows.restore(
                self.windows.profile, checkpoint.windows, now=time.time(), **self.windows._params_kw
            )
        except SnapshotError as exc:
            log.warning("state of %s-%d unusable (%s)", key[0], key[1], exc)
            return None
        raw = checkpoint.extra.get("origin")
        origin: Origin = (int(raw[0]), bool(raw[1])) if raw else (offset, False)
        saved = checkpoint.extra.get("performance")
        if self.performance is not None and saved is not None:
            try:
                self.performance.restore_partition(saved)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("performance state of %s-%d not restored: %s", *key, exc)
        p = key[1]
        log.info(
            "partition %s-%d: window state restored from the changelog (%d open panes), "
            "resuming at offset %d",
            key[0],
            p,
            restored.by_partition[p].open_panes if p in restored.by_partition else 0,
            offset,
        )
        return restored.by_partition.get(p), origin, restored.first_time.get(p)

    def _forget_performance(self, partition: int) -> None:
        if self.performance is not None:
            self.performance.partition_state(partition, remove=True)

    async def close(self) -> None:
        await self.log.close()
        await super().close()


def _source_origin(source: Any, key: Key) -> Origin | None:
    origin = getattr(source, "origins", {}).get(key)
    return None if origin is None else (int(origin[0]), bool(origin[1]))


async def ensure_partitioned(changelog: Changelog, log: PartitionLog, topics: set[str]) -> None:
    """Create ``changelog``'s topic, compacted, with as many partitions as the largest of
    ``topics`` when it does not exist; tell ``log`` how many partitions it has."""
    log.partitions = await ensure_compacted(
        changelog.kafka, changelog.topic, changelog.replication, topics
    )
