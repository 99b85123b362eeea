"""Prediction records in, columns out: the decoder turns a batch of raw messages into one
columnar :class:`~monitor.ingest.batch.DecodedBatch` that the windows and sketches take whole.

Two record formats (``record.format``):

``driftline``
    One JSON object per prediction, ``{"request_id": "r1", "timestamp": 1718000000.5,
    "model_version": "v1", "features": {"age": 31, "country": "DE"}, "prediction": 0.93}``,
    or several per message: ``{"predictions": [{...}, {...}]}`` (fields missing from an item
    are taken from the envelope) or a top-level JSON array. Field paths are configurable
    and dotted; an empty ``features_field`` means the record itself holds the columns. The
    prediction is a scalar (the schema's single prediction column), an object of
    prediction column to value, or a list in prediction-column order; when it is absent
    the prediction columns are looked up among the features.

``kserve_v2``
    What KServe's inference logger emits, carried into Kafka as CloudEvents (e.g. by a
    Knative KafkaSink). The logger sends one event for the request and one for the
    response, both with the same ``id`` (the request's ``Ce-Id`` header or a generated
    UUID), of types ``org.kubeflow.serving.inference.request`` / ``.response``, with the
    extension attributes ``inferenceservicename``, ``namespace``, ``component``,
    ``endpoint`` and ``metadata`` (kserve/kserve ``pkg/logger/worker.go``, ``handler.go``).
    The CloudEvents Kafka protocol binding (cloudevents/spec
    ``cloudevents/bindings/kafka-protocol-binding.md``) puts them in Kafka either in
    *binary* mode, every attribute a ``ce_<name>`` header (``ce_id``, ``ce_type``,
    ``ce_source``, ``ce_specversion``, ``ce_time``, ``ce_inferenceservicename``, ...) and
    ``content-type`` carrying ``datacontenttype``, the value being the HTTP body as is; or
    in *structured* mode, ``content-type: application/cloudevents+json`` and the value a
    JSON event with ``data`` (or ``data_base64``). The bodies are Open Inference Protocol
    (v2) JSON (kserve website, "Open Inference Protocol (V2 Inference Protocol)"): a
    request ``{"id": .., "inputs": [{"name", "shape", "datatype", "data"}]}`` and a response
    ``{"model_name", "model_version", "id", "outputs": [...]}``, ``data`` flat in row-major
    order or nested to the shape. KServe v1 bodies (``{"instances": [...]}`` /
    ``{"predictions": [...]}``) are read too. The decoder holds the first half of each pair
    in a bounded map for ``record.kserve_pair_ttl`` and emits rows when the second arrives;
    a half whose partner never comes is a failure with reason ``unpaired``.

Decoding is batch-first (decision 3): a record of the default shape is parsed by msgspec
straight into a typed struct (about twice as fast as a dict), any other shape by orjson;
values are gathered into one list per column, and each column becomes one numpy array
(large batches in chunks of :data:`DECODE_CHUNK` messages). Numeric columns are
float64 (NaN where null or absent) when every value is a number, else an object array so
the sketch counts the type errors; categorical columns are object arrays of str/None.

A malformed record never raises: it becomes a :class:`~monitor.ingest.batch.DecodeFailure` with
one of the fixed :data:`FAILURE_REASONS` (a metric label) and a detail that never quotes
the payload, and the other rows of the batch are decoded as usual.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, repeat
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

import msgspec
import numpy as np
import orjson
from msgspec import UNSET, UnsetType

from detectors.schema import Kind, Role, Schema
from monitor.config.model import RecordConfig
from monitor.ingest.batch import DecodedBatch, DecodeFailure, SourceMessage

FAILURE_REASONS: tuple[str, ...] = (
    "invalid_json",
    "not_an_object",
    "missing_field",
    "bad_value",
    "bad_timestamp",
    "oversized",
    "bad_cloudevent",
    "bad_tensor",
    "unpaired",
)

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

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_NUMBER_TYPES = frozenset({int, float, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})
# Large batches are decoded in chunks of this many messages: the per-row objects of a
# chunk stay in the CPU caches, which makes a 100k-message batch about twice as fast.
DECODE_CHUNK = 4096
_PARTITION = attrgetter("partition")
_OFFSET = attrgetter("offset")


class _Bad(Exception):
    """A record to set aside: reason label and a detail without payload."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- small pure helpers ------------------------------------------------------------------


