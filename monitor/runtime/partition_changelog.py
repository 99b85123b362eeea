"""One source partition's window state in the changelog topic, found by the offset the
consumer group committed for it.

Agents that keep windows per source partition (``aggregation.role: agent`` or ``both``)
write each partition's state under keys of its own, as Kafka Streams keys a task's state
store by its input partition, so whichever member is assigned the partition next restores
it (docs/agent.md, "State"):

* the state (``checkpoint.encode`` of that partition's windows, origin and offset) is cut
  into chunks sent with key ``<group>/<topic>/<partition>#<writer>#<slot>#<i>``, then a
  manifest with key ``<group>/<topic>/<partition>#<writer>#m<slot>`` naming the source
  offset the state ends at, the changelog offsets of its chunks and their sha256. The
  writer is the agent's id and epoch: another process never overwrites these keys;
* a partition's records go to changelog partition ``partition % partitions`` (the topic is
  created with one partition per source partition), so restoring reads one partition;
* three slots: a write never reuses the slot of the last write nor that of the state the
  group last acknowledged a commit of, so compaction keeps the committed state whole even
  when commits fail for a while.

Restoring needs no index: the group's committed offset for the partition is fenced by
Kafka (a member that lost the partition, or a zombie of an earlier generation, cannot
commit), and the agent commits only after the changelog acknowledged the state ending
there. So the restorer reads the changelog partition backwards from its end, in windows
growing four-fold, until it meets a manifest of that source partition ending at the
committed offset, then reads that manifest's chunks by their offsets. A state some other
writer left ending elsewhere (written, not committed) is never used.

Each writer's keys stay until compaction removes them, so a writer that restored another
writer's state sends tombstones for that writer's keys of the partition once its own
commit has passed the restored state: the topic holds about one writer's three slots per
partition, not one per process that ever owned it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.kafka import MAX_REQUEST_BYTES, client_settings
from monitor.runtime.changelog import REQUEST_TIMEOUT, ChangelogError, ChangelogUnreachable, chunk
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, decode

log = logging.getLogger(__name__)

#: Slots a writer rotates over for one partition (see the module docstring).
SLOTS = 3
#: Records read from the end of a changelog partition first when restoring; each further
#: step back reads four times as many.
FIRST_SCAN = 64
#: Seconds a restore of one partition may take before it counts as failed.
READ_TIMEOUT = 30.0
#: Milliseconds the broker may hold a fetch of the restore's reader for more records.
FETCH_WAIT_MS = 20


def writer_name(agent_id: str, epoch: int) -> str:
    """The writer part of a key: the agent's id and epoch, as characters keys can hold."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '-', agent_id)}.{int(epoch)}"


@dataclass(frozen=True)
class PartitionManifest:
    """Where one partition's state is, what it ends at, and who wrote it."""

    base: str  # <group>/<topic>/<partition>
    topic: str
    partition: int
    offset: int  # the source offset the state ends at (next to read)
    slot: int
    chunk_at: tuple[int, ...]  # changelog offsets of the chunks, in order
    length: int
    sha256: str
    created_at: float
    agent_id: str
    epoch: int

    def to_bytes(self) -> bytes:
        d = asdict(self)
        d["chunk_at"] = list(self.chunk_at)
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PartitionManifest:
        d = json.loads(data)
        return cls(
            str(d["base"]),
            str(d["topic"]),
            int(d["partition"]),
            int(d["offset"]),
            int(d["slot"]),
            tuple(int(x) for x in d["chunk_at"]),
            int(d["length"]),
            str(d["sha256"]),
            float(d["created_at"]),
            str(d["agent_id"]),
            int(d["epoch"]),
        )


