"""The ``kserve_v2`` record format: one KServe inference-logger event read into one half
(request or response) of a prediction.

KServe's inference logger emits, carried into Kafka as CloudEvents (e.g. by a Knative
KafkaSink), one event for the request and one for the response, both with the same
``id`` (the request's ``Ce-Id`` header or a generated UUID), of types
``org.kubeflow.serving.inference.request`` / ``.response``, with the extension attributes
``inferenceservicename``, ``namespace``, ``component``, ``endpoint`` and ``metadata``
(kserve/kserve ``pkg/logger/worker.go``, ``handler.go``). The CloudEvents Kafka protocol
binding (cloudevents/spec ``cloudevents/bindings/kafka-protocol-binding.md``) puts them in
Kafka either in *binary* mode, every attribute a ``ce_<name>`` header (``ce_id``,
``ce_type``, ``ce_source``, ``ce_specversion``, ``ce_time``, ``ce_inferenceservicename``,
...) and ``content-type`` carrying ``datacontenttype``, the value being the HTTP body as
is; or in *structured* mode, ``content-type: application/cloudevents+json`` and the value a
JSON event with ``data`` (or ``data_base64``). The bodies are Open Inference Protocol (v2)
JSON (kserve website, "Open Inference Protocol (V2 Inference Protocol)"): a request
``{"id": .., "inputs": [{"name", "shape", "datatype", "data"}]}`` and a response
``{"model_name", "model_version", "id", "outputs": [...]}``, ``data`` flat in row-major
order or nested to the shape. KServe v1 bodies (``{"instances": [...]}`` /
``{"predictions": [...]}``) are read too. Joining the two halves is
:mod:`monitor.ingest.pairing`'s job.

Attributions the model logs (``explain.source: record``) are an output tensor of the
response named ``explain.record_field``, ``[rows, features]`` in the order of the
reference's attribution features; in a v1 response, a list under that path, one object or
array per prediction (monitor/ingest/attributions.py).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

from detectors.schema import Role, Schema
from monitor.config.record import RecordConfig
from monitor.ingest.attributions import AttributionField
from monitor.ingest.batch import BadRecord, SourceMessage
from monitor.ingest.traceparent import valid_traceparent
from monitor.ingest.values import parse_event_time, text, type_name

CE_REQUEST = "org.kubeflow.serving.inference.request"
CE_RESPONSE = "org.kubeflow.serving.inference.response"
CE_REQUIRED = ("id", "source", "specversion", "type")
V2_DATATYPES = frozenset(
    {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    }
)


@dataclass
class Half:
    """One decoded half of a KServe request/response pair."""

    ce_id: str
    kind: str  # "request" or "response"
    columns: dict[str, list[Any]]
    rows: int
    message: SourceMessage
    arrived: float  # processing time, for the pairing TTL
    event_time: float | None  # the CloudEvent's time
    trace: str | None
    model_version: str | None
    attributions: list[Any] | None = None  # one per row, when the response logs them


class KServeReader:
    """Reads KServe inference-logger events for one model's schema: request tensors map
    to the feature columns, response tensors to the prediction columns."""

    def __init__(
        self, config: RecordConfig, schema: Schema, attributions: AttributionField | None = None
    ) -> None:
        self.config = config
        self._features = [c.name for c in schema.columns if c.role is Role.FEATURE]
        self._predictions = [c.name for c in schema.columns if c.role is Role.PREDICTION]
        self._attributions = attributions

    def half(self, m: SourceMessage, now: float) -> Half | None:
        """The half a message holds (None when the configured logger mode does not use
        its kind); raises :class:`BadRecord` for a message to set aside."""
        value = m.value
        if value is not None and len(value) > self.config.max_bytes:
            raise BadRecord(
                "oversized", f"{len(value)} bytes, more than max_bytes {self.config.max_bytes}"
            )
        headers = _headers(m)
        content_type = headers.get("content-type", b"").decode("latin-1").strip().lower()
        if content_type.startswith("application/cloudevents"):
            attrs, body = _structured_event(value, content_type)
        else:
            attrs, body = _binary_event(value, headers)
        ce_type = str(attrs.get("type", ""))
        if ce_type == CE_REQUEST or ce_type.endswith(".inference.request"):
            kind = "request"
        elif ce_type == CE_RESPONSE or ce_type.endswith(".inference.response"):
            kind = "response"
        else:
            raise BadRecord(
                "bad_cloudevent", "the event type is not an inference request or response"
            )
        mode = self.config.kserve_logger_mode
        if mode not in ("all", kind):
            return None
        if type(body) is not dict:
            raise BadRecord("not_an_object", f"the {kind} body is {type_name(body)}, not an object")
        if kind == "request":
            columns, n = self._tensor_columns(
                body, "inputs", "instances", self._features, self.config.kserve_input_columns
            )
        else:
            columns, n = self._tensor_columns(
                body, "outputs", "predictions", self._predictions, self.config.kserve_output_columns
            )
        event_time = None
        if attrs.get("time"):
            try:
                event_time = parse_event_time(str(attrs["time"]))
            except ValueError:
                raise BadRecord("bad_timestamp", "the event time is not an RFC 3339 time") from None
        # W3C trace context: a Kafka header, or the CloudEvents distributed-tracing extension
        trace = valid_traceparent(headers.get("traceparent")) or valid_traceparent(
            attrs.get("traceparent")
        )
        logged = None
        if kind == "response" and self._attributions is not None:
            logged = _logged_attributions(body, self._attributions, n)
        version = body.get("model_version") if kind == "response" else None
        if self.config.kserve_version_attribute:  # KServe itself sends no revision
            version = attrs.get(self.config.kserve_version_attribute) or version
        return Half(
            ce_id=str(attrs["id"]),
            kind=kind,
            columns=columns,
            rows=n,
            message=m,
            arrived=now,
            event_time=event_time,
            trace=trace,
            model_version=None if version is None else text(version),
            attributions=logged,
        )

    def _tensor_columns(
        self, body: dict, v2_key: str, v1_key: str, targets: list[str], configured: list[str]
    ) -> tuple[dict[str, list[Any]], int]:
        """Columns and row count from v2 ``inputs``/``outputs`` (or a v1 body).

        A tensor named after a target column with one value per row is that column; a 2-D
        tensor ``[rows, k]`` maps its columns by ``configured`` order, or, when it is the
        only tensor and ``k`` equals the number of target columns, by schema order. Tensors
        that map to nothing are ignored.
        """
        side = v2_key[:-1]
        tensors = body.get(v2_key)
        if tensors is None and v1_key in body:
            return _v1_columns(body[v1_key], v1_key, list(configured) or targets)
        if type(tensors) is not list or not tensors:
            raise BadRecord("missing_field", f"the {side} body has no {v2_key!r} list of tensors")
        wanted = set(targets)
        out: dict[str, list[Any]] = {}
        rows: int | None = None
        for ti, t in enumerate(tensors):
            where = f"{v2_key}[{ti}]"
            if type(t) is not dict:
                raise BadRecord("bad_tensor", f"{where} is {type_name(t)}, not a tensor")
            name, shape, data = t.get("name"), t.get("shape"), t.get("data")
            if self._attributions is not None and name == self._attributions.path:
                continue  # the logged attributions (_logged_attributions), not a column
            if type(name) is not str or type(shape) is not list or type(data) is not list:
                raise BadRecord("bad_tensor", f"{where} needs a name, a shape and a data list")
            if t.get("datatype") not in V2_DATATYPES:
                raise BadRecord("bad_tensor", f"{where} has no known datatype")
            if not shape or any(type(s) is not int or s < 0 for s in shape):
                raise BadRecord("bad_tensor", f"{where} has a shape that is not a list of sizes")
            width = math.prod(shape[1:])
            if name in wanted and width == 1:
                names = [name]
            elif configured and len(configured) == width and name not in wanted:
                names = list(configured)
            elif len(tensors) == 1 and targets and width == len(targets):
                names = list(targets)
            elif name in wanted or len(tensors) == 1:
                raise BadRecord(
                    "bad_tensor",
                    f"{where} has {width} values per row and no column mapping; set "
                    f"record.kserve_{side}_columns",
                )
            else:
                continue  # a tensor the schema does not track
            flat = _flatten(data)
            if len(flat) != shape[0] * width:
                raise BadRecord("bad_tensor", f"{where} holds {len(flat)} values for shape {shape}")
            if rows is None:
                rows = shape[0]
            elif rows != shape[0]:
                raise BadRecord("bad_tensor", f"the {v2_key} tensors disagree on the batch size")
            if width == 1:
                out[names[0]] = flat
            else:
                for j, column in enumerate(names):
                    out[column] = flat[j::width]
        if rows is None:
            if targets:
                raise BadRecord(
                    "bad_tensor",
                    f"no {side} tensor maps to a schema column; name tensors after columns "
                    f"or set record.kserve_{side}_columns",
                )
            rows = _batch_size(tensors)  # the schema tracks nothing on this side
        return out, rows


def _logged_attributions(body: dict, field: AttributionField, n: int) -> list[Any] | None:
    """Per-row attributions of a response: the v2 output tensor named ``field.path``
    (rows × features, flat or nested), or a v1 list at that path; None when the response
    has none (each row counts as ``missing``), a row's bad shape left to the conversion."""
    tensors = body.get("outputs")
    if type(tensors) is list:
        for t in tensors:
            if type(t) is dict and t.get("name") == field.path:
                shape, data = t.get("shape"), t.get("data")
                if type(shape) is not list or type(data) is not list or not shape:
                    return ["bad tensor"] * n  # counted as bad_type, the row kept
                width = math.prod(s for s in shape[1:] if type(s) is int)
                try:
                    flat = _flatten(data)
                except BadRecord:
                    return ["bad tensor"] * n
                if shape[0] != n or len(flat) != n * width:
                    return [[]] * n  # counted as wrong_length
                return [flat[i * width : (i + 1) * width] for i in range(n)]
        return None
    items = field.getter()(body)
    if type(items) is list and len(items) == n:
        return items
    return None if items is None else ["bad tensor"] * n


