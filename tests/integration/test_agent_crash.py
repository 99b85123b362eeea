"""The agent's delivery protocol under a crash and a graceful stop, against a real broker.

A run killed with SIGKILL mid-stream and restarted from its state directory must report
exactly the windows of a run that was never interrupted: nothing lost, nothing counted
twice. SIGTERM must drain, checkpoint and commit before the process exits.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.config.loader import load_config
from monitor.demo.broker import TansuBroker
from monitor.runtime.checkpoint import CheckpointStore
from monitor.runtime.windows import WindowManager
from tests.integration import agent_helpers
from tests.integration.agent_helpers import (
    BASE_TIME,
    AgentProcess,
    Message,
    ReportKey,
    as_messages,
    committed_offsets,
    produce_aiokafka,
    produce_confluent,
    read_reports,
    reference_profile,
    same_window,
    unique_reports,
    wait_for,
    window_traffic,
    write_agent_files,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]

SIZE = 2.0
ROWS = (800, 1200, 600, 1500, 900, 1100)  # small (exact tests) and large (binned) windows
DRIFT_FROM = 3
# Windows close by event time: a window closes once a record 0.5 s past its end arrives.
# The idle timeout never fires during the test (a restart's group join must not close
# windows early); a last record far ahead in event time closes the final data window.
CRASH_WINDOWS = {"size": SIZE, "allowed_lateness": 0.5, "idle_timeout": 60.0}
FLUSH_AT = BASE_TIME + 100 * SIZE


@pytest.fixture(autouse=True, params=["aiokafka", "confluent"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs against both Kafka clients (``source.kafka.client``)."""
    monkeypatch.setattr(agent_helpers, "CLIENT", request.param)
    return str(request.param)


def crash_traffic() -> list[list[Message]]:
    """Three phases of one partition's traffic, with late records and replays in them.

    Phase 1 holds windows 0-2, phase 2 windows 3-4, phase 3 window 5 and the flush record.
    Each phase from the second on starts with replays (same request id) of records of the
    window before, which the agent must recognise as duplicates across a restart, and
    records stamped in window 0, long closed, which are late.
    """
    windows = window_traffic(
        windows=len(ROWS), rows=list(ROWS), size=SIZE, drift_from=DRIFT_FROM, seed=21
    )
    late = window_traffic(windows=1, rows=12, size=SIZE, seed=22)[0]

    def replays(k: int) -> list[dict[str, Any]]:
        return windows[k][-15:]

    flush = {**windows[0][0], "request_id": "flush", "timestamp": FLUSH_AT}
    phases = [
        windows[0] + windows[1] + replays(0)[:5] + windows[2],
        replays(2) + late[:6] + windows[3] + windows[4],
        replays(4) + late[6:] + windows[5] + [flush],
    ]
    return [as_messages(p) for p in phases]


def data_reports(path: Path) -> dict[ReportKey, Any]:
    return {
        key: r for key, r in unique_reports(read_reports(path)).items() if key[1] < FLUSH_AT - SIZE
    }


