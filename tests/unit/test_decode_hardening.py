"""No value crashes the decoder: numbers beyond float64, JSON nested a thousand deep, and
arbitrary JSON or bytes in either record format each become a counted failure reason
(docs/architecture.md, decision 7), and the rest of the batch decodes as usual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.profile import build_profile
from detectors.schema import Schema
from monitor.config.record import RecordConfig
from monitor.ingest.batch import FAILURE_REASONS, DecodedBatch, RawMessage
from monitor.ingest.decoder import Decoder
from monitor.ingest.kserve import CE_REQUEST, CE_RESPONSE

SCHEMA = Schema.build(
    numeric=["age", "income"], categorical=["country"], prediction_numeric=["score"]
)
HUGE = "1" + "0" * 400  # an integer literal no float64 holds
DEEP = "[" * 1000 + "]" * 1000  # nesting that exhausts a recursive decoder
SECRET = "PAYLOAD-MARKER-5f2c"
ROOT = Path(__file__).resolve().parents[2]


def good(i: int) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "timestamp": 1_700_000_000 + i,
        "model_version": "v1",
        "features": {"age": 30 + i, "income": 1000.5, "country": "DE"},
        "prediction": 0.5,
    }


def with_raw(field_path: str, raw: str) -> bytes:
    """A good record whose field at ``field_path`` is the JSON text ``raw``."""
    rec = good(0)
    rec["request_id"] = SECRET
    marker = "__RAW__"
    parts = field_path.split(".")
    target = rec
    for p in parts[:-1]:
        target = target[p]
    target[parts[-1]] = marker
    return json.dumps(rec).replace(f'"{marker}"', raw).encode()


def accounted(batch: DecodedBatch, messages: list[RawMessage], every: bool = True) -> None:
    """Every message gave rows or a failure (``every``; a message may also hold an empty
    batch), each failure with a known reason that quotes no payload."""
    seen = set(batch.offset.tolist()) | {f.message.offset for f in batch.failures}
    offsets = {m.offset for m in messages}
    assert seen >= offsets if every else seen <= offsets
    for f in batch.failures:
        assert f.reason in FAILURE_REASONS
        assert SECRET not in f.detail


POISON = [
    ("features.age", HUGE, "bad_value"),
    ("features.country", HUGE, "bad_value"),
    ("prediction", HUGE, "bad_value"),
    ("timestamp", HUGE, "bad_timestamp"),
    ("model_version", HUGE, "bad_value"),  # 401 digits: no version (bounded labels)
    ("model_version", "12345", None),  # a number: its text
    ("features.age", DEEP, "bad_value"),
    ("prediction", DEEP, "bad_value"),
    ("request_id", DEEP, "bad_value"),
    ("model_version", DEEP, "bad_value"),
    ("timestamp", "-" + HUGE, "bad_timestamp"),
    ("features.income", "1e400", "invalid_json"),
]


@pytest.mark.parametrize(("field", "raw", "reason"), POISON, ids=lambda v: str(v)[:12])
def test_one_poison_record_is_set_aside_and_the_rest_decode(
    field: str, raw: str, reason: str | None
) -> None:
    messages = [
        RawMessage(value=orjson.dumps(good(1)), offset=0),
        RawMessage(value=with_raw(field, raw), offset=1),
        RawMessage(value=orjson.dumps(good(2)), offset=2),
    ]
    batch = Decoder(RecordConfig(), SCHEMA).decode(messages, now=5.0)
    accounted(batch, messages)
    if reason is None:
        assert batch.rows == 3 and not batch.failures
        return
    assert batch.rows == 2 and batch.offset.tolist() == [0, 2]
    assert [(f.reason, f.message.offset) for f in batch.failures] == [(reason, 1)]


def test_nesting_a_thousand_deep_inside_an_object_is_not_a_crash() -> None:
    raw = ('{"request_id": "a", "x": {"a": ' * 1000 + "1" + "}" * 2000).encode()
    batch = Decoder(RecordConfig(), SCHEMA).decode([RawMessage(value=raw)], now=5.0)
    assert batch.rows == 0 and [f.reason for f in batch.failures] in (
        ["missing_field"],
        ["invalid_json"],
    )


def test_kserve_tensor_data_nested_deep_is_set_aside() -> None:
    body = '{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": ' + DEEP + "}]}"
    batch = Decoder(RecordConfig(format="kserve_v2", kserve_logger_mode="request"), SCHEMA).decode(
        [RawMessage(value=body.encode(), headers=kserve_headers(CE_REQUEST))], now=5.0
    )
    assert batch.rows == 0 and len(batch.failures) == 1
    assert batch.failures[0].reason in FAILURE_REASONS


def test_kserve_huge_integer_in_a_tensor_is_set_aside() -> None:
    body = (
        '{"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": ['
        + HUGE
        + ", 3]}]}"
    )
    batch = Decoder(RecordConfig(format="kserve_v2", kserve_logger_mode="request"), SCHEMA).decode(
        [RawMessage(value=body.encode(), headers=kserve_headers(CE_REQUEST))], now=5.0
    )
    assert batch.rows + len(batch.failures) >= 1
    for f in batch.failures:
        assert f.reason in FAILURE_REASONS


# -- fuzz: arbitrary JSON and bytes, both formats ----------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def driftline_value(draw: st.DrawFn) -> bytes:
    """A record with any field replaced by any JSON, any JSON at all, deep nesting, or bytes."""
    kind = draw(st.sampled_from(["record", "json", "bytes", "deep"]))
    if kind == "json":
        return dumps(draw(JSON))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "deep":
        depth = draw(st.integers(min_value=900, max_value=1100))
        return ('{"features": ' + "[" * depth + "]" * depth + "}").encode()
    rec: dict[str, Any] = good(draw(st.integers(0, 5)))
    for key in draw(st.lists(st.sampled_from([*rec, "predictions"]), max_size=3)):
        rec[key] = draw(JSON)
    features = rec.get("features")
    if type(features) is dict:
        for key in draw(
            st.lists(st.sampled_from(["age", "income", "country", "score"]), max_size=3)
        ):
            features[key] = draw(JSON)
    return dumps(rec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(driftline_value(), min_size=1, max_size=6))
def test_fuzz_driftline_format_never_raises(values: list[bytes]) -> None:
    messages = [RawMessage(value=v, offset=i) for i, v in enumerate(values)]
    batch = Decoder(RecordConfig(), SCHEMA).decode(messages, now=5.0)
    accounted(batch, messages, every=False)
    assert all(len(v) == batch.rows for v in batch.columns.values())


def kserve_headers(ce_type: str, ce_id: str = "e1") -> tuple[tuple[str, bytes], ...]:
    return (
        ("ce_id", ce_id.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_source", b"src"),
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/json"),
    )


@st.composite
def kserve_message(draw: st.DrawFn) -> RawMessage:
    """Binary or structured CloudEvents with any body, any attributes, or any bytes."""
    ce_type = draw(st.sampled_from([CE_REQUEST, CE_RESPONSE, "other"]))
    ce_id = draw(st.sampled_from(["e1", "e2"]))
    tensor = {"name": "age", "shape": [1], "datatype": "FP64", "data": draw(JSON)}
    body = draw(
        st.sampled_from(["tensor", "json", "bytes", "v1"]).flatmap(
            lambda k: (
                st.just(dumps({"inputs": [tensor], "outputs": [tensor]}))
                if k == "tensor"
                else st.just(dumps({"instances": [[1, 2, "x"]], "predictions": [0.5]}))
                if k == "v1"
                else JSON.map(dumps)
                if k == "json"
                else st.binary(max_size=64)
            )
        )
    )
    if draw(st.booleans()):
        return RawMessage(value=body, headers=kserve_headers(ce_type, ce_id))
    event: dict[str, Any] = {
        "id": ce_id,
        "type": ce_type,
        "source": "s",
        "specversion": "1.0",
        "time": draw(JSON),
        "data": draw(JSON),
    }
    if draw(st.booleans()):
        event.update(draw(st.dictionaries(st.sampled_from(["id", "type", "data_base64"]), JSON)))
    return RawMessage(
        value=dumps(event), headers=(("content-type", b"application/cloudevents+json"),)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(kserve_message(), min_size=1, max_size=6))
def test_fuzz_kserve_format_never_raises(messages: list[RawMessage]) -> None:
    messages = [
        RawMessage(value=m.value, headers=m.headers, offset=i) for i, m in enumerate(messages)
    ]
    decoder = Decoder(RecordConfig(format="kserve_v2", kserve_input_columns=[]), SCHEMA)
    batch = decoder.decode(messages, now=5.0)
    for f in batch.failures + decoder.expire(now=1e12):
        assert f.reason in FAILURE_REASONS


# -- replay: a bad line is counted and the file read on -----------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ref")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 400),
            "income": rng.normal(1000, 100, 400),
            "country": rng.choice(["DE", "FR"], 400),
        }
    )
    path = tmp / "p.json"
    build_profile(frame).save(path)
    return path


def replay_cli(*args: str, cwd: Path) -> tuple[int, list[dict[str, Any]], str]:
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, reports, result.stderr


def poisoned_lines(rows: list[str]) -> list[str]:
    huge = json.loads(rows[10])
    place = huge.get("features", huge)
    place["age"] = "__HUGE__"
    rows.insert(10, json.dumps(huge).replace('"__HUGE__"', HUGE))
    rows.insert(20, "[" * 1000 + "]" * 1000)
    rows.insert(30, "not json")
    return rows


def test_replay_of_records_counts_a_poison_line_and_goes_on(
    reference: Path, tmp_path: Path
) -> None:
    rows = [
        json.dumps({**good(0), "request_id": f"r{i}", "timestamp": 1_700_000_000 + i})
        for i in range(200)
    ]
    (tmp_path / "recs.jsonl").write_text("\n".join(poisoned_lines(rows)) + "\n")
    (tmp_path / "monitor.yaml").write_text(
        f"model: m\nreference: {reference}\nsource:\n  kind: file\n  file:\n"
        "    path: recs.jsonl\nwindows:\n  rows: 100\n"
    )
    rc, reports, err = replay_cli("-c", "monitor.yaml", "--input", "recs.jsonl", cwd=tmp_path)
    assert rc == 0, err
    assert sum(r["rows"] for r in reports) == 200
    assert err.count("record set aside") == 3 and "Traceback" not in err


def test_replay_of_a_flat_table_counts_a_poison_line_and_goes_on(
    reference: Path, tmp_path: Path
) -> None:
    rows = [
        json.dumps({"age": 30 + i % 20, "income": 1000.0 + i, "country": "DE"}) for i in range(200)
    ]
    (tmp_path / "flat.jsonl").write_text("\n".join(poisoned_lines(rows)) + "\n")
    rc, reports, err = replay_cli(
        "--reference", str(reference), "--input", "flat.jsonl", "--window", "100", cwd=tmp_path
    )
    assert rc == 0, err
    assert sum(r["rows"] for r in reports) == 200
    assert err.count("record set aside") == 3 and "Traceback" not in err
