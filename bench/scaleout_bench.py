"""Scaling one model over several agents: throughput, merge cost and aggregation latency.

The traffic is ``bench.data``'s 26-column model (20 numeric features of awkward shapes,
5 categorical, a score), as driftline JSON records spread over 4 partitions. Three
measurements, in one run:

1. **Agents.** The lone agent (``role: none``: decode, windows, evaluation of every
   window) is the baseline. Then 1, 2 and 4 agents with ``role: agent`` (decode, windows
   per partition, every closed window serialised as a partial), each agent a process of
   its own reading its share of the partitions, all started together. Reported: wall
   time, records per second, CPU seconds, and records per CPU second (per core) — this
   machine has 2 cores, so 4 agents share them.
2. **Aggregator.** The partials of every window are parsed, merged and judged as the
   aggregator does: the merge cost per window against the number of pieces, next to the
   evaluation it feeds.
3. **Latency from window close to report**: the aggregator's part (parse, merge,
   evaluate) per window, and, with ``--broker``, one hop through the embedded Tansu
   broker (an acknowledged produce and the aggregator's fetch of a partial).

The broker is left out of 1 and 2 (the agents read records already fetched), so the
figures are driftline's own cost; ``bench/agent_bench.py`` measures the broker path.

    python3 -m bench.scaleout_bench                 # ~2 minutes on 2 cores
    python3 -m bench.scaleout_bench --records 100000 --broker
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

PARTITIONS = 4
WINDOW_SECONDS = 5.0
RATE = 10_000.0  # records per second of event time
EPOCH = 1_700_000_000.0
MODEL = "bench-model"
BATCH = 5000
# The records, set before the agents' processes fork (so they are not pickled to each).
_RECORDS: list[tuple[int, int, bytes]] = []


# -- traffic -------------------------------------------------------------------------------


def make_records(n: int, seed: int) -> list[tuple[int, int, bytes]]:
    """(partition, offset, JSON) of ``n`` records in event-time order, round robin."""
    from bench import data

    names = [*data.NUMERIC, *data.CATEGORICAL]
    frame = data.window(n, "no_drift", seed=seed)
    cols = [frame[c].tolist() for c in names]
    preds = frame[data.PREDICTION].tolist()
    out: list[tuple[int, int, bytes]] = []
    offsets = [0] * PARTITIONS
    for i in range(n):
        p = i % PARTITIONS
        record = {
            "request_id": f"r{seed}-{i}",
            "timestamp": EPOCH + i / RATE,
            "model_version": "v1",
            "features": {name: col[i] for name, col in zip(names, cols, strict=True)},
            "prediction": preds[i],
        }
        out.append((p, offsets[p], orjson.dumps(record)))
        offsets[p] += 1
    return out


def profile_path(directory: Path) -> Path:
    from bench import data
    from detectors.profile import build_profile

    path = directory / "reference.json.gz"
    if not path.exists():
        build_profile(data.reference(50_000), prediction=[data.PREDICTION]).save(path)
    return path


def config(profile: Path, role: str, state: Path) -> Any:
    from monitor.config.model import MonitorConfig

    return MonitorConfig.model_validate(
        {
            "model": MODEL,
            "reference": str(profile),
            "source": {
                "kind": "kafka",
                "kafka": {"bootstrap_servers": "127.0.0.1:9", "topics": ["p"], "group_id": "g"},
            },
            "windows": {"size": WINDOW_SECONDS, "allowed_lateness": 1.0, "idle_timeout": 3600},
            "reports": {"log": False},
            "state": {"dir": str(state)},
            "aggregation": {"role": role},
            "drift": {"sequential": {"enabled": False}},
        }
    )


# -- one agent, in a process of its own ----------------------------------------------------


def run_agent(spec: dict[str, Any]) -> dict[str, Any]:
    """Decode and window this agent's partitions; judge windows (lone agent) or write
    partials (role agent). Returns timings and the partials' bytes."""
    from detectors.profile import load_profile
    from monitor.ingest.batch import RawMessage
    from monitor.outputs.exporter import Exporter
    from monitor.runtime.partitioned import PartitionedWindows
    from monitor.runtime.pipeline import Pipeline
    from monitor.runtime.publishing import PartialPublisher

    records = [r for r in _RECORDS if r[0] in spec["partitions"]]
    profile = load_profile(spec["profile"])
    cfg = config(Path(spec["profile"]), spec["role"], Path(tempfile.mkdtemp()))
    exporter = Exporter(model=MODEL, window_label="5s", reference_hash=profile.short_hash)
    pipeline = Pipeline(cfg, profile, exporter)
    publishes = spec["role"] == "agent"
    if publishes:
        pipeline.windows = PartitionedWindows.from_config(profile, cfg.windows)
        pipeline.windows.origin_of = lambda p: (0, True)
    pub = PartialPublisher(
        model=MODEL,
        topic="t",
        reference_hash=profile.content_hash,
        agent_id=f"a{spec['index']}",
        epoch=1,
        send=_no_send,
    )
    messages = [RawMessage(value=v, partition=p, offset=o, timestamp=None) for p, o, v in records]
    # Warm-up outside the timing: the first evaluation pays for imports and caches.
    warm = Pipeline(cfg, profile, exporter)
    warm.ingest_messages(messages[:2000], now=time.time())
    warm.evaluator.evaluate(warm.flush())
    partials: list[bytes] = []
    windows = 0
    now = time.time()
    wall, cpu = time.perf_counter(), time.process_time()
    for a in range(0, len(messages), BATCH):
        closed = pipeline.ingest_messages(messages[a : a + BATCH], now)
        windows += len(closed)
        if publishes:
            origins = dict(pipeline.windows.origins)  # type: ignore[attr-defined]
            partials += [p.to_bytes() for p in pub.window_partials(closed, 1, origins)]
        else:
            pipeline.evaluator.evaluate(closed)
    closed = pipeline.flush()
    windows += len(closed)
    if publishes:
        origins = dict(pipeline.windows.origins)  # type: ignore[attr-defined]
        partials += [p.to_bytes() for p in pub.window_partials(closed, 1, origins)]
    else:
        pipeline.evaluator.evaluate(closed)
    return {
        "records": len(messages),
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "windows": windows,
        "partials": partials,
    }


