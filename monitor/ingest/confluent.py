"""The Kafka source on librdkafka (``source.kafka.client: confluent``): the same consumer-group
member as :class:`monitor.ingest.kafka.KafkaSource`, with the same keys and guarantees, on
confluent-kafka's consumer, which fetches and parses records in C on its own threads.

The guarantees of docs/architecture.md, decision 7, hold as in the aiokafka source:
auto-commit and offset auto-store are off; the agent commits after its checkpoint; a
partition's first assignment after a restart starts at the checkpoint's offset, later
ones at the committed offset unless the agent's own last checkpoint is further; the
revocation callback checkpoints and commits before the partitions go; lag is the high
watermark of the last fetch minus the position (``end_offsets`` is wrong on some
brokers); a position past a partition's end (its log was lost) is reset to ``start``.

librdkafka's consumer is blocking, so ``consume`` runs in a worker thread; the rebalance
callbacks run there too, inside ``consume``, and hand the agent's asynchronous revocation
step to the event loop and wait for it (the loop is free: it is awaiting that very
``consume``). The records handed on are :class:`ConfluentRecord` views of librdkafka's
messages with the attributes the decoder reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.batch import SourceMessage
from monitor.ingest.sources import (
    COMMIT_TIMEOUT,
    FOREIGN_AHEAD,
    PROBE_INTERVAL,
    PROBE_TIMEOUT,
    Offsets,
)

log = logging.getLogger(__name__)

#: Seconds a revocation may spend checkpointing before the consumer lets the partitions go.
REVOKE_TIMEOUT = 60.0


def confluent_settings(cfg: KafkaSourceConfig) -> dict[str, Any]:
    """librdkafka settings for the consumer from the source's keys."""
    settings: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "security.protocol": cfg.security_protocol,
        "group.id": cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": cfg.start,
        "session.timeout.ms": cfg.session_timeout_ms,
        "heartbeat.interval.ms": cfg.heartbeat_interval_ms,
        # librdkafka's rebalance timeout is max.poll.interval.ms, also the longest pause
        # between two consume calls (a slow checkpoint must not drop the member).
        "max.poll.interval.ms": max(cfg.rebalance_timeout_ms, 60_000),
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        # The prefetch queue is the client's memory: at most 16 MiB rather than 64. (A
        # smaller queued.min.messages starved the consumer on Tansu without saving memory.)
        "queued.max.messages.kbytes": 16 * 1024,
        "fetch.max.bytes": 16 * 1024 * 1024,
        "enable.partition.eof": False,
        "logger": logging.getLogger("monitor.ingest.librdkafka"),
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        for key, path in (
            ("ssl.ca.location", cfg.ssl_cafile),
            ("ssl.certificate.location", cfg.ssl_certfile),
            ("ssl.key.location", cfg.ssl_keyfile),
        ):
            if path is not None:
                settings[key] = str(path)
    if cfg.security_protocol.startswith("SASL"):
        settings["sasl.mechanism"] = cfg.sasl_mechanism or "PLAIN"
        settings["sasl.username"] = cfg.sasl_username
        password = cfg.sasl_password()
        if password is not None:
            settings["sasl.password"] = password
    return settings


class ConfluentRecord:
    """A librdkafka message as the decoder reads it (:class:`SourceMessage`): value,
    partition and offset read once, the rest on demand."""

    __slots__ = ("_m", "offset", "partition", "topic", "value")

    def __init__(self, m: Any, topic: str) -> None:
        self._m = m
        self.topic = topic
        self.value: bytes | None = m.value()
        self.partition: int = m.partition()
        self.offset: int = m.offset()

    @property
    def key(self) -> bytes | None:
        key: bytes | None = self._m.key()
        return key

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]:
        return self._m.headers() or ()

    @property
    def timestamp(self) -> int | None:
        kind, ms = self._m.timestamp()
        return None if kind == 0 else int(ms)  # 0: TIMESTAMP_NOT_AVAILABLE


