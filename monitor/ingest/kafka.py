"""The Kafka source: a consumer-group member that hands raw messages to the agent and
commits only the offsets the agent says are durable.

Auto-commit is off (docs/architecture.md, decision 7): the agent commits after its
checkpoint is written. On a
partition's first assignment after a restart it is moved to the checkpoint's offset (the
restored windows hold exactly the records before it), so a restarted agent neither loses
nor re-counts records; later assignments (rebalances) resume at the group's committed
offset, or at the last offset this agent checkpointed when its commit did not get through.
Lag is ``highwater − position`` (``end_offsets()`` is wrong on some brokers).

A broker that is down at start is retried with exponential backoff and jitter; one that
goes away later is found by a metadata probe every ``PROBE_INTERVAL`` seconds (fetches
alone do not fail: aiokafka retries them quietly). Meanwhile ``up`` is False, which the
agent exports as ``driftline_source_up``. Commits are bounded by ``COMMIT_TIMEOUT``:
aiokafka retries a retriable commit error forever (a broker that lost the topic answers
``UNKNOWN_TOPIC_OR_PARTITION`` to every try), which would hang a rebalance or a shutdown.
A position past a partition's end (its log was lost) is reset to ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError

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

#: The producer's request limit (Kafka's default): a dead letter is cut to fit it.
MAX_REQUEST_BYTES = 1_048_576


def client_settings(cfg: KafkaSourceConfig) -> dict[str, object]:
    """Connection and security settings shared by the consumer and producers."""
    settings: dict[str, object] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        settings["ssl_context"] = create_ssl_context(
            cafile=str(cfg.ssl_cafile) if cfg.ssl_cafile else None,
            certfile=str(cfg.ssl_certfile) if cfg.ssl_certfile else None,
            keyfile=str(cfg.ssl_keyfile) if cfg.ssl_keyfile else None,
        )
    if cfg.security_protocol.startswith("SASL"):
        settings["sasl_mechanism"] = cfg.sasl_mechanism or "PLAIN"
        settings["sasl_plain_username"] = cfg.sasl_username
        password = cfg.sasl_password()
        if password is not None:
            settings["sasl_plain_password"] = password
    return settings


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info("partitions revoked: %s", _names(revoked))
        if revoked and self.source.on_revoke is not None:
            await self.source.on_revoke({(tp.topic, tp.partition) for tp in revoked})
        for tp in revoked:
            self.source.positions.pop((tp.topic, tp.partition), None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _names(assigned))
        await self.source.seek_assigned(assigned)


class KafkaSource:
    """One consumer-group member over the configured topics."""

    def __init__(
        self,
        cfg: KafkaSourceConfig,
        start_offsets: Offsets | None = None,
        on_revoke: Callable[[set[tuple[str, int]]], Awaitable[None]] | None = None,
        extra_topics: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        # Topics read beside cfg.topics by the same group member (the labels topic), so
        # their offsets are committed with the same checkpoints.
        self.topics = [*cfg.topics, *(t for t in extra_topics if t not in cfg.topics)]
        self.start_offsets = dict(start_offsets or {})
        self.on_revoke = on_revoke
        self.consumer: AIOKafkaConsumer | None = None
        self.up = False
        self.positions: Offsets = {}
        # next offset per partition of the last poll's messages
        self.polled: Offsets = {}
        # Offsets whose records are in a durable checkpoint of the agent, as last handed
        # to commit(), whether or not the commit got through.
        self.durable: Offsets = {}
        # (topic, partition) -> (offset it starts at, whether no offset was committed)
        self.origins: dict[tuple[str, int], tuple[int, bool]] = {}
        # Set when the checkpoint is the newest this agent acknowledged anywhere (the
        # changelog's): a committed offset ahead of it was then committed by another
        # member that read on, and the partition resumes there, not at the checkpoint.
        self.foreign_commits = False
        # Offsets the group acknowledged a commit of (the last per partition).
        self.acked: Offsets = {}
        # Where each partition assigned since the agent last took them resumes (None:
        # unknown); the agent's offsets of them are replaced (monitor/runtime/resumed.py).
        self.resumed: dict[tuple[str, int], int | None] = {}
        # Called with the committed offset of each newly assigned partition before it is
        # read; returns where the partitions whose state it restored resume
        # (monitor/runtime/partition_state.py).
        self.on_assign: Callable[[dict[tuple[str, int], int | None]], Awaitable[Offsets]] | None = (
            None
        )
        # Partitions whose state on_assign is restoring: their records, fetched meanwhile,
        # are not handed out (they are read again from where the state ends).
        self._restoring: set[tuple[str, int]] = set()
        # The first offset of each such partition's records set aside, so a partition whose
        # state is not restored (a labels topic's, one with no state) is read again there.
        self._set_aside: Offsets = {}
        self._probe: asyncio.Task[None] | None = None

    async def start(self, stop: asyncio.Event) -> bool:
        """Connect and join the group, retrying with backoff until ``stop`` is set."""
        delay = 0.5
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                group_id=self.cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset=self.cfg.start,
                session_timeout_ms=self.cfg.session_timeout_ms,
                heartbeat_interval_ms=self.cfg.heartbeat_interval_ms,
                rebalance_timeout_ms=self.cfg.rebalance_timeout_ms,
                partition_assignment_strategy=self._assignors(),
                max_partition_fetch_bytes=4 * 1024 * 1024,
                **client_settings(self.cfg),
            )
            try:
                await consumer.start()
                consumer.subscribe(self.topics, listener=_Rebalance(self))
                self.consumer = consumer
                self.up = True
                self._probe = asyncio.create_task(self._watch(consumer))
                log.info("kafka source connected to %s", self.cfg.bootstrap_servers)
                return True
            except (KafkaError, OSError) as exc:
                self.up = False
                await _quiet_stop(consumer)
                log.warning(
                    "kafka source cannot connect to %s (%s); retrying in %.1fs",
                    self.cfg.bootstrap_servers,
                    type(exc).__name__,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 30.0) * random.uniform(0.8, 1.2)
        return False

    def _assignors(self) -> tuple[type, ...]:
        """Range assignment when other topics are read beside the predictions: it gives one
        member partition i of every topic, so a label keyed by request id lands on the
        agent that reads its prediction (same key, same partitioner, same partition
        count); round robin otherwise (aiokafka's default)."""
        if len(self.topics) > len(self.cfg.topics):
            return (RangePartitionAssignor,)
        return (RoundRobinPartitionAssignor,)

    async def _watch(self, consumer: AIOKafkaConsumer) -> None:
        """Probe the brokers with a metadata request (all topics: it creates none)."""
        while True:
            try:
                await asyncio.wait_for(consumer.topics(), PROBE_TIMEOUT)
                reachable = True
            except (KafkaError, OSError, TimeoutError):
                reachable = False
            if reachable != self.up:
                if reachable:
                    log.info("kafka brokers %s reachable again", self.cfg.bootstrap_servers)
                else:
                    log.warning("kafka brokers %s unreachable", self.cfg.bootstrap_servers)
                self.up = reachable
            await asyncio.sleep(PROBE_INTERVAL)

    async def seek_assigned(self, assigned: set[TopicPartition]) -> None:
        """Move newly assigned partitions to where this agent's window state ends.

        On a partition's first assignment after a restart, that is the checkpoint's
        offset: the restored window state holds exactly the records before it, so it is
        the right place to resume even when the committed offset differs (a fallback to
        the previous checkpoint leaves it behind the committed one). The checkpoint is
        used once: on later assignments the agent's state has moved on, and the group's
        committed offset is right (the agent commits when partitions are revoked) unless
        it lags the agent's own last checkpoint because a commit failed; then the
        checkpoint's offset wins. A partition another member has read since is ahead of
        both, at its committed offset, where the consumer resumes by itself.
        """
        assert self.consumer is not None
        restored = await self._restore_assigned(assigned)
        sought: set[tuple[str, int]] = set()
        for tp in assigned:
            key = (tp.topic, tp.partition)
            if key in restored:
                self.consumer.seek(tp, restored[key])
                sought.add(key)
                continue
            want = self.start_offsets.pop(key, None)
            if want is not None:
                why = "checkpoint offset"
                if self.foreign_commits:
                    with contextlib.suppress(KafkaError, OSError, TimeoutError):
                        committed = await asyncio.wait_for(
                            self.consumer.committed(tp), PROBE_TIMEOUT
                        )
                        if committed is not None and committed > want:
                            want, why = committed, FOREIGN_AHEAD
            else:
                own = self.durable.get(key)
                if own is None:
                    continue
                try:
                    committed = await asyncio.wait_for(self.consumer.committed(tp), PROBE_TIMEOUT)
                except (KafkaError, OSError, TimeoutError) as exc:
                    # Unknown: leave the partition where the consumer puts it by itself.
                    log.warning(
                        "cannot read the committed offset of %s-%d (%s)",
                        tp.topic,
                        tp.partition,
                        type(exc).__name__,
                    )
                    continue
                if committed is not None and committed >= own:
                    continue
                want, why = own, "last checkpointed offset (not committed)"
            self.consumer.seek(tp, want)
            sought.add(key)
            log.info("partition %s-%d resumes at %s %d", tp.topic, tp.partition, why, want)
        for tp in assigned:  # records poll set aside during the restore, not sought past
            first = self._set_aside.get((tp.topic, tp.partition))
            if first is not None and (tp.topic, tp.partition) not in sought:
                self.consumer.seek(tp, first)
        self._set_aside.clear()
        # The checkpoint speaks for the first assignment only: a partition it names that
        # another member got is that member's now, and is sought back to only if its
        # committed offset is behind what this agent's state holds (the branch above).
        if assigned:
            for key, offset in self.start_offsets.items():
                self.durable.setdefault(key, offset)
            self.start_offsets.clear()
        self._restoring.clear()
        await self._note_origins(assigned, sought)

    async def _restore_assigned(self, assigned: set[TopicPartition]) -> Offsets:
        """``on_assign`` given the committed offsets (None: none committed; a partition
        whose committed offset cannot be read is left out, and starts with no state)."""
        if self.on_assign is None or not assigned:
            return {}
        assert self.consumer is not None
        committed: dict[tuple[str, int], int | None] = {}
        for tp in assigned:
            try:
                got = await asyncio.wait_for(self.consumer.committed(tp), PROBE_TIMEOUT)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("cannot read the committed offset of %s-%d (%s)", *tp, exc)
                continue
            committed[(tp.topic, tp.partition)] = got
        self._restoring = set(committed)
        try:
            return await self.on_assign(committed)
        except Exception:  # the partitions are read from the committed offsets regardless
            log.exception("restoring the assigned partitions' state failed")
            return {}

    async def _note_origins(
        self, assigned: set[TopicPartition], sought: set[tuple[str, int]]
    ) -> None:
        """Where each assigned partition starts, and whether that is its beginning (no
        committed offset): what a partial says of the state it comes from. Also where the
        agent's offset of it now is (:attr:`resumed`): the one sought to, or the committed
        one (none committed and none sought: unknown until its records are read)."""
        assert self.consumer is not None
        for tp in assigned:
            self.resumed[(tp.topic, tp.partition)] = None  # until its position is known
            try:
                committed = await asyncio.wait_for(self.consumer.committed(tp), PROBE_TIMEOUT)
                position = await asyncio.wait_for(self.consumer.position(tp), PROBE_TIMEOUT)
            except (KafkaError, OSError, TimeoutError):
                continue
            self.origins[(tp.topic, tp.partition)] = (position, committed is None)
            if committed is not None or (tp.topic, tp.partition) in sought:
                self.resumed[(tp.topic, tp.partition)] = position

    async def poll(self, timeout_ms: int = 200) -> list[SourceMessage]:
        """The next messages of all assigned partitions (possibly none): aiokafka's
        records themselves, which carry what the decoder reads (:class:`SourceMessage`).
        :attr:`polled` says the next offset of each partition they came from."""
        assert self.consumer is not None
        self.polled = {}
        try:
            records = await self.consumer.getmany(
                timeout_ms=timeout_ms, max_records=self.cfg.max_batch_records
            )
        except KafkaError as exc:
            self.up = False
            log.warning("kafka fetch failed (%s); the consumer reconnects", type(exc).__name__)
            await asyncio.sleep(0.5)
            return []
        if records:
            self.up = True  # else the probe decides: an empty fetch proves nothing
        out: list[SourceMessage] = []
        for tp, msgs in records.items():
            if msgs and (tp.topic, tp.partition) in self._restoring:
                self._set_aside.setdefault((tp.topic, tp.partition), msgs[0].offset)
            elif msgs:
                out.extend(msgs)
                self.polled[(tp.topic, tp.partition)] = msgs[-1].offset + 1
        self.positions.update(self.polled)
        if not out:
            await self._reset_beyond_end()
        return out

    async def _reset_beyond_end(self) -> None:
        """Move partitions whose position is past their end back to ``start``.

        A fetch answered with a high watermark below the position it asked for means the
        partition's log was lost or recreated (a broker without persistent storage, a
        topic deleted and created again). Kafka answers such a fetch with
        OFFSET_OUT_OF_RANGE and the consumer resets by itself; Tansu answers with no
        records, which would leave the agent waiting there forever. The high watermark
        is only recorded from fetches at the current position, and the agent seeks only
        when partitions are assigned (which clears it), so ``position > highwater`` is
        never a stale comparison.
        """
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), PROBE_TIMEOUT)
            except (KafkaError, TimeoutError):
                continue
            if position <= high:
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
            try:
                if self.cfg.start == "earliest":
                    await asyncio.wait_for(self.consumer.seek_to_beginning(tp), PROBE_TIMEOUT)
                else:
                    await asyncio.wait_for(self.consumer.seek_to_end(tp), PROBE_TIMEOUT)
            except (KafkaError, TimeoutError) as exc:
                log.warning("reset of %s-%d failed (%s)", tp.topic, tp.partition, exc)
            self.positions.pop((tp.topic, tp.partition), None)

    def assigned(self) -> set[tuple[str, int]]:
        if self.consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def partition_count(self, topic: str) -> int | None:
        """Partitions of a subscribed topic, from the client's metadata (None: unknown)."""
        if self.consumer is None:
            return None
        parts = self.consumer.partitions_for_topic(topic)
        return len(parts) if parts else None

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the partition's high watermark, per assigned partition."""
        if self.consumer is None:
            return {}
        out: dict[tuple[str, int], int] = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            pos = self.positions.get((tp.topic, tp.partition))
            if pos is None:
                continue
            out[(tp.topic, tp.partition)] = max(0, high - pos)
        return out

    async def commit(self, offsets: Offsets) -> None:
        """Commit ``offsets`` (next offset to read, all in a durable checkpoint) for the
        partitions still assigned; a failure is logged, and the next checkpoint retries."""
        self.durable.update(offsets)
        if self.consumer is None or not offsets:
            return
        mine = self.assigned()
        to_commit = {TopicPartition(t, p): o for (t, p), o in offsets.items() if (t, p) in mine}
        if not to_commit:
            return
        if not self.up:
            log.warning("brokers unreachable: offsets not committed; the checkpoint holds them")
            return
        try:
            await asyncio.wait_for(self.consumer.commit(to_commit), COMMIT_TIMEOUT)
            self.acked.update({(tp.topic, tp.partition): o for tp, o in to_commit.items()})
        except (KafkaError, TimeoutError) as exc:
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
            await _quiet_stop(self.consumer)
            self.consumer = None
        self.up = False


