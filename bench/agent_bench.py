"""Throughput and memory of the agent, from the broker to closed windows, against a
straightforward pandas-per-window consumer.

The traffic is ``bench.data``'s (20 numeric features of varied shapes, 5 categorical, a
model score) written as driftline JSON records (about 800 bytes each), event times
``--event-rate`` records per second apart, produced up front to an embedded Tansu broker
in topics of 1 and 4 partitions. Then, each in a fresh subprocess pinned to one core
(``os.sched_setaffinity``; the broker gets the other cores):

* ``driftline agent``: the real :class:`monitor.runtime.agent.Agent` (Kafka source, decoder,
  event-time windows with dedupe, sketches, evaluation in its worker thread,
  checkpoints every 5 s) with 10 s windows, until every record is in a closed, evaluated
  window. When the last record has been ingested the open windows are flushed, standing
  in for the later records that would close them in a live stream. Timers around the
  fetch, the decoder, the windows, the evaluation and the checkpoints say where the time
  goes;
* ``baseline``: the same client (aiokafka, same fetch settings and batch size) and the
  same window rule, ``orjson.loads`` per record, rows collected per window as Python
  dicts, a pandas DataFrame built at window close and tested with ``scipy.stats.ks_2samp``
  per numeric column against the raw reference and ``chi2_contingency`` per categorical
  column;
* the client alone, the ceiling of any consumer built on it here: aiokafka ``getmany``
  (with the source's 4 MiB partition fetches, and with 16 MiB), ``KafkaSource.poll``
  (getmany, its records passed on as they are) and, for comparison, confluent-kafka's
  ``consume`` (librdkafka; its fetch threads share the pinned core);
* on request (``--gc-experiment``), the agent without its start-up heap frozen
  (``monitor.runtime.agent.freeze_startup_heap``) or with the cyclic collector off, to size what
  the freeze gives and what more tuning could.

Without the broker: decode-only throughput (``Decoder.decode`` on pre-built messages,
and its parts), and peak resident memory against window length (row windows of 10k,
100k and 1M rows fed from the same records) for the agent's pipeline and the baseline.

Run ``python3 -m bench.agent_bench`` (``--quick``: 200k records, windows up to 100k
rows); it prints rich tables and writes their markdown to ``bench/results/agent.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "agent.md"

MODEL = "bench-model"
VERSION = "v1"
EPOCH = 1_700_000_000.0
RECORDS_FULL = 1_000_000
RECORDS_QUICK = 200_000
RSS_WINDOWS_FULL = (10_000, 100_000, 1_000_000)
RSS_WINDOWS_QUICK = (10_000, 100_000)
PARTITIONS = (1, 4)
EVENT_RATE = 10_000.0  # records per second of event time
WINDOW_SECONDS = 10.0
# Catching up on several partitions, aiokafka hands them over unevenly: on Tansu they were
# 20 to 53 s of event time apart at 10k records/s (librdkafka: 3 s). The bench wants every
# record in a window, for the agent and the baseline alike, hence a wide lateness; the
# tables show the skew and any late record.
ALLOWED_LATENESS = 120.0
BATCH_RECORDS = 5_000  # the source's default max_batch_records
DECODE_RECORDS = 200_000
CHUNK_ROWS = 100_000
# Scenarios cycled per 100k-record chunk, so the stream has missing values, unseen
# categories and shifts like real traffic.
SCENARIOS = ("no_drift", "shift_0.25", "new_category", "missing_spike")
P_VALUE = 0.05
TARGET_RATE = 100_000.0
TARGET_RATIO = 10.0
# Same consumer settings as monitor.ingest.kafka.KafkaSource (fast group join as in tests).
CONSUMER_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 300,
    "rebalance_timeout_ms": 3000,
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
}


# -- traffic ------------------------------------------------------------------------------


def record_chunks(records: int, seed: int, rate: float) -> Iterator[list[bytes]]:
    """driftline JSON records (one per prediction), in lists of up to 10k.

    Each 100k records are one ``bench.data`` window (scenarios in turn); they are
    serialised 10k at a time, which keeps this process small (orjson's output buffers
    leave the heap fragmented when many are alive at once).
    """
    import numpy as np
    import orjson

    from bench import data

    names = [*data.NUMERIC, *data.CATEGORICAL]
    dumps = orjson.dumps
    for c, start in enumerate(range(0, records, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, records - start)
        frame = data.window(n, SCENARIOS[c % len(SCENARIOS)], seed=seed + c)
        rng = np.random.default_rng(seed + 7919 * (c + 1))
        hexed = rng.bytes(16 * n).hex()
        ids = (hexed[32 * i : 32 * i + 32] for i in range(n))
        times = (EPOCH + (start + np.arange(n)) / rate).tolist()
        preds = frame[data.PREDICTION].tolist()
        rows = zip(*(frame[name].tolist() for name in names), strict=True)
        # orjson writes NaN as null, which is how a missing value arrives
        records_iter = zip(ids, times, preds, rows, strict=True)
        while part := [
            dumps(
                {
                    "request_id": rid,
                    "timestamp": t,
                    "model_version": VERSION,
                    "features": dict(zip(names, row, strict=True)),
                    "prediction": p,
                }
            )
            for rid, t, p, row in itertools.islice(records_iter, 10_000)
        ]:
            yield part


def write_records(path: Path, records: int, seed: int, rate: float) -> int:
    """Write the records one per line; returns their total size in bytes."""
    size = 0
    with path.open("wb") as f:
        for chunk in record_chunks(records, seed, rate):
            f.write(b"\n".join(chunk))
            f.write(b"\n")
            size += sum(map(len, chunk))
    return size


def read_chunks(path: Path, size: int, limit: int | None = None) -> Iterator[list[bytes]]:
    """The records file in lists of ``size`` values (without the newline)."""
    left = limit
    with path.open("rb") as f:
        while left is None or left > 0:
            take = size if left is None else min(size, left)
            lines = [line[:-1] for line in itertools.islice(f, take)]
            if not lines:
                return
            if left is not None:
                left -= len(lines)
            yield lines


def produce(bootstrap: str, topic: str, path: Path, partitions: int) -> float:
    """Produce the file's records, record ``i`` to partition ``i % partitions``; seconds."""
    started = time.perf_counter()
    try:
        from confluent_kafka import Producer
    except ImportError:
        asyncio.run(_produce_aiokafka(bootstrap, topic, path, partitions))
        return time.perf_counter() - started
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "acks": "1",
            "log_level": 3,
        }
    )
    i = 0
    for chunk in read_chunks(path, 10_000):
        for value in chunk:
            while True:
                try:
                    producer.produce(topic, value, partition=i % partitions)
                    break
                except BufferError:
                    producer.poll(0.05)
            i += 1
        producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} records were not delivered to {topic}")
    return time.perf_counter() - started


