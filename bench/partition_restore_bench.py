"""How long a newly assigned partition's state takes to restore from the changelog, as
the topic grows: reading backwards from its end until the state ending at the committed
offset (``PartitionLog.read``, what agents that publish partials do) against reading the
changelog partition from its beginning (what a restore without an index must do), on an
embedded Tansu broker, which never compacts: the worst case of a topic compaction has
not caught up with.

``python3 -m bench.partition_restore_bench [--checkpoints 50,200,800] [--partitions 6]
[--kb 64]`` writes, per count, that many checkpoints of every source partition (one
state of ``--kb`` KB each) into a changelog of one partition (all source partitions
share it: the least favourable layout) and into one of ``--partitions`` partitions (one
per source partition, as the agents create it), then restores one partition's latest
state. It prints the median seconds of 5 restores and the records read. Run it with
``nice`` on a shared machine; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor.config.source import KafkaSourceConfig
from monitor.demo.broker import TansuBroker
from monitor.runtime.checkpoint import Checkpoint, encode
from monitor.runtime.partition_changelog import PartitionLog


def _state(topic: str, partition: int, offset: int, kb: int) -> bytes:
    windows = os.urandom(kb * 1000)  # incompressible, like sketches
    return encode(Checkpoint({(topic, partition): offset}, windows, "r" * 64, time.time()))


async def _fill(
    kafka: KafkaSourceConfig, changelog: str, partitions: int, sources: int, n: int, kb: int
) -> PartitionLog:
    log = PartitionLog(kafka, changelog, 512 * 1024, "bench", 1)
    log.partitions = partitions
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", max_request_size=2 << 20
    )
    await producer.start()
    try:
        for i in range(n):
            states = [
                ("src", p, 100 * (i + 1), _state("src", p, 100 * (i + 1), kb))
                for p in range(sources)
            ]
            committed = {("src", p): 100 * i for p in range(sources)}
            await log.write(producer, states, committed)
    finally:
        await producer.stop()
    return log


async def _full_read(kafka: KafkaSourceConfig, tp: TopicPartition) -> tuple[float, int]:
    """Seconds and records to read ``tp`` from its beginning to its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,  # as the restore's reader
        max_partition_fetch_bytes=2 << 20,
    )
    await consumer.start()
    try:
        t = time.perf_counter()
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        n = 0
        while True:
            batches = await consumer.getmany(tp, timeout_ms=300)
            n += len(batches.get(tp, []))
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) >= high:
                return time.perf_counter() - t, n
    finally:
        await consumer.stop()


async def _case(
    bootstrap: str, broker: TansuBroker, n: int, parts: int, sources: int, kb: int
) -> list:
    kafka = KafkaSourceConfig(bootstrap_servers=bootstrap, topics=["src"], group_id="g")
    name = f"changelog-{parts}-{n}-{os.urandom(3).hex()}"
    await broker.acreate_topic(name, parts)
    log = await _fill(kafka, name, parts, sources, n, kb)
    target = sources - 1
    scans, fulls = [], []
    for _ in range(5):
        t = time.perf_counter()
        got = await log.read("src", target, 100 * n)
        scans.append(time.perf_counter() - t)
        assert got is not None and got.offsets == {("src", target): 100 * n}
        fulls.append(await _full_read(kafka, log.where("src", target)))
    await log.close()
    return [
        n,
        parts,
        statistics.median(scans),
        statistics.median(f[0] for f in fulls),
        fulls[0][1],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default="50,200,800")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--kb", type=int, default=64)
    args = parser.parse_args()
    counts = [int(x) for x in args.checkpoints.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as d, TansuBroker(log_dir=Path(d)) as broker:
        for n in counts:
            for parts in (1, args.partitions):
                rows.append(
                    asyncio.run(_case(broker.bootstrap, broker, n, parts, args.partitions, args.kb))
                )
    print(
        f"load average {os.getloadavg()[0]:.1f}; {args.partitions} source partitions, "
        f"{args.kb} KB per state"
    )
    print(
        "| checkpoints per partition | changelog partitions | records in it "
        "| back-scan s | full read s | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for n, parts, scan, full, records in rows:
        print(f"| {n} | {parts} | {records} | {scan:.3f} | {full:.3f} | {full / scan:.0f}× |")


if __name__ == "__main__":
    main()
