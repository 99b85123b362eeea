"""KServe repartitioning: which events go round through the pairs topic, keyed how, and
the model version taken from a CloudEvent attribute."""

from __future__ import annotations

import json

import pytest

from monitor.config.record import RecordConfig, pairs_topic_for
from monitor.config.source import KafkaSourceConfig
from monitor.ingest.batch import RawMessage
from monitor.ingest.decoder import Decoder
from monitor.ingest.repartition import PairsRepartition, ce_id
from tests.unit.test_records import (
    CE_REQUEST,
    CE_RESPONSE,
    SCHEMA,
    kmsg,
    v2_request,
    v2_response,
)


def _structured(event_id: str | None) -> RawMessage:
    event = {"specversion": "1.0", "type": CE_REQUEST, "source": "s", "data": {}}
    if event_id is not None:
        event["id"] = event_id
    return RawMessage(
        value=json.dumps(event).encode(),
        topic="log",
        headers=(("content-type", b"application/cloudevents+json"),),
    )


def test_the_key_is_the_cloudevent_id_in_either_mode() -> None:
    assert ce_id(kmsg(v2_request([(1, 1.0, "DE")]), "abc", CE_REQUEST, 0)) == "abc"
    assert ce_id(_structured("xyz")) == "xyz"
    assert ce_id(_structured(None)) is None
    assert ce_id(RawMessage(value=b"not json", topic="log")) is None


def test_only_source_events_with_an_id_go_round() -> None:
    kafka = KafkaSourceConfig(bootstrap_servers="k:9092", topics=["log"], group_id="g")
    pairs = PairsRepartition(kafka, "log.pairs")
    keyed = kmsg(v2_request([(1, 1.0, "DE")]), "abc", CE_REQUEST, 0)
    already_round = RawMessage(value=keyed.value, topic="log.pairs", headers=keyed.headers)
    no_id = RawMessage(value=b"{}", topic="log")
    here, forward = pairs.split([keyed, already_round, no_id])
    assert forward == [("abc", keyed)]
    assert here == [already_round, no_id]  # decoded here: paired, or set aside with a reason


def test_pairs_topic_default_and_checks() -> None:
    assert pairs_topic_for("fraud scorer") == "driftline.fraud-scorer.pairs"
    with pytest.raises(ValueError, match="not a Kafka topic name"):
        RecordConfig(format="kserve_v2", kserve_pairs_topic="bad name")
    with pytest.raises(ValueError, match="kserve_v2 only"):
        RecordConfig(kserve_repartition=True)  # format driftline has no halves


def test_model_version_from_a_cloudevent_attribute() -> None:
    config = RecordConfig(format="kserve_v2", kserve_version_attribute="revision")
    dec = Decoder(config, SCHEMA)
    req = kmsg(v2_request([(31, 10.5, "DE")]), "i1", CE_REQUEST, 0, ce_revision="fraud-00007")
    resp = kmsg(v2_response([0.1], version="v3"), "i1", CE_RESPONSE, 1)
    b = dec.decode([req, resp], now=0.0)
    assert b.rows == 1 and list(b.model_version) == ["fraud-00007"]
    # without the setting: the response body's model_version
    plain = Decoder(RecordConfig(format="kserve_v2"), SCHEMA).decode([req, resp], now=0.0)
    assert list(plain.model_version) == ["v3"]


def test_held_halves_of_revoked_partitions_are_forgotten_not_expired() -> None:
    dec = Decoder(RecordConfig(format="kserve_v2", kserve_pair_ttl="1s"), SCHEMA)
    dec.decode([kmsg(v2_request([(1, 1.0, "DE")]), "held", CE_REQUEST, 7)], now=0.0)
    assert dec.pending_offsets() == {("log", 0): 7}
    assert dec.kserve.release({("log", 1)}) == 0 and dec.pending == 1
    assert dec.kserve.release({("log", 0)}) == 1
    assert dec.pending == 0 and dec.expire(now=100.0) == []
