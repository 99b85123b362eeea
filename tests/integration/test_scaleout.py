"""Scale-out against a real broker: three agents publishing partials and an aggregator,
with an agent and the aggregator killed (SIGKILL) mid-stream and restarted from their
state directories, must report exactly the windows of one agent reading the same topic
alone: rows, late and duplicate counts, every statistic and verdict.

The lone agent runs at the same time in a group of its own. Traffic is spread over three
partitions in event-time order; a last record far ahead in event time on every partition
closes the final window (watermarks follow the slowest partition).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config.aggregation import partials_topic_for
from monitor.demo.broker import TansuBroker
from tests.integration.agent_helpers import (
    BASE_TIME,
    MODEL,
    AgentProcess,
    Delivered,
    Message,
    ReportKey,
    as_messages,
    committed_offsets,
    produce_aiokafka,
    read_reports,
    same_window,
    unique_reports,
    wait_for,
    window_traffic,
    write_agent_files,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]

PARTITIONS = 3
SIZE = 2.0
ROWS = (900, 1500, 700, 1200, 1000, 800)
DRIFT_FROM = 3
WINDOWS = {"size": SIZE, "allowed_lateness": 0.5, "idle_timeout": 60.0}
FLUSH_AT = BASE_TIME + 100 * SIZE


def traffic() -> tuple[list[Message], list[Message]]:
    """Two halves of the traffic (windows 0-2, then 3-5 and a flush record per partition),
    each record placed on partition ``i % 3`` by :func:`produce`."""
    windows = window_traffic(
        windows=len(ROWS), rows=list(ROWS), size=SIZE, drift_from=DRIFT_FROM, seed=31
    )
    flush = [
        {**windows[0][0], "request_id": f"flush-{p}", "timestamp": FLUSH_AT}
        for p in range(PARTITIONS)
    ]
    first = [r for w in windows[:3] for r in w]
    second = [r for w in windows[3:] for r in w]
    return as_messages(first), as_messages(second) + as_messages(flush)


def produce(bootstrap: str, topic: str, messages: list[Message]) -> Delivered:
    """Record ``i`` to partition ``i % 3`` (the flush records, last, one per partition)."""
    return produce_aiokafka(bootstrap, topic, messages, partitions=PARTITIONS)


def config(
    directory: Path,
    bootstrap: str,
    topic: str,
    group: str,
    aggregation: dict[str, Any],
    changelog_name: str | None = None,
) -> Path:
    files = write_agent_files(
        directory,
        bootstrap=bootstrap,
        topics=[topic],
        group_id=group,
        windows=WINDOWS,
        checkpoint_interval=0.5,
    )
    data = yaml.safe_load(files.config.read_text())
    data["aggregation"] = aggregation
    if changelog_name is not None:  # agents of one group keep apart in the changelog
        data["state"]["changelog_name"] = changelog_name
    files.config.write_text(yaml.safe_dump(data, sort_keys=False))
    return files.config


@dataclass
class ScaleOut:
    """The configurations of a scale-out test: a lone agent in a group of its own, three
    agents publishing partials in ``group``, and their aggregator."""

    group: str
    alone: Path
    agents: list[Path]
    aggregator: Path
    alone_reports: Path
    agg_reports: Path


def scale_out(
    tmp_path: Path, broker: TansuBroker, topic: str, changelog_names: bool = False
) -> ScaleOut:
    """Write the configurations under ``tmp_path``, on a partials topic of their own
    (``changelog_names``: each agent keeps its state under a name of its own)."""
    bootstrap = broker.bootstrap
    partials = f"{partials_topic_for(MODEL)}-{uuid.uuid4().hex[:8]}"
    broker.create_topic(partials, 1)
    run = uuid.uuid4().hex[:8]
    group = f"agents-{run}"
    scale = {"partials_topic": partials, "deadline": "60s"}
    agents = [
        config(
            tmp_path / f"agent{i}",
            bootstrap,
            topic,
            group,
            {**scale, "role": "agent"},
            changelog_name=f"agent{i}" if changelog_names else None,
        )
        for i in range(3)
    ]
    return ScaleOut(
        group=group,
        alone=config(tmp_path / "alone", bootstrap, topic, f"alone-{run}", {"role": "none"}),
        agents=agents,
        aggregator=config(
            tmp_path / "aggregator", bootstrap, topic, group, {**scale, "role": "aggregator"}
        ),
        alone_reports=tmp_path / "alone" / "reports.jsonl",
        agg_reports=tmp_path / "aggregator" / "reports.jsonl",
    )


def start_scale_out(
    agents: list[AgentProcess], aggregator: AgentProcess, *others: AgentProcess
) -> None:
    """Start them all; return once every agent holds a partition and the aggregator
    its partials partition, before any traffic."""
    for p in [*others, *agents, aggregator]:
        p.start()
    wait_for(
        lambda: all(p.assignments() and p.assignments()[-1] for p in agents),
        "three agents with a partition each",
        timeout=40.0,
    )
    wait_for(lambda: aggregator.assignments(), "the aggregator's assignment", timeout=30.0)


def scale_out_counts(p: AgentProcess) -> dict[str, float]:
    words = ("partials", "records_total", "aggregation")
    return {
        f"{name}{sorted(labels)}": value
        for (name, labels), value in p.metrics().items()
        if any(w in name for w in words) and not name.endswith("_created")
    }


def reports(path: Path) -> dict[ReportKey, Any]:
    """The data windows' reports (the flush records' own window left out)."""
    return {k: r for k, r in unique_reports(read_reports(path)).items() if k[1] < FLUSH_AT}


def assert_merged_as_alone(
    merged: dict[ReportKey, Any], alone: dict[ReportKey, Any], rows: tuple[int, ...] = ROWS
) -> None:
    """The merged windows are the lone agent's, each with every partition covered:
    rows, counts, every statistic to 1e-9 and every verdict."""
    assert sorted(alone) == sorted(merged)
    assert [alone[k].rows for k in sorted(alone)] == list(rows)
    for key, want in alone.items():
        got = merged[key]
        assert not got.partial and got.coverage is not None, key
        assert got.coverage.reported == tuple(range(PARTITIONS)), key
        assert same_window(got, want, tol=1e-9), key


def test_three_agents_and_an_aggregator_killed_midstream_report_as_one_agent(
    tmp_path: Path, kafka_topic: KafkaTopicFactory, broker_session: TansuBroker
) -> None:
    bootstrap = broker_session.bootstrap
    topic = kafka_topic(PARTITIONS)
    files = scale_out(tmp_path, broker_session, topic, changelog_names=True)
    first, second = traffic()
    procs = [AgentProcess(files.alone), *(AgentProcess(c) for c in files.agents)]
    aggregator = AgentProcess(files.aggregator)
    restarted: list[AgentProcess] = []
    try:
        # every agent of the group holds a partition before traffic starts
        start_scale_out(procs[1:], aggregator, procs[0])
        delivered = produce(bootstrap, topic, first)
        agg_reports = files.agg_reports
        wait_for(lambda: len(reports(agg_reports)) >= 1, "a first aggregated window", timeout=40.0)
        # Kill once the agents' checkpoints are committed: what is guaranteed exactly. (A
        # crash between a checkpoint and its commit, or after commits failed during a
        # rebalance, makes the next owner read records again: reported as an overlap.)
        wait_for(
            lambda: committed_offsets(bootstrap, files.group, topic, PARTITIONS) == delivered.high,
            "the first half committed",
            timeout=30.0,
        )
        # kill -9 an agent and the aggregator mid-stream, restart both from their state
        procs[1].kill()
        aggregator.kill()
        restarted = [AgentProcess(files.agents[0]).start(), AgentProcess(files.aggregator).start()]
        produce(bootstrap, topic, second)
        alone_reports = files.alone_reports
        wait_for(
            lambda: len(reports(alone_reports)) == len(ROWS),
            "the lone agent's six windows",
            timeout=60.0,
        )
        try:
            wait_for(
                lambda: len(reports(agg_reports)) == len(ROWS),
                "six aggregated windows",
                timeout=60.0,
            )
        except AssertionError:
            # what each agent and the aggregator had done, for the failure message
            for p in [*procs[1:], *restarted]:
                if p.alive():
                    print(p.log_path, scale_out_counts(p))
            raise
    finally:
        for p in [*procs, aggregator, *restarted]:
            p.stop()
    alone = reports(alone_reports)
    merged = reports(agg_reports)
    assert_merged_as_alone(merged, alone)
    # the drift injected from window 3 on is found in the merged windows too
    drifted = [
        k
        for k in sorted(merged)
        if any(c.drifted for c in merged[k].drift.columns if c.feature == "income")
    ]
    assert drifted and min(k[1] for k in drifted) >= BASE_TIME + DRIFT_FROM * SIZE


def test_backlog_read_after_an_outage_loses_nothing_to_lateness(
    tmp_path: Path, kafka_topic: KafkaTopicFactory, broker_session: TansuBroker
) -> None:
    """30,000 records on three partitions written while no agent runs, then one agent with
    ``allowed_lateness: 2s`` starts and reads the backlog: fetches hand it a partition
    at a time, and per-partition watermarks keep every record in its window."""
    bootstrap = broker_session.bootstrap
    topic = kafka_topic(PARTITIONS)
    windows = window_traffic(windows=10, rows=3000, size=10.0, seed=41)
    records = [r for w in windows for r in w]
    flush = [
        {**records[0], "request_id": f"flush-{p}", "timestamp": BASE_TIME + 1000.0}
        for p in range(PARTITIONS)
    ]
    produce(bootstrap, topic, as_messages(records) + as_messages(flush))
    cfg = write_agent_files(
        tmp_path,
        bootstrap=bootstrap,
        topics=[topic],
        group_id=f"backlog-{uuid.uuid4().hex[:8]}",
        windows={"size": 10.0, "allowed_lateness": 2.0, "idle_timeout": 60.0},
        kafka={"max_batch_records": 5000},
    )
    with AgentProcess(cfg.config) as agent:
        wait_for(lambda: len(reports(cfg.reports)) == 10, "ten windows of the backlog", 60.0)
        got = reports(cfg.reports)
        late = agent.metric("driftline_records_total", outcome="late")
    assert late == 0
    assert sum(r.rows for r in got.values()) == len(records) == 30_000
    assert [got[k].rows for k in sorted(got)] == [3000] * 10
