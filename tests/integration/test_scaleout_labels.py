"""Performance across agents, against a real broker: three agents publishing partials
and an aggregator, with a labels topic co-partitioned with the predictions and some
labels arriving after their window closed, report the same ``performance`` block per
window — first reports and revisions — as one agent reading both topics alone."""

from __future__ import annotations

import asyncio
import math
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    committed_offsets,
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


@dataclass
class Scenario:
    """Three agents, an aggregator and a lone agent on a predictions topic and a labels
    topic of PARTITIONS partitions each, with their traffic."""

    bootstrap: str
    preds: str
    labels_topic: str
    alone: Path
    agents: list[Path]
    aggregator: Path
    group: str
    records: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    part: list[int]
    flush: list[dict[str, Any]]

    def send_predictions(self, idx: Sequence[int]) -> None:
        """Records ``idx``, record i to partition ``i % PARTITIONS``."""
        msgs = as_messages([self.records[i] for i in idx])
        produce(self.bootstrap, self.preds, msgs, [self.part[i] for i in idx])

    def send_labels(self, idx: Sequence[int]) -> None:
        """Their labels, each to its prediction's partition."""
        msgs = as_messages([self.labels[i] for i in idx])
        produce(self.bootstrap, self.labels_topic, msgs, [self.part[i] for i in idx])

    def send_flush(self) -> None:
        produce(self.bootstrap, self.preds, as_messages(self.flush), list(range(PARTITIONS)))


def scenario(
    tmp_path: Path, kafka_topic: KafkaTopicFactory, broker_session: TansuBroker
) -> Scenario:
    bootstrap = broker_session.bootstrap
    preds, labels_topic = kafka_topic(PARTITIONS), kafka_topic(PARTITIONS)
    partials = f"{partials_topic_for(MODEL)}-{uuid.uuid4().hex[:8]}"
    broker_session.create_topic(partials, 1)
    # one labelled profile for every process (the same reference hash)
    frame = synthetic.reference_frame(20_000, seed=0)
    outcome = np.random.default_rng(5).random(len(frame)) < frame["prediction"]
    frame["outcome"] = outcome.astype(int)
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
        data["labels"] = {"source": "kafka", "topic": labels_topic, "wait_for_prediction": "1h"}
        data["kpis"] = [{"name": "revenue", "from": "labels"}]
        files.config.write_text(yaml.safe_dump(data, sort_keys=False))
        return files.config

    group = f"agents-{run}"
    windows = window_traffic(windows=len(ROWS), rows=list(ROWS), size=SIZE, seed=51)
    rng = np.random.default_rng(52)
    records = [r for w in windows for r in w]
    labels = [
        {
            "request_id": r["request_id"],
            "label": int(rng.random() < r["prediction"]),
            "timestamp": r["timestamp"],
            "revenue": float(rng.gamma(2.0, 5.0)),
        }
        for r in records
    ]
    return Scenario(
        bootstrap=bootstrap,
        preds=preds,
        labels_topic=labels_topic,
        alone=config("alone", f"alone-{run}", {"role": "none"}),
        agents=[config(f"agent{i}", group, {**scale, "role": "agent"}) for i in range(3)],
        aggregator=config("aggregator", group, {**scale, "role": "aggregator"}),
        group=group,
        records=records,
        labels=labels,
        part=[i % PARTITIONS for i in range(len(records))],
        flush=[
            {**records[0], "request_id": f"flush-{p}", "timestamp": FLUSH_AT}
            for p in range(PARTITIONS)
        ],
    )


def start(s: Scenario) -> list[AgentProcess]:
    """The lone agent, the three agents and the aggregator, once each holds its share."""
    procs = [AgentProcess(c).start() for c in [s.alone, *s.agents, s.aggregator]]
    wait_for(
        lambda: all(p.assignments() and p.assignments()[-1] for p in procs[1:4]),
        "three agents with a partition each",
        timeout=40.0,
    )
    wait_for(lambda: procs[4].assignments(), "the aggregator's assignment", timeout=30.0)
    return procs


def compare(tmp_path: Path, coverage_waits: bool = False) -> dict[float, WindowReport]:
    """Every window's latest aggregated block equals the lone agent's; the aggregated.
    ``coverage_waits``: a window may have been judged at the deadline, with every row
    (a partition's coverage was not known in time: that is about windows, not labels)."""
    alone = latest(tmp_path / "alone" / "reports.jsonl")
    merged = latest(tmp_path / "aggregator" / "reports.jsonl")
    assert sorted(alone) == sorted(merged)
    for start_, want in alone.items():
        got = merged[start_]
        assert got.rows == want.rows
        assert not got.partial or (coverage_waits and got.partial_reason == "coverage")
        assert got.performance is not None and want.performance is not None
        same_block(got.performance, want.performance)
    w0 = BASE_TIME
    for side in (merged[w0].performance, alone[w0].performance):
        assert side is not None and side.revised  # window 0: revised by its late labels
    return merged


