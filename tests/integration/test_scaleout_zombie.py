"""Scale-out with a zombie: three agents and an aggregator on a real broker; one agent is
frozen (SIGSTOP) mid-stream, holding open windows, for longer than the group's session
timeout and its own ``idle_timeout``. The group evicts it and another member restores
its partition's state from the changelog (the state ending at the group's committed
offset), reads on, closes the last data window of the partition and sends its piece,
while the other partitions hold that window open at the aggregator. Then the agent is
thawed (SIGCONT): it wakes still believing it owns the partition. It knows it was frozen
(the gap in its own loop, monitor/runtime/loop_gap.py), so it does not take the pause
for the partition's silence; what it does before its next heartbeat tells it of the
eviction depends on scheduling: it may read records fetched before the freeze, close its
window 5 on them and send that piece, write its partition state to the changelog and
try to commit, or learn of the eviction first and drop its windows.

Whichever happens, the aggregated windows must equal those of one agent reading the same
topic alone (rows, late and duplicate counts, every statistic to 1e-9, every verdict),
none partial or ``overlap``; the zombie commits nothing (the group's offsets never go
back, not even once the zombie, back in the group, is given its partition again); no
restore uses a state the zombie wrote after its freeze that ends before the new owner's
commit; and a window piece the zombie sent is refused (``stale``, or ``late`` when the
window was judged before it arrived) or is the owner's own piece again (``repeated``).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from monitor.demo.broker import TansuBroker
from monitor.runtime.partition_changelog import PartitionManifest
from tests.integration import agent_helpers
from tests.integration.agent_helpers import (
    BASE_TIME,
    MODEL,
    AgentProcess,
    Message,
    committed_offsets,
    produce_aiokafka,
    same_window,
    wait_for,
)
from tests.integration.test_scaleout import (
    PARTITIONS,
    ROWS,
    reports,
    scale_out,
    scale_out_counts,
    start_scale_out,
)
from tests.integration.test_scaleout_state import phases, send_committed_phases

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]

#: "state of T-P at offset N found at changelog offset M (written by AGENT)"
_FOUND = re.compile(
    r"state of (\S+)-(\d+) at offset (\d+) found at changelog offset (\d+) \(written by (\S+)\)"
)
#: The zombie's idle timeout: it is frozen for longer (the other agents' is 60 s).
ZOMBIE_IDLE = 6.0

#: An agent's acknowledged partials, by kind (``window``: a closed window's piece).
PIECES = "driftline_partials_published_total"

_AGENT_ID = re.compile(r"publishing partials as agent (\S+), epoch (\d+)")

Restore = tuple[int, int, int, str]  # partition, offset, changelog offset, writer


def produce_to(bootstrap: str, topic: str, messages: list[Message], only: set[int]) -> None:
    """Send the messages :func:`produce_aiokafka` would put on the partitions ``only``
    (message ``i`` on partition ``i % PARTITIONS``), to those partitions, in order."""

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value=v, key=k, partition=i % PARTITIONS)
                for i, (k, v, _) in enumerate(messages)
                if i % PARTITIONS in only
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(send(), 30.0))


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
    # 3 s sessions (AIOKAFKA_FAST_GROUP): a freeze of ~4 s evicts
    files = scale_out(tmp_path, broker_session, topic)
    group = files.group
    changelog = f"driftline.{MODEL}.changelog-{group}"  # one partition per source partition
    for i, path in enumerate(files.agents):
        data = yaml.safe_load(path.read_text())
        data["state"]["changelog_topic"] = changelog
        if i == 0:
            data["windows"]["idle_timeout"] = ZOMBIE_IDLE
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    first, committed, read, last = phases()
    alone = AgentProcess(files.alone)
    agents = [AgentProcess(c) for c in files.agents]
    zombie, others = agents[0], agents[1:]
    aggregator = AgentProcess(files.aggregator)
    agg_reports, alone_reports = files.agg_reports, files.alone_reports
    try:
        start_scale_out(agents, aggregator, alone)
        zombie_id = agent_id(zombie)
        send_committed_phases(bootstrap, topic, group, [first, committed], agg_reports)
        [victim_part] = sorted(zombie.assignments()[-1])
        before = zombie.decoded()
        sent = produce_aiokafka(bootstrap, topic, read, partitions=PARTITIONS)
        high = sent.high
        wait_for(
            lambda: zombie.decoded() >= before + sent.count[victim_part],
            "the agent reading its partition's records",
            30.0,
        )
        # frozen with window 5 open (its rows possibly not yet checkpointed nor committed)
        pieces_before = zombie.metric(PIECES, kind="window")
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
        # where each partition ends once the last phase is in (offsets are consecutive)
        high = {p: h + sum(i % PARTITIONS == p for i in range(len(last))) for p, h in high.items()}
        # the new owner closes window 5 of the partition and sends it; the other
        # partitions keep it open at the aggregator
        produce_to(bootstrap, topic, last, {victim_part})
        wait_for(
            lambda: (
                committed_offsets(bootstrap, group, topic, PARTITIONS)[victim_part]
                == high[victim_part]
            ),
            "the new owner reading the rest of the partition",
            timeout=30.0,
        )
        wait_for(lambda: time.time() > frozen_at + ZOMBIE_IDLE + 1.0, "the idle timeout")
        zombie.signal(signal.SIGCONT)
        # it wakes believing it owns the partition; it notices at its next heartbeat
        wait_for(
            lambda: "partitions assigned" in zombie.log()[frozen_log:],
            "the thawed agent rejoining the group",
            timeout=30.0,
        )
        # window pieces it sent between its freeze and its rejoin: sent as a zombie (its
        # partition comes back to it, if at all, with the state at the committed offset)
        zombie_pieces = zombie.metric(PIECES, kind="window") - pieces_before
        # (its loop may turn again only once the rebalance is through: what it logs of the
        # pause is read at the end)
        # the zombie's commits never moved the group's offsets back
        back = committed_offsets(bootstrap, group, topic, PARTITIONS)
        assert back == {**taken_over, victim_part: high[victim_part]}, (back, taken_over)
        produce_to(bootstrap, topic, last, set(range(PARTITIONS)) - {victim_part})
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
        woke = zombie.log()[frozen_log:]  # all it logged since its freeze
        written = manifests(bootstrap, changelog)
        # still there: no member (the zombie back with the partition) moved it back since
        final = committed_offsets(bootstrap, group, topic, PARTITIONS)
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
    assert final == high
    # a window piece the zombie sent on waking (when it closed window 5 before learning
    # of its eviction) was refused, or was the owner's piece again: nothing it sent was
    # taken as new coverage (the windows equal the lone agent's, below, none "overlap")
    print("the zombie's window pieces:", zombie_pieces, "sent before its freeze:", pieces_before)
    refused = sum(received.get(k, 0) for k in ("stale", "late", "repeated"))
    assert refused >= zombie_pieces, (received, zombie_pieces)
    assert received.get("invalid", 0) == 0, received
    assert "did not run for" in woke, woke  # the freeze was seen as a pause, not silence
    # Kafka's fence: the zombie committed nothing (nothing committed went back, above and
    # below); it learned it had lost the partition (a refused commit, a lost assignment, a
    # revocation at its rejoin) and the frozen agent's partition came back from the
    # changelog at the committed offset: the state it had committed, restored by the new
    # owner, never one the zombie wrote after its freeze
    zombie_fenced = any(
        sign in woke for sign in ("commit failed", "offsets not committed", "partitions revoked")
    )
    assert zombie_fenced, woke
    assert any(
        part == victim_part and writer == zombie_id and offset <= taken_over[victim_part]
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
        assert same_window(got, want, tol=1e-9), (key, got.rows, want.rows)
    assert "overlap" not in "".join(logs.values())
    drifted = [
        k
        for k in sorted(merged)
        if any(c.drifted for c in merged[k].drift.columns if c.feature == "income")
    ]
    assert drifted and min(k[1] for k in drifted) >= BASE_TIME + 3 * 2.0
