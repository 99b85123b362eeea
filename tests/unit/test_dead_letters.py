"""Dead letters are kept before the offsets move: a checkpoint commits no further than the
first record whose dead letter is not yet acknowledged, a copy that cannot be kept is
named per record, an oversized record goes out as a truncated copy within the producer's
request limit, and a SIGTERM waits for the sends on their way and logs the true count."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from detectors.profile import build_profile
from monitor.config.model import MonitorConfig
from monitor.config.source import KafkaSourceConfig
from monitor.ingest import kafka
from monitor.ingest.batch import DecodeFailure, RawMessage
from monitor.ingest.dead_letters import (
    REASON_HEADER,
    TRUNCATED_HEADER,
    DeadLetters,
    dead_letter,
)
from monitor.runtime.agent import Agent
from tests.conftest import make_reference

Headers = list[tuple[str, bytes]]


class FakePublisher:
    """A producer whose acknowledgements the test gives (or refuses) by hand."""

    max_request_bytes = 4096

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes | None, bytes, Headers]] = []
        self.acks: list[asyncio.Future[None]] = []

    async def deliver(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        self.sent.append((topic, key, value, headers))
        if self.fail:
            raise ConnectionError("brokers gone")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        await ack

    def ack_all(self) -> None:
        for ack in self.acks:
            if not ack.done():
                ack.set_result(None)


class RecordingSource:
    """Stands in for the Kafka source: records what would be committed."""

    consumer = object()

    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.commits.append(dict(offsets))

    async def stop(self) -> None:
        pass


def make_agent(tmp_path: Path, max_bytes: int = 1_048_576) -> Agent:
    profile = build_profile(make_reference(300))
    path = profile.save(tmp_path / "ref.json")
    config = MonitorConfig.model_validate(
        {
            "model": "m",
            "reference": str(path),
            "source": {
                "kind": "kafka",
                "kafka": {
                    "bootstrap_servers": "127.0.0.1:9",
                    "topics": ["t"],
                    "group_id": "g",
                    "dead_letter_topic": "dlq",
                },
            },
            "record": {"max_bytes": max_bytes},
            "reports": {"log": False},
            "state": {"dir": str(tmp_path / "state"), "changelog": False},
        }
    )
    return Agent(config, profile=profile, sinks=[], serve_http=False)


def batch(poison: bytes = b"not json") -> list[RawMessage]:
    good = orjson.dumps({"features": {"normal": 10.0, "city": "x"}, "timestamp": 1_700_000_000})
    return [
        RawMessage(value=good, topic="t", offset=0),
        RawMessage(value=poison, key=b"k", topic="t", offset=1),
        RawMessage(value=good, topic="t", offset=2),
    ]


def test_checkpoint_commits_no_further_than_an_unacknowledged_dead_letter(
    tmp_path: Path,
) -> None:
    agent = make_agent(tmp_path)
    source, publisher = RecordingSource(), FakePublisher()
    agent.source = source  # type: ignore[assignment]

    async def scenario() -> None:
        agent.dead_letters = DeadLetters(publisher, "dlq")
        agent.pipeline.ingest_messages(batch(), now=1_700_000_000.0)
        agent.offsets = {("t", 0): 3}
        await asyncio.sleep(0)
        await agent.checkpoint()
        assert source.commits == [{("t", 0): 1}]  # held at the poison record
        publisher.ack_all()
        await asyncio.sleep(0)
        await agent.checkpoint()
        assert source.commits[-1] == {("t", 0): 3}

    asyncio.run(scenario())
    (topic, key, value, headers), *_ = publisher.sent
    assert (topic, key, value) == ("dlq", b"k", b"not json")
    assert (REASON_HEADER, b"invalid_json") in headers
    assert ("x-driftline-offset", b"1") in headers
    agent.executor.shutdown()


def test_a_dead_letter_that_cannot_be_kept_is_named_and_released(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(tmp_path)
    source, publisher = RecordingSource(), FakePublisher(fail=True)
    agent.source = source  # type: ignore[assignment]

    async def scenario() -> None:
        agent.dead_letters = DeadLetters(publisher, "dlq", attempts=3, backoff=0.0)
        agent.pipeline.ingest_messages(batch(), now=1_700_000_000.0)
        agent.offsets = {("t", 0): 3}
        assert await agent.dead_letters.settle(5.0) == 0
        await agent.checkpoint()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert len(publisher.sent) == 3  # three tries
    assert "dead letter of t[0]@1 (invalid_json) could not be kept" in caplog.text
    assert "not json" not in caplog.text
    assert source.commits == [{("t", 0): 3}]
    agent.executor.shutdown()


def estimated(key: bytes | None, value: bytes, headers: Headers) -> int:
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


@pytest.mark.parametrize("header_bytes", [0, 10, 3000])
def test_an_oversized_record_is_dead_lettered_truncated_within_the_limit(
    header_bytes: int,
) -> None:
    payload = b"x" * 10_000
    message = RawMessage(
        value=payload,
        key=b"key",
        topic="t",
        partition=2,
        offset=7,
        headers=(("h", b"y" * header_bytes),) if header_bytes else (),
    )
    key, value, headers = dead_letter(DecodeFailure("oversized", "big", message), limit=4096)
    assert estimated(key, value, headers) <= 4096
    assert key == b"key" and payload.startswith(value) and len(value) > 1000
    names = dict(headers)
    assert names[TRUNCATED_HEADER] == b"10000"
    assert names[REASON_HEADER] == b"oversized"
    assert (names["x-driftline-partition"], names["x-driftline-offset"]) == (b"2", b"7")
    if header_bytes == 10:
        assert names["h"] == b"y" * 10  # small headers travel with the copy


def test_an_oversized_record_reaches_the_dead_letter_topic(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, max_bytes=1000)
    publisher = FakePublisher()
    agent.source = RecordingSource()  # type: ignore[assignment]

    async def scenario() -> None:
        agent.dead_letters = DeadLetters(publisher, "dlq")
        agent.pipeline.ingest_messages(batch(b"z" * 50_000), now=1_700_000_000.0)
        await asyncio.sleep(0)
        publisher.ack_all()
        assert await agent.dead_letters.settle(1.0) == 0

    asyncio.run(scenario())
    [(_, _, value, headers)] = publisher.sent
    assert estimated(b"k", value, headers) <= FakePublisher.max_request_bytes
    assert dict(headers)[TRUNCATED_HEADER] == b"50000"
    agent.executor.shutdown()


def test_shutdown_waits_for_dead_letters_on_their_way(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    source, publisher = RecordingSource(), FakePublisher()
    agent.source = source  # type: ignore[assignment]

    async def scenario() -> None:
        agent.dead_letters = DeadLetters(publisher, "dlq")
        agent.pipeline.ingest_messages(batch(), now=1_700_000_000.0)
        agent.offsets = {("t", 0): 3}
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_later(0.2, publisher.ack_all)
        await agent._shutdown()

    acked_at_commit: list[bool] = []
    commit = source.commit

    async def recording(offsets: dict[tuple[str, int], int]) -> None:
        acked_at_commit.append(bool(publisher.acks) and all(a.done() for a in publisher.acks))
        await commit(offsets)

    source.commit = recording  # type: ignore[method-assign]
    asyncio.run(scenario())
    assert source.commits == [{("t", 0): 3}]
    assert acked_at_commit == [True]  # the final checkpoint waited for the ack


class NeverAcks:
    """An aiokafka producer stand-in whose sends never complete."""

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        pass


def test_publisher_stop_logs_the_true_number_of_unsent_messages(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kafka, "COMMIT_TIMEOUT", 0.1)
    cfg = KafkaSourceConfig(bootstrap_servers="127.0.0.1:9", topics=["t"], group_id="g")

    async def scenario() -> None:
        publisher = kafka.KafkaPublisher(cfg)
        publisher.producer = NeverAcks()  # type: ignore[assignment]
        for i in range(3):
            publisher.send("r", None, b"%d" % i)
        await asyncio.sleep(0)
        await publisher.stop()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "3 messages not published before shutdown" in caplog.text
