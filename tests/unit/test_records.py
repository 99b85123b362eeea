"""Decoding prediction records into columns: driftline JSON, KServe v2 CloudEvents, and the
records that have to be set aside."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.schema import Schema
from monitor.config.record import RecordConfig
from monitor.ingest.batch import FAILURE_REASONS, DecodedBatch, RawMessage
from monitor.ingest.decoder import Decoder
from monitor.ingest.kserve import CE_REQUEST, CE_RESPONSE
from monitor.ingest.traceparent import parse_traceparent
from monitor.ingest.values import parse_event_time, row_keys

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Schema.build(
    numeric=["age", "income"], categorical=["country"], prediction_numeric=["score"]
)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# Put into payloads to prove that failure details never quote them.
SECRET = "PAYLOAD-MARKER-5f2c"


def msg(value: Any, offset: int = 0, **kw: Any) -> RawMessage:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return RawMessage(value=raw, topic=kw.pop("topic", "preds"), offset=offset, **kw)


def record(i: int, **over: Any) -> dict[str, Any]:
    rec = {
        "request_id": f"r{i}",
        "timestamp": 1_700_000_000 + i,
        "model": "fraud",
        "model_version": "v1",
        "features": {"age": 30 + i, "income": 1000.5 * i, "country": "DE"},
        "prediction": i / 10,
    }
    rec.update(over)
    return rec


def blake64(text: str) -> int:
    """The documented row key: BLAKE2b with an 8-byte digest, read little-endian."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def decode(messages: list[RawMessage], now: float = 5.0, **cfg: Any) -> DecodedBatch:
    return Decoder(RecordConfig(**cfg), SCHEMA).decode(messages, now=now)


# -- driftline JSON ----------------------------------------------------------------------


def test_one_prediction_per_message() -> None:
    b = decode([msg(record(1), headers=(("traceparent", TRACEPARENT.encode()),)), msg(record(2))])
    assert b.rows == 2 and b.messages == 2 and not b.failures
    assert b.columns["age"].dtype == np.float64
    np.testing.assert_array_equal(b.columns["age"], [31.0, 32.0])
    np.testing.assert_array_equal(b.columns["income"], [1000.5, 2001.0])
    assert b.columns["country"].dtype == object and list(b.columns["country"]) == ["DE", "DE"]
    np.testing.assert_array_equal(b.columns["score"], [0.1, 0.2])
    np.testing.assert_array_equal(b.event_time, [1_700_000_001.0, 1_700_000_002.0])
    assert list(b.request_id) == ["r1", "r2"]
    assert list(b.model_version) == ["v1", "v1"]
    assert list(b.traceparent) == [TRACEPARENT, None]
    assert b.row_key.dtype == np.uint64
    assert [int(k) for k in b.row_key] == [blake64("r1"), blake64("r2")]
    assert list(b.partition) == [0, 0] and b.partition.dtype == np.int32
    assert b.offset.dtype == np.int64


def test_batch_envelope_and_array() -> None:
    envelope = {
        "model_version": "v2",
        "timestamp": "2024-01-01T00:00:00Z",
        "predictions": [
            {"request_id": "a", "features": {"age": 1}, "prediction": 0.5},
            {"request_id": "b", "features": {"age": 2}, "model_version": "v3", "timestamp": 7},
        ],
    }
    array = [record(5), record(6)]
    b = decode([msg(envelope, 0), msg(array, 1)])
    assert b.rows == 4 and not b.failures
    np.testing.assert_array_equal(b.columns["age"], [1, 2, 35, 36])
    jan1 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    np.testing.assert_array_equal(b.event_time, [jan1, 7.0, 1_700_000_005.0, 1_700_000_006.0])
    assert list(b.model_version) == ["v2", "v3", "v1", "v1"]
    assert list(b.offset) == [0, 0, 1, 1]
    assert np.isnan(b.columns["score"][1])  # the second item has no prediction


def test_dotted_field_paths() -> None:
    rec = {
        "meta": {"id": "x1", "ts": 1_700_000_000_000, "version": {"tag": "v9"}},
        "payload": {"inputs": {"age": 50, "country": "FR"}, "out": {"score": 0.75}},
    }
    b = decode(
        [msg(rec)],
        features_field="payload.inputs",
        prediction_field="payload.out",
        request_id_field="meta.id",
        event_time_field="meta.ts",
        model_version_field="meta.version.tag",
    )
    assert not b.failures
    assert list(b.request_id) == ["x1"] and list(b.model_version) == ["v9"]
    assert b.event_time[0] == 1_700_000_000.0  # milliseconds detected
    assert b.columns["score"][0] == 0.75 and b.columns["country"][0] == "FR"


