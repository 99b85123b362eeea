"""Scale-out with a zombie: three agents and an aggregator on a real broker; one agent is
frozen (SIGSTOP) mid-stream, holding open windows with records read after its last
commit, for longer than the group's session timeout. The group evicts it and another
member restores its partition's state from the changelog (the state ending at the
group's committed offset) and reads on, committing past where the frozen agent was. Then
the agent is thawed (SIGCONT): it wakes still believing it owns the partition, with its
windows open, and may close windows, send partials, write its partition state to the
changelog and try to commit before it notices the rebalance.

The aggregated windows must still equal those of one agent reading the same topic alone
(rows, late and duplicate counts, every statistic to 1e-9, every verdict), none partial or
``overlap``; the group's committed offsets must be the new owner's (the zombie's commits
are refused), and no restore may use the zombie's late state.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from monitor.config.aggregation import partials_topic_for
from monitor.demo.broker import TansuBroker
from monitor.runtime.partition_changelog import PartitionManifest
from tests.integration import agent_helpers
from tests.integration.agent_helpers import (
    BASE_TIME,
    MODEL,
    AgentProcess,
    committed_offsets,
    produce_aiokafka,
    same_window,
    wait_for,
)
from tests.integration.test_scaleout import (
    PARTITIONS,
    ROWS,
    config,
    reports,
    scale_out_counts,
)
from tests.integration.test_scaleout_state import phases

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]

#: "state of T-P at offset N found at changelog offset M (written by AGENT)"
_FOUND = re.compile(
    r"state of (\S+)-(\d+) at offset (\d+) found at changelog offset (\d+) \(written by (\S+)\)"
)
_AGENT_ID = re.compile(r"publishing partials as agent (\S+), epoch (\d+)")

Restore = tuple[int, int, int, str]  # partition, offset, changelog offset, writer


def restores(p: AgentProcess) -> list[Restore]:
    """Every partition state ``p`` restored from the changelog."""
    return [(int(m[2]), int(m[3]), int(m[4]), m[5]) for m in _FOUND.finditer(p.log())]


def manifests(bootstrap: str, topic: str) -> dict[tuple[int, int], PartitionManifest]:
    """Every partition-state manifest in the changelog ``topic``, by (changelog partition,
    offset): the compacted topic keeps them all this soon (it is read with a client the
    agents use, but in no group)."""

    async def read() -> dict[tuple[int, int], PartitionManifest]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        out: dict[tuple[int, int], PartitionManifest] = {}
        try:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                    for r in records:
                        if r.value is not None and b"#m" in (r.key or b""):
                            out[(tp.partition, r.offset)] = PartitionManifest.from_bytes(r.value)
                ends = [(await consumer.position(tp), consumer.highwater(tp)) for tp in tps]
                if all(h is not None and pos >= h for pos, h in ends):
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(asyncio.wait_for(read(), 30.0))


def agent_id(p: AgentProcess) -> str:
    """The id the agent publishes partials and writes partition states as."""

    def found() -> str | None:
        match = _AGENT_ID.search(p.log())
        return None if match is None else match.group(1)

    got = wait_for(found, "the agent's id in its log", 30.0)
    assert got is not None
    return got


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
def test_a_frozen_agent_evicted_and_thawed_changes_no_window(
    tmp_path: Path,
    kafka_topic: KafkaTopicFactory,
    broker_session: TansuBroker,
    client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_helpers, "CLIENT", client)
    bootstrap = broker_session.bootstrap
    topic = kafka_topic(PARTITIONS)
    partials = f"{partials_topic_for(MODEL)}-{uuid.uuid4().hex[:8]}"
    broker_session.create_topic(partials, 1)
    run = uuid.uuid4().hex[:8]
    group = f"agents-{run}"
    scale = {"partials_topic": partials, "deadline": "60s"}
    alone_cfg = config(tmp_path / "alone", bootstrap, topic, f"alone-{run}", {"role": "none"})
    agent_cfgs = [  # 3 s sessions (AIOKAFKA_FAST_GROUP): a freeze of ~4 s evicts
        config(tmp_path / f"agent{i}", bootstrap, topic, group, {**scale, "role": "agent"})
        for i in range(3)
    ]
    agg_cfg = config(
        tmp_path / "aggregator", bootstrap, topic, group, {**scale, "role": "aggregator"}
    )
    changelog = f"driftline.{MODEL}.changelog-{run}"  # one partition per source partition
    for path in agent_cfgs:
        data = yaml.safe_load(path.read_text())
        data["state"]["changelog_topic"] = changelog
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    first, committed, read, last = phases()
    alone = AgentProcess(alone_cfg)
    agents = [AgentProcess(c) for c in agent_cfgs]
    zombie, others = agents[0], agents[1:]
    aggregator = AgentProcess(agg_cfg)
    agg_reports = tmp_path / "aggregator" / "reports.jsonl"
    alone_reports = tmp_path / "alone" / "reports.jsonl"
    try:
        for p in [alone, *agents, aggregator]:
            p.start()
        wait_for(
            lambda: all(p.assignments() and p.assignments()[-1] for p in agents),
            "three agents with a partition each",
            timeout=40.0,
        )
        wait_for(lambda: aggregator.assignments(), "the aggregator's assignment", timeout=30.0)
        zombie_id = agent_id(zombie)
        high = produce_aiokafka(bootstrap, topic, first, partitions=PARTITIONS).high
        wait_for(lambda: len(reports(agg_reports)) >= 1, "a first aggregated window", 40.0)
        wait_for(
            lambda: committed_offsets(bootstrap, group, topic, PARTITIONS) == high,
            "the first phase committed",
            timeout=30.0,
        )
        high = produce_aiokafka(bootstrap, topic, committed, partitions=PARTITIONS).high
        wait_for(
            lambda: committed_offsets(bootstrap, group, topic, PARTITIONS) == high,
            "window 3 and part of window 4 committed",
            timeout=30.0,
        )
        [victim_part] = sorted(zombie.assignments()[-1])
        before = zombie.decoded()
        high = produce_aiokafka(bootstrap, topic, read, partitions=PARTITIONS).high
        wait_for(lambda: zombie.decoded() > before, "the agent reading on", 30.0)
        # frozen while it reads: window 4 open with rows neither checkpointed nor committed
        zombie.signal(signal.SIGSTOP)
        frozen_at, frozen_log = time.time(), len(zombie.log())
        # evicted (session timeout), its partition restored elsewhere and read to the end
        wait_for(
            lambda: any(victim_part in p.assignments()[-1] for p in others),
            "another member assigned the frozen agent's partition",
            timeout=30.0,
        )
        wait_for(
            lambda: committed_offsets(bootstrap, group, topic, PARTITIONS) == high,
            "the new owner reading on and committing past the frozen agent",
            timeout=30.0,
        )
        taken_over = committed_offsets(bootstrap, group, topic, PARTITIONS)
        zombie.signal(signal.SIGCONT)
        # it wakes believing it owns the partition; it notices at its next heartbeat
        wait_for(
            lambda: "partitions assigned" in zombie.log()[frozen_log:],
            "the thawed agent rejoining the group",
            timeout=30.0,
        )
        woke = zombie.log()[frozen_log:]
        # the zombie's commits never moved the group's offsets back
        assert committed_offsets(bootstrap, group, topic, PARTITIONS) == taken_over
        high = produce_aiokafka(bootstrap, topic, last, partitions=PARTITIONS).high
        wait_for(lambda: len(reports(alone_reports)) == len(ROWS), "the lone agent's windows", 60.0)
        try:
            wait_for(lambda: len(reports(agg_reports)) == len(ROWS), "six aggregated windows", 60.0)
        except AssertionError:
            for p in [*agents, aggregator]:
                if p.alive():
                    print(p.log_path, scale_out_counts(p))
            raise
        wait_for(
            lambda: committed_offsets(bootstrap, group, topic, PARTITIONS) == high,
            "everything committed",
            timeout=30.0,
        )
        received = {
            dict(labels)["outcome"]: value
            for (name, labels), value in aggregator.metrics().items()
            if name == "driftline_partials_received_total"
        }
        restored = [r for p in agents for r in restores(p)]
        lost = sum(p.metric("driftline_state_lost_partitions_total") for p in agents)
        logs = {p.log_path.name: p.log() for p in [*agents, aggregator]}
        written = manifests(bootstrap, changelog)
    finally:
        for p in [alone, *agents, aggregator]:
            if p.alive():
                p.signal(signal.SIGCONT)  # a stopped process ignores SIGTERM until resumed
            p.stop()
    print("zombie after thawing:", woke)
    print("aggregator received:", received)
    print("restores (partition, offset, writer):", restored)
    late = [
        m
        for m in written.values()
        if m.agent_id == zombie_id and m.partition == victim_part and m.created_at > frozen_at
    ]
    print("the zombie's partition states written after its freeze:", late)
    assert lost == 0
    # Kafka's fence: the zombie's commits were refused (nothing committed went back), and
    # the frozen agent's partition came back from the changelog at the committed offset:
    # the state it had committed, restored by the new owner, never one the zombie wrote
    # after its freeze
    zombie_fenced = "commit failed" in woke or "revoked (lost by the group)" in woke
    assert zombie_fenced, woke
    assert any(
        part == victim_part and writer == zombie_id and offset < taken_over[victim_part]
        for part, offset, _, writer in restored
    ), restored
    # The zombie's late states end where it was when frozen (rows the new owner read again
    # from the committed offset) or, once it read on before noticing, at an offset the new
    # owner also reached: a state of one line of state ending at one offset holds the same
    # records whoever read them, so only the first kind would count rows twice.
    for part, offset, at, writer in restored:
        manifest = written[(part % PARTITIONS, at)]
        assert (manifest.partition, manifest.offset, manifest.agent_id) == (part, offset, writer)
        assert manifest not in late or offset >= taken_over[part], (manifest, restored)
    alone_w, merged = reports(alone_reports), reports(agg_reports)
    assert sorted(alone_w) == sorted(merged)
    assert [alone_w[k].rows for k in sorted(alone_w)] == list(ROWS)
    for key, want in alone_w.items():
        got = merged[key]
        assert not got.partial, (key, got.partial_reason)
        assert got.coverage is not None and got.coverage.reported == (0, 1, 2), key
        assert same_window(got, want, tol=1e-9), key
    assert "overlap" not in "".join(logs.values())
    drifted = [
        k
        for k in sorted(merged)
        if any(c.drifted for c in merged[k].drift.columns if c.feature == "income")
    ]
    assert drifted and min(k[1] for k in drifted) >= BASE_TIME + 3 * 2.0
