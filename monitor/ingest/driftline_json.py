"""The ``driftline`` record format: JSON prediction records read into column values.

One JSON object per prediction, ``{"request_id": "r1", "timestamp": 1718000000.5,
"model_version": "v1", "features": {"age": 31, "country": "DE"}, "prediction": 0.93}``,
or several per message: ``{"predictions": [{...}, {...}]}`` (fields missing from an item
are taken from the envelope) or a top-level JSON array. Field paths are configurable
and dotted; an empty ``features_field`` means the record itself holds the columns. The
prediction is a scalar (the schema's single prediction column), an object of
prediction column to value, or a list in prediction-column order; when it is absent
the prediction columns are looked up among the features.

A record of the default shape is parsed by msgspec straight into a typed struct (about
twice as fast as a dict), any other shape by orjson.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from detectors.schema import Role, Schema
from monitor.config.record import RecordConfig
from monitor.ingest.attributions import AttributionField
from monitor.ingest.batch import DecodeFailure, SourceMessage
from monitor.ingest.rows import Read, Rows, mark
from monitor.ingest.traceparent import message_traceparent
from monitor.ingest.values import path_getter, type_name


class DriftlineJsonReader:
    """Reads driftline JSON records for one model's schema (no state between batches)."""

    def __init__(
        self, config: RecordConfig, schema: Schema, attributions: AttributionField | None = None
    ) -> None:
        self.config = config
        # logged attributions (explain.source: record): read per prediction, never set aside
        self.attributions = attributions
        self._attribution_get = None if attributions is None else attributions.getter()
        self._features = [c.name for c in schema.columns if c.role is Role.FEATURE]
        self._predictions = [c.name for c in schema.columns if c.role is Role.PREDICTION]
        self._features_get = _getter(config.features_field)
        self._prediction_get = _getter(config.prediction_field)
        self._id_get = _required_getter(config.request_id_field)
        self._time_get = _required_getter(config.event_time_field)
        self._version_get = _required_getter(config.model_version_field)
        self._batch_get = _required_getter(config.batch_field)
        self._features_head = config.features_field.split(".")[0]
        self.fast_decode, self._fast_pick, self._fast_pick_pred = self._fast_path()

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
        if self.attributions is not None and self.attributions.head in keys:
            return None, None, None
        columns = list(dict.fromkeys(self._features + self._predictions))
        attrs = {name: f"c{i}" for i, name in enumerate(columns)}
        features = msgspec.defstruct(
            "Features",
            [(attrs[name], Any, UNSET) for name in columns],
            rename={a: name for name, a in attrs.items()},
        )
        fields: list[Any] = [
            ("f", features | None, UNSET),
            ("p", Any, None),
            ("i", Any, None),
            ("t", Any, None),
            ("v", Any, None),
        ]
        rename = dict(zip("fpitv", keys, strict=True))
        if self.attributions is not None:  # the head of the attributions' path
            fields.append(("a", Any, None))
            rename["a"] = self.attributions.head
        record = msgspec.defstruct("Record", fields, rename=rename)
        names = [attrs[n] for n in self._features]
        preds = [attrs[n] for n in self._predictions]
        pick = attrgetter(*names) if len(names) > 1 else _one_tuple(names)
        pick_pred = attrgetter(*preds) if preds else None
        return msgspec.json.Decoder(record).decode, pick, pick_pred

    def read(self, messages: Sequence[SourceMessage]) -> Read:
        """Column values and row metadata of ``messages``; a malformed message or row is
        set aside, never raised."""
        cfg = self.config
        max_bytes = cfg.max_bytes
        failures: list[DecodeFailure] = []
        rows = Rows()
        names = self._features
        pred_names = self._predictions
        k = len(pred_names)
        # Per row: the feature values and the prediction values, in schema order, UNSET
        # where the record does not have the key (None where it is null).
        values: list[tuple] = []
        preds: list[tuple] = []
        fast = self.fast_decode
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
        attribution_get = self._attribution_get
        below_head = None if self.attributions is None else self.attributions.below_head
        add_attribution = rows.attribution.append

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
            trace = message_traceparent(m) if m.headers else None
            if fast is not None:
                # The common shape, one flat record with a features object, decoded
                # straight into typed structs; anything else takes the general path.
                try:
                    r = fast(value)
                except (msgspec.DecodeError, RecursionError):  # deep nesting: general path
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
                    if below_head is not None:
                        add_attribution(below_head(r.a))
                    continue
            try:
                obj = loads(value)
            except orjson.JSONDecodeError as exc:  # also nesting deeper than 1024 levels
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
                        "not_an_object", f"the message is {type_name(obj)}, not an object", m
                    )
                )
                continue
            for ri, item in enumerate(items):
                if type(item) is not dict:
                    failures.append(
                        DecodeFailure("not_an_object", f"batch item {ri} is {type_name(item)}", m)
                    )
                    continue
                f = item if features_get is None else features_get(item)
                if type(f) is not dict:
                    if f is None:
                        reason, what = "missing_field", f"no {cfg.features_field!r} object"
                    else:
                        reason, what = "bad_value", f"{cfg.features_field!r} is {type_name(f)}"
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
                if attribution_get is not None:
                    add_attribution(attribution_get(item))

        bad: dict[int, DecodeFailure] = {}
        for i in bad_pred:
            mark(
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
        return columns, rows, failures, bad


def _getter(path: str) -> Callable[[dict], Any] | None:
    """A function reading a dotted path from a dict (None where any step is missing)."""
    return path_getter(path) if path else None


def _required_getter(path: str) -> Callable[[dict], Any]:
    """:func:`_getter` of a field path the config validates as non-empty."""
    get = _getter(path)
    if get is None:
        raise ValueError(f"record field path {path!r} is empty")
    return get


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
