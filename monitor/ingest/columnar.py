"""The columnar fast path of the ``driftline`` format: a poll batch of clean records
decoded by msgspec into typed structs, then one column at a time into numpy arrays.

Records of the default shape (a flat record with a ``features`` object; numeric columns
numbers or null, categorical ones text or null; one scalar prediction; text request id
and version; an event time that is a number or a time string) take this path, which does
per record only msgspec's parse and a constant number of C-level steps; everything
per column (the structs transposed into columns, ``numpy.array`` of the floats) runs over the
whole batch (docs/architecture.md, decision 3). A record the typed decoder refuses for
any reason (bad JSON, a value of another type, a number beyond float64, a batch of
predictions, nesting, an unparsable time) is handed back by position and goes through the
general reader (:mod:`monitor.ingest.driftline_json`), which gives each its own failure
reason or reads the shapes this path does not; the rows of both are put back in message
order. So the fast path changes no result, only the time it takes: the property tests
check it against the general reader on generated batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from operator import attrgetter, is_
from typing import Any

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType
from msgspec.structs import astuple

from detectors.schema import Kind, Role, Schema
from monitor.config.record import RecordConfig
from monitor.ingest.attributions import AttributionField
from monitor.ingest.batch import DecodedBatch, SourceMessage
from monitor.ingest.traceparent import message_traceparent
from monitor.ingest.values import objects, parse_event_time, row_keys, scale_epochs

_VALUE = attrgetter("value")
_HEADERS = attrgetter("headers")
_PARTITION = attrgetter("partition")
_OFFSET = attrgetter("offset")
_F = attrgetter("f")
_P = attrgetter("p")
_I = attrgetter("i")
_T = attrgetter("t")
_V = attrgetter("v")
_A = attrgetter("a")


class ColumnarReader:
    """Decodes the clean records of a batch into columns; see :meth:`decode`."""

    def __init__(
        self, config: RecordConfig, schema: Schema, attributions: AttributionField | None = None
    ) -> None:
        self.config = config
        self.attributions = attributions  # logged attributions (explain.source: record)
        kinds = {c.name: c.kind for c in schema.columns}
        self._features = [c.name for c in schema.columns if c.role is Role.FEATURE]
        self._predictions = [c.name for c in schema.columns if c.role is Role.PREDICTION]
        self._kinds = kinds
        self._decode = self._typed_decoder()

    @classmethod
    def for_config(
        cls, config: RecordConfig, schema: Schema, attributions: AttributionField | None = None
    ) -> ColumnarReader | None:
        """The reader, or None where the configured record shape is not the default one
        (dotted or empty field paths, several prediction columns)."""
        keys = (
            config.features_field,
            config.prediction_field,
            config.request_id_field,
            config.event_time_field,
            config.model_version_field,
        )
        if config.format != "driftline" or any(not k or "." in k for k in keys):
            return None
        if len(set(keys)) < len(keys) or config.batch_field in keys:
            return None
        if attributions is not None and attributions.head in keys:
            return None
        predictions = [c for c in schema.columns if c.role is Role.PREDICTION]
        if len(predictions) > 1:
            return None
        return cls(config, schema, attributions)

    def _typed_decoder(self) -> Callable[[bytes], Any]:
        cfg = self.config
        columns = list(dict.fromkeys(self._features + self._predictions))
        attrs = {name: f"c{i}" for i, name in enumerate(columns)}
        self._columns = columns

        def typed(name: str) -> Any:
            return float | None if self._kinds[name] is Kind.NUMERIC else str | None

        features = msgspec.defstruct(
            "ColumnarFeatures",
            [(attrs[n], typed(n) | UnsetType, UNSET) for n in columns],  # type: ignore[operator]
            rename={a: n for n, a in attrs.items()},
            gc=False,
        )
        prediction: Any = typed(self._predictions[0]) if self._predictions else Any
        fields: list[Any] = [
            ("f", features),
            ("p", prediction, None),
            ("i", str | None, None),
            ("t", float | str | None, None),
            ("v", str | None, None),
        ]
        rename = {
            "f": cfg.features_field,
            "p": cfg.prediction_field,
            "i": cfg.request_id_field,
            "t": cfg.event_time_field,
            "v": cfg.model_version_field,
        }
        if self.attributions is not None:  # a bad shape: the general reader counts it
            fields.append(("a", self.attributions.typed, None))
            rename["a"] = self.attributions.head
        record = msgspec.defstruct("ColumnarRecord", fields, rename=rename, gc=False)
        return msgspec.json.Decoder(record).decode

    def decode(
        self, messages: Sequence[SourceMessage], now: float
    ) -> tuple[DecodedBatch, list[int]]:
        """The batch of the clean records of ``messages`` (one row each, in message
        order) and the positions of the messages left for the general reader."""
        values: list[Any] = list(map(_VALUE, messages))
        structs: list[Any] | None = None
        if max_len(values) <= self.config.max_bytes:
            try:
                structs = list(map(self._decode, values))  # the common case: all clean
            except (msgspec.DecodeError, TypeError, RecursionError):
                structs = None
        rest: list[int] = []
        if structs is None:
            structs, rest = self._one_by_one(values)
            if rest:
                taken = set(rest)
                messages = [m for i, m in enumerate(messages) if i not in taken]
        event_time, unparsed = self._event_times(structs, messages, now)
        if unparsed:  # time strings that do not parse: the general reader sets them aside
            kept = [i for i in range(len(values)) if i not in set(rest)]
            rest = sorted([*rest, *(kept[k] for k in unparsed)])
            drop = set(unparsed)
            structs = [s for k, s in enumerate(structs) if k not in drop]
            messages = [m for k, m in enumerate(messages) if k not in drop]
            event_time = np.delete(event_time, unparsed)
        return self._assemble(structs, messages, event_time, len(values) - len(rest)), rest

    def _one_by_one(self, values: list[Any]) -> tuple[list[Any], list[int]]:
        decode, limit = self._decode, self.config.max_bytes
        structs: list[Any] = []
        rest: list[int] = []
        for i, v in enumerate(values):
            if not v or len(v) > limit:
                rest.append(i)
                continue
            try:
                structs.append(decode(v))
            except (msgspec.DecodeError, TypeError, RecursionError):
                rest.append(i)
        return structs, rest

    def _event_times(
        self, structs: list[Any], messages: Sequence[SourceMessage], now: float
    ) -> tuple[np.ndarray, list[int]]:
        """Event times as the general reader makes them; the positions of the records
        whose time it would set aside (it does, with the reason)."""
        raw = list(map(_T, structs))
        if set(map(type, raw)) <= {float}:
            return scale_epochs(np.array(raw, dtype=np.float64)), []
        out = np.empty(len(raw), dtype=np.float64)
        bad: list[int] = []
        require = self.config.require_event_time
        for k, v in enumerate(raw):
            if v is None:
                if require:
                    bad.append(k)
                ts = messages[k].timestamp
                out[k] = ts / 1000.0 if ts is not None else now
                continue
            try:
                out[k] = parse_event_time(v)  # a number, or a time string
            except ValueError:
                bad.append(k)
                out[k] = now
        return out, bad

    def _assemble(
        self,
        structs: list[Any],
        messages: Sequence[SourceMessage],
        event_time: np.ndarray,
        n_messages: int,
    ) -> DecodedBatch:
        n = len(structs)
        # one tuple per record, transposed: a column per struct field, in field order
        # (about twice as fast as one attribute getter per column)
        records = map(astuple, map(_F, structs))
        fields = list(zip(*records, strict=True)) or [()] * len(self._columns)
        by_name = dict(zip(self._columns, fields, strict=True))
        columns: dict[str, np.ndarray] = {}
        for name in self._features:
            column = _column(by_name[name], self._kinds[name])
            if column is not None:
                columns[name] = column
        if self._predictions:
            name = self._predictions[0]
            preds: Sequence[Any] = list(map(_P, structs))
            if None in preds:  # absent or null: the column may be among the features
                among = by_name[name]
                preds = [q if p is None else p for p, q in zip(preds, among, strict=True)]
            column = _column(preds, self._kinds[name])
            if column is not None:
                columns[name] = column
        ids: list[Any] = list(map(_I, structs))
        partitions = np.fromiter(map(_PARTITION, messages), np.int32, n)
        offsets = np.fromiter(map(_OFFSET, messages), np.int64, n)
        if None in ids:
            keys = [
                f"{m.topic}#{m.partition}#{m.offset}#0" if rid is None else rid
                for rid, m in zip(ids, messages, strict=True)
            ]
        else:
            keys = ids
        versions: list[Any] = list(map(_V, structs))
        if None in versions:
            default = self.config.default_model_version
            versions = [default if v is None else v for v in versions]
        heads = list(map(_HEADERS, messages))
        if any(heads):
            traces = [
                message_traceparent(m) if h else None for m, h in zip(messages, heads, strict=True)
            ]
        else:
            traces = [None] * n
        batch = DecodedBatch(
            columns=columns,
            event_time=event_time,
            request_id=objects(ids),
            row_key=row_keys(keys),
            model_version=objects(versions),
            traceparent=objects(traces),
            partition=partitions,
            offset=offsets,
            messages=n_messages,
        )
        if self.attributions is not None:
            logged = list(map(_A, structs))
            batch.attributions, batch.attribution_codes = self.attributions.convert_typed(logged)
        return batch


def _column(values: Sequence[Any], kind: Kind) -> np.ndarray | None:
    """One column's array: float64 (NaN where null or absent) or text objects (None
    where null or absent); None when no record has the key (the column is absent)."""
    if kind is Kind.NUMERIC:
        try:  # floats and None only: no scan for absent keys (UNSET would not convert)
            return np.array(values, dtype=np.float64)
        except TypeError:
            pass
    elif not any(map(is_, values, repeat(UNSET))):
        return objects(values)
    if all(map(is_, values, repeat(UNSET))):
        return None
    values = [None if v is UNSET else v for v in values]
    return np.array(values, dtype=np.float64) if kind is Kind.NUMERIC else objects(values)


def max_len(values: list[Any]) -> int:
    """The longest value (0 for an empty batch; a None value counts as 0)."""
    return max(map(len, filter(None, values)), default=0) if values else 0