def test_flat_records_hold_the_columns() -> None:
    b = decode([msg({"age": 3, "country": "US", "score": 0.2, "other": 1})], features_field="")
    assert not b.failures
    assert b.columns["age"][0] == 3 and b.columns["score"][0] == 0.2
    assert "income" not in b.columns  # no record mentions it


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [(0.9, 0.9), ({"score": 0.4}, 0.4), ([0.6], 0.6), (None, 0.8)],
)
def test_prediction_shapes(prediction: Any, expected: float) -> None:
    rec = record(0, prediction=prediction)
    rec["features"]["score"] = 0.8  # used only when the prediction is absent
    b = decode([msg(rec)])
    assert not b.failures and b.columns["score"][0] == expected


def test_several_prediction_columns() -> None:
    schema = Schema.build(
        numeric=["age"], prediction_numeric=["score"], prediction_categorical=["label"]
    )
    dec = Decoder(RecordConfig(), schema)
    b = dec.decode(
        [
            msg(record(1, prediction={"score": 0.9, "label": "fraud"})),
            msg(record(2, prediction=[0.1, "ok"])),
            msg(record(3, prediction=0.5)),  # one value for two columns: set aside
        ],
        now=0,
    )
    assert list(b.columns["label"]) == ["fraud", "ok"]
    np.testing.assert_array_equal(b.columns["score"], [0.9, 0.1])
    assert [f.reason for f in b.failures] == ["bad_value"]
    assert b.failures[0].message.offset == 0 and "prediction" in b.failures[0].detail


def test_missing_values() -> None:
    recs = [
        record(1, features={"age": None, "country": None}),
        record(2, features={"age": 4}),
    ]
    b = decode([msg(r, i) for i, r in enumerate(recs)])
    assert not b.failures
    assert np.isnan(b.columns["age"][0]) and b.columns["age"][1] == 4.0
    assert b.columns["age"].dtype == np.float64
    assert list(b.columns["country"]) == [None, None]  # sent as null: present
    assert "income" not in b.columns  # absent from every record


def test_type_errors_in_a_numeric_column_keep_an_object_array() -> None:
    recs = [record(1), record(2, features={"age": "thirty", "income": True})]
    b = decode([msg(r, i) for i, r in enumerate(recs)])
    assert not b.failures and b.rows == 2
    assert b.columns["age"].dtype == object
    assert list(b.columns["age"]) == [31, "thirty"]
    assert b.columns["income"].dtype == object and b.columns["income"][1] is True


def test_categorical_numbers_become_text() -> None:
    recs = [record(i, features={"country": v}) for i, v in enumerate([3, 3.0, 2.5, True, "x"])]
    b = decode([msg(r, i) for i, r in enumerate(recs)])
    assert list(b.columns["country"]) == ["3", "3", "2.5", "True", "x"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_700_000_000, 1_700_000_000.0),
        (1_700_000_000.5, 1_700_000_000.5),
        (1_700_000_000_250, 1_700_000_000.25),  # ms
        (1_700_000_000_250_000, 1_700_000_000.25),  # µs
        (1_700_000_000_250_000_000, 1_700_000_000.25),  # ns
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-15T00:13:20.5+02:00", 1_700_000_000.5),
        ("2023-11-14T22:13:20", 1_700_000_000.0),  # no offset: UTC
        ("1700000000", 1_700_000_000.0),
    ],
)
def test_event_time_units(value: Any, seconds: float) -> None:
    assert parse_event_time(value) == pytest.approx(seconds, abs=1e-6)
    b = decode([msg(record(0, timestamp=value))])
    assert b.event_time[0] == pytest.approx(seconds, abs=1e-6)


def test_event_time_falls_back_to_kafka_then_now() -> None:
    rec = record(0)
    del rec["timestamp"]
    b = decode([msg(rec, 0, timestamp=1_600_000_000_000), msg(rec, 1)], now=42.0)
    np.testing.assert_array_equal(b.event_time, [1_600_000_000.0, 42.0])


