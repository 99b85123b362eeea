"""Performance across agents, against a real broker: three agents publishing partials
and an aggregator, with a labels topic co-partitioned with the predictions and some
labels arriving after their window closed, report the same ``performance`` block per
window — first reports and revisions — as one agent reading both topics alone."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from detectors.performance import PerformanceResult, learn_performance
from detectors.results import WindowReport
from monitor.config.aggregation import partials_topic_for
from monitor.demo import synthetic
from monitor.demo.broker import TansuBroker
from tests.integration.agent_helpers import (
    BASE_TIME,
    MODEL,
    AgentProcess,
    Message,
    as_messages,
    read_reports,
    reference_profile,
    wait_for,
    window_traffic,
    write_agent_files,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]
PARTITIONS = 3
SIZE = 2.0
ROWS = (300, 450, 360, 420)
WINDOWS = {"size": SIZE, "allowed_lateness": 0.5, "idle_timeout": 60.0}
FLUSH_AT = BASE_TIME + 100 * SIZE
TOL = 1e-9


def produce(bootstrap: str, topic: str, messages: Sequence[Message], parts: list[int]) -> None:
    """Message ``i`` to partition ``parts[i]``, each acknowledged."""

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value=v, key=k, partition=p)
                for (k, v, _), p in zip(messages, parts, strict=True)
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(send(), 30.0))


def latest(path: Path) -> dict[float, WindowReport]:
    """The latest report of each data window (a revision replaces the first report)."""
    out: dict[float, WindowReport] = {}
    for r in read_reports(path):
        if r.window_start < FLUSH_AT and r.baseline == "reference":
            out[r.window_start] = r
    return out


def fully_labelled(path: Path) -> bool:
    got = latest(path)
    return len(got) == len(ROWS) and all(
        r.performance is not None and r.performance.labeled_rows == r.rows for r in got.values()
    )


def same_block(got: PerformanceResult, want: PerformanceResult) -> None:
    # (whether a window's labels all came before it closed depends on how the topics'
    # fetches interleave, so ``revised`` may differ; the block's contents may not)
    assert (got.labeled_rows, got.coverage) == (want.labeled_rows, want.coverage)
    assert len(got.realized) == len(want.realized) > 0
    assert len(got.estimated) == len(want.estimated) > 0 and len(got.kpis) == len(want.kpis)
    pairs = [
        (a.metric, a.value, b.metric, b.value)
        for a, b in zip(got.realized, want.realized, strict=True)
    ]
    pairs += [
        (a.metric, a.value, b.metric, b.value)
        for a, b in zip(got.estimated, want.estimated, strict=True)
    ]
    pairs += [(a.name, a.mean, b.name, b.mean) for a, b in zip(got.kpis, want.kpis, strict=True)]
    for name, x, other, y in pairs:
        assert name == other
        assert math.isclose(x, y, rel_tol=TOL, abs_tol=TOL), (name, x, y)


def test_aggregated_windows_carry_the_lone_agents_performance_and_revisions(
    tmp_path: Path, kafka_topic: KafkaTopicFactory, broker_session: TansuBroker
) -> None:
    bootstrap = broker_session.bootstrap
    preds, labels_topic = kafka_topic(PARTITIONS), kafka_topic(PARTITIONS)
    partials = f"{partials_topic_for(MODEL)}-{uuid.uuid4().hex[:8]}"
    broker_session.create_topic(partials, 1)
    # one labelled profile for every process (the same reference hash)
    frame = synthetic.reference_frame(20_000, seed=0)
    frame["outcome"] = (np.random.default_rng(5).random(len(frame)) < frame["prediction"]).astype(
        int
    )
    profile = reference_profile()
    reference = replace(profile, performance=learn_performance(profile, frame, "outcome")).save(
        tmp_path / "reference.json"
    )
    run = uuid.uuid4().hex[:8]
    scale = {"partials_topic": partials, "deadline": "60s"}

    def config(name: str, group: str, aggregation: dict[str, Any]) -> Path:
        files = write_agent_files(
            tmp_path / name,
            bootstrap=bootstrap,
            topics=[preds],
            group_id=group,
            windows=WINDOWS,
            checkpoint_interval=0.5,
        )
        data = yaml.safe_load(files.config.read_text())
        data["reference"] = str(reference)
        data["aggregation"] = aggregation
        data["state"]["changelog_name"] = name
        data["labels"] = {"source": "kafka", "topic": labels_topic, "wait_for_prediction": "1h"}
        data["kpis"] = [{"name": "revenue", "from": "labels"}]
        files.config.write_text(yaml.safe_dump(data, sort_keys=False))
        return files.config

    alone_cfg = config("alone", f"alone-{run}", {"role": "none"})
    agent_cfgs = [
        config(f"agent{i}", f"agents-{run}", {**scale, "role": "agent"}) for i in range(3)
    ]
    agg_cfg = config("aggregator", f"agents-{run}", {**scale, "role": "aggregator"})

    windows = window_traffic(windows=len(ROWS), rows=list(ROWS), size=SIZE, seed=51)
    rng = np.random.default_rng(52)
    records = [r for w in windows for r in w]
    part = [i % PARTITIONS for i in range(len(records))]
    labels = [
        {
            "request_id": r["request_id"],
            "label": int(rng.random() < r["prediction"]),
            "timestamp": r["timestamp"],
            "revenue": float(rng.gamma(2.0, 5.0)),
        }
        for r in records
    ]
    flush = [
        {**records[0], "request_id": f"flush-{p}", "timestamp": FLUSH_AT} for p in range(PARTITIONS)
    ]
    first = sum(ROWS[:2])  # windows 0 and 1
    held = [i for i in range(ROWS[0]) if i % 3 == 0]  # a third of window 0's labels: late
    early = [i for i in range(first) if i not in set(held)]

    def send_labels(idx: list[int]) -> None:  # each to its prediction's partition
        produce(
            bootstrap, labels_topic, as_messages([labels[i] for i in idx]), [part[i] for i in idx]
        )

    procs = [AgentProcess(c) for c in [alone_cfg, *agent_cfgs, agg_cfg]]
    try:
        for p in procs:
            p.start()
        wait_for(
            lambda: all(p.assignments() and p.assignments()[-1] for p in procs[1:4]),
            "three agents with a partition each",
            timeout=40.0,
        )
        wait_for(lambda: procs[4].assignments(), "the aggregator's assignment", timeout=30.0)
        # windows 0-1 and their labels (but the held third), then windows 2-3 close 0-1
        produce(bootstrap, preds, as_messages(records[:first]), part[:first])
        send_labels(early)
        produce(bootstrap, preds, as_messages(records[first:]), part[first:])
        agg_reports = tmp_path / "aggregator" / "reports.jsonl"
        alone_reports = tmp_path / "alone" / "reports.jsonl"
        wait_for(lambda: BASE_TIME in latest(agg_reports), "aggregated window 0", 60.0)
        wait_for(lambda: BASE_TIME in latest(alone_reports), "the lone agent's window 0", 60.0)
        # the held labels of window 0 (after it closed), the rest, then the flush records
        rest = held + list(range(first, len(records)))
        send_labels(rest)
        produce(bootstrap, preds, as_messages(flush), list(range(PARTITIONS)))
        wait_for(lambda: fully_labelled(alone_reports), "the lone agent's labelled windows", 90.0)
        wait_for(lambda: fully_labelled(agg_reports), "the aggregated labelled windows", 90.0)
    finally:
        for p in procs:
            p.stop()
    alone, merged = latest(alone_reports), latest(agg_reports)
    assert sorted(alone) == sorted(merged)
    for start, want in alone.items():
        got = merged[start]
        assert got.rows == want.rows and not got.partial
        assert got.performance is not None and want.performance is not None
        same_block(got.performance, want.performance)
    # window 0 was revised by its late labels, on both sides
    w0 = BASE_TIME
    first_reports = [r for r in read_reports(agg_reports) if r.window_start == w0]
    assert first_reports[0].performance is not None
    assert first_reports[0].performance.labeled_rows < ROWS[0]
    for side in (merged[w0].performance, alone[w0].performance):
        assert side is not None and side.revised