class PartitionLog:
    """Writes and reads per-partition states in the changelog topic."""

    def __init__(
        self,
        kafka: KafkaSourceConfig,
        topic: str,
        chunk_bytes: int,
        agent_id: str,
        epoch: int,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.chunk_bytes = chunk_bytes
        self.agent_id, self.epoch = agent_id, int(epoch)
        self.writer = writer_name(agent_id, epoch)
        self.partitions = 1  # of the changelog topic, once known
        # base -> slot -> (source offset, chunks, write number) of this writer's writes
        self._written: dict[str, dict[int, tuple[int, int, int]]] = {}
        self._writes = 0
        self._last_slot: dict[str, int] = {}
        # base -> the manifest of another writer's state restored here: its keys get
        # tombstones once this writer's commit has passed it (nothing restores it again)
        self._retire: dict[str, PartitionManifest] = {}
        self._reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    def base(self, topic: str, partition: int) -> str:
        return f"{self.kafka.group_id}/{topic}/{partition}"

    def where(self, topic: str, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition % max(1, self.partitions))

    # -- writing -----------------------------------------------------------------------------

    def _slot(self, base: str, committed: int | None) -> int:
        """A slot holding neither the last write nor the newest write of the state the
        group last acknowledged a commit at."""
        used = self._written.get(base, {})
        keep = {self._last_slot.get(base)}
        at = [(seq, s) for s, (offset, _, seq) in used.items() if offset == committed]
        if at:
            keep.add(max(at)[1])
        return next(s for s in range(SLOTS) if s not in keep)

    async def write(
        self,
        producer: object,
        states: list[tuple[str, int, int, bytes]],
        committed: dict[tuple[str, int], int],
    ) -> None:
        """Write ``(topic, partition, offset, state)`` entries: all chunks, then the
        manifests, each acknowledged (``acks=all``) before this returns."""
        send = producer.send  # type: ignore[attr-defined]
        deletions = [
            await send(self.topic, value=None, key=key, partition=part)
            for part, key in self._tombstones(committed)
        ]
        plans = []
        for topic, partition, offset, data in states:
            base = self.base(topic, partition)
            slot = self._slot(base, committed.get((topic, partition)))
            tp = self.where(topic, partition)
            pieces = chunk(data, self.chunk_bytes)
            key = f"{base}#{self.writer}#{slot}#"
            futures = [
                await send(self.topic, value=p, key=(key + str(i)).encode(), partition=tp.partition)
                for i, p in enumerate(pieces)
            ]
            _, before, _ = self._written.get(base, {}).get(slot, (0, 0, 0))
            for i in range(len(pieces), before):  # what a larger earlier state left
                await send(
                    self.topic, value=None, key=(key + str(i)).encode(), partition=tp.partition
                )
            plans.append((topic, partition, offset, data, base, slot, tp, futures))
        manifests = []
        for topic, partition, offset, data, base, slot, tp, futures in plans:
            chunk_at = tuple([(await f).offset for f in futures])
            manifest = PartitionManifest(
                base,
                topic,
                partition,
                offset,
                slot,
                chunk_at,
                len(data),
                hashlib.sha256(data).hexdigest(),
                time.time(),
                self.agent_id,
                self.epoch,
            )
            name = f"{base}#{self.writer}#m{slot}".encode()
            value = manifest.to_bytes()
            manifests.append(await send(self.topic, value=value, key=name, partition=tp.partition))
        await asyncio.gather(*manifests, *deletions)
        self._writes += 1
        for _t, _p, offset, _, base, slot, _, futures in plans:
            self._written.setdefault(base, {})[slot] = (offset, len(futures), self._writes)
            self._last_slot[base] = slot

    def _tombstones(self, committed: dict[tuple[str, int], int]) -> list[tuple[int, bytes]]:
        """(changelog partition, key) of the retired writers' records whose partition
        this writer has committed past their state, so compaction removes them."""
        out: list[tuple[int, bytes]] = []
        for base, m in list(self._retire.items()):
            acked = committed.get((m.topic, m.partition))
            if acked is None or acked <= m.offset:
                continue
            del self._retire[base]
            writer = writer_name(m.agent_id, m.epoch)
            log.info("changelog: deleting the records of %s by %s (state passed)", base, writer)
            part = self.where(m.topic, m.partition).partition
            for slot in range(SLOTS):  # chunk counts of the other slots: about the same
                out.append((part, f"{base}#{writer}#m{slot}".encode()))
                keys = [f"{base}#{writer}#{slot}#{i}" for i in range(len(m.chunk_at) + 2)]
                out += [(part, k.encode()) for k in keys]
        return out

    # -- reading -----------------------------------------------------------------------------

    async def read(self, topic: str, partition: int, offset: int) -> Checkpoint | None:
        """The state of ``topic``/``partition`` ending at ``offset`` (the committed offset),
        or None when the changelog holds none. ``ChangelogError`` when it cannot be read,
        ``CheckpointError`` when its chunks are damaged."""
        async with self._lock:
            try:
                return await asyncio.wait_for(self._read(topic, partition, offset), READ_TIMEOUT)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise ChangelogUnreachable(
                    f"changelog {self.topic}: state of {topic}-{partition} not read "
                    f"({type(exc).__name__})"
                ) from exc

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                # a fetch at the end of the log would hold the next seek for 500 ms
                fetch_max_wait_ms=FETCH_WAIT_MS,
                max_partition_fetch_bytes=max(MAX_REQUEST_BYTES, 2 * self.chunk_bytes),
                **client_settings(self.kafka),
            )
            try:
                await asyncio.wait_for(reader.start(), REQUEST_TIMEOUT)
            except BaseException:  # refused, timed out or cancelled: stopped, or its client
                # would outlive it, one more at each retry (monitor/runtime/restore_retry.py)
                try:
                    await asyncio.wait_for(reader.stop(), REQUEST_TIMEOUT)
                except (KafkaError, OSError, TimeoutError):
                    log.debug("changelog reader not started nor stopped cleanly", exc_info=True)
                raise
            self._reader = reader
        return self._reader

    async def _read(self, topic: str, partition: int, offset: int) -> Checkpoint | None:
        reader = await self._consumer()
        tp = self.where(topic, partition)
        reader.assign([tp])
        base = self.base(topic, partition)
        prefix = f"{base}#".encode()
        # The end: a fetch's high watermark (ListOffsets is not exact on every broker).
        await reader.seek_to_end(tp)
        top = await reader.position(tp)
        await self._range(reader, tp, max(0, top - 1), None)
        high = reader.highwater(tp)
        top = max(top, high if high is not None else top)
        seen: set[bytes] = set()
        step, stop = FIRST_SCAN, top
        while True:
            start = max(0, stop - step)
            records = await self._range(reader, tp, start, stop)
            found = []
            for r in reversed(records):  # newest first: a key's newest record counts
                key = r.key or b""
                if not key.startswith(prefix) or key in seen:
                    continue
                seen.add(key)
                if r.value is None or b"#m" not in key[len(prefix) :]:
                    continue
                try:
                    manifest = PartitionManifest.from_bytes(r.value)
                except (ValueError, KeyError, TypeError):
                    continue
                if manifest.base == base and manifest.offset == offset:
                    found.append((r.offset, manifest))
            if found:
                at, manifest = max(found, key=lambda x: x[0])
                log.info(
                    "state of %s-%d at offset %d found at changelog offset %d (written by %s)",
                    topic,
                    partition,
                    offset,
                    at,
                    manifest.agent_id,
                )
                checkpoint = await self._assemble(reader, tp, manifest)
                if writer_name(manifest.agent_id, manifest.epoch) != self.writer:
                    self._retire[base] = manifest
                return checkpoint
            if start == 0:
                return None
            stop, step = start, step * 4

    async def _range(
        self, reader: AIOKafkaConsumer, tp: TopicPartition, start: int, stop: int | None
    ) -> list:
        """Records of ``tp`` from ``start`` up to ``stop`` (None: its high watermark)."""
        reader.seek(tp, start)
        out = []
        while True:
            batches = await reader.getmany(tp, timeout_ms=300)
            for r in batches.get(tp, []):
                if stop is None or r.offset < stop:
                    out.append(r)
            position = await reader.position(tp)
            high = reader.highwater(tp)
            end = stop if stop is not None else high
            if end is not None and position >= end:
                return out

    async def _assemble(
        self, reader: AIOKafkaConsumer, tp: TopicPartition, manifest: PartitionManifest
    ) -> Checkpoint:
        where = f"changelog {self.topic} state of {manifest.base}"
        chunks: dict[int, bytes] = {}
        if manifest.chunk_at:
            wanted = {at: i for i, at in enumerate(manifest.chunk_at)}
            records = await self._range(reader, tp, min(wanted), max(wanted) + 1)
            for r in records:
                if r.offset in wanted and r.value is not None:
                    chunks[wanted[r.offset]] = r.value
        missing = len(manifest.chunk_at) - len(chunks)
        if missing:
            raise CheckpointError(where, f"{missing} of {len(manifest.chunk_at)} chunks missing")
        data = b"".join(chunks[i] for i in range(len(manifest.chunk_at)))
        if len(data) != manifest.length or hashlib.sha256(data).hexdigest() != manifest.sha256:
            raise CheckpointError(where, "chunks do not match the manifest's checksum")
        return decode(data, where)

    async def close(self) -> None:
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader.stop(), REQUEST_TIMEOUT)
            except (KafkaError, TimeoutError):
                log.debug("changelog reader did not close cleanly", exc_info=True)
            self._reader = None


__all__ = ["ChangelogError", "PartitionLog", "PartitionManifest", "writer_name"]