def test_aiokafka_records_are_decoded_as_they_are() -> None:
    """The Kafka source hands over aiokafka's ConsumerRecords without copying them; their
    Kafka quirks (a null value, a null header value) are taken as such."""
    from aiokafka.structs import ConsumerRecord

    def consumer_record(offset: int, value: bytes | None, headers: Any) -> ConsumerRecord:
        size = -1 if value is None else len(value)
        return ConsumerRecord("preds", 3, offset, 1_600_000_000_000, 0, None, value, None, -1,
                              size, headers)  # fmt: skip

    rec = record(0)
    del rec["timestamp"]
    traced = [("x-null", None), ("traceparent", TRACEPARENT.encode())]
    b = decode(
        [
            consumer_record(10, orjson.dumps(rec), traced),
            consumer_record(11, None, []),
            consumer_record(12, orjson.dumps(record(1)), [("traceparent", None)]),
        ]
    )
    assert b.rows == 2 and b.messages == 3
    assert [(f.reason, f.message.offset) for f in b.failures] == [("invalid_json", 11)]
    assert list(b.offset) == [10, 12] and list(b.partition) == [3, 3]
    np.testing.assert_array_equal(b.event_time, [1_600_000_000.0, 1_700_000_001.0])
    assert list(b.traceparent) == [TRACEPARENT, None]


def test_require_event_time() -> None:
    rec = record(0)
    del rec["timestamp"]
    b = decode([msg(rec, 0, timestamp=5), msg(record(1), 1)], require_event_time=True)
    assert b.rows == 1 and list(b.request_id) == ["r1"]
    assert [f.reason for f in b.failures] == ["missing_field"]


def test_request_ids_that_are_numbers_are_text() -> None:
    b = decode([msg(record(0, request_id=12345))])
    assert list(b.request_id) == ["12345"] and int(b.row_key[0]) == blake64("12345")


def test_rows_without_a_request_id_are_keyed_by_their_place_in_the_log() -> None:
    rec = record(0)
    del rec["request_id"]
    first = decode([msg(rec, 7, topic="t", partition=2)])
    again = decode([msg(rec, 7, topic="t", partition=2)])
    other = decode([msg(rec, 8, topic="t", partition=2)])
    assert first.request_id[0] is None
    assert first.row_key[0] == again.row_key[0]  # a replay of the message dedupes
    assert first.row_key[0] != other.row_key[0]
    batch = decode([msg([rec, rec], 7, topic="t", partition=2)])
    assert batch.row_key[0] != batch.row_key[1]  # two rows of one message differ


def test_row_keys_are_stable_across_processes() -> None:
    ids = ["r1", "req-ü", "x" * 100]
    here = [int(k) for k in row_keys(ids)]
    assert here == [blake64(i) for i in ids]
    code = f"from monitor.ingest.values import row_keys; print([int(k) for k in row_keys({ids!r})])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == str(here)


@pytest.mark.parametrize(
    ("header", "trace"),
    [
        (TRACEPARENT, "4bf92f3577b34da6a3ce929d0e0e4736"),
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", None),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
        ("garbage", None),
    ],
)
def test_traceparent(header: str, trace: str | None) -> None:
    assert parse_traceparent(header) == trace
    b = decode([msg(record(0), headers=(("TraceParent", header.encode()),))])
    assert parse_traceparent(b.traceparent[0]) == trace
    assert (b.traceparent[0] is None) == (trace is None)


# -- records set aside -------------------------------------------------------------------


def poison() -> list[tuple[str, RawMessage]]:
    """One message per driftline failure reason, each with the marker in its payload."""
    nested = record(0, features={"age": {"v": SECRET}, "country": "DE"})
    return [
        ("invalid_json", msg(b'{"features": {"age": "' + SECRET.encode() + b'"')),
        ("invalid_json", msg(b"")),
        ("not_an_object", msg(f'"{SECRET}"'.encode())),
        ("not_an_object", msg([SECRET])),
        ("missing_field", msg({"request_id": SECRET, "prediction": 1})),
        ("bad_value", msg(nested)),
        ("bad_value", msg(record(0, features=[SECRET]))),
        ("bad_value", msg(record(0, request_id={"id": SECRET}))),
        ("bad_timestamp", msg(record(0, timestamp=SECRET))),
        ("bad_timestamp", msg(record(0, timestamp=True))),
        ("oversized", msg(record(0, pad=SECRET * 100))),
    ]


def test_poison_messages_among_good_ones() -> None:
    bad = poison()
    messages: list[RawMessage] = []
    good_ids = []
    for i, (_, m) in enumerate(bad):
        messages.append(msg(record(i), offset=len(messages)))
        good_ids.append(f"r{i}")
        messages.append(RawMessage(m.value, topic="preds", offset=len(messages)))
    b = decode(messages, max_bytes=1000)
    assert list(b.request_id) == good_ids  # every good row, in order
    np.testing.assert_array_equal(b.columns["age"], [30 + i for i in range(len(bad))])
    assert b.columns["age"].dtype == np.float64  # the bad rows' values did not leak in
    assert Counter(f.reason for f in b.failures) == Counter(r for r, _ in bad)
    assert all(f.message.offset % 2 == 1 for f in b.failures)  # each names its message
    for f in b.failures:
        assert f.reason in FAILURE_REASONS
        assert SECRET not in f.detail
        assert f.detail