async def _produce_aiokafka(bootstrap: str, topic: str, path: Path, partitions: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, acks=1)
    await producer.start()
    try:
        i = 0
        for chunk in read_chunks(path, 10_000):
            futures = []
            for value in chunk:
                futures.append(await producer.send(topic, value, partition=i % partitions))
                i += 1
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def confluent_available() -> bool:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def pin_broker(pid: int, cpus: set[int]) -> None:
    """Every thread of the broker onto ``cpus`` (the consumer gets the remaining one)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Stage:
    """Wall and CPU (of the calling thread) spent in one kind of work."""

    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0

    def reset(self) -> None:
        self.wall = self.cpu = 0.0
        self.calls = 0

    def add(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu
        self.calls += 1


def timed(stage: Stage, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            stage.add(time.perf_counter() - w, time.thread_time() - c)

    return wrapper


def timed_async(stage: Stage, fn: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return await fn(*args, **kwargs)
        finally:
            stage.add(time.perf_counter() - w, time.thread_time() - c)

    return wrapper


class GcTimer:
    """Time in the cyclic garbage collector's passes (they run inside the other stages)."""

    def __init__(self) -> None:
        self.stage = Stage()
        self.full = Stage()  # of which generation-2 (full) collections
        self._started: tuple[float, float] | None = None
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: Mapping[str, Any]) -> None:
        # the callbacks run in the thread that triggered the collection
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
        elif self._started is not None:
            wall = time.perf_counter() - self._started[0]
            cpu = time.thread_time() - self._started[1]
            self.stage.add(wall, cpu)
            if info.get("generation") == 2:
                self.full.add(wall, cpu)
            self._started = None


def patch(
    owner: object,
    name: str,
    wrap: Callable[[Stage, Callable[..., Any]], Callable[..., Any]],
    stage: Stage,
) -> None:
    """Time ``owner.name`` (a class's method, or one object's) into ``stage``."""
    setattr(owner, name, wrap(stage, getattr(owner, name)))


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def rss_kib() -> int:
    """Current resident set size of this process."""
    return _status_kib("VmRSS")


def peak_rss_kib() -> int:
    """The process's resident high-water mark since its exec. (``ru_maxrss`` would not do:
    a child started by fork and exec keeps the parent's high-water mark.)"""
    return _status_kib("VmHWM")


class Skew:
    """How far apart the partitions are consumed, as event time: record ``i`` went to
    partition ``i % P`` at offset ``i // P``, so an offset gap of g is ``g · P / rate`` s."""

    def __init__(self, partitions: int, rate: float) -> None:
        self.partitions = partitions
        self.rate = rate
        self.positions: dict[int, int] = {}
        self.max_gap = 0

    def update(self, positions: Mapping[int, int]) -> None:
        self.positions.update(positions)
        if self.partitions > 1 and self.positions:
            low = min(self.positions.get(p, 0) for p in range(self.partitions))
            self.max_gap = max(self.max_gap, max(self.positions.values()) - low)

    @property
    def seconds(self) -> float:
        return self.max_gap * self.partitions / self.rate


@dataclass
class Span:
    """Start of the measured span (first records in hand) and its end."""

    n_first: int = 0
    wall0: float = 0.0
    proc0: float = 0.0
    thread0: float = 0.0
    ingested: float = 0.0
    wall1: float = 0.0
    proc1: float = 0.0
    thread1: float = 0.0

    def begin(self, first_batch: int) -> None:
        self.n_first = first_batch
        self.wall0, self.proc0 = time.perf_counter(), time.process_time()
        self.thread0 = time.thread_time()

    def end(self) -> None:
        self.wall1, self.proc1 = time.perf_counter(), time.process_time()
        self.thread1 = time.thread_time()

    def result(self, records: int) -> dict[str, Any]:
        """Records counted exclude the first batch, whose fetch precedes the span."""
        counted = records - self.n_first
        wall, cpu = self.wall1 - self.wall0, self.proc1 - self.proc0
        return {
            "records": records,
            "counted": counted,
            "wall": wall,
            "cpu": cpu,
            "main_cpu": self.thread1 - self.thread0,
            "ingest_wall": self.ingested - self.wall0,
            "rate": counted / wall,
            "cpu_rate": counted / cpu,
        }


# -- children: each runs in its own process, pinned to one core -----------------------------


def agent_config(spec: Mapping[str, Any]) -> Any:
    from monitor.config.model import MonitorConfig

    windows: dict[str, Any] = {
        "size": spec.get("window_seconds", WINDOW_SECONDS),
        "allowed_lateness": ALLOWED_LATENESS,
        # the bench flushes at end of input; no idle close while the broker catches up
        "idle_timeout": 3600.0,
    }
    if spec.get("window_rows"):
        windows = {"rows": spec["window_rows"], "idle_timeout": 3600.0}
    return MonitorConfig.model_validate(
        {
            "model": MODEL,
            "reference": spec["profile"],
            "source": {
                "kind": "kafka",
                "kafka": {
                    "bootstrap_servers": spec.get("bootstrap", "127.0.0.1:9"),
                    "topics": [spec.get("topic", "predictions")],
                    "group_id": spec.get("group", "bench"),
                    "start": "earliest",
                    "max_batch_records": spec.get("batch_records", BATCH_RECORDS),
                    "client": spec.get("client", "aiokafka"),
                    "session_timeout_ms": 3000,
                    "heartbeat_interval_ms": 300,
                    "rebalance_timeout_ms": 3000,
                },
            },
            "windows": windows,
            "exporter": {"host": "127.0.0.1", "port": 0},
            "reports": {"log": False},
            "state": {"dir": spec.get("state_dir", tempfile.mkdtemp(prefix="driftline-bench-"))},
        }
    )


class _CountingSink:
    """Collects report counts; ends the run once every record is in a reported window."""

    def __init__(self, total: int, done: Callable[[], None]) -> None:
        self.total = total
        self.done = done
        self.seen = 0
        self.windows = 0
        self.late = 0
        self.duplicates = 0
        self.drifted = 0

    def write(self, report: Any) -> None:
        self.windows += 1
        self.late += report.late_records
        self.duplicates += report.duplicate_records
        self.drifted += int(report.drifted)
        self.seen += report.rows + report.late_records + report.duplicate_records
        if self.seen >= self.total:
            self.done()

    def close(self) -> None:
        return None