def _headers(message: SourceMessage) -> dict[str, bytes]:
    """Kafka headers by lower-cased name (the last one wins)."""
    return {k.lower(): v or b"" for k, v in message.headers} if message.headers else {}


def _binary_event(value: bytes | None, headers: dict[str, bytes]) -> tuple[dict, Any]:
    """A binary-mode CloudEvent: attributes from ``ce_*`` headers, data in the value."""
    attrs = {k[3:]: v.decode("utf-8", "replace") for k, v in headers.items() if k[:3] == "ce_"}
    missing = [a for a in CE_REQUIRED if not attrs.get(a)]
    if missing:
        raise BadRecord(
            "bad_cloudevent",
            "no " + ", ".join(f"ce_{a}" for a in missing) + " header and not a structured "
            "CloudEvent",
        )
    if not value:
        raise BadRecord("bad_cloudevent", "the CloudEvent has no data")
    try:
        return attrs, orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadRecord("invalid_json", f"the event data is not valid JSON: {exc}") from None


def _structured_event(value: bytes | None, content_type: str) -> tuple[dict, Any]:
    """A structured-mode CloudEvent (JSON format): the event, and its parsed data."""
    if not content_type.startswith("application/cloudevents+json"):
        raise BadRecord("bad_cloudevent", "a structured CloudEvent in a format other than JSON")
    if not value:
        raise BadRecord("bad_cloudevent", "a structured CloudEvent with an empty value")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadRecord("invalid_json", f"the CloudEvent is not valid JSON: {exc}") from None
    if type(event) is not dict:
        raise BadRecord("bad_cloudevent", f"the CloudEvent is {type_name(event)}, not an object")
    missing = [a for a in CE_REQUIRED if not event.get(a)]
    if missing:
        raise BadRecord("bad_cloudevent", f"the CloudEvent has no {', '.join(missing)}")
    if "data_base64" in event:
        try:
            raw = base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadRecord("bad_cloudevent", "data_base64 is not valid base64") from None
    elif "data" in event:
        data = event["data"]
        if not isinstance(data, str):
            return event, data
        raw = data.encode()  # JSON data carried as a JSON string
    else:
        raise BadRecord("bad_cloudevent", "the CloudEvent has no data")
    try:
        return event, orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRecord("invalid_json", f"the event data is not valid JSON: {exc}") from None