def test_failure_reasons_are_few_and_fixed() -> None:
    assert FAILURE_REASONS == (
        "invalid_json",
        "not_an_object",
        "missing_field",
        "bad_value",
        "bad_timestamp",
        "oversized",
        "bad_cloudevent",
        "bad_tensor",
        "unpaired",
        "future_timestamp",
        "model_error",
    )


def test_a_bad_item_in_a_batch_spares_the_others() -> None:
    batch = {"predictions": [record(1), 5, record(2, features={"age": [1, 2]}), record(3)]}
    b = decode([msg(batch)])
    assert list(b.request_id) == ["r1", "r3"]
    assert sorted(f.reason for f in b.failures) == ["bad_value", "not_an_object"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
records_st = st.fixed_dictionaries(
    {},
    optional={
        "request_id": json_values,
        "timestamp": json_values,
        "model_version": json_values,
        "prediction": json_values,
        "features": st.dictionaries(
            st.sampled_from(["age", "income", "country", "x"]), json_values, max_size=4
        )
        | json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records_st | json_values, min_size=1, max_size=6))
def test_any_json_decodes_without_raising(values: list[Any]) -> None:
    messages = [msg(v, offset=i) for i, v in enumerate(values)]
    b = decode(messages)
    assert b.rows + len(b.failures) >= len(messages) or any(
        isinstance(v, list) or (isinstance(v, dict) and "predictions" in v) for v in values
    )
    n = b.rows
    for arr in (b.event_time, b.request_id, b.row_key, b.model_version, b.traceparent):
        assert len(arr) == n
    for name, col in b.columns.items():
        assert len(col) == n
        if SCHEMA.column(name).kind.value == "categorical":
            assert all(v is None or isinstance(v, str) for v in col)
    assert all(f.reason in FAILURE_REASONS for f in b.failures)
    # every message gave a row or a failure, unless it was an empty batch
    accounted = {int(o) for o in b.offset} | {f.message.offset for f in b.failures}
    for i, v in enumerate(values):
        if v != [] and not (isinstance(v, dict) and v.get("predictions") == []):
            assert i in accounted


def column(b: DecodedBatch, name: str) -> list[str]:
    """A column's values as the sketch reads them. A column no record of the batch mentions
    is absent (missing in every row); a numeric column is float64 or, when the batch has a
    type error, objects (where None and NaN are both missing)."""
    values = b.columns.get(name, [None] * b.rows)
    return [
        "missing"
        if v is None or v != v
        else repr(float(v))
        if isinstance(v, int | float) and not isinstance(v, bool)
        else str(v)
        for v in values
    ]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=20), st.integers(1, 7))
def test_decoding_does_not_depend_on_batching(kinds: list[int], size: int) -> None:
    shapes = [
        record(0),
        record(1, features={"age": "x"}),
        {"predictions": [record(2), record(3)]},
        b"not json",
        record(4, timestamp="2024-01-01T00:00:00Z"),
        record(5, features={"country": 7}),
    ]
    messages = [msg(shapes[k], offset=i) for i, k in enumerate(kinds)]
    whole = decode(messages)
    parts = [decode(messages[i : i + size]) for i in range(0, len(messages), size)]
    assert list(whole.request_id) == [r for p in parts for r in p.request_id]
    np.testing.assert_array_equal(whole.row_key, np.concatenate([p.row_key for p in parts]))
    np.testing.assert_array_equal(whole.event_time, np.concatenate([p.event_time for p in parts]))
    assert [f.reason for f in whole.failures] == [f.reason for p in parts for f in p.failures]

    for name in ("age", "country", "score"):
        assert column(whole, name) == [v for p in parts for v in column(p, name)]


def test_large_batches_decode_in_chunks_to_the_same_result(monkeypatch) -> None:
    shapes = [record(0), record(1, features={"age": "x"}), b"[", record(2, features={})]
    messages = [msg(shapes[i % 4], offset=i) for i in range(11)]
    whole = decode(messages)
    monkeypatch.setattr("monitor.ingest.decoder.DECODE_CHUNK", 3)
    chunked = decode(messages)
    assert chunked.messages == whole.messages == 11
    assert list(chunked.request_id) == list(whole.request_id)
    np.testing.assert_array_equal(chunked.row_key, whole.row_key)
    np.testing.assert_array_equal(chunked.offset, whole.offset)
    assert sorted(f.message.offset for f in chunked.failures) == sorted(
        f.message.offset for f in whole.failures
    )
    assert set(chunked.columns) == set(whole.columns)
    for name in whole.columns:
        assert column(chunked, name) == column(whole, name)