class KafkaPublisher:
    """A plain (non-idempotent) producer for reports and dead letters."""

    def __init__(self, cfg: KafkaSourceConfig) -> None:
        self.producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=False,
            linger_ms=20,
            max_request_size=MAX_REQUEST_BYTES,
            **client_settings(cfg),
        )
        self.max_request_bytes = MAX_REQUEST_BYTES
        self._pending: set[asyncio.Future] = set()

    async def start(self) -> None:
        await self.producer.start()

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Schedule a send from the event loop; failures are logged, never raised."""
        task = asyncio.ensure_future(self._send(topic, key, value, headers))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def deliver(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """Send one message and wait for the brokers' acknowledgement; raises when it is
        not acknowledged (the dead-letter topic retries, then says so per record)."""
        await self.producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def _send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None
    ) -> None:
        try:
            await self.producer.send_and_wait(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            log.warning("publish to %s failed: %s", topic, type(exc).__name__)

    async def flush(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def stop(self) -> None:
        """Flush and close, within ``COMMIT_TIMEOUT`` each: with the brokers gone, the
        agent must still exit (what is not sent by then is logged, not waited for)."""
        pending = set(self._pending)
        if pending:
            # counted before closing: closing cancels them, and their count with them
            _, unsent = await asyncio.wait(pending, timeout=COMMIT_TIMEOUT)
            if unsent:
                log.warning("%d messages not published before shutdown", len(unsent))
        try:
            await asyncio.wait_for(self.producer.stop(), COMMIT_TIMEOUT)
        except (KafkaError, TimeoutError) as exc:
            log.warning("kafka producer did not close cleanly (%s)", type(exc).__name__)


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}-{tp.partition}" for tp in partitions)


async def _quiet_stop(client: AIOKafkaConsumer) -> None:
    """Stop a consumer, ignoring its errors.

    aiokafka's fetcher lets the CancelledError of its own fetch tasks escape from
    ``stop()`` when a fetch was waiting to retry (brokers unreachable); that one is
    swallowed too, unless this task itself is being cancelled.
    """
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("ignoring a cancelled fetch while stopping a kafka consumer")
    except Exception:
        log.debug("ignoring error while stopping a kafka client", exc_info=True)