def child_agent(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The real Agent from the broker to evaluated windows, with stage timers."""
    from aiokafka import AIOKafkaConsumer

    from detectors.profile import load_profile
    from monitor.ingest.kafka import KafkaSource
    from monitor.runtime.agent import Agent, freeze_startup_heap

    total = int(spec["records"])
    stages = {name: Stage() for name in ("fetch", "poll", "decode", "windows", "checkpoint")}
    eval_stage = Stage()
    collector = GcTimer()
    stages["gc"] = collector.stage
    stages["gc_full"] = collector.full
    source_class: Any = KafkaSource
    if spec.get("client") == "confluent":
        from monitor.ingest.confluent import ConfluentSource

        source_class = ConfluentSource
        # librdkafka's consume and the record views, in the worker thread
        patch(ConfluentSource, "_consume", timed, stages["fetch"])
    else:
        patch(AIOKafkaConsumer, "getmany", timed_async, stages["fetch"])
    patch(source_class, "poll", timed_async, stages["poll"])
    skew = Skew(int(spec.get("partitions", 1)), float(spec.get("event_rate", EVENT_RATE)))
    timed_poll = source_class.poll

    async def poll(self: Any, timeout_ms: int = 200) -> list[Any]:
        messages = await timed_poll(self, timeout_ms)
        skew.update({p: o for (_, p), o in self.positions.items()})
        return messages

    setattr(source_class, "poll", poll)  # noqa: B010

    config = agent_config(spec)
    span = Span()
    stop = asyncio.Event()

    frozen: dict[str, dict[str, float]] = {}

    def done() -> None:
        span.end()
        frozen.update({name: dict(vars(s)) for name, s in stages.items()})
        frozen["evaluation"] = dict(vars(eval_stage))
        stop.set()

    sink = _CountingSink(total, done)
    agent = Agent(config, profile=load_profile(spec["profile"]), sinks=[sink], serve_http=False)
    pipeline = agent.pipeline
    if not spec.get("columnar", True):  # the decoder as it was: the general reader only
        pipeline.decoder.columnar = None
    patch(pipeline.decoder, "decode", timed, stages["decode"])
    patch(pipeline.windows, "add", timed, stages["windows"])
    patch(pipeline.evaluator, "evaluate", timed, eval_stage)
    patch(agent, "checkpoint", timed_async, stages["checkpoint"])
    revoke = agent._on_revoke
    revocations = 0

    async def on_revoke(partitions: set[tuple[str, int]]) -> None:
        nonlocal revocations
        if not stop.is_set():  # the one at shutdown is not a rebalance
            revocations += 1
        await revoke(partitions)

    setattr(agent, "_on_revoke", on_revoke)  # noqa: B010 (read when the source is built)
    ingest = pipeline.ingest_messages
    taken = 0

    def ingest_messages(messages: Sequence[Any], now: float) -> list[Any]:
        nonlocal taken
        if taken == 0:  # the span starts with the first records in hand
            span.begin(len(messages))
            for stage in (*stages.values(), eval_stage):
                stage.reset()
        closed = ingest(messages, now)
        taken += len(messages)
        if taken >= total:  # end of input: close what a later record would close
            span.ingested = time.perf_counter()
            closed = closed + pipeline.windows.flush()
        return closed

    setattr(pipeline, "ingest_messages", ingest_messages)  # noqa: B010 (an instance override)

    if spec.get("gc") != "unfrozen":
        freeze_startup_heap()  # as run_agent does after start-up
    if spec.get("gc") == "off":
        gc.disable()

    profiler = None
    if spec.get("cprofile"):
        import cProfile

        profiler = cProfile.Profile()

    async def main() -> None:
        task = asyncio.create_task(agent.run(stop))
        await asyncio.wait_for(stop.wait(), timeout=float(spec.get("timeout", 600)))
        await task

    if profiler is not None:
        profiler.enable()
    asyncio.run(main())
    if profiler is not None:
        profiler.disable()
    out = span.result(total)
    out["stages"] = frozen
    out["windows"] = sink.windows
    out["late"] = sink.late
    out["duplicates"] = sink.duplicates
    out["drifted_windows"] = sink.drifted
    out["rebalances"] = revocations
    out["skew_seconds"] = skew.seconds
    out["peak_rss_kib"] = peak_rss_kib()
    out["client"] = spec.get("client", "aiokafka")
    if profiler is not None:
        out["cprofile"] = profile_lines(profiler, 25)
    return out


def profile_lines(profiler: Any, top: int) -> list[str]:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    lines = buf.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return [line.replace(str(ROOT) + "/", "") for line in lines[start:] if line.strip()]


class Reference:
    """The baseline's reference: raw arrays per column, as a per-window scipy test needs."""

    def __init__(self) -> None:
        import numpy as np
        from scipy import stats

        from bench import data

        frame = data.reference()
        self.numeric = {
            name: frame[name].dropna().to_numpy(np.float64)
            for name in (*data.NUMERIC, data.PREDICTION)
        }
        self.categorical = {
            name: frame[name].dropna().astype(str).value_counts() for name in data.CATEGORICAL
        }
        # warm up, so the first window does not pay for scipy's lazy imports
        stats.ks_2samp(self.numeric[data.PREDICTION][:100], self.numeric[data.PREDICTION][100:200])
        stats.chi2_contingency(np.array([[10, 20], [20, 10]]))


def baseline_window(rows: list[dict[str, Any]], ref: Reference, stages: dict[str, Stage]) -> int:
    """What a straightforward monitor does at window close; returns drifted columns."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    w, c = time.perf_counter(), time.thread_time()
    frame = pd.DataFrame(rows)
    stages["frame"].add(time.perf_counter() - w, time.thread_time() - c)
    w, c = time.perf_counter(), time.thread_time()
    drifted = 0
    for name, reference in ref.numeric.items():
        current = frame[name].to_numpy(np.float64, na_value=np.nan)
        current = current[~np.isnan(current)]
        if len(current) and stats.ks_2samp(reference, current).pvalue < P_VALUE:
            drifted += 1
    for name, ref_counts in ref.categorical.items():
        counts = frame[name].dropna().astype(str).value_counts()
        both = pd.concat([ref_counts, counts], axis=1).fillna(0).to_numpy().T
        if counts.sum() and stats.chi2_contingency(both).pvalue < P_VALUE:
            drifted += 1
    frame.isna().mean()  # missing share per column, the quality half of a report
    stages["tests"].add(time.perf_counter() - w, time.thread_time() - c)
    return drifted


def child_baseline(spec: Mapping[str, Any]) -> dict[str, Any]:
    """aiokafka + orjson + lists of dicts per window + pandas + scipy at close."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    total = int(spec["records"])
    size = float(spec.get("window_seconds", WINDOW_SECONDS))
    max_records = int(spec.get("batch_records", BATCH_RECORDS))
    ref = Reference()
    stages = {name: Stage() for name in ("fetch", "parse", "frame", "tests")}
    collector = GcTimer()
    stages["gc"], stages["gc_full"] = collector.stage, collector.full
    skew = Skew(int(spec.get("partitions", 1)), float(spec.get("event_rate", EVENT_RATE)))
    span = Span()
    result: dict[str, Any] = {"windows": 0, "late": 0, "drifted_columns": 0}

    async def main() -> None:
        consumer = AIOKafkaConsumer(
            spec["topic"],
            bootstrap_servers=spec["bootstrap"],
            group_id=spec["group"],
            **CONSUMER_SETTINGS,
        )
        await consumer.start()
        loads = orjson.loads
        windows: dict[int, list[dict[str, Any]]] = {}
        closed_to = -(2**62)  # windows with index < closed_to are closed
        max_t = float("-inf")
        taken = 0
        try:
            while taken < total:
                w, c = time.perf_counter(), time.thread_time()
                batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
                stages["fetch"].add(time.perf_counter() - w, time.thread_time() - c)
                if not batches:
                    continue
                skew.update({tp.partition: ms[-1].offset + 1 for tp, ms in batches.items() if ms})
                if taken == 0:
                    span.begin(sum(map(len, batches.values())))
                    for stage in stages.values():
                        stage.reset()
                w, c = time.perf_counter(), time.thread_time()
                for messages in batches.values():
                    for m in messages:
                        record = loads(m.value)
                        t = record["timestamp"]
                        index = int(t // size)
                        if index < closed_to:
                            result["late"] += 1
                            continue
                        row = record["features"]
                        row["prediction"] = record["prediction"]
                        window = windows.get(index)
                        if window is None:
                            window = windows[index] = []
                        window.append(row)
                        if t > max_t:
                            max_t = t
                    taken += len(messages)
                if taken >= total:
                    span.ingested = time.perf_counter()
                stages["parse"].add(time.perf_counter() - w, time.thread_time() - c)
                horizon = int((max_t - ALLOWED_LATENESS) // size) if taken < total else 2**62
                for index in sorted(i for i in windows if (i + 1) <= horizon):
                    result["drifted_columns"] += baseline_window(windows.pop(index), ref, stages)
                    result["windows"] += 1
                    closed_to = max(closed_to, index + 1)
            span.end()
        finally:
            await consumer.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=float(spec.get("timeout", 600))))
    out = span.result(total)
    out.update(result)
    out["skew_seconds"] = skew.seconds
    out["stages"] = {name: vars(s) for name, s in stages.items()}
    out["peak_rss_kib"] = peak_rss_kib()
    return out


def child_fetch(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The client alone: aiokafka ``getmany`` (``mode=getmany``, optionally with other
    ``partition_fetch_bytes``), the agent's source passing its records on
    (``mode=poll``), or confluent-kafka's ``consume`` (``mode=confluent``)."""
    total = int(spec["records"])
    max_records = int(spec.get("batch_records", BATCH_RECORDS))
    span = Span()
    fetchers: dict[str, Callable[..., Any]] = {
        "getmany": _aiokafka_fetch,
        "poll": _source_fetch,
        "confluent": _confluent_fetch,
    }

    async def main() -> None:
        fetch, close = await fetchers[spec["mode"]](spec, max_records)
        taken = 0
        try:
            while taken < total:
                got = await fetch()
                if got and taken == 0:
                    span.begin(got)
                taken += got
            span.ingested = time.perf_counter()
            span.end()
        finally:
            await close()

    asyncio.run(asyncio.wait_for(main(), timeout=float(spec.get("timeout", 600))))
    return span.result(total)


async def _aiokafka_fetch(spec: Mapping[str, Any], max_records: int) -> tuple[Any, Any]:
    from aiokafka import AIOKafkaConsumer

    settings = dict(CONSUMER_SETTINGS)
    if spec.get("partition_fetch_bytes"):
        settings["max_partition_fetch_bytes"] = int(spec["partition_fetch_bytes"])
    consumer = AIOKafkaConsumer(
        spec["topic"], bootstrap_servers=spec["bootstrap"], group_id=spec["group"], **settings
    )
    await consumer.start()

    async def fetch() -> int:
        got = await consumer.getmany(timeout_ms=200, max_records=max_records)
        return sum(len(ms) for ms in got.values())

    return fetch, consumer.stop


async def _source_fetch(spec: Mapping[str, Any], max_records: int) -> tuple[Any, Any]:
    from monitor.ingest.kafka import KafkaSource

    source = KafkaSource(agent_config(spec).source.kafka)
    await source.start(asyncio.Event())

    async def fetch() -> int:
        return len(await source.poll(timeout_ms=200))

    return fetch, source.stop


async def _confluent_fetch(spec: Mapping[str, Any], max_records: int) -> tuple[Any, Any]:
    from confluent_kafka import Consumer

    from monitor.demo.broker import LIBRDKAFKA_FAST_GROUP

    consumer = Consumer(
        {
            "bootstrap.servers": spec["bootstrap"],
            "group.id": spec["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "max.partition.fetch.bytes": CONSUMER_SETTINGS["max_partition_fetch_bytes"],
            **LIBRDKAFKA_FAST_GROUP,
        }
    )
    consumer.subscribe([spec["topic"]])

    async def fetch() -> int:
        # blocking, as a source built on it would be from a thread; values are touched
        # since a decoder needs them
        messages = consumer.consume(num_messages=max_records, timeout=0.2)
        return sum(1 for m in messages if m.error() is None and m.value() is not None)

    async def close() -> None:
        consumer.close()

    return fetch, close


def child_decode(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Decode-only throughput and its parts, on records already in memory."""
    import orjson
    from aiokafka.structs import ConsumerRecord

    from detectors.profile import load_profile
    from monitor.ingest.decoder import Decoder
    from monitor.ingest.values import row_keys
    from monitor.runtime.windows import WindowManager

    config = agent_config(spec)
    profile = load_profile(spec["profile"])
    path = Path(spec["records_file"])
    values = [v for chunk in read_chunks(path, 10_000, int(spec["records"])) for v in chunk]
    n = len(values)
    batch = int(spec.get("batch_records", BATCH_RECORDS))
    out: dict[str, Any] = {"records": n, "batch": batch}

    def measure(name: str, fn: Callable[[], Any]) -> Any:
        gc.collect()
        best: tuple[float, float] | None = None
        result = None
        for _ in range(int(spec.get("repeats", 2))):
            w, c = time.perf_counter(), time.process_time()
            result = fn()
            took = (time.perf_counter() - w, time.process_time() - c)
            best = took if best is None or took[0] < best[0] else best
        assert best is not None
        out[name] = {"wall": best[0], "cpu": best[1]}
        return result

    def raw_messages() -> list[Any]:
        # the records aiokafka's getmany builds, which KafkaSource.poll passes on as they are
        return [
            ConsumerRecord(
                topic="predictions",
                partition=0,
                offset=i,
                timestamp=1_700_000_000_000,
                timestamp_type=0,
                key=None,
                value=v,
                checksum=None,
                serialized_key_size=-1,
                serialized_value_size=len(v),
                headers=(),
            )
            for i, v in enumerate(values)
        ]

    messages = measure("raw_message", raw_messages)
    loads = orjson.loads

    def parse() -> None:
        for v in values:
            loads(v)

    measure("orjson_loads", parse)
    decoder = Decoder(config.record, profile.schema)
    parse_struct = decoder.driftline.fast_decode  # the decoder's own msgspec struct decoder
    if parse_struct is not None:

        def structs() -> None:
            for v in values:
                parse_struct(v)

        measure("msgspec_structs", structs)
    ids = [orjson.loads(v)["request_id"] for v in values]
    measure("row_keys", lambda: row_keys(ids))
    general = Decoder(config.record, profile.schema, columnar=False)
    measure(
        "decode_general",
        lambda: [general.decode(messages[i : i + batch], now=0.0) for i in range(0, n, batch)],
    )
    batches = measure(
        "decode",
        lambda: [decoder.decode(messages[i : i + batch], now=0.0) for i in range(0, n, batch)],
    )

    def windows() -> int:
        manager = WindowManager.from_config(profile, config.windows)
        closed = 0
        for b in batches:
            closed += len(manager.add(b, 0.0).closed)
        return closed + len(manager.flush())

    measure("windows", windows)
    return out


def child_rss(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Peak memory of one method over row windows of ``window_rows``, fed from the file."""
    from monitor.ingest.batch import RawMessage

    path = Path(spec["records_file"])
    window_rows = int(spec["window_rows"])
    batch = BATCH_RECORDS
    out: dict[str, Any] = {"window_rows": window_rows, "windows": 0}
    started = time.perf_counter()
    if spec["method"] == "driftline":
        from detectors.profile import load_profile
        from monitor.outputs.exporter import Exporter
        from monitor.runtime.pipeline import Pipeline

        profile = load_profile(spec["profile"])
        pipeline = Pipeline(
            agent_config(spec),
            profile,
            Exporter(model=MODEL, window_label="rows", reference_hash=profile.short_hash),
        )
        sketch_bytes: list[int] = []
        out["setup_rss_kib"] = rss_kib()

        def judge(closed: list[Any]) -> None:
            for window in closed:
                sketch_bytes.append(len(window.sketch.to_bytes()))
            pipeline.evaluator.evaluate(closed)
            out["windows"] += len(closed)

        offset = 0
        for chunk in read_chunks(path, batch):
            messages = [
                RawMessage(value=v, topic="predictions", offset=offset + i)
                for i, v in enumerate(chunk)
            ]
            offset += len(chunk)
            judge(pipeline.ingest_messages(messages, time.time()))
        judge(pipeline.windows.flush())
        out["sketch_bytes"] = max(sketch_bytes)
        out["dedupe_ids"] = pipeline.windows.dedupe_size
    else:
        import orjson

        ref = Reference()
        stages = {"frame": Stage(), "tests": Stage()}
        out["setup_rss_kib"] = rss_kib()
        rows: list[dict[str, Any]] = []
        for chunk in read_chunks(path, batch):
            for value in chunk:
                record = orjson.loads(value)
                row = record["features"]
                row["prediction"] = record["prediction"]
                rows.append(row)
                if len(rows) == window_rows:
                    baseline_window(rows, ref, stages)
                    out["windows"] += 1
                    rows = []
        if rows:
            baseline_window(rows, ref, stages)
            out["windows"] += 1
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_kib"] = peak_rss_kib()
    return out


CHILDREN: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "agent": child_agent,
    "baseline": child_baseline,
    "fetch": child_fetch,
    "decode": child_decode,
    "rss": child_rss,
}


def child_main(kind: str, spec_json: str) -> int:
    spec = json.loads(spec_json)
    import logging

    logging.basicConfig(level=logging.WARNING)
    result = CHILDREN[kind](spec)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def run_child(
    kind: str, spec: Mapping[str, Any], cpu: int, timeout: float, root: Path = ROOT
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter pinned to ``cpu``, on the code of the
    checkout at ``root`` (the bench's own for this tree, a baseline's for ``--baseline``)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "bench.agent_bench", "--child", kind, "--cpu", str(cpu)]
    cmd += ["--spec", json.dumps({**spec, "timeout": timeout})]
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout + 60
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = dict(json.loads(line[len("RESULT ") :]))
            warnings = [w for w in proc.stderr.splitlines() if w.strip()]
            if warnings:
                result["stderr_tail"] = warnings[-8:]
            return result
    tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
    return {"error": f"exit {proc.returncode}: {tail}"}


# -- tables ------------------------------------------------------------------------------


@dataclass
class TableData:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


def fmt_rate(x: float | None) -> str:
    return "–" if x is None else f"{x / 1000:,.1f}k"


def fmt_s(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def fmt_mib(kib: float | None) -> str:
    return "–" if kib is None else f"{kib / 1024:,.0f} MiB"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "–"
    return f"{b / 1024:,.0f} KiB" if b < 1024**2 else f"{b / 1024**2:,.1f} MiB"


def ok(result: Mapping[str, Any] | None) -> TypeGuard[Mapping[str, Any]]:
    return result is not None and "error" not in result


def windows_cell(r: Mapping[str, Any]) -> str:
    """Windows closed, and the records set aside as late or duplicate (none expected)."""
    if "windows" not in r:
        return "–"
    cell = f"{r['windows']} ({r.get('late', 0):,} late, {r.get('duplicates', 0):,} dup"
    if r.get("skew_seconds"):
        cell += f"; partitions up to {r['skew_seconds']:.0f} s apart"
    if r.get("rebalances"):
        cell += f", {r['rebalances']} rebalance{'s' if r['rebalances'] > 1 else ''}"
    return cell + ")"


def statistics_cpu(r: Mapping[str, Any], agent: bool) -> float:
    """CPU µs per record of the part the designs differ in: the agent's windows, sketches
    and evaluation against the baseline's DataFrame and scipy tests."""
    keys = ("windows", "evaluation") if agent else ("frame", "tests")
    return sum(r["stages"][k]["cpu"] for k in keys) / r["records"] * 1e6


def repeat_note(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Which figures are the best of several runs, and the others' records/s."""
    parts = []
    for label, r in runs.items():
        tries = r.get("tries", [])
        if len(tries) > 1:
            rates = ", ".join(f"{t['rate'] / 1000:.1f}k" for t in tries)
            parts.append(f"{label}: {rates}")
    if not parts:
        return ""
    return " Best of several runs; records/s of each run: " + "; ".join(parts) + "."


def e2e_table(partitions: int, runs: Mapping[str, Mapping[str, Any]]) -> TableData:
    base = runs.get("baseline")
    rows = []
    for label, r in runs.items():
        if not ok(r):
            rows.append([label, *["–"] * 6, str(r.get("error", ""))[:60]])
            continue
        ratio = "–"
        if label.startswith("driftline agent") and ok(base):
            wall, cpu = r["rate"] / base["rate"], r["cpu_rate"] / base["cpu_rate"]
            ratio = f"{wall:.2f}× (CPU {cpu:.2f}×)"
        rows.append(
            [
                label,
                f"{r['counted']:,}",
                fmt_s(r["wall"]),
                fmt_rate(r["rate"]),
                fmt_s(r["cpu"]),
                fmt_rate(r["cpu_rate"]),
                windows_cell(r),
                ratio,
            ]
        )
    return TableData(
        f"End to end, {partitions} partition{'s' if partitions > 1 else ''}: broker to "
        "closed, evaluated windows, one core",
        [
            "consumer",
            "records",
            "wall s",
            "records/s",
            "CPU s",
            "records/CPU-s",
            "windows",
            "vs baseline",
        ],
        rows,
        "records/s = records / wall time from the first fetched batch to the last window "
        "evaluated (the first batch is not counted); records/CPU-s uses the consumer "
        "process's CPU time (all its threads) over the same span." + repeat_note(runs),
    )


AGENT_STAGES = (
    ("fetch", "aiokafka getmany (fetch, record parsing, ConsumerRecord objects)"),
    ("poll_only", "KafkaSource.poll less getmany (records passed on as they are)"),
    ("decode", "Decoder.decode (JSON to columns, row keys)"),
    ("windows", "WindowManager.add (dedupe, panes, sketch update)"),
    ("evaluation", "window evaluation (worker thread)"),
    ("checkpoint", "checkpoints (snapshot, write, commit)"),
    ("other", "the rest of the loop (exporter counters, offsets, event loop)"),
    ("gc", "of all the above: the cyclic garbage collector"),
    ("gc_full", "of which full (generation 2) collections"),
)
AGENT_STAGES_CONFLUENT = (
    ("fetch", "librdkafka consume + record views (worker thread)"),
    ("poll_only", "ConfluentSource.poll on the event loop (thread hand-off, offsets)"),
    *AGENT_STAGES[2:],
)
BASELINE_STAGES = (
    ("fetch", "aiokafka getmany"),
    ("parse", "orjson.loads + rows into per-window lists"),
    ("frame", "pandas DataFrame at window close"),
    ("tests", "scipy ks_2samp / chi2_contingency per column"),
    ("other", "the rest (event loop)"),
    ("gc", "of all the above: the cyclic garbage collector"),
    ("gc_full", "of which full (generation 2) collections"),
)


def stage_table(label: str, r: Mapping[str, Any], agent: bool) -> TableData:
    s = {k: dict(v) for k, v in r["stages"].items()}
    if agent and r.get("client") == "confluent":
        # consume runs in a worker thread: the poll's own CPU (event-loop thread) is
        # what it costs besides, and the fetch's CPU is added to the main thread's
        s["poll_only"] = {"wall": s["poll"]["wall"] - s["fetch"]["wall"], "cpu": s["poll"]["cpu"]}
        main: tuple[str, ...] = ("poll", "decode", "windows", "checkpoint")
        names: tuple[tuple[str, str], ...] = AGENT_STAGES_CONFLUENT
    elif agent:
        s["poll_only"] = {
            "wall": s["poll"]["wall"] - s["fetch"]["wall"],
            "cpu": s["poll"]["cpu"] - s["fetch"]["cpu"],
        }
        main = ("poll", "decode", "windows", "checkpoint")
        names = AGENT_STAGES
    else:
        main = ("fetch", "parse", "frame", "tests")
        names = BASELINE_STAGES
    s["other"] = {
        "wall": max(0.0, r["wall"] - sum(s[k]["wall"] for k in main)),
        "cpu": max(0.0, r["main_cpu"] - sum(s[k]["cpu"] for k in main)),
    }
    total_cpu = r["cpu"]
    rows = []
    for key, title in names:
        st = s[key]
        rows.append(
            [
                title,
                fmt_s(st["wall"]),
                fmt_s(st["cpu"]),
                f"{st['cpu'] / r['records'] * 1e6:.2f}",
                f"{st['cpu'] / total_cpu:.0%}",
            ]
        )
    rows.append(
        [
            "total (process CPU, all threads)",
            fmt_s(r["wall"]),
            fmt_s(total_cpu),
            f"{total_cpu / r['records'] * 1e6:.2f}",
            "100%",
        ]
    )
    return TableData(
        f"Where the time goes: {label}",
        ["stage", "wall s", "CPU s", "CPU µs/record", "share of CPU"],
        rows,
        "Timers around each stage (CPU of the thread running it). The fetch's wall time "
        "includes waiting for the broker; its CPU includes whatever else the event loop ran "
        "during the wait.",
    )


def decode_table(
    r: Mapping[str, Any], before: Mapping[str, Any] | None = None, before_name: str = ""
) -> TableData:
    parts = (
        (
            "raw_message",
            "ConsumerRecord per record (getmany builds them, the source passes them on)",
        ),
        ("orjson_loads", "orjson.loads per record (JSON parse alone, no columns)"),
        ("msgspec_structs", "msgspec decode into the decoder's record structs (its first step)"),
        ("row_keys", "row_keys: BLAKE2b-64 of each request id (inside decode)"),
        (
            "decode_general",
            "Decoder.decode without its columnar path (the general reader for every record)",
        ),
        ("decode", f"Decoder.decode, batches of {r['batch']:,} (records to columns)"),
        ("windows", "WindowManager.add on the decoded batches (10 s windows)"),
    )
    n = r["records"]
    rows = []
    for key, title in parts:
        if key not in r:
            continue
        wall, cpu = r[key]["wall"], r[key]["cpu"]
        row = [title, fmt_rate(n / wall), fmt_rate(n / cpu), f"{cpu / n * 1e6:.2f}"]
        if before is not None:
            row.append(f"{before[key]['cpu'] / n * 1e6:.2f}" if key in before else "–")
        rows.append(row)
    wall = r["decode"]["wall"] + r["windows"]["wall"]
    cpu = r["decode"]["cpu"] + r["windows"]["cpu"]
    row = [
        "decode + windows (the pipeline without a broker)",
        fmt_rate(n / wall),
        fmt_rate(n / cpu),
        f"{cpu / n * 1e6:.2f}",
    ]
    if before is not None:
        row.append(f"{(before['decode']['cpu'] + before['windows']['cpu']) / n * 1e6:.2f}")
    rows.append(row)
    columns = ["work", "records/s", "records/CPU-s", "CPU µs/record"]
    if before is not None:
        columns.append(f"CPU µs/record, {before_name}")
    return TableData(f"Decode only ({n:,} records in memory, one core, best of 2)", columns, rows)


def rss_table(
    results: Mapping[tuple[str, int], Mapping[str, Any]], sizes: Sequence[int]
) -> TableData:
    rows = []
    for size in sizes:
        d, b = results.get(("driftline", size), {}), results.get(("baseline", size), {})

        def cell(r: Mapping[str, Any], key: str) -> str:
            return fmt_mib(r.get(key)) if ok(r) else str(r.get("error", "–"))[:40]

        def growth(r: Mapping[str, Any]) -> str:
            if not ok(r):
                return "–"
            return fmt_mib(r["peak_rss_kib"] - r["setup_rss_kib"])

        rows.append(
            [
                f"{size:,}",
                cell(d, "peak_rss_kib"),
                growth(d),
                fmt_bytes(d.get("sketch_bytes")) if ok(d) else "–",
                f"{d['dedupe_ids']:,}" if ok(d) else "–",
                cell(b, "peak_rss_kib"),
                growth(b),
            ]
        )
    return TableData(
        "Peak resident memory against window length (row windows, same records)",
        [
            "window rows",
            "driftline peak RSS",
            "driftline above setup",
            "sketch (serialised)",
            "dedupe ids held",
            "baseline peak RSS",
            "baseline above setup",
        ],
        rows,
        "Peak RSS is the process's high-water mark (VmHWM); 'above setup' subtracts the "
        "RSS after imports and the reference were loaded. The dedupe store is bounded by "
        "windows.dedupe_max_ids and the event-time horizon, not by the window length.",
    )


def targets_table(
    e2e: Mapping[int, Mapping[str, Mapping[str, Any]]], rss: Mapping[tuple[str, int], Any]
) -> TableData:
    rows = []
    for partitions, runs in e2e.items():
        agent = runs.get("driftline agent")
        base = runs.get("baseline")
        if ok(agent):
            rate = agent["rate"]
            rows.append(
                [
                    f"≥ 100k records/s end to end, one core ({partitions}p)",
                    f"{rate / 1000:.1f}k/s wall, {agent['cpu_rate'] / 1000:.1f}k/CPU-s",
                    _yn(rate >= TARGET_RATE),
                ]
            )
        if ok(agent) and ok(base):
            ratio = agent["rate"] / base["rate"]
            rows.append(
                [
                    f"≥ 10× the pandas baseline ({partitions}p)",
                    f"{ratio:.2f}× wall, {agent['cpu_rate'] / base['cpu_rate']:.2f}× CPU",
                    _yn(ratio >= TARGET_RATIO),
                ]
            )
            ours, theirs = statistics_cpu(agent, True), statistics_cpu(base, False)
            rows.append(
                [
                    f"for reference, not a target: statistics part only ({partitions}p)",
                    f"windows + sketches + evaluation {ours:.2f} µs/record vs DataFrame + "
                    f"scipy {theirs:.2f} µs/record of CPU: {theirs / ours:.1f}×",
                    "–",
                ]
            )
    sizes = sorted({size for method, size in rss if method == "driftline"})
    peaks = [rss[("driftline", s)] for s in sizes if ok(rss[("driftline", s)])]
    if len(peaks) >= 2:
        lo = min(p["peak_rss_kib"] for p in peaks)
        hi = max(p["peak_rss_kib"] for p in peaks)
        rows.append(
            [
                f"agent RSS flat against window length ({sizes[0]:,} to {sizes[-1]:,} rows)",
                f"{fmt_mib(lo)} to {fmt_mib(hi)} ({hi / lo - 1:+.0%})",
                _yn(hi <= 1.1 * lo),
            ]
        )
    return TableData("Targets", ["target", "measured", "met"], rows)


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def machine_load() -> str:
    """The 1, 5 and 15 minute load averages: other work on a shared machine skews wall time."""
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiokafka
    import msgspec
    import numpy
    import orjson
    import pandas
    import scipy

    versions = (
        f"numpy {numpy.__version__}, pandas {pandas.__version__}, scipy {scipy.__version__}, "
        f"aiokafka {aiokafka.__version__}, orjson {orjson.__version__}, "
        f"msgspec {msgspec.__version__}"
    )
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "versions": versions,
        "load": "load average " + machine_load(),
        "date": datetime.date.today().isoformat(),
    }


def to_markdown(table: TableData) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = [f"### {table.title}", ""]
    out.append("| " + " | ".join(map(esc, table.columns)) + " |")
    out.append("|" + "|".join(" --- " for _ in table.columns) + "|")
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    if table.note:
        out += ["", table.note]
    return "\n".join(out) + "\n"


def print_rich(table: TableData) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=table.title, title_justify="left")
    for i, column in enumerate(table.columns):
        t.add_column(column, justify="left" if i == 0 else "right")
    for row in table.rows:
        t.add_row(*row)
    console = Console()
    console.print(t)
    if table.note:
        console.print(f"[dim]{table.note}[/dim]")


RUN_KINDS = (
    "getmany",
    "getmany16",
    "confluent",
    "poll",
    "agent",
    "agent_general",
    "agent_confluent",
    "baseline",
)
AGENT_CONFLUENT = "driftline agent, client: confluent"
AGENT_GENERAL = "driftline agent without the columnar decoder (aiokafka)"
GC_EXPERIMENTS = {
    "unfrozen": "without freeze_startup_heap() (gc.freeze() after start-up)",
    "off": "cyclic collector off (upper bound of what more tuning could give)",
}


@dataclass
class Plan:
    """What to run against each topic layout."""

    records: int
    batch_sizes: Sequence[int]
    kinds: Sequence[str]
    gc_experiments: Sequence[str]
    repeat: int
    repeat_fetch: bool
    cpu: int
    others: set[int]
    timeout: float
    # (label, checkout) of the code to compare with, or None
    baseline: tuple[str, Path] | None = None


def measure_layout(
    console: Any, common: Mapping[str, Any], partitions: int, plan: Plan, *, cprofile: bool
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every broker run for one topic layout, on a fresh broker; (runs, cProfile lines)."""
    from monitor.demo.broker import TansuBroker

    runs: dict[str, dict[str, Any]] = {}
    profiled: list[str] = []
    with TansuBroker() as broker:
        assert broker.pid is not None
        pin_broker(broker.pid, plan.others)
        topic = f"predictions-{partitions}p"
        broker.create_topic(topic, partitions)
        seconds = produce(broker.bootstrap, topic, Path(common["records_file"]), partitions)
        console.print(
            f"{partitions} partition(s): produced {plan.records:,} records in {seconds:.1f} s; "
            f"broker on cores {sorted(plan.others)}, consumer on {plan.cpu}"
        )
        spec = {
            **common,
            "records": plan.records,
            "bootstrap": broker.bootstrap,
            "topic": topic,
            "partitions": partitions,
            "batch_records": plan.batch_sizes[0],
        }
        groups = itertools.count()

        def go(label: str, kind: str, root: Path = ROOT, **extra: Any) -> None:
            """Best of ``plan.repeat`` runs by records/s; every run's rates are kept."""
            console.print(f"  {label} …")
            tries: list[dict[str, Any]] = []
            for _ in range(plan.repeat if kind != "fetch" or plan.repeat_fetch else 1):
                group = f"bench-{kind}-{next(groups)}"
                result = run_child(
                    kind, {**spec, "group": group, **extra}, plan.cpu, plan.timeout, root
                )
                if "error" in result:
                    console.print(f"    [red]{result['error']}[/red]")
                    runs.setdefault(label, result)
                    return
                console.print(
                    f"    {result['rate'] / 1000:.1f}k records/s, "
                    f"{result['cpu_rate'] / 1000:.1f}k records/CPU-s"
                )
                tries.append(result)
            best = max(tries, key=lambda r: r["rate"])
            best["tries"] = [{"rate": r["rate"], "cpu_rate": r["cpu_rate"]} for r in tries]
            runs[label] = best

        if "getmany" in plan.kinds:
            go("aiokafka getmany only", "fetch", mode="getmany")
        if "getmany16" in plan.kinds:
            go(
                "aiokafka getmany only, 16 MiB partition fetches",
                "fetch",
                mode="getmany",
                partition_fetch_bytes=16 << 20,
            )
        if "confluent" in plan.kinds and confluent_available():
            go("confluent-kafka consume only", "fetch", mode="confluent")
        if "poll" in plan.kinds:
            go("KafkaSource.poll only", "fetch", mode="poll")
        if "agent" in plan.kinds:
            for i, b in enumerate(plan.batch_sizes):
                go(
                    "driftline agent" + ("" if i == 0 else f" (batches of {b:,})"),
                    "agent",
                    batch_records=b,
                )
            if "agent_general" in plan.kinds:
                go(AGENT_GENERAL, "agent", columnar=False)
            if "agent_confluent" in plan.kinds and confluent_available():
                go(AGENT_CONFLUENT, "agent", client="confluent")
            if plan.baseline is not None:
                name, root = plan.baseline
                go(f"driftline agent, {name}", "agent", root=root)
                if "agent_confluent" in plan.kinds and confluent_available():
                    go(f"{AGENT_CONFLUENT}, {name}", "agent", root=root, client="confluent")
            for name in plan.gc_experiments:
                go(f"experiment: driftline agent, {GC_EXPERIMENTS[name]}", "agent", gc=name)
        if "baseline" in plan.kinds:
            go("baseline", "baseline")
        if cprofile:
            go("driftline agent under cProfile", "agent", cprofile=True)
            profiled = runs.pop("driftline agent under cProfile").get("cprofile", [])
    return runs, profiled


# -- the run -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench.agent_bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="200k records, windows up to 100k rows")
    p.add_argument("--records", type=int, help=f"records per topic (default {RECORDS_FULL:,})")
    p.add_argument(
        "--partitions",
        default=",".join(map(str, PARTITIONS)),
        help="topic layouts: partition counts (default 1,4)",
    )
    p.add_argument(
        "--batch-records",
        default=str(BATCH_RECORDS),
        help="the agent's kafka.max_batch_records; several values give one agent run each "
        f"(default {BATCH_RECORDS}; the baseline always takes the first)",
    )
    p.add_argument(
        "--runs",
        default=",".join(RUN_KINDS),
        help=f"broker runs, from {','.join(RUN_KINDS)} (default all)",
    )
    p.add_argument(
        "--gc-experiment",
        default="",
        help="extra agent runs with the garbage collector tuned: "
        + ", ".join(f"{k} ({v})" for k, v in GC_EXPERIMENTS.items()),
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of the agent and the baseline per layout; the best by records/s is shown",
    )
    p.add_argument("--repeat-fetch", action="store_true", help="repeat the client-only runs too")
    p.add_argument("--rss-windows", help="row window lengths for the memory table")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--skip-broker", action="store_true", help="decode and memory only")
    p.add_argument("--cprofile", action="store_true", help="also profile one agent run")
    p.add_argument(
        "--baseline",
        metavar="COMMIT",
        help="also run the decode and the agents on COMMIT's code (a git worktree), same run",
    )
    p.add_argument("--event-rate", type=float, default=EVENT_RATE)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--cpu", type=int, help="core for the measured process (default: the last)")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        return child_main(args.child, args.spec)

    records = args.records or (RECORDS_QUICK if args.quick else RECORDS_FULL)
    layouts = [int(x) for x in args.partitions.split(",") if x]
    batch_sizes = [int(x) for x in args.batch_records.split(",") if x]
    kinds = [x for x in args.runs.split(",") if x]
    gc_experiments = [x for x in args.gc_experiment.split(",") if x]
    unknown = set(kinds) - set(RUN_KINDS) | set(gc_experiments) - set(GC_EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown --runs or --gc-experiment value(s): {sorted(unknown)}")
    if args.rss_windows:
        rss_sizes = [int(x) for x in args.rss_windows.split(",") if x]
    else:
        rss_sizes = list(RSS_WINDOWS_QUICK if args.quick else RSS_WINDOWS_FULL)
    rss_sizes = [s for s in rss_sizes if s <= records]
    allowed = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else allowed[-1]
    others = set(allowed) - {cpu} or set(allowed)
    timeout = max(180.0, records / 2_000)
    info = machine()

    from rich.console import Console

    console = Console()
    tables: list[TableData] = []
    e2e: dict[int, dict[str, dict[str, Any]]] = {}
    stage_tables: list[TableData] = []
    rss: dict[tuple[str, int], dict[str, Any]] = {}
    cprofile: list[str] = []
    with tempfile.TemporaryDirectory(prefix="driftline-agent-bench-") as tmp:
        work = Path(tmp)
        console.print(f"generating {records:,} records …")
        t0 = time.perf_counter()
        path = work / "records.jsonl"
        size = write_records(path, records, args.seed, args.event_rate)
        console.print(
            f"  {time.perf_counter() - t0:.1f} s, {size / records:.0f} bytes per record on average"
        )
        from bench import data
        from detectors.profile import build_profile

        profile_path = work / "reference.json"
        build_profile(data.reference(), schema=data.schema()).save(profile_path)
        common = {
            "profile": str(profile_path),
            "records_file": str(path),
            "event_rate": args.event_rate,
        }

        baseline: tuple[str, Path] | None = None
        if args.baseline:
            tree = work / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            baseline = (f"before ({args.baseline})", tree)
        decode_spec = {
            **common,
            "records": min(records, DECODE_RECORDS),
            "batch_records": batch_sizes[0],
        }
        decode_before: dict[str, Any] | None = None
        if baseline is not None:
            console.print(f"decode only, {baseline[0]} (core {cpu}) …")
            decode_before = run_child("decode", decode_spec, cpu, timeout, baseline[1])
        console.print(f"decode only (core {cpu}) …")
        decode = run_child("decode", decode_spec, cpu, timeout)

        if not args.skip_broker:
            plan = Plan(
                records=records,
                batch_sizes=batch_sizes,
                kinds=kinds,
                gc_experiments=gc_experiments,
                repeat=max(1, args.repeat),
                repeat_fetch=args.repeat_fetch,
                cpu=cpu,
                others=others,
                timeout=timeout,
                baseline=baseline,
            )
            for partitions in layouts:
                runs, profiled = measure_layout(
                    console,
                    common,
                    partitions,
                    plan,
                    cprofile=args.cprofile and partitions == layouts[0],
                )
                cprofile = cprofile or profiled
                e2e[partitions] = runs
                agent_run = runs.get("driftline agent")
                if agent_run is not None and ok(agent_run):
                    stage_tables.append(
                        stage_table(f"driftline agent, {partitions}p", agent_run, agent=True)
                    )
                if ok(runs.get(AGENT_CONFLUENT)):
                    stage_tables.append(
                        stage_table(
                            f"driftline agent (confluent), {partitions}p",
                            runs[AGENT_CONFLUENT],
                            agent=True,
                        )
                    )
                if baseline is not None and ok(runs.get(f"driftline agent, {baseline[0]}")):
                    stage_tables.append(
                        stage_table(
                            f"driftline agent, {baseline[0]}, {partitions}p",
                            runs[f"driftline agent, {baseline[0]}"],
                            agent=True,
                        )
                    )
                if ok(runs.get("baseline")):
                    stage_tables.append(
                        stage_table(f"baseline, {partitions}p", runs["baseline"], agent=False)
                    )

        if not args.skip_rss:
            for size in rss_sizes:
                for method in ("driftline", "baseline"):
                    console.print(f"memory: {method}, windows of {size:,} rows …")
                    rss[(method, size)] = run_child(
                        "rss", {**common, "method": method, "window_rows": size}, cpu, timeout
                    )
        if baseline is not None:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(baseline[1])], cwd=ROOT, check=False
            )

    for partitions, runs in e2e.items():
        tables.append(e2e_table(partitions, runs))
    tables += stage_tables
    if ok(decode):
        before = decode_before if decode_before is not None and ok(decode_before) else None
        tables.append(decode_table(decode, before, baseline[0] if baseline else ""))
    else:
        console.print(f"[red]decode run failed: {decode.get('error')}[/red]")
    if rss:
        tables.append(rss_table(rss, rss_sizes))
    tables.append(targets_table(e2e, rss))

    for table in tables:
        print_rich(table)
    command = "python3 -m bench.agent_bench" + (" " + " ".join(argv) if argv else "")
    if argv is None and len(sys.argv) > 1:
        command = "python3 -m bench.agent_bench " + " ".join(sys.argv[1:])
    header = [
        "# Agent benchmark",
        "",
        f"- command: `{command}`",
        f"- machine: {info['cpu']}; Python {info['python']}; {info['versions']}",
        f"- {info['load']} at the start, {machine_load()} at the end; {info['date']}",
        f"- {records:,} records of 25 features + score, event times {args.event_rate:,.0f}/s "
        f"apart, windows of {WINDOW_SECONDS:g} s (allowed lateness {ALLOWED_LATENESS:g} s); "
        f"measured process pinned to core {cpu}, broker to {sorted(others)}",
        "",
    ]
    body = "\n".join(to_markdown(t) for t in tables)
    if cprofile:
        body += "\n### cProfile of one agent run (top 25 by own time)\n\n```\n"
        body += "\n".join(cprofile) + "\n```\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(header) + "\n" + body)
    raw = {
        "command": command,
        "machine": info,
        "e2e": {str(k): v for k, v in e2e.items()},
        "decode": decode,
        "rss": {f"{m}/{n}": v for (m, n), v in rss.items()},
    }
    args.output.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    console.print(f"written to {args.output}")
    if cprofile:
        console.print("\n".join(cprofile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
