"""The partials topic made sure of at start: its settings, the config key that turns it
off, and what a refusing or silent broker does (one log line, never an exception)."""

from __future__ import annotations

import asyncio
import logging
import shlex
from types import SimpleNamespace
from typing import Any

import pytest

from monitor.config.aggregation import AggregationConfig
from monitor.config.errors import ConfigError
from monitor.config.model import MonitorConfig
from monitor.config.windows import WindowsConfig
from monitor.ingest.topics import TopicRefused, TopicUnreachable, ensure_topic
from monitor.runtime import partials_topic
from monitor.runtime.changelog import ChangelogError, ChangelogUnreachable, ensure_compacted
from monitor.runtime.partials_topic import (
    MAX_MESSAGE_BYTES,
    create_command,
    ensure_partials_topic,
    retention_ms,
    topic_configs,
)
from tests.unit.kafka_configs import kafka_config

HOUR_MS = 3_600_000


def config(**aggregation: Any) -> MonitorConfig:
    return kafka_config(
        model="fraud scorer",
        windows={"size": "30m", "allowed_lateness": "1m"},
        aggregation={"role": "agent", "deadline": "2m", **aggregation},
        state={"changelog_replication": 3},
    )


# -- retention ----------------------------------------------------------------------------


def test_retention_is_an_hour_for_short_windows() -> None:
    # 3 × (60 s + 10 s + 30 s) = 300 s, under the hour
    assert retention_ms(WindowsConfig(), AggregationConfig()) == HOUR_MS


def test_retention_is_three_times_a_windows_wait_when_longer_than_an_hour() -> None:
    windows = WindowsConfig(size="30m", allowed_lateness="5m")
    aggregation = AggregationConfig(deadline="2m")
    assert retention_ms(windows, aggregation) == 3 * (1800 + 300 + 120) * 1000


def test_retention_crosses_the_hour_where_the_wait_reaches_twenty_minutes() -> None:
    just_under = WindowsConfig(size=1199.0, allowed_lateness=0.5)
    at = WindowsConfig(size=1199.0, allowed_lateness=1.0)
    over = WindowsConfig(size=1199.0, allowed_lateness=1.5)
    deadline = AggregationConfig(deadline=0.25)
    assert retention_ms(just_under, deadline) == HOUR_MS  # 3 × 1199.75 s
    assert retention_ms(at, deadline) == 3 * 1200.25 * 1000
    assert retention_ms(over, deadline) == 3 * 1200.75 * 1000


def test_topic_configs_follow_the_config() -> None:
    c = config()
    assert topic_configs(c) == {
        "cleanup.policy": "delete",
        "retention.ms": str(3 * (1800 + 60 + 120) * 1000),
        "max.message.bytes": "8388608",
    }
    assert MAX_MESSAGE_BYTES == 8 * 1024 * 1024


# -- the config key -----------------------------------------------------------------------


def test_create_topic_is_on_by_default_and_can_be_turned_off() -> None:
    assert config().aggregation.create_topic is True
    assert config(create_topic=False).aggregation.create_topic is False


def test_a_create_topic_that_is_not_a_boolean_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        config(create_topic="sometimes")
    assert "aggregation.create_topic" in str(info.value)


# -- ensure_partials_topic ----------------------------------------------------------------


