"""``source.kafka.client`` picks the Kafka source: aiokafka's or librdkafka's, with the same
keys; an unknown client or a missing library is a configuration error naming the key."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.confluent import ConfluentRecord, ConfluentSource, confluent_settings
from monitor.ingest.kafka import KafkaSource
from monitor.ingest.source_factory import make_source

BASE = {"bootstrap_servers": "127.0.0.1:9092", "topics": ["t"], "group_id": "g"}


def test_default_client_is_aiokafka() -> None:
    assert isinstance(make_source(KafkaSourceConfig(**BASE)), KafkaSource)


def test_confluent_client_gets_the_librdkafka_source() -> None:
    cfg = KafkaSourceConfig(**BASE, client="confluent")
    source = make_source(cfg, {("t", 0): 5}, extra_topics=["labels"])
    assert isinstance(source, ConfluentSource)
    assert source.topics == ["t", "labels"] and source.start_offsets == {("t", 0): 5}


def test_unknown_client_is_refused() -> None:
    with pytest.raises(ValidationError, match="client"):
        KafkaSourceConfig(**BASE, client="kcat")


def test_missing_library_names_the_key_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "confluent_kafka" else real(name, *a),
    )
    with pytest.raises(ValidationError, match="kafka-fast"):
        KafkaSourceConfig(**BASE, client="confluent")


def test_librdkafka_settings_keep_the_at_least_once_keys() -> None:
    cfg = KafkaSourceConfig(
        **BASE,
        client="confluent",
        start="latest",
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
    )
    s = confluent_settings(cfg)
    assert s["enable.auto.commit"] is False and s["enable.auto.offset.store"] is False
    assert s["auto.offset.reset"] == "latest" and s["group.id"] == "g"
    assert (s["session.timeout.ms"], s["heartbeat.interval.ms"]) == (3000, 300)


class FakeMessage:
    def __init__(self, ts: tuple[int, int], headers: Any) -> None:
        self._ts, self._headers = ts, headers

    def value(self) -> bytes:
        return b"{}"

    def key(self) -> bytes:
        return b"k"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 42

    def timestamp(self) -> tuple[int, int]:
        return self._ts

    def headers(self) -> Any:
        return self._headers


def test_a_librdkafka_message_reads_as_a_source_message() -> None:
    r = ConfluentRecord(FakeMessage((1, 1_700_000_000_000), None), "t")
    assert (r.value, r.key, r.topic, r.partition, r.offset) == (b"{}", b"k", "t", 3, 42)
    assert r.timestamp == 1_700_000_000_000 and r.headers == ()
    assert ConfluentRecord(FakeMessage((0, 0), [("a", b"b")]), "t").timestamp is None