# -- KServe v2 CloudEvents ---------------------------------------------------------------

KSERVE = {"format": "kserve_v2"}


def ce_headers(ce_id: str, ce_type: str, **extra: str) -> tuple[tuple[str, bytes], ...]:
    attrs = {
        "ce_specversion": "1.0",
        "ce_id": ce_id,
        "ce_type": ce_type,
        "ce_source": "http://localhost:9081/",
        "ce_time": "2024-06-10T08:00:00.123456Z",
        "ce_inferenceservicename": "fraud",
        "ce_namespace": "models",
        "ce_component": "predictor",
        "ce_endpoint": "default",
        "content-type": "application/json",
        **extra,
    }
    return tuple((k, v.encode()) for k, v in attrs.items())


def v2_request(rows: list[tuple[float, float, str]]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "age", "shape": [len(rows)], "datatype": "FP32", "data": [r[0] for r in rows]},
            {
                "name": "income",
                "shape": [len(rows), 1],
                "datatype": "FP64",
                "data": [[r[1]] for r in rows],
            },
            {
                "name": "country",
                "shape": [len(rows)],
                "datatype": "BYTES",
                "data": [r[2] for r in rows],
            },
            {
                "name": "image_bytes",
                "shape": [len(rows), 2, 2],
                "datatype": "UINT8",
                "data": [0] * (4 * len(rows)),
            },
        ]
    }


def v2_response(scores: list[float], version: str = "v3") -> dict[str, Any]:
    return {
        "model_name": "fraud",
        "model_version": version,
        "id": "ignored",
        "outputs": [
            {"name": "output-0", "shape": [len(scores)], "datatype": "FP32", "data": scores}
        ],
    }


def kmsg(body: Any, ce_id: str, ce_type: str, offset: int, **extra: str) -> RawMessage:
    return msg(body, offset, topic="log", headers=ce_headers(ce_id, ce_type, **extra))


def test_binary_mode_request_and_response_are_paired() -> None:
    dec = Decoder(RecordConfig(**KSERVE), SCHEMA)
    req = kmsg(
        v2_request([(31, 10.5, "DE"), (40, 20.0, "FR")]),
        "id-1",
        CE_REQUEST,
        10,
        traceparent=TRACEPARENT,
    )
    resp = kmsg(v2_response([0.1, 0.9]), "id-1", CE_RESPONSE, 11)
    first = dec.decode([req], now=100.0)
    assert first.rows == 0 and not first.failures and dec.pending == 1
    assert dec.pending_offsets() == {("log", 0): 10}
    b = dec.decode([resp], now=101.0)
    assert dec.pending == 0 and not b.failures and b.rows == 2
    np.testing.assert_array_equal(b.columns["age"], [31, 40])
    np.testing.assert_array_equal(b.columns["income"], [10.5, 20.0])
    assert list(b.columns["country"]) == ["DE", "FR"]
    np.testing.assert_array_equal(b.columns["score"], [0.1, 0.9])
    assert list(b.request_id) == ["id-1", "id-1"]
    assert [int(k) for k in b.row_key] == [blake64("id-1#0"), blake64("id-1#1")]
    assert list(b.model_version) == ["v3", "v3"]
    ce_time = datetime(2024, 6, 10, 8, 0, 0, 123456, tzinfo=UTC).timestamp()
    np.testing.assert_allclose(b.event_time, [ce_time, ce_time])
    assert [parse_traceparent(t) for t in b.traceparent] == ["4bf92f3577b34da6a3ce929d0e0e4736"] * 2
    assert list(b.offset) == [10, 10]  # the half that was held


def test_pairs_split_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr("monitor.ingest.decoder.DECODE_CHUNK", 1)
    b = decode(
        [
            kmsg(v2_request([(1, 1.0, "DE")]), "a", CE_REQUEST, 0),
            kmsg(v2_response([0.4]), "a", CE_RESPONSE, 1),
        ],
        **KSERVE,
    )
    assert b.rows == 1 and b.columns["score"][0] == 0.4 and b.messages == 2