def _v1_columns(items: Any, key: str, names: list[str]) -> tuple[dict[str, list[Any]], int]:
    """KServe v1 ``instances``/``predictions``: objects by name, lists by column order,
    scalars for a single column."""
    if type(items) is not list:
        raise BadRecord("bad_tensor", f"{key!r} is {type_name(items)}, not a list")
    if not names:  # the schema tracks nothing on this side
        return {}, len(items)
    out: dict[str, list[Any]] = {n: [] for n in names}
    adds = [out[n].append for n in names]
    for i, item in enumerate(items):
        ti = type(item)
        if ti is dict:
            for n, add in zip(names, adds, strict=True):
                add(item.get(n))
        elif ti is list and len(item) == len(names):
            for v, add in zip(item, adds, strict=True):
                add(v)
        elif ti is not list and len(names) == 1:
            adds[0](item)
        else:
            raise BadRecord("bad_tensor", f"{key}[{i}] does not have one value per column")
    return out, len(items)


def _batch_size(tensors: list) -> int:
    """The batch size of the first well-formed tensor."""
    for t in tensors:
        shape = t.get("shape") if type(t) is dict else None
        if type(shape) is list and shape and type(shape[0]) is int and shape[0] >= 0:
            return shape[0]
    raise BadRecord("bad_tensor", "no tensor has a shape")


def _flatten(data: list) -> list:
    """Row-major values of a flat or nested ``data`` list."""
    while data and type(data[0]) is list:
        if not all(type(d) is list for d in data):
            raise BadRecord("bad_tensor", "tensor data mixes lists and values")
        data = list(chain.from_iterable(data))
    if any(type(d) is dict or type(d) is list for d in data):
        raise BadRecord("bad_tensor", "tensor data is nested unevenly or holds objects")
    return data