def row_keys(ids: Iterable[str]) -> np.ndarray:
    """Stable 64-bit keys (uint64) of row identities: BLAKE2b-64 of the UTF-8 text, read
    little-endian. The same in every process and on every machine, unlike ``hash()``."""
    digests = b"".join(hashlib.blake2b(i.encode(), digest_size=8).digest() for i in ids)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def parse_traceparent(value: bytes | str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` value, or None when it is not valid."""
    traceparent = valid_traceparent(value)
    return None if traceparent is None else traceparent.split("-")[1]


def valid_traceparent(value: bytes | str | None) -> str | None:
    """A W3C ``traceparent`` value, normalised to ``00-<trace>-<span>-<flags>``, or None
    when it is not valid. Windows keep a few of these so an evaluation span can link to
    the traces of its records (a link needs the span id too, not only the trace id).

    Version ``00`` must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``; later versions may
    append fields; ``ff`` and all-zero ids are invalid (W3C Trace Context, section 3.2).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return f"{version}-{trace}-{span}-{flags}"


def parse_event_time(value: object) -> float:
    """Seconds since the epoch from epoch seconds, milli-, micro- or nanoseconds (told
    apart by magnitude: above 1e11 is ms, 1e14 µs, 1e17 ns) or an ISO-8601 string (UTC
    when it has no offset). Raises ValueError for anything else."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"event time is a {type(value).__name__}")
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("event time is text that is not an ISO-8601 time") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
    else:
        raise ValueError(f"event time is a {type(value).__name__}")
    if not math.isfinite(x):
        raise ValueError("event time is not finite")
    return _scale_epoch(x)


def _scale_epoch(x: float) -> float:
    ax = abs(x)
    if ax > 1e17:
        return x / 1e9
    if ax > 1e14:
        return x / 1e6
    if ax > 1e11:
        return x / 1e3
    return x


def _getter(path: str) -> Callable[[dict], Any] | None:
    """A function reading a dotted path from a dict (None where any step is missing)."""
    if not path:
        return None
    parts = tuple(path.split("."))
    if len(parts) == 1:
        return methodcaller("get", parts[0])

    def get(d: dict) -> Any:
        cur: Any = d
        for p in parts:
            if type(cur) is not dict:
                return None
            cur = cur.get(p)
        return cur

    return get


def _headers(message: SourceMessage) -> dict[str, bytes]:
    """Kafka headers by lower-cased name (the last one wins)."""
    return {k.lower(): v or b"" for k, v in message.headers} if message.headers else {}


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


# -- the row accumulator -----------------------------------------------------------------


@dataclass
class _Rows:
    """Per-row metadata gathered while messages are read; columns are built at the end."""

    message: list[SourceMessage] = field(default_factory=list)  # where each row came from
    index: list[int] = field(default_factory=list)  # the row's place in its message
    key_text: list[str] = field(default_factory=list)  # what row keys hash (KServe)
    request_id: list[Any] = field(default_factory=list)
    time_raw: list[Any] = field(default_factory=list)  # from the record, or None
    version: list[Any] = field(default_factory=list)
    trace: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.message)


@dataclass
class _Half:
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


class Decoder:
    """Decodes batches of raw messages for one model's schema.

    Only KServe pairing keeps state between batches: the first half of a pair waits (at
    most ``kserve_pair_ttl`` seconds of processing time, at most ``kserve_max_pending``
    halves) for the second. Rows completed in a later batch carry the partition and offset
    of the half that arrived first; :meth:`pending_offsets` says which offsets are still
    held so the agent does not commit past them.
    """

    def __init__(self, config: RecordConfig, schema: Schema) -> None:
        self.config = config
        self.schema = schema
        self._kinds = {c.name: c.kind for c in schema.columns}
        self._features = [c.name for c in schema.columns if c.role is Role.FEATURE]
        self._predictions = [c.name for c in schema.columns if c.role is Role.PREDICTION]
        self._features_get = _getter(config.features_field)
        self._prediction_get = _getter(config.prediction_field)
        self._id_get = _getter(config.request_id_field)
        self._time_get = _getter(config.event_time_field)
        self._version_get = _getter(config.model_version_field)
        self._batch_get = _getter(config.batch_field)
        self._features_head = config.features_field.split(".")[0]
        self._fast_decode, self._fast_pick, self._fast_pick_pred = self._fast_path()
        self._pending: dict[str, _Half] = {}

    def _fast_path(self) -> tuple[Callable[[bytes], Any] | None, Any, Any]:
        """A msgspec decoder of the default record shape into typed structs, about twice
        as fast as building dicts; None when a field path is dotted (or empty)."""
        cfg = self.config
        keys = (
            cfg.features_field,
            cfg.prediction_field,
            cfg.request_id_field,
            cfg.event_time_field,
            cfg.model_version_field,
        )
        if any(not key or "." in key for key in keys) or len(set(keys)) < len(keys):
            return None, None, None
        columns = list(dict.fromkeys(self._features + self._predictions))
        attrs = {name: f"c{i}" for i, name in enumerate(columns)}
        features = msgspec.defstruct(
            "Features",
            [(attrs[name], Any, UNSET) for name in columns],
            rename={a: name for name, a in attrs.items()},
        )
        record = msgspec.defstruct(
            "Record",
            [
                ("f", features | None, UNSET),
                ("p", Any, None),
                ("i", Any, None),
                ("t", Any, None),
                ("v", Any, None),
            ],
            rename=dict(zip("fpitv", keys, strict=True)),
        )
        names = [attrs[n] for n in self._features]
        preds = [attrs[n] for n in self._predictions]
        pick = attrgetter(*names) if len(names) > 1 else _one_tuple(names)
        pick_pred = attrgetter(*preds) if preds else None
        return msgspec.json.Decoder(record).decode, pick, pick_pred

    # -- public ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """KServe halves waiting for their partner."""
        return len(self._pending)

    def pending_offsets(self) -> dict[tuple[str, int], int]:
        """The lowest offset of a held (not yet paired) message per (topic, partition)."""
        low: dict[tuple[str, int], int] = {}
        for half in self._pending.values():
            tp = (half.message.topic, half.message.partition)
            low[tp] = min(low.get(tp, half.message.offset), half.message.offset)
        return low

    def expire(self, now: float | None = None) -> list[DecodeFailure]:
        """Drop halves older than the pairing TTL; each becomes an ``unpaired`` failure.

        :meth:`decode` calls it first; call it on idle ticks too, so a lone half is
        reported even when no more messages come.
        """
        now = time.time() if now is None else now
        ttl = self.config.kserve_pair_ttl
        expired = [k for k, h in self._pending.items() if now - h.arrived > ttl]
        return [self._unpaired(self._pending.pop(k), f"within {ttl:g}s") for k in expired]

    def decode(self, messages: Sequence[SourceMessage], now: float | None = None) -> DecodedBatch:
        """Decode a batch; never raises for a bad record (see :data:`FAILURE_REASONS`).

        ``now`` (seconds since the epoch) is the event time of rows that carry none and
        have no Kafka timestamp, and the clock of the KServe pairing TTL.
        """
        now = time.time() if now is None else now
        # Decoding allocates many small acyclic objects (freed by reference counting); left
        # on, the cyclic collector would walk the agent's whole heap over and over for them.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            if len(messages) <= DECODE_CHUNK:
                return self._decode_chunk(messages, now)
            parts = [
                self._decode_chunk(messages[i : i + DECODE_CHUNK], now)
                for i in range(0, len(messages), DECODE_CHUNK)
            ]
            return self._concat(parts)
        finally:
            if collecting:
                gc.enable()

    def _decode_chunk(self, messages: Sequence[SourceMessage], now: float) -> DecodedBatch:
        if self.config.format == "kserve_v2":
            return self._decode_kserve(messages, now)
        return self._decode_driftline(messages, now)

    def _concat(self, parts: list[DecodedBatch]) -> DecodedBatch:
        """One batch from consecutive chunks (a column absent from a chunk is missing in
        its rows there)."""
        names = dict.fromkeys(name for p in parts for name in p.columns)
        columns = {}
        for name in names:
            numeric = self._kinds[name] is Kind.NUMERIC
            columns[name] = np.concatenate(
                [
                    p.columns[name]
                    if name in p.columns
                    else np.full(p.rows, np.nan)
                    if numeric
                    else np.full(p.rows, None, dtype=object)
                    for p in parts
                ]
            )
        return DecodedBatch(
            columns=columns,
            event_time=np.concatenate([p.event_time for p in parts]),
            request_id=np.concatenate([p.request_id for p in parts]),
            row_key=np.concatenate([p.row_key for p in parts]),
            model_version=np.concatenate([p.model_version for p in parts]),
            traceparent=np.concatenate([p.traceparent for p in parts]),
            partition=np.concatenate([p.partition for p in parts]),
            offset=np.concatenate([p.offset for p in parts]),
            failures=[f for p in parts for f in p.failures],
            messages=sum(p.messages for p in parts),
        )

    # -- driftline JSON --------------------------------------------------------------------

    def _decode_driftline(self, messages: Sequence[SourceMessage], now: float) -> DecodedBatch:
        cfg = self.config
        max_bytes = cfg.max_bytes
        failures: list[DecodeFailure] = []
        rows = _Rows()
        names = self._features
        pred_names = self._predictions
        k = len(pred_names)
        # Per row: the feature values and the prediction values, in schema order, UNSET
        # where the record does not have the key (None where it is null).
        values: list[tuple] = []
        preds: list[tuple] = []
        fast = self._fast_decode
        pick_fast, pick_fast_pred = self._fast_pick, self._fast_pick_pred
        pick = itemgetter(*names) if len(names) > 1 else None
        features_get, prediction_get = self._features_get, self._prediction_get
        id_get, time_get, version_get = self._id_get, self._time_get, self._version_get
        batch_get = self._batch_get
        features_head = self._features_head
        loads = orjson.loads
        no_prediction = (None,) * k
        bad_pred: list[int] = []  # rows whose prediction does not fit the columns
        # bound methods of the row lists: the loops below run once per prediction
        add_message, add_index = rows.message.append, rows.index.append
        add_id, add_time = rows.request_id.append, rows.time_raw.append
        add_version, add_trace = rows.version.append, rows.trace.append
        add_values, add_pred = values.append, preds.append

        for m in messages:
            value = m.value
            if not value:
                failures.append(DecodeFailure("invalid_json", "empty message", m))
                continue
            if len(value) > max_bytes:
                failures.append(
                    DecodeFailure(
                        "oversized", f"{len(value)} bytes, more than max_bytes {max_bytes}", m
                    )
                )
                continue
            trace = _trace(m) if m.headers else None
            if fast is not None:
                # The common shape, one flat record with a features object, decoded
                # straight into typed structs; anything else takes the general path.
                try:
                    r = fast(value)
                except msgspec.DecodeError:
                    r = None
                if r is not None and type(r.f) is not UnsetType and r.f is not None:
                    f = r.f
                    add_values(pick_fast(f))
                    if k:
                        p = r.p
                        if p is None:
                            p = pick_fast_pred(f)
                            add_pred(p if k > 1 else (p,))
                        elif type(p) is dict or type(p) is list:
                            fitted = _prediction_tuple(p, pred_names)
                            if fitted is None:
                                bad_pred.append(len(rows.message))
                                fitted = no_prediction
                            add_pred(fitted)
                        elif k == 1:
                            add_pred((p,))
                        else:
                            bad_pred.append(len(rows.message))
                            add_pred(no_prediction)
                    add_message(m)
                    add_index(0)
                    add_id(r.i)
                    add_time(r.t)
                    add_version(r.v)
                    add_trace(trace)
                    continue
            try:
                obj = loads(value)
            except orjson.JSONDecodeError as exc:
                failures.append(DecodeFailure("invalid_json", f"not valid JSON: {exc}", m))
                continue
            envelope: dict | None = None
            if type(obj) is dict:
                items: list = [obj]
                if not (features_head and features_head in obj):
                    batch = batch_get(obj)
                    if type(batch) is list:
                        items, envelope = batch, obj
            elif type(obj) is list:
                items = obj
            else:
                failures.append(
                    DecodeFailure(
                        "not_an_object", f"the message is {_type_name(obj)}, not an object", m
                    )
                )
                continue
            for ri, item in enumerate(items):
                if type(item) is not dict:
                    failures.append(
                        DecodeFailure("not_an_object", f"batch item {ri} is {_type_name(item)}", m)
                    )
                    continue
                f = item if features_get is None else features_get(item)
                if type(f) is not dict:
                    if f is None:
                        reason, what = "missing_field", f"no {cfg.features_field!r} object"
                    else:
                        reason, what = "bad_value", f"{cfg.features_field!r} is {_type_name(f)}"
                    failures.append(DecodeFailure(reason, what + _where(ri, envelope), m))
                    continue
                if pick is None:
                    add_values(tuple(map(f.get, names, repeat(UNSET))))
                else:
                    try:
                        add_values(pick(f))
                    except KeyError:  # some feature absent: UNSET marks which
                        add_values(tuple(map(f.get, names, repeat(UNSET))))
                if k:
                    p = None if prediction_get is None else prediction_get(item)
                    if p is None:  # look for the prediction columns among the features
                        add_pred(tuple(map(f.get, pred_names, repeat(UNSET))))
                    elif type(p) is dict or type(p) is list:
                        fitted = _prediction_tuple(p, pred_names)
                        if fitted is None:
                            bad_pred.append(len(rows.message))
                            fitted = no_prediction
                        add_pred(fitted)
                    elif k == 1:
                        add_pred((p,))
                    else:
                        bad_pred.append(len(rows.message))
                        add_pred(no_prediction)
                t = time_get(item)
                ver = version_get(item)
                if envelope is not None:
                    if t is None:
                        t = time_get(envelope)
                    if ver is None:
                        ver = version_get(envelope)
                add_message(m)
                add_index(ri)
                add_id(id_get(item))
                add_time(t)
                add_version(ver)
                add_trace(trace)

        bad: dict[int, DecodeFailure] = {}
        for i in bad_pred:
            _mark(
                bad,
                i,
                rows,
                "bad_value",
                f"the prediction does not give one value per prediction column ({k}); "
                "send an object of column to value",
            )
        columns: dict[str, Sequence[Any]] = {}
        n = len(rows)
        for group, cols in ((names, values), (pred_names, preds)):
            if not group:
                continue
            transposed = list(zip(*cols, strict=False)) if n else [()] * len(group)
            columns.update(zip(group, transposed, strict=True))
        return self._finish(columns, rows, now, failures, bad, len(messages))

    # -- KServe / Open Inference Protocol ----------------------------------------------------

    def _decode_kserve(self, messages: Sequence[SourceMessage], now: float) -> DecodedBatch:
        failures = self.expire(now)
        rows = _Rows()
        columns: dict[str, list[Any]] = {}
        paired = self.config.kserve_logger_mode == "all"
        for m in messages:
            try:
                half = self._kserve_half(m, now)
            except _Bad as bad:
                failures.append(DecodeFailure(bad.reason, bad.detail, m))
                continue
            if half is None:  # a half the configured logger mode does not use
                continue
            if not paired:
                self._emit(half, None, columns, rows)
                continue
            other = self._pending.pop(half.ce_id, None)
            if other is None:
                if len(self._pending) >= self.config.kserve_max_pending:
                    oldest = self._pending.pop(next(iter(self._pending)))
                    failures.append(
                        self._unpaired(
                            oldest,
                            f"before {self.config.kserve_max_pending} newer halves "
                            "(kserve_max_pending) arrived",
                        )
                    )
                self._pending[half.ce_id] = half
            elif other.kind == half.kind:  # a redelivered half: keep the first
                self._pending[half.ce_id] = other
            elif other.rows != half.rows:
                failures.append(
                    DecodeFailure(
                        "bad_tensor",
                        f"the {other.kind} has {other.rows} rows and the {half.kind} {half.rows}",
                        m,
                    )
                )
            else:
                self._emit(other, half, columns, rows)
        total = len(rows)
        for values in columns.values():
            values.extend([None] * (total - len(values)))
        return self._finish(columns, rows, now, failures, {}, len(messages))

    def _emit(
        self, first: _Half, second: _Half | None, columns: dict[str, list[Any]], rows: _Rows
    ) -> None:
        """Rows of a completed pair (or of a lone half when the logger sends one kind)."""
        n, start = first.rows, len(rows)
        halves = (first,) if second is None else (first, second)
        for half in halves:
            for name, values in half.columns.items():
                col = columns.setdefault(name, [])
                col.extend([None] * (start - len(col)))
                col.extend(values)
        request = next((h for h in halves if h.kind == "request"), first)
        event_time = request.event_time
        if event_time is None:
            event_time = next((h.event_time for h in halves if h.event_time is not None), None)
        version = next((h.model_version for h in halves if h.model_version), None)
        trace = request.trace or next((h.trace for h in halves if h.trace), None)
        ce_id = first.ce_id
        rows.message.extend([first.message] * n)
        rows.index.extend(range(n))
        rows.request_id.extend([ce_id] * n)
        rows.key_text.extend([ce_id] if n == 1 else [f"{ce_id}#{i}" for i in range(n)])
        rows.time_raw.extend([event_time] * n)
        rows.version.extend([version] * n)
        rows.trace.extend([trace] * n)

    def _kserve_half(self, m: SourceMessage, now: float) -> _Half | None:
        value = m.value
        if value is not None and len(value) > self.config.max_bytes:
            raise _Bad(
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
            raise _Bad("bad_cloudevent", "the event type is not an inference request or response")
        mode = self.config.kserve_logger_mode
        if mode not in ("all", kind):
            return None
        if type(body) is not dict:
            raise _Bad("not_an_object", f"the {kind} body is {_type_name(body)}, not an object")
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
                raise _Bad("bad_timestamp", "the event time is not an RFC 3339 time") from None
        # W3C trace context: a Kafka header, or the CloudEvents distributed-tracing extension
        trace = valid_traceparent(headers.get("traceparent")) or valid_traceparent(
            attrs.get("traceparent")
        )
        version = body.get("model_version") if kind == "response" else None
        return _Half(
            ce_id=str(attrs["id"]),
            kind=kind,
            columns=columns,
            rows=n,
            message=m,
            arrived=now,
            event_time=event_time,
            trace=trace,
            model_version=None if version is None else _text(version),
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
            raise _Bad("missing_field", f"the {side} body has no {v2_key!r} list of tensors")
        wanted = set(targets)
        out: dict[str, list[Any]] = {}
        rows: int | None = None
        for ti, t in enumerate(tensors):
            where = f"{v2_key}[{ti}]"
            if type(t) is not dict:
                raise _Bad("bad_tensor", f"{where} is {_type_name(t)}, not a tensor")
            name, shape, data = t.get("name"), t.get("shape"), t.get("data")
            if type(name) is not str or type(shape) is not list or type(data) is not list:
                raise _Bad("bad_tensor", f"{where} needs a name, a shape and a data list")
            if t.get("datatype") not in V2_DATATYPES:
                raise _Bad("bad_tensor", f"{where} has no known datatype")
            if not shape or any(type(s) is not int or s < 0 for s in shape):
                raise _Bad("bad_tensor", f"{where} has a shape that is not a list of sizes")
            width = math.prod(shape[1:])
            if name in wanted and width == 1:
                names = [name]
            elif configured and len(configured) == width and name not in wanted:
                names = list(configured)
            elif len(tensors) == 1 and targets and width == len(targets):
                names = list(targets)
            elif name in wanted or len(tensors) == 1:
                raise _Bad(
                    "bad_tensor",
                    f"{where} has {width} values per row and no column mapping; set "
                    f"record.kserve_{side}_columns",
                )
            else:
                continue  # a tensor the schema does not track
            flat = _flatten(data)
            if len(flat) != shape[0] * width:
                raise _Bad("bad_tensor", f"{where} holds {len(flat)} values for shape {shape}")
            if rows is None:
                rows = shape[0]
            elif rows != shape[0]:
                raise _Bad("bad_tensor", f"the {v2_key} tensors disagree on the batch size")
            if width == 1:
                out[names[0]] = flat
            else:
                for j, column in enumerate(names):
                    out[column] = flat[j::width]
        if rows is None:
            if targets:
                raise _Bad(
                    "bad_tensor",
                    f"no {side} tensor maps to a schema column; name tensors after columns "
                    f"or set record.kserve_{side}_columns",
                )
            rows = _batch_size(tensors)  # the schema tracks nothing on this side
        return out, rows

    def _unpaired(self, half: _Half, when: str) -> DecodeFailure:
        partner = "response" if half.kind == "request" else "request"
        return DecodeFailure(
            "unpaired",
            f"an inference {half.kind} whose {partner} did not arrive {when}",
            half.message,
        )

    # -- columns to arrays -------------------------------------------------------------------

    def _finish(
        self,
        columns: dict[str, Sequence[Any]],
        rows: _Rows,
        now: float,
        failures: list[DecodeFailure],
        bad: dict[int, DecodeFailure],
        n_messages: int,
    ) -> DecodedBatch:
        n = len(rows)
        arrays: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            types = set(map(type, values))
            if UnsetType in types:  # some records lack the key (UNSET), others do not
                if len(types) == 1:
                    continue  # no record mentions this column
                values = [None if v is UNSET else v for v in values]
                types.discard(UnsetType)
                types.add(type(None))
            if dict in types or list in types:
                values = list(values)
                for i, v in enumerate(values):
                    if type(v) is dict or type(v) is list:
                        _mark(
                            bad,
                            i,
                            rows,
                            "bad_value",
                            f"{name} is {_type_name(v)}; values are numbers, text or null",
                        )
                        values[i] = None
                types = set(map(type, values))
            if self._kinds[name] is Kind.NUMERIC:
                arrays[name] = _numeric(values, types)
            else:
                arrays[name] = _categorical(values, types)
        event_time = self._event_times(rows, now, bad)
        request_id = self._request_ids(rows, bad)
        if rows.key_text:  # KServe: the CloudEvent id, made unique per row of a batch
            key_text = rows.key_text
        else:  # the request id, else where the row sits in the log (a replay dedupes)
            key_text = [
                f"{m.topic}#{m.partition}#{m.offset}#{ri}" if rid is None else rid
                for rid, m, ri in zip(request_id, rows.message, rows.index, strict=True)
            ]
        default = self.config.default_model_version
        versions = [default if v is None else v for v in rows.version]
        if not set(map(type, versions)) <= {str}:
            versions = [v if type(v) is str else _text(v) for v in versions]
        batch = DecodedBatch(
            columns=arrays,
            event_time=event_time,
            request_id=_objects(request_id),
            row_key=row_keys(key_text),
            model_version=_objects(versions),
            traceparent=_objects(rows.trace),
            partition=np.fromiter(map(_PARTITION, rows.message), np.int32, n),
            offset=np.fromiter(map(_OFFSET, rows.message), np.int64, n),
            failures=failures,
            messages=n_messages,
        )
        if bad:
            keep = np.ones(n, dtype=bool)
            keep[list(bad)] = False
            batch = batch.take(keep)
            batch.failures = failures + [bad[i] for i in sorted(bad)]
            batch.messages = n_messages
        return batch

    def _event_times(self, rows: _Rows, now: float, bad: dict[int, DecodeFailure]) -> np.ndarray:
        raw = rows.time_raw
        if raw and set(map(type, raw)) <= {int, float}:
            x = np.asarray(raw, dtype=np.float64)
            ax = np.abs(x)
            return np.where(
                ax > 1e17, x / 1e9, np.where(ax > 1e14, x / 1e6, np.where(ax > 1e11, x / 1e3, x))
            )
        out = np.empty(len(raw), dtype=np.float64)
        require = self.config.require_event_time and self.config.format == "driftline"
        for i, v in enumerate(raw):
            if v is None:
                if require:
                    _mark(
                        bad,
                        i,
                        rows,
                        "missing_field",
                        f"no {self.config.event_time_field!r} (require_event_time is on)",
                    )
                ts = rows.message[i].timestamp
                out[i] = ts / 1000.0 if ts is not None else now
                continue
            try:
                out[i] = parse_event_time(v)
            except ValueError as exc:
                _mark(bad, i, rows, "bad_timestamp", str(exc))
                out[i] = now
        return out

    def _request_ids(self, rows: _Rows, bad: dict[int, DecodeFailure]) -> list[str | None]:
        ids = rows.request_id
        if set(map(type, ids)) <= _TEXT_TYPES:
            return ids
        fixed: list[str | None] = []
        for i, v in enumerate(ids):
            if v is None or type(v) is str:
                fixed.append(v)
            elif type(v) is int or type(v) is float:
                fixed.append(_text(v))
            else:
                _mark(
                    bad,
                    i,
                    rows,
                    "bad_value",
                    f"{self.config.request_id_field!r} is {_type_name(v)}, not text",
                )
                fixed.append(None)
        return fixed


# -- module helpers ----------------------------------------------------------------------


def _mark(bad: dict[int, DecodeFailure], row: int, rows: _Rows, reason: str, detail: str) -> None:
    """Set a row aside (the first problem found is the one reported)."""
    if row not in bad:
        bad[row] = DecodeFailure(reason, detail, rows.message[row])


def _trace(m: SourceMessage) -> str | None:
    for k, v in m.headers:
        if k.lower() == "traceparent":
            return valid_traceparent(v)
    return None


def _where(row: int, envelope: dict | None) -> str:
    return f" in batch item {row}" if envelope is not None else ""


def _one_tuple(names: list[str]) -> Callable[[Any], tuple]:
    """attrgetter for zero or one name, returning a tuple like it does for several."""
    if not names:
        return lambda _: ()
    get = attrgetter(names[0])
    return lambda obj: (get(obj),)


def _prediction_tuple(p: Any, names: list[str]) -> tuple | None:
    """Prediction values in column order from an object or a list (None if they do not
    fit the prediction columns)."""
    if type(p) is dict:
        return tuple(map(p.get, names))
    if type(p) is list and len(p) == len(names):
        return tuple(p)
    return None


def _binary_event(value: bytes | None, headers: dict[str, bytes]) -> tuple[dict, Any]:
    """A binary-mode CloudEvent: attributes from ``ce_*`` headers, data in the value."""
    attrs = {k[3:]: v.decode("utf-8", "replace") for k, v in headers.items() if k[:3] == "ce_"}
    missing = [a for a in CE_REQUIRED if not attrs.get(a)]
    if missing:
        raise _Bad(
            "bad_cloudevent",
            "no " + ", ".join(f"ce_{a}" for a in missing) + " header and not a structured "
            "CloudEvent",
        )
    if not value:
        raise _Bad("bad_cloudevent", "the CloudEvent has no data")
    try:
        return attrs, orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _Bad("invalid_json", f"the event data is not valid JSON: {exc}") from None


def _structured_event(value: bytes | None, content_type: str) -> tuple[dict, Any]:
    """A structured-mode CloudEvent (JSON format): the event, and its parsed data."""
    if not content_type.startswith("application/cloudevents+json"):
        raise _Bad("bad_cloudevent", "a structured CloudEvent in a format other than JSON")
    if not value:
        raise _Bad("bad_cloudevent", "a structured CloudEvent with an empty value")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _Bad("invalid_json", f"the CloudEvent is not valid JSON: {exc}") from None
    if type(event) is not dict:
        raise _Bad("bad_cloudevent", f"the CloudEvent is {_type_name(event)}, not an object")
    missing = [a for a in CE_REQUIRED if not event.get(a)]
    if missing:
        raise _Bad("bad_cloudevent", f"the CloudEvent has no {', '.join(missing)}")
    if "data_base64" in event:
        try:
            raw = base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise _Bad("bad_cloudevent", "data_base64 is not valid base64") from None
    elif "data" in event:
        data = event["data"]
        if not isinstance(data, str):
            return event, data
        raw = data.encode()  # JSON data carried as a JSON string
    else:
        raise _Bad("bad_cloudevent", "the CloudEvent has no data")
    try:
        return event, orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Bad("invalid_json", f"the event data is not valid JSON: {exc}") from None


def _v1_columns(items: Any, key: str, names: list[str]) -> tuple[dict[str, list[Any]], int]:
    """KServe v1 ``instances``/``predictions``: objects by name, lists by column order,
    scalars for a single column."""
    if type(items) is not list:
        raise _Bad("bad_tensor", f"{key!r} is {_type_name(items)}, not a list")
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
            raise _Bad("bad_tensor", f"{key}[{i}] does not have one value per column")
    return out, len(items)


def _batch_size(tensors: list) -> int:
    """The batch size of the first well-formed tensor."""
    for t in tensors:
        shape = t.get("shape") if type(t) is dict else None
        if type(shape) is list and shape and type(shape[0]) is int and shape[0] >= 0:
            return shape[0]
    raise _Bad("bad_tensor", "no tensor has a shape")


def _flatten(data: list) -> list:
    """Row-major values of a flat or nested ``data`` list."""
    while data and type(data[0]) is list:
        if not all(type(d) is list for d in data):
            raise _Bad("bad_tensor", "tensor data mixes lists and values")
        data = list(chain.from_iterable(data))
    if any(type(d) is dict or type(d) is list for d in data):
        raise _Bad("bad_tensor", "tensor data is nested unevenly or holds objects")
    return data


def _text(v: Any) -> str:
    """Text of a scalar; integral floats without ".0" (as the profile writes categories)."""
    if type(v) is float and v.is_integer():
        return str(int(v))
    return str(v)


def _objects(values: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _numeric(values: Sequence[Any], types: set[type]) -> np.ndarray:
    """float64 when every value is a number or null; else the values as objects."""
    if types <= _NUMBER_TYPES:
        return np.array(values, dtype=np.float64)
    return _objects(values)


def _categorical(values: Sequence[Any], types: set[type]) -> np.ndarray:
    """Text or None; numbers and booleans as their text (3.0 as "3", like the profile)."""
    if types <= _TEXT_TYPES:
        return _objects(values)
    return _objects([v if v is None or type(v) is str else _text(v) for v in values])
