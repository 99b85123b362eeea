"""The columnar fast path changes no result: on generated batches of valid and invalid
records the decoder with it and the general reader alone give the same rows, the same
values as the sketch reads them, and the same failures with the same reasons."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.profile import category_strings
from detectors.schema import Schema
from detectors.sketch import _numeric_values
from monitor.config.record import RecordConfig
from monitor.ingest.batch import DecodedBatch, RawMessage
from monitor.ingest.decoder import Decoder

SCHEMA = Schema.build(
    numeric=["age", "income"], categorical=["country"], prediction_numeric=["score"]
)
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

NUMBERS = (
    st.none()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.just(2**63 + 1)
)
ANY_VALUE = (
    NUMBERS
    | st.booleans()
    | st.text(max_size=5)
    | st.just(10**400)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
)
TIMES = (
    st.none()
    | st.floats(min_value=1e9, max_value=2e9)
    | st.integers(1_600_000_000_000, 1_700_000_000_000)
    | st.sampled_from(["2024-06-10T12:00:00Z", "2024-06-10 12:00:00", "1700000000", "soon"])
    | ANY_VALUE
)


@st.composite
def record(draw: st.DrawFn) -> bytes:
    """A record mostly of the default shape, any part of it possibly wrong or missing."""
    clean = draw(st.booleans())
    values = NUMBERS if clean else ANY_VALUE
    features: dict[str, Any] = {}
    for name, strat in (
        ("age", values),
        ("income", values),
        ("country", st.none() | st.sampled_from(["DE", "FR", ""]) if clean else ANY_VALUE),
        ("extra", st.integers()),
    ):
        if (draw(st.booleans()) or clean) and draw(st.integers(0, 5)):  # mostly present
            features[name] = draw(strat)
    rec: dict[str, Any] = {"features": features}
    optional = {
        "request_id": st.none() | st.text(max_size=6) if clean else ANY_VALUE,
        "timestamp": TIMES,
        "model_version": st.none() | st.sampled_from(["v1", "v2"]) if clean else ANY_VALUE,
        "prediction": NUMBERS if clean else ANY_VALUE | st.just({"score": 0.5}),
    }
    for key, strat in optional.items():
        if draw(st.booleans()):
            rec[key] = draw(strat)
    if not clean and draw(st.integers(0, 6)) == 0:
        choice = draw(st.sampled_from(["batch", "no_features", "list", "bytes", "empty"]))
        if choice == "batch":
            return json.dumps({"predictions": [rec, rec], "model_version": "v3"}).encode()
        if choice == "no_features":
            rec.pop("features")
        if choice == "list":
            return json.dumps([rec]).encode()
        if choice == "bytes":
            return draw(st.binary(max_size=20))
        if choice == "empty":
            return b""
    return json.dumps(rec).encode()


@st.composite
def batch(draw: st.DrawFn) -> list[RawMessage]:
    values = draw(st.lists(record(), min_size=1, max_size=40))
    out = []
    for i, v in enumerate(values):
        headers = (("traceparent", TRACEPARENT),) if draw(st.integers(0, 4)) == 0 else ()
        ts = draw(st.none() | st.just(1_700_000_000_000))
        out.append(
            RawMessage(value=v, topic="t", partition=i % 3, offset=i, headers=headers, timestamp=ts)
        )
    return out


def sketch_view(b: DecodedBatch) -> dict[str, Any]:
    """What the windows and the sketch read of a batch."""
    view: dict[str, Any] = {}
    columns = b.columns if b.rows else {}  # a batch of no rows updates nothing
    for name, column in sorted(columns.items()):
        if SCHEMA.column(name).kind.name == "NUMERIC":
            x, errors = _numeric_values(column)
            view[name] = ((x + 0.0).tobytes(), errors)  # -0.0 and 0.0 bin alike
        else:
            strings, missing = category_strings(column)
            view[name] = (list(strings), missing.tolist())
    for name in (
        "event_time",
        "request_id",
        "row_key",
        "model_version",
        "traceparent",
        "partition",
        "offset",
    ):
        view[name] = getattr(b, name).tolist()
    view["failures"] = sorted((f.message.offset, f.reason, f.detail) for f in b.failures)
    view["messages"] = b.messages
    return view


def both(messages: list[RawMessage], **cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    config = RecordConfig(**cfg)
    fast = Decoder(config, SCHEMA)
    assert fast.columnar is not None
    general = Decoder(config, SCHEMA, columnar=False)
    return sketch_view(fast.decode(messages, now=5.0)), sketch_view(
        general.decode(messages, now=5.0)
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch())
def test_columnar_path_and_general_reader_agree(messages: list[RawMessage]) -> None:
    fast, general = both(messages)
    assert fast == general


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch())
def test_they_agree_with_event_time_required_and_small_max_bytes(
    messages: list[RawMessage],
) -> None:
    fast, general = both(messages, require_event_time=True, max_bytes=120)
    assert fast == general


def test_clean_records_take_the_columnar_path_only() -> None:
    messages = [
        RawMessage(
            value=orjson.dumps(
                {
                    "request_id": f"r{i}",
                    "timestamp": 1_700_000_000 + i,
                    "features": {"age": i, "income": 1.5, "country": "DE"},
                    "prediction": 0.5,
                }
            ),
            offset=i,
        )
        for i in range(50)
    ]
    decoder = Decoder(RecordConfig(), SCHEMA)
    assert decoder.columnar is not None
    fast, rest = decoder.columnar.decode(messages, now=5.0)
    assert rest == [] and fast.rows == 50
    np.testing.assert_array_equal(fast.columns["age"], np.arange(50.0))
    assert fast.columns["country"].tolist() == ["DE"] * 50


def test_a_shape_other_than_the_default_has_no_columnar_path() -> None:
    assert Decoder(RecordConfig(features_field="body.features"), SCHEMA).columnar is None
    assert Decoder(RecordConfig(format="kserve_v2"), SCHEMA).columnar is None


@st.composite
def full_record(draw: st.DrawFn) -> bytes:
    """A clean record naming every numeric feature (a number or null): every column of
    the batch present, the columnar path's usual case."""
    features: dict[str, Any] = {"age": draw(NUMBERS), "income": draw(NUMBERS)}
    if draw(st.booleans()):
        features["country"] = draw(st.none() | st.sampled_from(["DE", "FR", ""]))
    rec: dict[str, Any] = {"features": features, "timestamp": draw(TIMES)}
    if draw(st.booleans()):
        rec["prediction"] = draw(NUMBERS)
    if draw(st.booleans()):
        rec["request_id"] = draw(st.text(max_size=6))
    return json.dumps(rec).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(full_record(), min_size=1, max_size=40))
def test_clean_full_records_and_the_general_reader_agree(values: list[bytes]) -> None:
    messages = [RawMessage(value=v, partition=0, offset=i) for i, v in enumerate(values)]
    fast, general = both(messages)
    assert fast == general