def test_response_first_and_interleaved_pairs_in_one_batch() -> None:
    messages = [
        kmsg(v2_response([0.5]), "b", CE_RESPONSE, 0),
        kmsg(v2_request([(1, 1.0, "DE")]), "a", CE_REQUEST, 1),
        kmsg(v2_request([(2, 2.0, "FR")]), "b", CE_REQUEST, 2),
        kmsg(v2_response([0.7]), "a", CE_RESPONSE, 3),
    ]
    b = decode(messages, **KSERVE)
    assert not b.failures
    assert list(b.request_id) == ["b", "a"]
    np.testing.assert_array_equal(b.columns["age"], [2, 1])
    np.testing.assert_array_equal(b.columns["score"], [0.5, 0.7])
    assert [int(k) for k in b.row_key] == [blake64("b"), blake64("a")]


def test_structured_mode_with_data_and_data_base64() -> None:
    def structured(body: Any, ce_id: str, ce_type: str, offset: int, b64: bool) -> RawMessage:
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": ce_id,
            "type": ce_type,
            "source": "http://localhost:9081/",
            "time": "2024-06-10T08:00:00Z",
            "datacontenttype": "application/json",
            "traceparent": TRACEPARENT,
        }
        if b64:
            event["data_base64"] = base64.b64encode(orjson.dumps(body)).decode()
        else:
            event["data"] = body
        ct = (("content-type", b"application/cloudevents+json; charset=UTF-8"),)
        return msg(event, offset, headers=ct)

    b = decode(
        [
            structured(v2_request([(5, 6.0, "US")]), "s1", CE_REQUEST, 0, b64=False),
            structured(v2_response([0.25]), "s1", CE_RESPONSE, 1, b64=True),
        ],
        **KSERVE,
    )
    assert not b.failures and b.rows == 1
    assert (b.columns["age"][0], b.columns["country"][0], b.columns["score"][0]) == (5, "US", 0.25)
    assert b.event_time[0] == datetime(2024, 6, 10, 8, tzinfo=UTC).timestamp()
    assert parse_traceparent(b.traceparent[0]) == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("nested", [True, False])
def test_a_2d_input_tensor_maps_by_configured_column_order(nested: bool) -> None:
    rows = [[31, 1000.0], [45, 2500.0], [52, 300.0]]
    data = rows if nested else [v for r in rows for v in r]
    req = {"inputs": [{"name": "input-0", "shape": [3, 2], "datatype": "FP64", "data": data}]}
    resp = {
        "outputs": [
            {"name": "predict", "shape": [3, 1], "datatype": "FP32", "data": [[0.1], [0.2], [0.3]]}
        ]
    }
    b = decode(
        [kmsg(req, "m", CE_REQUEST, 0), kmsg(resp, "m", CE_RESPONSE, 1)],
        format="kserve_v2",
        kserve_input_columns=["income", "age"],  # the tensor's columns, in order
    )
    assert not b.failures
    np.testing.assert_array_equal(b.columns["income"], [31, 45, 52])
    np.testing.assert_array_equal(b.columns["age"], [1000.0, 2500.0, 300.0])
    np.testing.assert_array_equal(b.columns["score"], [0.1, 0.2, 0.3])
    assert list(b.model_version) == ["unknown"] * 3  # the response names none


def test_a_lone_2d_tensor_as_wide_as_the_features_maps_by_schema_order() -> None:
    req = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": [7, 8, "IT"]}]}
    b = decode(
        [kmsg(req, "w", CE_REQUEST, 0), kmsg(v2_response([0.3]), "w", CE_RESPONSE, 1)], **KSERVE
    )
    assert (b.columns["age"][0], b.columns["income"][0], b.columns["country"][0]) == (7, 8, "IT")


def test_kserve_v1_bodies() -> None:
    req = {"instances": [[20, 1.5, "DE"], {"age": 21, "income": 2.5, "country": "FR"}]}
    resp = {"predictions": [0.2, 0.4]}
    b = decode([kmsg(req, "v1", CE_REQUEST, 0), kmsg(resp, "v1", CE_RESPONSE, 1)], **KSERVE)
    assert not b.failures
    np.testing.assert_array_equal(b.columns["age"], [20, 21])
    assert list(b.columns["country"]) == ["DE", "FR"]
    np.testing.assert_array_equal(b.columns["score"], [0.2, 0.4])


