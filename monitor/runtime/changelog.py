"""Checkpoints kept in a compacted Kafka topic, so an agent with no disk resumes.

The state directory survives a restart on the same node only; a pod rescheduled onto
another node with an ``emptyDir`` comes back with nothing. Kafka Streams keeps its state
stores in compacted *changelog* topics for that reason, and the agent does the same with
its checkpoints (docs/agent.md, "State"):

* the checkpoint file's bytes (``checkpoint.encode``: offsets, window state, checksum)
  are cut into chunks of at most ``state.changelog_chunk_bytes`` (under the topic's
  ``max.message.bytes``), each sent with key ``<key>#<slot>#<i>``;
* once every chunk is acknowledged (``acks=all``), a manifest with key ``<key>`` says
  which slot holds the newest checkpoint, how many chunks and their sha256. Slots
  alternate between 0 and 1, so a crash half-way through a save leaves the previous
  manifest pointing at intact chunks;
* the agent commits its offsets only after the manifest is acknowledged.

Compaction keeps the newest record per key: the manifest, and the chunks of both slots
(chunks a smaller state no longer uses are deleted with tombstones). Restoring reads the
topic from its beginning to its high watermark (``highwater``: ``end_offsets`` is wrong on
some brokers) and rebuilds the newest checkpoint the manifest names.

``<key>`` is the consumer group, plus ``/<state.changelog_name>`` (or
``$DRIFTLINE_CHANGELOG_NAME``) when set: agents
sharing one group each need their own name (a StatefulSet pod name), or they would
overwrite each other's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from monitor.config.source import KafkaSourceConfig
from monitor.config.state import StateConfig
from monitor.ingest.kafka import MAX_REQUEST_BYTES, client_settings
from monitor.ingest.topics import TopicError, TopicUnreachable, ensure_topic
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, decode, encode

log = logging.getLogger(__name__)

#: Topic settings the agent creates the changelog with (docs/kubernetes.md).
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
#: Environment variable naming the agent in the changelog when ``state.changelog_name``
#: is not set: a StatefulSet passes its pod name through the downward API.
NAME_ENV = "DRIFTLINE_CHANGELOG_NAME"
#: Seconds a metadata request, a topic creation or a send may take.
REQUEST_TIMEOUT = 10.0


class ChangelogError(Exception):
    """The changelog cannot be read or written; the message says which topic and why."""


class ChangelogUnreachable(ChangelogError):
    """The brokers did not answer: trying again later may succeed."""


class ChangelogInUse(ChangelogError):
    """Another running agent writes this key: its state is not this agent's to restore,
    nor its key to overwrite."""


@dataclass(frozen=True)
class Manifest:
    """Which slot holds the newest checkpoint, and how to check it is whole."""

    slot: int
    chunks: int
    length: int
    sha256: str
    created_at: float
    writer: str = ""  # the writing process's id: two live writers of one key alternate

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        d = json.loads(data)
        return cls(
            int(d["slot"]),
            int(d["chunks"]),
            int(d["length"]),
            str(d["sha256"]),
            float(d["created_at"]),
            str(d.get("writer", "")),
        )


class ChangelogView:
    """What the records of one key say, read in order: the newest manifest, the chunks
    of both slots, and whether two processes write the key at once.

    A restarted agent is a new writer, so the writers of one key follow each other
    (A, A, B, B, C); a writer that comes back after another (A, B, A) means two live
    agents share the key, whose state is then neither's: it is not restored.
    """

    def __init__(self, key: str) -> None:
        self.key = key.encode()
        self.prefix = self.key + b"#"
        self.manifest: Manifest | None = None
        self.chunks: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
        self._writers: list[str] = []
        self.shared = False
        self.manifests = 0  # manifest records read

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if key == self.key:
            self.manifests += 1
            self.manifest = None if value is None else Manifest.from_bytes(value)
            writer = "" if self.manifest is None else self.manifest.writer
            if writer and (not self._writers or self._writers[-1] != writer):
                self.shared = self.shared or writer in self._writers
                self._writers.append(writer)
        elif key is not None and key.startswith(self.prefix):
            slot, index = (int(x) for x in key[len(self.prefix) :].split(b"#"))
            if value is None:
                self.chunks[slot].pop(index, None)
            else:
                self.chunks[slot][index] = value


def chunk(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of at most ``size`` bytes (one empty piece for no data)."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def assemble(manifest: Manifest, chunks: dict[int, bytes], where: str) -> Checkpoint:
    """The checkpoint a manifest names, from its slot's chunks; ``CheckpointError`` when
    one is missing or the bytes do not match the manifest's checksum."""
    missing = [i for i in range(manifest.chunks) if i not in chunks]
    if missing:
        raise CheckpointError(where, f"{len(missing)} of {manifest.chunks} chunks missing")
    data = b"".join(chunks[i] for i in range(manifest.chunks))
    if len(data) != manifest.length or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise CheckpointError(where, "chunks do not match the manifest's checksum")
    return decode(data, where)