async def _no_send(topic: str, key: bytes, value: bytes) -> None:
    return None


def agents(profile: Path, role: str, count: int) -> dict[str, Any]:
    """``count`` agents over the partitions, started together, one process each."""
    shares = [set(range(i, PARTITIONS, count)) for i in range(count)]
    specs = [
        {"partitions": s, "profile": str(profile), "role": role, "index": i}
        for i, s in enumerate(shares)
    ]
    ctx = mp.get_context("fork")
    started = time.perf_counter()
    with ctx.Pool(count) as pool:
        results = pool.map(run_agent, specs)
    wall = time.perf_counter() - started
    total = sum(r["records"] for r in results)
    cpu = sum(r["cpu"] for r in results)
    return {
        "agents": count,
        "role": role,
        "records": total,
        "wall": max(r["wall"] for r in results),
        "elapsed": wall,
        "cpu": cpu,
        "rate": total / max(r["wall"] for r in results),
        "per_core": total / cpu,
        "partials": [p for r in results for p in r["partials"]],
    }


# -- the aggregator --------------------------------------------------------------------------


def aggregate(partials: list[bytes], profile_file: Path) -> dict[str, Any]:
    """Parse, merge and judge every window as the aggregator does; per-window timings."""
    from detectors.profile import load_profile
    from monitor.outputs.exporter import Exporter
    from monitor.runtime.aggregator import merge_window
    from monitor.runtime.merging import MergeState
    from monitor.runtime.partials import Partial, PartitionProgress
    from monitor.runtime.pipeline import Pipeline

    profile = load_profile(profile_file)
    cfg = config(profile_file, "aggregator", Path(tempfile.mkdtemp()))
    exporter = Exporter(model=MODEL, window_label="5s", reference_hash=profile.short_hash)
    evaluator = Pipeline(cfg, profile, exporter).evaluator
    state = MergeState(MODEL, profile.content_hash, PARTITIONS, 60.0)
    parse = time.perf_counter()
    parsed = [Partial.from_bytes(b) for b in partials]
    parse = time.perf_counter() - parse
    for p in parsed:
        state.receive(p, 0.0)
    done = {p: PartitionProgress(0, True, None, True) for p in range(PARTITIONS)}
    agents = sorted({p.agent_id for p in parsed})
    for agent in agents:
        index = int(agent[1:])
        owned = {p: done[p] for p in range(PARTITIONS) if p % len(agents) == index}
        progress = Partial(
            kind="progress",
            model=MODEL,
            agent_id=agent,
            epoch=1,
            generation=1,
            reference_hash=profile.content_hash,
            owned=owned,
        )
        state.receive(progress, 0.0)
    merge_s, eval_s, pieces = [], [], []
    due_windows = state.due(0.0)
    if due_windows:  # warm-up outside the timing
        evaluator.evaluate(merge_window(profile, due_windows[0]))
    for due in due_windows:
        t0 = time.perf_counter()
        closed = merge_window(profile, due)
        t1 = time.perf_counter()
        evaluator.evaluate(closed)
        t2 = time.perf_counter()
        merge_s.append(t1 - t0)
        eval_s.append(t2 - t1)
        pieces.append(len(due.partials))
        state.done(due.bounds, 0.0)
    per = parse / max(1, len(parsed))
    return {
        "windows": len(merge_s),
        "pieces": statistics.median(pieces) if pieces else 0,
        "parse_ms": per * statistics.median(pieces) * 1e3 if pieces else 0.0,
        "merge_ms": statistics.median(merge_s) * 1e3 if merge_s else 0.0,
        "eval_ms": statistics.median(eval_s) * 1e3 if eval_s else 0.0,
        "bytes": statistics.median([len(b) for b in partials]) if partials else 0,
    }