def test_unpaired_halves_expire_after_the_ttl() -> None:
    dec = Decoder(RecordConfig(format="kserve_v2", kserve_pair_ttl="30s"), SCHEMA)
    dec.decode([kmsg(v2_request([(1, 1.0, "DE")]), "lonely", CE_REQUEST, 3)], now=1000.0)
    assert dec.expire(now=1029.0) == []
    b = dec.decode([kmsg(v2_request([(2, 2.0, "DE")]), "next", CE_REQUEST, 4)], now=1031.0)
    # a request with no response: the model did not answer 200 (KServe logs no response)
    assert [f.reason for f in b.failures] == ["model_error"]
    assert b.failures[0].message.offset == 3 and "request" in b.failures[0].detail
    assert dec.pending == 1
    late = dec.expire(now=2000.0)
    assert [(f.reason, f.message.offset) for f in late] == [("model_error", 4)]
    dec.decode([kmsg(v2_response([0.5]), "orphan", CE_RESPONSE, 5)], now=2000.0)
    assert [(f.reason, f.message.offset) for f in dec.expire(now=3000.0)] == [("unpaired", 5)]
    assert dec.pending == 0 and dec.pending_offsets() == {}


def test_a_pause_of_the_agent_does_not_expire_a_waiting_half() -> None:
    """Frozen for longer than the TTL, the agent finds the partner in its backlog: the
    pause (monitor/runtime/loop_gap.py) moves the held half's clock, so the pair is made;
    a half still alone a TTL of running time later is reported as before."""
    dec = Decoder(RecordConfig(format="kserve_v2", kserve_pair_ttl="30s"), SCHEMA)
    dec.decode([kmsg(v2_request([(1, 1.0, "DE")]), "held", CE_REQUEST, 3)], now=1000.0)
    dec.shift(120.0)  # the agent did not run from 1005 to 1125
    b = dec.decode([kmsg(v2_response([0.5]), "held", CE_RESPONSE, 4)], now=1126.0)
    assert not b.failures and b.rows == 1 and dec.pending == 0
    dec.decode([kmsg(v2_request([(2, 2.0, "DE")]), "alone", CE_REQUEST, 5)], now=1126.0)
    dec.shift(120.0)
    assert dec.expire(now=1126.0 + 120.0 + 29.0) == []
    late = dec.expire(now=1126.0 + 120.0 + 31.0)
    assert [(f.reason, f.message.offset) for f in late] == [("model_error", 5)]
    # without the shift the same pause expires the first half: what the shift prevents
    plain = Decoder(RecordConfig(format="kserve_v2", kserve_pair_ttl="30s"), SCHEMA)
    plain.decode([kmsg(v2_request([(1, 1.0, "DE")]), "held", CE_REQUEST, 3)], now=1000.0)
    b = plain.decode([kmsg(v2_response([0.5]), "held", CE_RESPONSE, 4)], now=1126.0)
    assert [f.reason for f in b.failures] == ["model_error"] and b.rows == 0
    assert plain.pending == 1  # the response now waits for a request already set aside


def test_pending_halves_are_bounded() -> None:
    dec = Decoder(RecordConfig(format="kserve_v2", kserve_max_pending=2), SCHEMA)
    messages = [kmsg(v2_request([(i, i, "DE")]), f"id{i}", CE_REQUEST, i) for i in range(3)]
    b = dec.decode(messages, now=0.0)
    assert [(f.reason, f.message.offset) for f in b.failures] == [("unpaired", 0)]
    assert dec.pending == 2


def test_logger_mode_request_only() -> None:
    b = decode(
        [
            kmsg(v2_request([(1, 1.0, "DE"), (2, 2.0, "FR")]), "q", CE_REQUEST, 0),
            kmsg(v2_response([0.1, 0.2]), "q", CE_RESPONSE, 1),  # ignored in this mode
        ],
        format="kserve_v2",
        kserve_logger_mode="request",
    )
    assert b.rows == 2 and not b.failures and "score" not in b.columns