def newest(*checkpoints: Checkpoint | None) -> Checkpoint | None:
    """The most recent of several copies of the state (the local cache and Kafka's)."""
    found = [c for c in checkpoints if c is not None]
    return max(found, key=lambda c: c.created_at) if found else None


class Changelog:
    """The agent's checkpoints in a compacted topic: ``save`` and ``load``."""

    def __init__(self, kafka: KafkaSourceConfig, state: StateConfig, model: str) -> None:
        self.kafka = kafka
        self.topic = state.topic(model)
        name = state.changelog_name or os.environ.get(NAME_ENV, "").strip()
        self.key = kafka.group_id + (f"/{name}" if name else "")
        self.chunk_bytes = state.changelog_chunk_bytes
        self.replication = state.changelog_replication
        # How long a restore watches for a live writer of the key: two checkpoint
        # intervals and a second (0 turns the check off).
        self.liveness_wait = 2 * state.checkpoint_interval + 1.0
        self._producer: AIOKafkaProducer | None = None
        self._slot = 0  # the slot the next save writes
        self.writer = uuid.uuid4().hex  # this process, in its manifests
        self._used = [0, 0]  # chunks each slot held when last written or read

    @classmethod
    def from_config(cls, config: object) -> Changelog | None:
        """The changelog of a ``MonitorConfig``, or None when ``state.changelog`` is off."""
        state: StateConfig = config.state  # type: ignore[attr-defined]
        kafka = config.source.kafka  # type: ignore[attr-defined]
        if kafka is None or not state.changelog:
            return None
        return cls(kafka, state, config.model)  # type: ignore[attr-defined]

    @property
    def where(self) -> str:
        return f"changelog {self.topic} key {self.key}"

    async def ensure_topic(self) -> None:
        """Create the topic, compacted, when it does not exist (one partition: one key
        per agent, a few records each)."""
        await ensure_compacted(self.kafka, self.topic, self.replication)

    async def load(self, timeout: float = 60.0) -> Checkpoint | None:
        """The newest checkpoint in the topic, or None when it holds none for this key.

        Raises ``CheckpointError`` when the manifest's chunks are damaged and
        ``ChangelogError`` when the topic cannot be read within ``timeout`` seconds.
        """
        await self.ensure_topic()
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=max(MAX_REQUEST_BYTES, 2 * self.chunk_bytes),
            **client_settings(self.kafka),
        )
        view = ChangelogView(self.key)
        try:
            await asyncio.wait_for(consumer.start(), REQUEST_TIMEOUT)
            partitions = consumer.partitions_for_topic(self.topic) or {0}
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout
            while True:
                batches = await consumer.getmany(timeout_ms=300)
                for records in batches.values():
                    for r in records:
                        view.add(r.key, r.value)
                if all([await _caught_up(consumer, tp) for tp in tps]):
                    break
                if time.monotonic() > deadline:
                    raise ChangelogUnreachable(
                        f"{self.where}: not read to its end in {timeout:.0f}s"
                    )
            if view.manifest is not None and self.liveness_wait > 0:
                # A live writer checkpoints every interval: a manifest written now comes
                # from another running agent of the group, and the state is its, not ours.
                seen = view.manifests
                until = time.monotonic() + self.liveness_wait
                while time.monotonic() < until and view.manifests == seen:
                    batches = await consumer.getmany(timeout_ms=300)
                    for records in batches.values():
                        for r in records:
                            view.add(r.key, r.value)
                if view.manifests != seen:
                    raise ChangelogInUse(
                        f"{self.where} is being written by a running agent of the group; "
                        f"give each agent its own state.changelog_name (or ${NAME_ENV})"
                    )
        except (KafkaError, OSError, TimeoutError) as exc:
            raise ChangelogUnreachable(
                f"{self.where}: cannot be read ({type(exc).__name__})"
            ) from exc
        finally:
            await consumer.stop()
        self._used = [len(view.chunks[0]), len(view.chunks[1])]
        if view.shared:
            raise ChangelogError(
                f"{self.where}: written by two agents at once; give each agent of the group "
                f"its own state.changelog_name (or ${NAME_ENV})"
            )
        if view.manifest is None:
            return None
        self._slot = 1 - view.manifest.slot
        return assemble(view.manifest, view.chunks[view.manifest.slot], self.where)

    async def save(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint``; on return every chunk and the manifest are acknowledged.

        Raises ``ChangelogError`` when the brokers do not acknowledge it within
        ``REQUEST_TIMEOUT`` seconds: the offsets must not be committed then.
        """
        try:
            await asyncio.wait_for(self._write(encode(checkpoint), checkpoint), REQUEST_TIMEOUT)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise ChangelogError(f"{self.where}: not acknowledged ({type(exc).__name__})") from exc

    async def _write(self, data: bytes, checkpoint: Checkpoint) -> None:
        pieces = chunk(data, self.chunk_bytes)
        slot = self._slot
        producer = await self._start()
        sends = [
            await producer.send(self.topic, value=p, key=self._chunk_key(slot, i))
            for i, p in enumerate(pieces)
        ]
        # chunks a larger earlier state left in this slot: deleted by compaction
        sends += [
            await producer.send(self.topic, value=None, key=self._chunk_key(slot, i))
            for i in range(len(pieces), self._used[slot])
        ]
        await asyncio.gather(*sends)
        digest = hashlib.sha256(data).hexdigest()
        manifest = Manifest(
            slot, len(pieces), len(data), digest, checkpoint.created_at, self.writer
        )
        await producer.send_and_wait(self.topic, value=manifest.to_bytes(), key=self.key.encode())
        self._used[slot] = len(pieces)
        self._slot = 1 - slot

    def _chunk_key(self, slot: int, index: int) -> bytes:
        return f"{self.key}#{slot}#{index}".encode()

    async def _start(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                acks="all",
                enable_idempotence=False,
                linger_ms=5,
                max_request_size=max(MAX_REQUEST_BYTES, self.chunk_bytes + 4096),
                **client_settings(self.kafka),
            )
            await asyncio.wait_for(producer.start(), REQUEST_TIMEOUT)
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), REQUEST_TIMEOUT)
            except (KafkaError, TimeoutError) as exc:
                log.warning("changelog producer did not close cleanly (%s)", type(exc).__name__)
            self._producer = None


async def _caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    """Whether ``tp`` has been read to its high watermark (known after one fetch)."""
    high = consumer.highwater(tp)
    return high is not None and high <= await consumer.position(tp)


async def restore(
    changelog: Changelog, reference_hash: str, stop: asyncio.Event, tick: Callable[[], None]
) -> tuple[Checkpoint | None, bool]:
    """(the changelog's checkpoint or None, whether the key is this agent's to write).

    Brokers that do not answer are tried again with back-off until ``stop`` (``tick``
    tells the liveness probe the agent is waiting, not hung): starting without the state
    the changelog holds would lose it. A damaged, foreign-reference or shared key's
    checkpoint is reported and not used.
    """
    delay = 1.0
    while True:
        try:
            checkpoint = await changelog.load()
            break
        except ChangelogUnreachable as exc:
            tick()
            log.warning(
                "changelog: cannot connect to %s (%s); retrying in %.0fs",
                changelog.kafka.bootstrap_servers,
                exc,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return None, True
            delay = min(delay * 2, 20.0)  # with a try's timeouts, under /healthz's 60 s
        except ChangelogInUse as exc:
            log.warning("changelog off for this agent: %s", exc)
            return None, False
        except (ChangelogError, CheckpointError) as exc:
            log.warning("no checkpoint from the changelog: %s", exc)
            return None, True
    if checkpoint is not None and checkpoint.reference_hash != reference_hash:
        log.warning("the changelog's checkpoint was built on another reference; not used")
        return None, True
    return checkpoint, True


async def ensure_compacted(
    kafka: KafkaSourceConfig, topic: str, replication: int, like: Iterable[str] = ()
) -> int:
    """Create ``topic``, compacted, when it does not exist, with as many partitions as the
    largest of the topics ``like`` (one when none is given); its partition count.
    ``ChangelogUnreachable`` when the brokers do not answer, ``ChangelogError`` when they
    refuse to create it."""
    try:
        return await ensure_topic(
            kafka, topic, replication=replication, configs=TOPIC_CONFIG, like=like
        )
    except TopicUnreachable as exc:
        raise ChangelogUnreachable(str(exc)) from exc
    except TopicError as exc:
        raise ChangelogError(str(exc)) from exc
