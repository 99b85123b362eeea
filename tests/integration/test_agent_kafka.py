"""`driftline run` against a real Tansu broker: traffic from two independent clients, a
group of two agents, a broker that is down or restarts, and records that cannot be used.

Every agent here is a child process started from a ``monitor.yaml``, exactly as users run
it; what it did is read back from its report file, its ``/metrics``, its checkpoint and
the group's committed offsets (read with confluent-kafka, a client the agent does not use).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from detectors.results import WindowReport
from monitor.demo.broker import BrokerError, TansuBroker, free_port
from monitor.runtime.agent import DEAD_LETTER_REASON_HEADER
from monitor.runtime.checkpoint import CheckpointStore
from tests.integration import agent_helpers
from tests.integration.agent_helpers import (
    BASE_TIME,
    MODEL,
    AgentProcess,
    as_messages,
    committed_offsets,
    drifted_features,
    encode,
    produce_aiokafka,
    produce_confluent,
    read_reports,
    unique_reports,
    wait_for,
    window_traffic,
    write_agent_files,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]

SIZE = 2.0  # seconds of event time per window
# Windows close when traffic pauses (idle timeout), never by the watermark: with two
# partitions read in whatever interleaving the consumer fetches them, a small allowed
# lateness would make some rows late in one run and not in another. Lateness larger than
# the whole traffic's event-time span makes every row count, whatever the interleaving.
IDLE_WINDOWS = {"size": SIZE, "allowed_lateness": 60.0, "idle_timeout": 3.0}


@pytest.fixture(autouse=True, params=["aiokafka", "confluent"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs against both Kafka clients (``source.kafka.client``)."""
    monkeypatch.setattr(agent_helpers, "CLIENT", request.param)
    return str(request.param)


def group_id() -> str:
    return f"driftline-{uuid.uuid4().hex[:8]}"


def starts(n: int) -> list[float]:
    return [BASE_TIME + k * SIZE for k in range(n)]


def reports_by_start(path: Path, version: str) -> dict[float, WindowReport]:
    return {
        key[1]: r
        for key, r in unique_reports(read_reports(path)).items()
        if key[0] == version and key[2] == "reference"
    }


def test_traffic_from_both_clients_is_counted_once_and_drift_found_where_injected(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """Version v1 is produced with confluent-kafka, v2 with aiokafka, both spread over two
    partitions; income drifts from the third window on in both."""
    topic = kafka_topic(2)
    group = group_id()
    windows, rows = 4, 1200
    produced: dict[str, list[list[dict[str, Any]]]] = {
        "v1": window_traffic(windows=windows, rows=rows, size=SIZE, drift_from=2, version="v1"),
        "v2": window_traffic(
            windows=windows, rows=rows, size=SIZE, drift_from=2, version="v2", seed=1
        ),
    }
    flat = {v: [r for w in ws for r in w] for v, ws in produced.items()}
    delivered = produce_confluent(
        broker_session.bootstrap, topic, as_messages(flat["v1"]), partitions=2
    ).merge(produce_aiokafka(broker_session.bootstrap, topic, as_messages(flat["v2"]), 2))
    assert delivered.total == 2 * windows * rows
    assert set(delivered.count) == {0, 1}

    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=broker_session.bootstrap,
        topics=[topic],
        group_id=group,
        windows=IDLE_WINDOWS,
    )
    with AgentProcess(files.config) as agent:
        wait_for(lambda: agent.decoded() >= delivered.total, "every record decoded", 60)
        status, body = agent.get("/readyz")
        assert status == 200, body
        wait_for(
            lambda: all(len(reports_by_start(files.reports, v)) >= windows for v in produced),
            "a report for every window of both versions",
        )
        # Offsets are committed only after a checkpoint that holds their records.
        expected = {p: delivered.high[p] for p in (0, 1)}
        wait_for(
            lambda: committed_offsets(broker_session.bootstrap, group, topic, 2) == expected,
            f"committed offsets {expected}",
        )
        metrics = agent.metrics()
        lag = {
            dict(labels)["partition"]: value
            for (name, labels), value in metrics.items()
            if name == "driftline_consumer_lag_records"
        }
        assert lag == {"0": 0.0, "1": 0.0}
        assert agent.metric("driftline_source_up") == 1.0
        for version, records in flat.items():
            assert agent.metric(
                "driftline_records_total", outcome="decoded", model_version=version
            ) == len(records)
        for outcome in ("failed", "late", "duplicate"):
            assert agent.metric("driftline_records_total", outcome=outcome) == 0, outcome
        assert agent.alive()

    checkpoint = CheckpointStore(files.state).load()
    assert checkpoint is not None
    assert checkpoint.offsets == {(topic, p): h for p, h in expected.items()}

    for version, windows_records in produced.items():
        reports = reports_by_start(files.reports, version)
        assert sorted(reports) == starts(windows), version
        for k, start in enumerate(starts(windows)):
            r = reports[start]
            assert r.model == MODEL
            assert r.window_end == start + SIZE
            assert r.rows == len(windows_records[k]), (version, k)
            assert (r.late_records, r.duplicate_records) == (0, 0)
            if k < 2:
                assert "income" not in drifted_features(r), (version, k)
            else:
                assert "income" in drifted_features(r), (version, k)
        assert sum(r.rows for r in reports.values()) == len(flat[version])