def kserve_poison() -> list[tuple[str, RawMessage]]:
    good_req = v2_request([(1, 1.0, "DE")])
    no_ce_id = tuple(h for h in ce_headers("x", CE_REQUEST) if h[0] != "ce_id")
    structured_ct = (("content-type", b"application/cloudevents+json"),)
    return [
        ("invalid_json", kmsg(b'{"inputs": [' + SECRET.encode(), "p1", CE_REQUEST, 0)),
        ("not_an_object", kmsg([SECRET], "p2", CE_REQUEST, 0)),
        ("missing_field", kmsg({"parameters": SECRET}, "p3", CE_REQUEST, 0)),
        ("bad_cloudevent", msg(good_req, headers=no_ce_id)),
        ("bad_cloudevent", kmsg(good_req, "p4", "com.example." + SECRET, 0)),
        ("bad_cloudevent", msg({"id": SECRET, "data": good_req}, headers=structured_ct)),
        (
            "bad_cloudevent",
            msg(
                {
                    "specversion": "1.0",
                    "id": "p5",
                    "type": CE_REQUEST,
                    "source": "s",
                    "data_base64": "!!" + SECRET,
                },
                headers=structured_ct,
            ),
        ),
        (
            "bad_tensor",
            kmsg(
                {"inputs": [{"name": "age", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
                "p6",
                CE_REQUEST,
                0,
            ),
        ),
        (
            "bad_tensor",
            kmsg(
                {"inputs": [{"name": "age", "shape": [1], "datatype": "FP99", "data": [1]}]},
                "p7",
                CE_REQUEST,
                0,
            ),
        ),
        (
            "bad_tensor",
            kmsg(
                {
                    "inputs": [
                        {"name": "age", "shape": [1], "datatype": "FP32", "data": [{"v": SECRET}]}
                    ]
                },
                "p8",
                CE_REQUEST,
                0,
            ),
        ),
        ("bad_timestamp", kmsg(good_req, "p9", CE_REQUEST, 0, ce_time=SECRET)),
        ("oversized", kmsg({"inputs": [], "pad": SECRET * 100}, "p10", CE_REQUEST, 0)),
    ]


def test_kserve_poison_among_good_pairs() -> None:
    bad = kserve_poison()
    messages: list[RawMessage] = []
    for i, (_, m) in enumerate(bad):
        messages.append(kmsg(v2_request([(i, i, "DE")]), f"g{i}", CE_REQUEST, len(messages)))
        messages.append(RawMessage(m.value, m.key, m.headers, "log", 0, len(messages)))
        messages.append(kmsg(v2_response([i / 100]), f"g{i}", CE_RESPONSE, len(messages)))
    # a response whose request has a different batch size
    messages.append(kmsg(v2_request([(1, 1, "DE"), (2, 2, "DE")]), "mismatch", CE_REQUEST, 90))
    messages.append(kmsg(v2_response([0.5]), "mismatch", CE_RESPONSE, 91))
    b = decode(messages, format="kserve_v2", max_bytes=1000)
    assert list(b.request_id) == [f"g{i}" for i in range(len(bad))]
    np.testing.assert_array_equal(b.columns["age"], list(range(len(bad))))
    expected = Counter(r for r, _ in bad) + Counter({"bad_tensor": 1})
    assert Counter(f.reason for f in b.failures) == expected
    for f in b.failures:
        assert SECRET not in f.detail and f.reason in FAILURE_REASONS


def test_a_response_that_maps_to_nothing_is_a_bad_tensor() -> None:
    resp = {
        "outputs": [
            {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},
            {"name": "b", "shape": [1], "datatype": "FP32", "data": [2]},
        ]
    }
    b = decode([kmsg(resp, "z", CE_RESPONSE, 0)], **KSERVE)
    assert [f.reason for f in b.failures] == ["bad_tensor"]
    assert "kserve_output_columns" in b.failures[0].detail


# -- throughput (printed, never asserted) ------------------------------------------------


def test_decoding_throughput_sanity() -> None:
    numeric = [f"n{i}" for i in range(20)]
    categorical = [f"c{i}" for i in range(5)]
    schema = Schema.build(numeric, categorical, ["prediction"])
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(50, 10, (100_000, 20)), 3).tolist()
    cats = ["DE", "FR", "US", "GB"]
    messages = []
    for i in range(100_000):
        feats = dict(zip(numeric, x[i], strict=True))
        feats.update({c: cats[(i + j) % 4] for j, c in enumerate(categorical)})
        rec = {
            "request_id": f"req-{i}",
            "timestamp": 1_700_000_000 + i / 100,
            "model": "m",
            "model_version": "v1",
            "features": feats,
            "prediction": x[i][0] / 100,
        }
        messages.append(RawMessage(orjson.dumps(rec), topic="t", offset=i))
    dec = Decoder(RecordConfig(), schema)
    for batch_size in (5000, 100_000):
        started = time.process_time()
        rows = 0
        for i in range(0, len(messages), batch_size):
            b = dec.decode(messages[i : i + batch_size], now=0.0)
            rows += b.rows
            assert not b.failures
        seconds = time.process_time() - started
        print(
            f"\ndecoded {rows:,} driftline records (25 features) in batches of "
            f"{batch_size:,}: {rows / seconds:,.0f} records/s (CPU time {seconds:.2f}s)"
        )
        assert rows == len(messages)
    assert b.columns["n0"].dtype == np.float64
    np.testing.assert_array_equal(b.columns["n0"], np.asarray(x)[:, 0])