async def broker_hop(samples: int, size: int) -> list[float]:
    """Seconds from an acknowledged send of a ``size``-byte partial to its fetch."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from monitor.demo.broker import TansuBroker

    with TansuBroker(log_dir=Path(tempfile.mkdtemp())) as broker:
        await broker.acreate_topic("partials", 1)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        consumer = AIOKafkaConsumer(
            "partials", bootstrap_servers=broker.bootstrap, auto_offset_reset="latest"
        )
        await producer.start()
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=500)
            out = []
            payload = os.urandom(size)
            for _ in range(samples):
                t0 = time.perf_counter()
                await producer.send_and_wait("partials", payload, key=b"m")
                got = 0
                while not got:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got = sum(len(v) for v in batch.values())
                out.append(time.perf_counter() - t0)
            return out
        finally:
            await consumer.stop()
            await producer.stop()


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--broker", action="store_true", help="also time a hop through Tansu")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="driftline-scaleout-"))
    profile = profile_path(directory)
    _RECORDS[:] = make_records(args.records, seed=1)
    print(
        f"{args.records:,} records, {PARTITIONS} partitions, {WINDOW_SECONDS:g}s windows of "
        f"{int(RATE * WINDOW_SECONDS):,} records, {os.cpu_count()} cores\n"
    )
    base = agents(profile, "none", 1)
    rows = [base] + [agents(profile, "agent", k) for k in (1, 2, 4)]
    print("| agents | role | records/s (wall) | CPU s | records per CPU s | vs lone agent |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['agents']} | {r['role']} | {r['rate']:,.0f} | {r['cpu']:.1f} | "
            f"{r['per_core']:,.0f} | {r['rate'] / base['rate']:.2f}× |"
        )
    print("\naggregator, per window (median)")
    print("| agents | pieces | partial bytes | parse ms | merge ms | evaluate ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    merged = {}
    for r in rows[1:]:
        m = aggregate(r["partials"], profile)
        merged[r["agents"]] = m
        print(
            f"| {r['agents']} | {m['pieces']:.0f} | {m['bytes']:,.0f} | {m['parse_ms']:.2f} | "
            f"{m['merge_ms']:.2f} | {m['eval_ms']:.1f} |"
        )
    four = merged[4]
    print(
        f"\nwindow close → report, aggregator's part with 4 agents: "
        f"{four['parse_ms'] + four['merge_ms'] + four['eval_ms']:.1f} ms "
        f"(merge {four['merge_ms']:.2f} ms, {four['merge_ms'] / four['eval_ms']:.0%} of the "
        "evaluation's time)"
    )
    if args.broker:
        hops = asyncio.run(broker_hop(50, int(four["bytes"])))
        print(
            f"one partial through Tansu (acknowledged send → fetched), {len(hops)} samples: "
            f"median {statistics.median(hops) * 1e3:.1f} ms, "
            f"p90 {np.percentile(hops, 90) * 1e3:.1f} ms (aiokafka's default 500 ms fetch wait)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