def test_two_agents_in_one_group_split_the_partitions_and_count_each_row_once(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    topic = kafka_topic(2)
    group = group_id()
    windows, rows = 3, 1000
    traffic = window_traffic(windows=windows, rows=rows, size=SIZE, drift_from=None, seed=3)
    agents = [
        AgentProcess(
            write_agent_files(
                tmp_path / name,
                bootstrap=broker_session.bootstrap,
                topics=[topic],
                group_id=group,
                windows=IDLE_WINDOWS,
            ).config
        )
        for name in ("a", "b")
    ]
    try:
        for agent in agents:
            agent.start()

        def split() -> bool:
            latest = [agent.assignments()[-1:] for agent in agents]
            if not all(latest):
                return False
            a, b = latest[0][0], latest[1][0]
            return len(a) == len(b) == 1 and a | b == {0, 1}

        wait_for(split, "each agent assigned one partition", 60)
        owned = [agent.assignments()[-1] for agent in agents]

        # Message i goes to partition i % 2, so each window's rows are split known ways.
        messages = as_messages([r for w in traffic for r in w])
        delivered = produce_confluent(broker_session.bootstrap, topic, messages, partitions=2)
        per_partition = [[0] * windows for _ in range(2)]
        i = 0
        for k, window in enumerate(traffic):
            for _ in window:
                per_partition[i % 2][k] += 1
                i += 1

        wait_for(
            lambda: sum(agent.decoded() for agent in agents) >= delivered.total,
            "every record decoded by the group",
            60,
        )
        files = [agent.config.parent / "reports.jsonl" for agent in agents]
        wait_for(
            lambda: all(len(reports_by_start(f, "v1")) >= windows for f in files),
            "both agents reporting every window",
        )
        assert sum(agent.decoded() for agent in agents) == delivered.total
        for agent, mine in zip(agents, owned, strict=True):
            lag = agent.series("driftline_consumer_lag_records")
            assert {s["partition"] for s in lag} == {str(p) for p in mine}
            assert agent.get("/readyz")[0] == 200
            assert agent.alive()
        # The assignment did not change while the traffic flowed.
        assert [agent.assignments()[-1] for agent in agents] == owned
        wait_for(
            lambda: committed_offsets(broker_session.bootstrap, group, topic, 2) == delivered.high,
            f"committed offsets {delivered.high}",
        )
    finally:
        for agent in agents:
            agent.stop()

    reports = [reports_by_start(f, "v1") for f in files]
    for k, start in enumerate(starts(windows)):
        rows_per_agent = [r[start].rows for r in reports]
        assert sum(rows_per_agent) == len(traffic[k])
        for agent_reports, mine in zip(reports, owned, strict=True):
            (partition,) = mine
            assert agent_reports[start].rows == per_partition[partition][k]
            assert agent_reports[start].late_records == 0
            assert agent_reports[start].duplicate_records == 0


def ensure_topic(broker: TansuBroker, topic: str, partitions: int) -> int:
    """Create `topic` on a broker that has just started, unless a client got there first.

    A consumer that subscribes to a missing topic may make Tansu create it (with 4
    partitions); the agent reconnects on its own, so it can win that race. Returns the
    partition count the topic has.
    """
    with contextlib.suppress(BrokerError):
        broker.create_topic(topic, partitions)
    return wait_for(lambda: broker.topics().get(topic), f"topic {topic} on the broker")


def test_broker_down_at_start_and_restarted_mid_run(tmp_path: Path) -> None:
    """The agent starts before its broker, then lives through a broker restart.

    Before the broker exists the agent serves ``/metrics`` and answers not-ready, with
    ``driftline_source_up 0``, while it retries; once the broker is up it connects, joins
    and consumes without being told. The restart is a stop and a start on the same port:
    while the broker is down the agent reports source_up 0 and not-ready again.

    What "recovers" means with Tansu's memory storage: the restarted broker has lost the
    topic, its records and the group with its committed offsets; the topic is created
    again and starts at offset 0. The agent keeps its window state and rejoins the group;
    its position (past the end of the new, shorter partitions) is reset to the beginning
    because the fetch answers show the partitions end before it. It then consumes the
    records produced after the restart, so ``records_total`` grows by exactly their count.
    """
    broker = TansuBroker(port=free_port(), log_dir=tmp_path / "tansu")
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=broker.bootstrap,
        topics=[topic],
        group_id=group_id(),
        windows=IDLE_WINDOWS,
    )
    traffic = window_traffic(windows=2, rows=300, size=SIZE, seed=5)
    messages = as_messages([r for w in traffic for r in w])
    before, after = messages[:360], messages[360:]

    def source_down(agent: AgentProcess) -> bool:
        status, _ = agent.get("/readyz")
        return status == 503 and agent.metric("driftline_source_up") == 0.0

    def source_up(agent: AgentProcess) -> bool:
        status, _ = agent.get("/readyz")
        return status == 200 and agent.metric("driftline_source_up") == 1.0

    try:
        with AgentProcess(files.config) as agent:
            wait_for(lambda: source_down(agent), "not-ready and source_up 0 without a broker")
            # librdkafka's client says so when its first probe times out
            wait_for(lambda: "cannot connect" in agent.log(), "the connection failure logged")
            assert agent.alive()

            broker.start()
            partitions = ensure_topic(broker, topic, 2)
            produce_confluent(broker.bootstrap, topic, before, partitions=partitions)
            wait_for(lambda: agent.decoded() == len(before), "the records produced at start")
            assert source_up(agent)
            # Its windows and offsets are checkpointed (and committed) before the restart.
            wait_for(lambda: CheckpointStore(files.state).load(), "a checkpoint")

            broker.stop()
            wait_for(lambda: source_down(agent), "not-ready and source_up 0 with the broker gone")
            broker.start()
            partitions = ensure_topic(broker, topic, 2)
            delivered = produce_confluent(broker.bootstrap, topic, after, partitions=partitions)
            assert max(delivered.high.values()) < max(
                CheckpointStore(files.state).load().offsets.values()  # type: ignore[union-attr]
            ), "the new partitions must end before the old offsets for this test to mean much"
            wait_for(lambda: source_up(agent), "ready and source_up 1 after the restart", 40)
            wait_for(
                lambda: agent.decoded() == len(before) + len(after),
                "the records produced after the restart",
                40,
            )
            assert agent.metric("driftline_records_total", outcome="duplicate") == 0
            assert agent.alive()
    finally:
        broker.close()