def test_sigkill_mid_stream_then_restart_reports_what_an_uninterrupted_run_does(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """One partition: the watermark is global, so with a small allowed lateness which
    records are late depends on the order they are read in; one partition fixes that order
    for both runs, and the comparison is then exact.

    The crashed run (B) reads the traffic as it is produced, is killed after a checkpoint
    with records consumed past it, and restarts from its state directory. The clean run
    (A) reads the same topic in one go with a fresh group and state directory. Reports
    are at-least-once (a window closed after the last checkpoint is reported again after
    the restart), so they are compared by (model_version, window start, baseline), and a
    repeated report must equal the first one.
    """
    topic = kafka_topic(1)
    bootstrap = broker_session.bootstrap
    phases = crash_traffic()
    late_total, replay_total = 12, 5 + 15 + 15

    def agent_files(name: str, checkpoint_interval: float) -> Any:
        return write_agent_files(
            tmp_path / name,
            bootstrap=bootstrap,
            topics=[topic],
            group_id=f"driftline-{name}-{uuid.uuid4().hex[:8]}",
            windows=CRASH_WINDOWS,
            checkpoint_interval=checkpoint_interval,
        )

    crashed = agent_files("crashed", checkpoint_interval=5.0)
    store = CheckpointStore(crashed.state)
    high = produce_aiokafka(bootstrap, topic, phases[0]).high[0]

    def checkpointed() -> int:
        checkpoint = store.load()
        return 0 if checkpoint is None else checkpoint.offsets.get((topic, 0), 0)

    agents: list[AgentProcess] = []
    try:
        first = AgentProcess(crashed.config).start()
        agents.append(first)
        wait_for(lambda: checkpointed() == high, "a checkpoint of phase 1", 60)
        reported_before = len(read_reports(crashed.reports))
        assert reported_before >= 2, "windows 0 and 1 close while phase 1 is read"

        high = produce_confluent(bootstrap, topic, phases[1]).high[0]
        decoded_before = first.decoded()
        wait_for(lambda: first.decoded() > decoded_before, "records of phase 2 consumed")
        consumed = int(first.decoded())  # one row per message: the next offset to read
        first.kill()
        at_kill = checkpointed()
        assert 0 < at_kill < consumed, "killed after a checkpoint, with records consumed past it"

        produce_aiokafka(bootstrap, topic, phases[2])
        total = sum(len(p) for p in phases)
        clean = agent_files("clean", checkpoint_interval=1.0)
        restarted = AgentProcess(crashed.config).start()
        agents.append(restarted)
        uninterrupted = AgentProcess(clean.config).start()
        agents.append(uninterrupted)

        windows = len(ROWS)
        for files in (crashed, clean):
            wait_for(
                lambda files=files: len(data_reports(files.reports)) >= windows,
                f"reports of all {windows} windows from {files.config.parent.name}",
                60,
            )
        assert "resumes at checkpoint offset" in restarted.log()
        assert uninterrupted.decoded() == total
        for agent in agents[1:]:
            agent.stop()
            assert agent.proc is not None and agent.proc.returncode == 0
    finally:
        for agent in agents:
            agent.stop()

    a = data_reports(clean.reports)
    b = data_reports(crashed.reports)
    assert sorted(a) == sorted(b)
    assert [key[1] for key in sorted(a)] == [BASE_TIME + k * SIZE for k in range(windows)]
    for key in sorted(a):
        assert same_window(a[key], b[key]), f"window {key} differs after the crash"
    # Nothing lost, nothing counted twice: every data record is in exactly one window,
    # and the late and replayed records are counted as such, once.
    assert [a[key].rows for key in sorted(a)] == list(ROWS)
    assert sum(r.late_records for r in a.values()) == late_total
    assert sum(r.duplicate_records for r in a.values()) == replay_total
    # No window went missing from the crashed run's file (windows that closed after its
    # last checkpoint may be in it twice, equal: checked by data_reports).
    assert len(read_reports(crashed.reports)) >= windows
    income = [{c.feature: c.drifted for c in a[key].drift.columns}["income"] for key in sorted(a)]
    assert income == [k >= DRIFT_FROM for k in range(windows)]


def test_sigterm_drains_checkpoints_and_commits_before_exit(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """With periodic checkpoints far apart, only the shutdown can have written the
    checkpoint and committed the offsets found after the process exits."""
    topic = kafka_topic(2)
    group = f"driftline-{uuid.uuid4().hex[:8]}"
    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=broker_session.bootstrap,
        topics=[topic],
        group_id=group,
        windows={"size": SIZE, "allowed_lateness": 60.0, "idle_timeout": 60.0},
        checkpoint_interval=120.0,
    )
    traffic = window_traffic(windows=2, rows=500, size=SIZE, seed=31)
    delivered = produce_confluent(
        broker_session.bootstrap, topic, as_messages([r for w in traffic for r in w]), 2
    )
    with AgentProcess(files.config) as agent:
        wait_for(lambda: agent.decoded() == delivered.total, "every record decoded", 60)

        def caught_up() -> bool:
            lag = agent.series("driftline_consumer_lag_records")
            return len(lag) == 2 and agent.metric("driftline_consumer_lag_records") == 0

        wait_for(caught_up, "lag 0 on both partitions")
        assert CheckpointStore(files.state).load() is None
        assert committed_offsets(broker_session.bootstrap, group, topic, 2) == {}

        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        assert "final checkpoint failed" not in agent.log()

    checkpoint = CheckpointStore(files.state).load()
    assert checkpoint is not None
    assert checkpoint.offsets == {(topic, p): h for p, h in delivered.high.items()}
    committed = committed_offsets(broker_session.bootstrap, group, topic, 2)
    assert committed == delivered.high
    # The checkpoint holds every consumed row in its (still open) windows.
    config = load_config(files.config)
    windows = WindowManager.restore(reference_profile(), checkpoint.windows, config=config.windows)
    closed = windows.flush()
    assert [(w.start, w.rows) for w in closed] == [
        (BASE_TIME + k * SIZE, len(traffic[k])) for k in range(len(traffic))
    ]
    assert read_reports(files.reports) == []


@pytest.mark.parametrize("trouble", ["broker stopped", "broker restarted without the topic"])
def test_sigterm_with_kafka_in_trouble_still_checkpoints_and_exits(
    trouble: str, broker: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """A pod is often stopped because its cluster is in trouble. With the broker gone,
    or back but without the topic (memory storage: every commit to it fails with a
    retriable error, which the Kafka client would retry for ever), the commit cannot
    happen; the checkpoint must, and the process must exit 0 rather than hang in the
    client or die of its shutdown errors."""
    topic = kafka_topic(2, broker=broker)
    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=broker.bootstrap,
        topics=[topic],
        group_id=f"driftline-{uuid.uuid4().hex[:8]}",
        windows={"size": SIZE, "allowed_lateness": 60.0, "idle_timeout": 60.0},
        checkpoint_interval=120.0,
    )
    traffic = window_traffic(windows=1, rows=400, size=SIZE, seed=41)[0]
    delivered = produce_aiokafka(broker.bootstrap, topic, as_messages(traffic), 2)
    with AgentProcess(files.config) as agent:
        wait_for(lambda: agent.decoded() == delivered.total, "every record decoded", 60)
        if trouble == "broker stopped":
            broker.stop()
            wait_for(lambda: agent.metric("driftline_source_up") == 0.0, "source_up 0")
        else:
            broker.restart()
            # The group is gone too: the agent rejoins, and its partitions are revoked.
            wait_for(lambda: "partitions revoked" in agent.log(), "the partitions revoked")
        agent.signal(signal.SIGTERM)
        assert agent.wait(20) == 0, agent.log()[-3000:]
        assert "final checkpoint failed" not in agent.log()

    checkpoint = CheckpointStore(files.state).load()
    assert checkpoint is not None
    assert checkpoint.offsets == {(topic, p): h for p, h in delivered.high.items()}


def test_a_restarted_agent_does_not_rewind_to_its_checkpoint_on_later_rebalances(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """The checkpoint's offsets are where a restarted agent resumes, once. When a second
    agent joins later, the first one's partitions are revoked and reassigned: it must
    carry on from where its state is (the offsets it committed on revocation), not go
    back to the checkpoint it started from and read those records a second time."""
    topic = kafka_topic(2)
    bootstrap = broker_session.bootstrap
    group = f"driftline-{uuid.uuid4().hex[:8]}"
    idle = {"size": SIZE, "allowed_lateness": 60.0, "idle_timeout": 3.0}
    first_files = write_agent_files(
        tmp_path / "first", bootstrap=bootstrap, topics=[topic], group_id=group, windows=idle
    )
    second_files = write_agent_files(
        tmp_path / "second", bootstrap=bootstrap, topics=[topic], group_id=group, windows=idle
    )
    phases = [
        as_messages(w) for w in window_traffic(windows=3, rows=(400, 600, 600), size=SIZE, seed=51)
    ]
    store = CheckpointStore(first_files.state)
    high = produce_confluent(bootstrap, topic, phases[0], partitions=2).high
    agents: list[AgentProcess] = []
    try:
        first = AgentProcess(first_files.config).start()
        agents.append(first)
        wait_for(
            lambda: (
                (c := store.load()) is not None
                and c.offsets == {(topic, p): h for p, h in high.items()}
            ),
            "a checkpoint of the first records",
            60,
        )
        first.stop()
        assert first.proc is not None and first.proc.returncode == 0

        restarted = AgentProcess(first_files.config).start()
        agents.append(restarted)
        wait_for(lambda: restarted.assignments(), "the restarted agent's assignment", 60)
        produce_confluent(bootstrap, topic, phases[1], partitions=2)
        wait_for(lambda: restarted.decoded() == len(phases[1]), "the second records")

        second = AgentProcess(second_files.config).start()
        agents.append(second)

        def split() -> bool:
            latest = [agent.assignments()[-1:] for agent in (restarted, second)]
            return all(latest) and {len(a[0]) for a in latest} == {1}

        wait_for(split, "the two agents sharing the partitions", 60)
        produce_confluent(bootstrap, topic, phases[2], partitions=2)
        expected = len(phases[1]) + len(phases[2])
        wait_for(
            lambda: restarted.decoded() + second.decoded() >= expected,
            "the third records, read by both agents",
        )
        wait_for(lambda: len(read_reports(second_files.reports)) >= 1, "the second agent's report")
        assert restarted.decoded() + second.decoded() == expected
        for agent in (restarted, second):
            assert agent.metric("driftline_records_total", outcome="duplicate") == 0
            assert agent.metric("driftline_records_total", outcome="late") == 0
    finally:
        for agent in agents:
            agent.stop()

    rows: dict[float, int] = {}
    for files in (first_files, second_files):
        for (_, start, _), r in unique_reports(read_reports(files.reports)).items():
            rows[start] = rows.get(start, 0) + r.rows
    assert rows == {BASE_TIME + k * SIZE: len(phase) for k, phase in enumerate(phases)}


def _dead_letter_keys(bootstrap: str, topic: str, want: set[bytes], timeout: float) -> set[bytes]:
    """Keys found on the dead-letter topic (partition 0) before all of ``want`` are seen or
    ``timeout`` seconds pass."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False}
    )
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        while not want <= seen and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is None and msg.key() is not None:
                    seen.add(msg.key())
    finally:
        consumer.close()
    return seen


def test_sigkill_loses_no_dead_letter(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """Offsets move only past records whose dead letter the brokers acknowledged: an agent
    killed with SIGKILL while it is dead-lettering a stream of poison records, and
    restarted, leaves every one of them on the dead-letter topic (some twice: at least
    once)."""
    topic, dead_letters = kafka_topic(1), kafka_topic(1)
    bootstrap = broker_session.bootstrap
    good = as_messages(window_traffic(windows=1, rows=500, size=SIZE, seed=61)[0])
    messages: list[Message] = []
    for i in range(3000):
        if i % 5 == 0:
            messages.append(good[(i // 5) % len(good)])
        else:
            messages.append((f"p{i}".encode(), b"{not json %d" % i, []))
    poison = {key for key, value, _ in messages if value.startswith(b"{not json")}
    group = f"driftline-{uuid.uuid4().hex[:8]}"
    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=bootstrap,
        topics=[topic],
        group_id=group,
        windows={"size": SIZE, "allowed_lateness": 60.0, "idle_timeout": 60.0},
        checkpoint_interval=0.5,
        kafka={"dead_letter_topic": dead_letters},
    )
    produce_confluent(bootstrap, topic, messages, partitions=1)
    agents: list[AgentProcess] = []
    try:
        first = AgentProcess(files.config).start()
        agents.append(first)
        wait_for(
            lambda: first.metric("driftline_records_failed_total", reason="invalid_json") > 200,
            "poison records being dead-lettered",
            60,
        )
        metric = "driftline_last_checkpoint_timestamp_seconds"
        before = first.metric(metric)
        wait_for(lambda: first.metric(metric) > before, "a checkpoint while dead-lettering")
        first.kill()
        restarted = AgentProcess(files.config).start()
        agents.append(restarted)
        wait_for(
            lambda: committed_offsets(bootstrap, group, topic, 1) == {0: len(messages)},
            "the restarted agent committing past every record",
            90,
        )
    finally:
        for agent in agents:
            agent.stop()
    missing = poison - _dead_letter_keys(bootstrap, dead_letters, poison, 30)
    assert not missing, f"{len(missing)} of {len(poison)} dead letters lost"