class ConfluentSource:
    """One consumer-group member over the configured topics, on librdkafka."""

    def __init__(
        self,
        cfg: KafkaSourceConfig,
        start_offsets: Offsets | None = None,
        on_revoke: Callable[[set[tuple[str, int]]], Awaitable[None]] | None = None,
        extra_topics: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        self.topics = [*cfg.topics, *(t for t in extra_topics if t not in cfg.topics)]
        self.start_offsets = dict(start_offsets or {})
        self.on_revoke = on_revoke
        self.consumer: Any = None
        self.up = False
        self.positions: Offsets = {}
        self.polled: Offsets = {}
        self.durable: Offsets = {}
        # (topic, partition) -> (offset it starts at, whether no offset was committed)
        self.origins: dict[tuple[str, int], tuple[int, bool]] = {}
        self.foreign_commits = False  # as in KafkaSource
        self.acked: Offsets = {}  # as in KafkaSource
        self.resumed: dict[tuple[str, int], int | None] = {}  # as in KafkaSource
        self._counts: dict[str, int] = {}  # partitions per topic, from the last probe
        # as in KafkaSource: restores newly assigned partitions before they are read
        self.on_assign: Callable[[dict[tuple[str, int], int | None]], Awaitable[Offsets]] | None = (
            None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closing = False
        self._rebalancing = False
        self._rebalance_commit: list[Any] = []
        # The assignment as the rebalance callbacks set it: asking librdkafka from the
        # event loop while a callback runs in the consume thread would block both.
        self._assignment: set[tuple[str, int]] = set()

    # -- connecting ------------------------------------------------------------------------

    async def start(self, stop: asyncio.Event) -> bool:
        """Join the group once the brokers answer, retrying with backoff until ``stop``."""
        from confluent_kafka import Consumer

        self._loop = asyncio.get_running_loop()
        settings = confluent_settings(self.cfg)
        settings["error_cb"] = self._error
        consumer = Consumer(settings)
        delay = 0.5
        while not stop.is_set():
            if await self._reachable(consumer):
                consumer.subscribe(
                    self.topics,
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoked,
                    on_lost=self._on_lost,
                )
                self.consumer, self.up = consumer, True
                self._probe = asyncio.create_task(self._watch())
                log.info("kafka source (librdkafka) connected to %s", self.cfg.bootstrap_servers)
                return True
            log.warning(
                "kafka source cannot connect to %s; retrying in %.1fs",
                self.cfg.bootstrap_servers,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 30.0) * random.uniform(0.8, 1.2)
        await asyncio.to_thread(consumer.close)
        return False

    async def _reachable(self, consumer: Any) -> bool:
        """A metadata request (all topics: it creates none) answered in time."""
        from confluent_kafka import KafkaException

        try:
            metadata = await asyncio.to_thread(consumer.list_topics, timeout=PROBE_TIMEOUT)
        except KafkaException:
            return False
        self._counts = {
            t: len(metadata.topics[t].partitions)
            for t in self.cfg.topics
            if t in metadata.topics and metadata.topics[t].partitions
        }
        return True

    async def _watch(self) -> None:
        while True:
            reachable = await self._reachable(self.consumer)
            if reachable != self.up:
                if reachable:
                    log.info("kafka brokers %s reachable again", self.cfg.bootstrap_servers)
                else:
                    log.warning("kafka brokers %s unreachable", self.cfg.bootstrap_servers)
                self.up = reachable
            await asyncio.sleep(PROBE_INTERVAL)

    def _error(self, error: Any) -> None:
        """librdkafka's error callback (its threads): all brokers down means down."""
        from confluent_kafka import KafkaError

        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.up = False
        log.debug("librdkafka: %s", error.name())

    # -- rebalances (in the consume thread) ------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Start each newly assigned partition where this agent's window state ends (see
        :meth:`monitor.ingest.kafka.KafkaSource.seek_assigned` for why)."""
        log.info("partitions assigned: %s", _names(partitions))
        restored = self._restore_assigned(consumer, partitions)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key in restored:
                tp.offset = self.positions[key] = self.resumed[key] = restored[key]
                continue
            want = self.start_offsets.pop(key, None)
            why = "checkpoint offset"
            committed = self._committed(consumer, tp)
            if want is None:
                own = self.durable.get(key)
                if own is None or committed is None or committed >= own:
                    # resumes at the committed offset (none: unknown until read)
                    none = committed is None or committed < 0
                    self.resumed[key] = None if none else committed
                    if committed is not None:
                        self.origins[key] = (max(committed, 0), committed < 0)
                    continue
                want, why = own, "last checkpointed offset (not committed)"
            elif self.foreign_commits and committed is not None and committed > want:
                want, why = committed, FOREIGN_AHEAD  # see KafkaSource.seek_assigned
            tp.offset = want
            # the position until records come: lets a log lost since be noticed
            self.positions[key] = self.resumed[key] = want
            self.origins[key] = (want, committed is not None and committed < 0)
            log.info("partition %s-%d resumes at %s %d", tp.topic, tp.partition, why, want)
        # The checkpoint speaks for the first assignment only (as in the aiokafka source).
        if partitions:
            for key, offset in self.start_offsets.items():
                self.durable.setdefault(key, offset)
            self.start_offsets.clear()
        consumer.assign(partitions)
        self._assignment |= {(tp.topic, tp.partition) for tp in partitions}

    def _restore_assigned(self, consumer: Any, partitions: list[Any]) -> Offsets:
        """``on_assign`` run on the event loop (this is librdkafka's consume thread, and
        the loop waits for it), given the committed offsets."""
        if self.on_assign is None or self._loop is None or not partitions:
            return {}
        committed: dict[tuple[str, int], int | None] = {}
        for tp in partitions:
            got = self._committed(consumer, tp)
            if got is not None:
                committed[(tp.topic, tp.partition)] = None if got < 0 else got
        done: concurrent.futures.Future[Offsets] = asyncio.run_coroutine_threadsafe(
            _restored(self.on_assign(committed)), self._loop
        )
        try:
            return done.result(REVOKE_TIMEOUT)
        except Exception:
            log.exception("restoring the assigned partitions' state failed")
            return {}

    def _committed(self, consumer: Any, tp: Any) -> int | None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            [got] = consumer.committed([TopicPartition(tp.topic, tp.partition)], PROBE_TIMEOUT)
        except KafkaException as exc:
            log.warning(
                "cannot read the committed offset of %s-%d (%s)", tp.topic, tp.partition, exc
            )
            return None
        offset: int = got.offset
        return offset if offset >= 0 else -1

    def _on_revoked(self, consumer: Any, partitions: list[Any], lost: bool = False) -> None:
        """Checkpoint (on the event loop) and commit (here, in the thread librdkafka
        called from) before the partitions go."""
        from confluent_kafka import KafkaException

        revoked = {(tp.topic, tp.partition) for tp in partitions}
        if revoked:
            # lost: the group dropped this member (a session expired, a broker restarted)
            log.info(
                "partitions revoked%s: %s",
                " (lost by the group)" if lost else "",
                _names(partitions),
            )
        if revoked and self.on_revoke is not None and not self._closing:
            assert self._loop is not None
            self._rebalancing, self._rebalance_commit = True, []
            done: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                _awaited(self.on_revoke(revoked)), self._loop
            )
            try:
                done.result(REVOKE_TIMEOUT)
            except Exception:
                log.exception("checkpoint on revocation failed")
            finally:
                self._rebalancing = False
            if self._rebalance_commit and not lost:
                try:
                    consumer.commit(offsets=self._rebalance_commit, asynchronous=False)
                    self.acked.update(
                        {(t.topic, t.partition): t.offset for t in self._rebalance_commit}
                    )
                except KafkaException as exc:
                    log.warning("offset commit on revocation failed (%s)", exc)
        for key in revoked:
            self.positions.pop(key, None)
        self._assignment -= revoked
        consumer.unassign()

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions taken away without a revocation: checkpointed, not committed (the
        group no longer takes this member's commits)."""
        self._on_revoked(consumer, partitions, lost=True)

    # -- consuming -------------------------------------------------------------------------

    async def poll(self, timeout_ms: int = 200) -> list[SourceMessage]:
        """The next messages of all assigned partitions (possibly none).
        :attr:`polled` says the next offset of each partition they came from."""
        assert self.consumer is not None
        self.polled = {}
        records = await asyncio.to_thread(self._consume, timeout_ms / 1000.0)
        if records:
            self.up = True
            polled = self.polled
            for r in records:  # the last record of a partition gives its next offset
                polled[(r.topic, r.partition)] = r.offset + 1
            self.positions.update(polled)
        else:
            await self._reset_beyond_end()
        return records  # type: ignore[return-value]

    def _consume(self, timeout: float) -> list[ConfluentRecord]:
        messages = self.consumer.consume(self.cfg.max_batch_records, timeout)
        if not messages:
            return []
        one_topic = self.topics[0] if len(self.topics) == 1 else None
        out = []
        for m in messages:
            if m.error() is not None:
                log.warning("kafka fetch error: %s", m.error().name())
                continue
            out.append(ConfluentRecord(m, one_topic or m.topic()))
        return out

    def _high(self, tp: Any) -> int | None:
        """The high watermark of the last fetch of ``tp`` (None before any)."""
        _, high = self.consumer.get_watermark_offsets(tp, cached=True)
        return int(high) if high is not None and high >= 0 else None

    async def _reset_beyond_end(self) -> None:
        """Move partitions whose position is past their end back to ``start`` (a broker
        that lost the log answers such fetches with no records and no error)."""
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

        for key in self.assigned():
            tp = TopicPartition(*key)
            high = self._high(tp)
            position = self.positions.get(key)
            if high is None or position is None or position <= high:
                continue
            log.warning(
                "partition %s-%d ends at %d, before the position %d (log lost or topic "
                "recreated); resuming from the %s",
                tp.topic,
                tp.partition,
                high,
                position,
                "beginning" if self.cfg.start == "earliest" else "end",
            )
            to = OFFSET_BEGINNING if self.cfg.start == "earliest" else OFFSET_END
            try:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, to))
            except KafkaException as exc:
                log.warning("reset of %s-%d failed (%s)", tp.topic, tp.partition, exc)
            self.positions.pop((tp.topic, tp.partition), None)

    def assigned(self) -> set[tuple[str, int]]:
        return set(self._assignment) if self.consumer is not None else set()

    def partition_count(self, topic: str) -> int | None:
        """Partitions of a subscribed topic, from the last metadata probe (None: unknown)."""
        return self._counts.get(topic)

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the partition's high watermark, per assigned partition."""
        if self.consumer is None:
            return {}
        from confluent_kafka import TopicPartition

        out: dict[tuple[str, int], int] = {}
        for key in self.assigned():
            high = self._high(TopicPartition(*key))
            pos = self.positions.get(key)
            if high is None or pos is None:
                continue
            out[key] = max(0, high - pos)
        return out

    async def commit(self, offsets: Offsets) -> None:
        """Commit ``offsets`` (all in a durable checkpoint) for the partitions still
        assigned; a failure is logged, and the next checkpoint retries."""
        from confluent_kafka import KafkaException, TopicPartition

        self.durable.update(offsets)
        if self.consumer is None or not offsets:
            return
        mine = self.assigned()
        to_commit = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in mine]
        if not to_commit:
            return
        if self._rebalancing:  # the revocation callback commits them, in its own thread
            self._rebalance_commit = to_commit
            return
        if not self.up:
            log.warning("brokers unreachable: offsets not committed; the checkpoint holds them")
            return
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.consumer.commit, offsets=to_commit, asynchronous=False),
                COMMIT_TIMEOUT,
            )
            self.acked.update({(t.topic, t.partition): t.offset for t in to_commit})
        except (KafkaException, TimeoutError) as exc:
            log.warning(
                "offset commit failed (%s); it is retried at the next checkpoint",
                type(exc).__name__,
            )

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self.consumer is not None:
            # The agent checkpointed and committed already: the revocation that closing
            # triggers has nothing more to do.
            self._closing = True
            try:
                await asyncio.wait_for(asyncio.to_thread(self.consumer.close), COMMIT_TIMEOUT)
            except Exception:
                log.debug("ignoring error while closing the kafka consumer", exc_info=True)
            self.consumer = None
        self.up = False


async def _awaited(step: Awaitable[None]) -> None:
    await step


async def _restored(step: Awaitable[Offsets]) -> Offsets:
    return await step


def _names(partitions: Sequence[Any]) -> list[str]:
    return sorted(f"{tp.topic}-{tp.partition}" for tp in partitions)