POISON_MAX_BYTES = 4096


def poison_messages() -> list[tuple[str, bytes, str]]:
    """(key, payload, reason) of records that cannot be used, one or more per reason."""
    good = window_traffic(windows=1, rows=1, size=SIZE, seed=9)[0][0]
    no_features = {k: v for k, v in good.items() if k != "features"}
    dict_value = {**good, "features": {**good["features"], "income": {"amount": 1}}}
    list_value = {**good, "features": {**good["features"], "age": [30, 31]}}
    features_not_object = {**good, "features": "age=30"}
    bad_time = {**good, "timestamp": "yesterday at noon"}
    oversized = {**good, "note": "x" * (POISON_MAX_BYTES + 100)}
    cases = [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'"just a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (encode(no_features), "missing_field"),
        (encode(dict_value), "bad_value"),
        (encode(list_value), "bad_value"),
        (encode(features_not_object), "bad_value"),
        (encode(bad_time), "bad_timestamp"),
        (encode(oversized), "oversized"),
    ]
    return [(f"poison-{i}", payload, reason) for i, (payload, reason) in enumerate(cases)]


def read_topic(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list[Any]:
    """The first `n` messages of partition 0 of `topic`, read with confluent-kafka."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group_id(), "enable.auto.commit": False}
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


def test_poison_records_are_counted_by_reason_and_dead_lettered_intact(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    topic, dead_letters = kafka_topic(2), kafka_topic(1)
    good = [r for w in window_traffic(windows=2, rows=150, size=SIZE, seed=8) for r in w]
    poison = poison_messages()
    # Poison between good records, some with headers of their own that must survive.
    messages: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    good_messages = as_messages(good)
    step = len(good_messages) // len(poison)
    for i, (key, payload, _) in enumerate(poison):
        messages.extend(good_messages[i * step : (i + 1) * step])
        headers = [("origin", f"test-{i}".encode())] if i % 2 else []
        messages.append((key.encode(), payload, headers))
    messages.extend(good_messages[len(poison) * step :])
    assert len(messages) == len(good) + len(poison)

    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=broker_session.bootstrap,
        topics=[topic],
        group_id=group_id(),
        windows=IDLE_WINDOWS,
        kafka={"dead_letter_topic": dead_letters},
        record={"max_bytes": POISON_MAX_BYTES},
    )
    with AgentProcess(files.config) as agent:
        produce_aiokafka(broker_session.bootstrap, topic, messages, partitions=2)
        wait_for(lambda: agent.decoded() == len(good), "every good record decoded")
        wait_for(
            lambda: agent.metric("driftline_records_total", outcome="failed") == len(poison),
            "every poison record counted as failed",
        )
        expected: dict[str, int] = {}
        for _, _, reason in poison:
            expected[reason] = expected.get(reason, 0) + 1
        failed = {
            s["reason"]: agent.metric("driftline_records_failed_total", reason=s["reason"])
            for s in agent.series("driftline_records_failed_total")
        }
        assert {r: n for r, n in failed.items() if n} == expected
        wait_for(lambda: len(reports_by_start(files.reports, "v1")) == 2, "reports of both windows")
        # The agent kept going: still healthy, ready, and counting new records.
        assert agent.get("/healthz")[0] == 200
        assert agent.get("/readyz")[0] == 200
        later = window_traffic(windows=1, rows=40, size=SIZE, seed=10)[0]
        produce_confluent(broker_session.bootstrap, topic, as_messages(later), partitions=2)
        wait_for(lambda: agent.decoded() == len(good) + len(later), "records after the poison")
        assert agent.alive()

    reports = reports_by_start(files.reports, "v1")
    assert sum(r.rows for r in reports.values()) == len(good)

    letters = read_topic(broker_session.bootstrap, dead_letters, len(poison))
    by_key = {m.key().decode(): m for m in letters}
    assert len(letters) == len(poison) == len(by_key)
    for i, (key, payload, reason) in enumerate(poison):
        msg = by_key[key]
        assert (msg.value() or b"") == payload, key
        headers = dict(msg.headers() or [])
        assert headers[DEAD_LETTER_REASON_HEADER] == reason.encode(), key
        if i % 2:
            assert headers["origin"] == f"test-{i}".encode()


def test_a_record_over_the_request_limit_is_dead_lettered_as_a_truncated_copy(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """A record larger than the producer's 1 MiB request limit (an ``oversized`` record
    can be) reaches the dead-letter topic cut to fit, with its reason, original size and
    coordinates; the records around it are decoded and the agent commits past it."""
    from confluent_kafka import Producer

    from monitor.ingest.dead_letters import TRUNCATED_HEADER

    topic, dead_letters = kafka_topic(1), kafka_topic(1)
    good = as_messages(window_traffic(windows=1, rows=20, size=SIZE, seed=12)[0])
    big = b'{"features": {"note": "' + b"x" * 1_200_000 + b'"}}'
    producer = Producer(
        {"bootstrap.servers": broker_session.bootstrap, "message.max.bytes": 4 << 20}
    )
    for key, value, _ in good[:10]:
        producer.produce(topic, key=key, value=value, partition=0)
    producer.produce(topic, key=b"big", value=big, partition=0)
    for key, value, _ in good[10:]:
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0
    group = group_id()
    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=broker_session.bootstrap,
        topics=[topic],
        group_id=group,
        windows=IDLE_WINDOWS,
        kafka={"dead_letter_topic": dead_letters},
    )
    with AgentProcess(files.config) as agent:
        wait_for(lambda: agent.decoded() == len(good), "the records around the big one")
        wait_for(
            lambda: agent.metric("driftline_records_failed_total", reason="oversized") == 1,
            "the big record counted as oversized",
        )
        [letter] = read_topic(broker_session.bootstrap, dead_letters, 1)
        wait_for(
            lambda: (
                committed_offsets(broker_session.bootstrap, group, topic, 1) == {0: len(good) + 1}
            ),
            "the offsets committed past the big record",
        )
    headers = dict(letter.headers() or [])
    assert headers[DEAD_LETTER_REASON_HEADER] == b"oversized"
    assert headers[TRUNCATED_HEADER] == str(len(big)).encode()
    assert headers["x-driftline-offset"] == b"10"
    assert letter.key() == b"big" and big.startswith(letter.value())
    assert 1_000_000 < len(letter.value()) < 1_048_576