class Recorder:
    """Stands in for ``ensure_topic``: records its calls, raises ``error`` if given."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.error = error

    async def __call__(self, *args: Any, **kwargs: Any) -> int:
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        return 1


def test_the_partials_topic_is_asked_for_with_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = Recorder()
    monkeypatch.setattr(partials_topic, "ensure_topic", fake)
    c = config()
    assert asyncio.run(ensure_partials_topic(c)) is True
    [(args, kwargs)] = fake.calls
    assert args == (c.source.kafka, "driftline.fraud-scorer.partials")
    assert kwargs == {"replication": 3, "configs": topic_configs(c), "partitions": 1}


def test_a_chosen_partials_topic_is_the_one_created(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Recorder()
    monkeypatch.setattr(partials_topic, "ensure_topic", fake)
    asyncio.run(ensure_partials_topic(config(partials_topic="mine.partials")))
    assert fake.calls[0][0][1] == "mine.partials"


def test_nothing_is_created_when_create_topic_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Recorder()
    monkeypatch.setattr(partials_topic, "ensure_topic", fake)
    assert asyncio.run(ensure_partials_topic(config(create_topic=False))) is False
    assert fake.calls == []


def test_nothing_is_created_without_a_kafka_source(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Recorder()
    monkeypatch.setattr(partials_topic, "ensure_topic", fake)
    c = config().model_copy(update={"source": SimpleNamespace(kind="file", kafka=None)})
    assert asyncio.run(ensure_partials_topic(c)) is False
    assert fake.calls == []


def test_a_refusal_is_one_error_with_the_command_to_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    topic = "driftline.fraud-scorer.partials"
    refused = TopicRefused(topic, "TopicAuthorizationFailedError (error code 29)")
    monkeypatch.setattr(partials_topic, "ensure_topic", Recorder(refused))
    monkeypatch.setattr(partials_topic, "_REFUSED", set())
    c = config()
    with caplog.at_level(logging.INFO, logger=partials_topic.__name__):
        assert asyncio.run(ensure_partials_topic(c)) is False
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert topic in message and "TopicAuthorizationFailedError" in message
    command = create_command(topic, topic_configs(c), 3)
    assert command in message
    words = shlex.split(command)
    assert words[:4] == ["kafka-topics.sh", "--create", "--topic", topic]
    assert words[words.index("--partitions") + 1] == "1"
    assert words[words.index("--replication-factor") + 1] == "3"
    settings = [words[i + 1] for i, w in enumerate(words) if w == "--config"]
    assert settings == [f"{k}={v}" for k, v in topic_configs(c).items()]


def test_the_agent_and_aggregator_of_one_process_log_one_refusal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    refused = TopicRefused("driftline.fraud-scorer.partials", "PolicyViolationError")
    monkeypatch.setattr(partials_topic, "ensure_topic", Recorder(refused))
    monkeypatch.setattr(partials_topic, "_REFUSED", set())
    c = config(role="both")

    async def both() -> list[bool]:
        return list(await asyncio.gather(ensure_partials_topic(c), ensure_partials_topic(c)))

    with caplog.at_level(logging.INFO, logger=partials_topic.__name__):
        assert asyncio.run(both()) == [False, False]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


@pytest.mark.parametrize(
    "error", [TopicUnreachable("x", "KafkaConnectionError"), RuntimeError("unexpected")]
)
def test_silent_brokers_or_anything_else_is_a_warning_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    monkeypatch.setattr(partials_topic, "ensure_topic", Recorder(error))
    with caplog.at_level(logging.INFO, logger=partials_topic.__name__):
        assert asyncio.run(ensure_partials_topic(config())) is False
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "driftline.fraud-scorer.partials" in record.getMessage()


# -- ensure_topic against a stand-in admin client ------------------------------------------


class FakeAdmin:
    """Answers like aiokafka's admin client: the topics it holds, one creation code."""

    def __init__(self, held: dict[str, int], code: int = 0, fail_start: bool = False) -> None:
        self.held = held
        self.code = code
        self.fail_start = fail_start
        self.created: list[Any] = []

    def __call__(self, **kwargs: Any) -> FakeAdmin:
        return self

    async def start(self) -> None:
        if self.fail_start:
            raise OSError("connection refused")

    async def close(self) -> None:
        pass

    async def describe_topics(self) -> list[dict[str, Any]]:
        return [{"topic": t, "partitions": [{}] * n} for t, n in self.held.items()]

    async def create_topics(self, new: list[Any]) -> Any:
        self.created += new
        if self.code in (0, 36):  # 36: another agent created it first
            for t in new:
                self.held[t.name] = t.num_partitions
        return SimpleNamespace(topic_errors=[(t.name, self.code, None) for t in new])


KAFKA = config().source.kafka


def run_ensure(
    monkeypatch: pytest.MonkeyPatch, admin: FakeAdmin, **kwargs: Any
) -> tuple[int, FakeAdmin]:
    import aiokafka.admin

    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", admin)
    assert KAFKA is not None
    args = {"replication": 2, "configs": {"cleanup.policy": "delete"}, **kwargs}
    return asyncio.run(ensure_topic(KAFKA, "p", **args)), admin


def test_a_missing_topic_is_created_with_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    count, admin = run_ensure(monkeypatch, FakeAdmin({"t": 6}))
    assert count == 1
    [new] = admin.created
    assert (new.name, new.num_partitions, new.replication_factor) == ("p", 1, 2)
    assert new.topic_configs == {"cleanup.policy": "delete"}


def test_partitions_like_other_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    count, admin = run_ensure(monkeypatch, FakeAdmin({"t": 6, "u": 2}), like=["t", "u"])
    assert count == 6 and admin.created[0].num_partitions == 6


def test_a_topic_another_agent_created_first_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count, admin = run_ensure(monkeypatch, FakeAdmin({}, code=36))
    assert count == 1 and len(admin.created) == 1


def test_an_existing_topic_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    count, admin = run_ensure(monkeypatch, FakeAdmin({"p": 3}))
    assert count == 3 and admin.created == []


@pytest.mark.parametrize("code", [29, 31, 44, 38, 40])
def test_a_refusing_broker_raises_topic_refused(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    with pytest.raises(TopicRefused, match=f"error code {code}"):
        run_ensure(monkeypatch, FakeAdmin({}, code=code))


@pytest.mark.parametrize("admin", [FakeAdmin({}, code=41), FakeAdmin({}, fail_start=True)])
def test_a_broker_not_answering_raises_topic_unreachable(
    monkeypatch: pytest.MonkeyPatch, admin: FakeAdmin
) -> None:
    with pytest.raises(TopicUnreachable):
        run_ensure(monkeypatch, admin)


def test_ensure_compacted_keeps_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka.admin

    assert KAFKA is not None
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", FakeAdmin({}, code=29))
    with pytest.raises(ChangelogError, match="TopicAuthorizationFailedError") as info:
        asyncio.run(ensure_compacted(KAFKA, "c", 1))
    assert not isinstance(info.value, ChangelogUnreachable)
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", FakeAdmin({}, fail_start=True))
    with pytest.raises(ChangelogUnreachable):
        asyncio.run(ensure_compacted(KAFKA, "c", 1))
    admin = FakeAdmin({"s": 4})
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", admin)
    assert asyncio.run(ensure_compacted(KAFKA, "c", 1, ["s"])) == 4
    assert admin.created[0].topic_configs == {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": "0",
    }