def test_aggregated_windows_carry_the_lone_agents_performance_and_revisions(
    tmp_path: Path, kafka_topic: KafkaTopicFactory, broker_session: TansuBroker
) -> None:
    s = scenario(tmp_path, kafka_topic, broker_session)
    first = sum(ROWS[:2])  # windows 0 and 1
    held = [i for i in range(ROWS[0]) if i % 3 == 0]  # a third of window 0's labels: late
    early = [i for i in range(first) if i not in set(held)]
    agg_reports = tmp_path / "aggregator" / "reports.jsonl"
    alone_reports = tmp_path / "alone" / "reports.jsonl"
    procs: list[AgentProcess] = []
    try:
        procs = start(s)
        # windows 0-1 and their labels (but the held third), then windows 2-3 close 0-1
        s.send_predictions(range(first))
        s.send_labels(early)
        s.send_predictions(range(first, len(s.records)))
        wait_for(lambda: BASE_TIME in latest(agg_reports), "aggregated window 0", 60.0)
        wait_for(lambda: BASE_TIME in latest(alone_reports), "the lone agent's window 0", 60.0)
        # the held labels of window 0 (after it closed), the rest, then the flush records
        s.send_labels(held + list(range(first, len(s.records))))
        s.send_flush()
        wait_for(lambda: fully_labelled(alone_reports), "the lone agent's labelled windows", 90.0)
        wait_for(lambda: fully_labelled(agg_reports), "the aggregated labelled windows", 90.0)
    finally:
        for p in procs:
            p.stop()
    compare(tmp_path)
    first_reports = [r for r in read_reports(agg_reports) if r.window_start == BASE_TIME]
    assert first_reports[0].performance is not None
    assert first_reports[0].performance.labeled_rows < ROWS[0]


def test_an_agent_killed_with_its_disk_gone_loses_no_label(
    tmp_path: Path, kafka_topic: KafkaTopicFactory, broker_session: TansuBroker
) -> None:
    """An agent killed with SIGKILL once its predictions and labels of windows 0-1 are
    committed, its state directory deleted, comes back with a new identity: the
    partition's state restored from the changelog holds its predictions still waiting for
    a label, so the labels sent after the restart join there, and every window ends with
    the lone agent's block."""
    s = scenario(tmp_path, kafka_topic, broker_session)
    first = sum(ROWS[:2])
    held = [i for i in range(first) if i % 3 == 0]  # a third of windows 0-1: after the kill
    early = [i for i in range(first) if i % 3 != 0]
    agg_reports = tmp_path / "aggregator" / "reports.jsonl"
    alone_reports = tmp_path / "alone" / "reports.jsonl"
    procs: list[AgentProcess] = []
    restarted: list[AgentProcess] = []
    try:
        procs = start(s)
        s.send_predictions(range(first))
        s.send_labels(early)
        want_preds = _high(s.part, range(first))
        want_labels = _high(s.part, early)
        wait_for(
            lambda: (
                committed_offsets(s.bootstrap, s.group, s.preds, PARTITIONS) == want_preds
                and committed_offsets(s.bootstrap, s.group, s.labels_topic, PARTITIONS)
                == want_labels
            ),
            "windows 0-1 and their labels committed",
            timeout=40.0,
        )
        victim = procs[1]
        victim.kill()
        shutil.rmtree(s.agents[0].parent / "state")  # the new node has no disk
        restarted = [AgentProcess(s.agents[0]).start()]
        s.send_predictions(range(first, len(s.records)))
        s.send_labels(held + list(range(first, len(s.records))))
        s.send_flush()
        wait_for(lambda: fully_labelled(alone_reports), "the lone agent's labelled windows", 90.0)
        try:  # (up to aggregation.deadline more when a partition's coverage waits)
            wait_for(lambda: fully_labelled(agg_reports), "the aggregated labelled windows", 150.0)
        except AssertionError:
            for p in [*procs[2:4], *restarted]:
                joined = p.metric("driftline_labels_total", outcome="joined")
                missing = p.metric("driftline_labels_total", outcome="no_prediction")
                print(p.log_path, "joined", joined, "no_prediction", missing)
                for (name, lab), v in p.metrics().items():
                    if any(w in name for w in ("label", "records_total", "lag", "partials")):
                        print("   ", name, sorted(lab), v)
            raise
        agents = [*procs[2:4], *restarted]
        no_prediction = sum(
            p.metric("driftline_labels_total", outcome="no_prediction") for p in agents
        )
        restored = sum(p.log().count("window state restored from the changelog") for p in agents)
    finally:
        for p in [*procs, *restarted]:
            p.stop()
    assert restored >= 1, "the victim's partition was restored from the changelog"
    assert no_prediction == 0
    compare(tmp_path, coverage_waits=True)


def _high(part: list[int], idx: Sequence[int] | range) -> dict[int, int]:
    """Next offset per partition once records ``idx`` (sent first, in order) are in."""
    out: dict[int, int] = {}
    for i in idx:
        out[part[i]] = out.get(part[i], 0) + 1
    return out
