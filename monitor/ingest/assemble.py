"""Columns to arrays: the last step of every record format. The values a reader gathered
into one list per column become one numpy array each, the per-row metadata becomes event
times, request ids, row keys and versions, and rows with a bad value are set aside."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

import numpy as np
from msgspec import UNSET, UnsetType

from detectors.schema import Kind, Schema
from monitor.config.record import RecordConfig
from monitor.ingest.attributions import AttributionField, missing_rows
from monitor.ingest.batch import DecodedBatch, DecodeFailure
from monitor.ingest.rows import Rows, mark
from monitor.ingest.values import (
    TEXT_TYPES,
    categorical_column,
    numeric_column,
    objects,
    out_of_range,
    parse_event_time,
    row_keys,
    scale_epochs,
    text_or_none,
    type_name,
)

# A model version that is a number of more digits than this is not a version.
MAX_VERSION_CHARS = 256

_PARTITION = attrgetter("partition")
_OFFSET = attrgetter("offset")


class BatchAssembler:
    """Builds :class:`DecodedBatch` values for one model's schema."""

    def __init__(
        self, config: RecordConfig, schema: Schema, attributions: AttributionField | None = None
    ) -> None:
        self.config = config
        self._kinds = {c.name: c.kind for c in schema.columns}
        # the field of logged attributions (explain.source: record), else None
        self.attributions = attributions

    def finish(
        self,
        columns: Mapping[str, Sequence[Any]],
        rows: Rows,
        now: float,
        failures: list[DecodeFailure],
        bad: dict[int, DecodeFailure],
        n_messages: int,
    ) -> DecodedBatch:
        """The batch of ``rows``, ``columns`` holding one value per row (UNSET where a
        record lacks the key); rows in ``bad`` (or found bad here) are left out and
        reported after ``failures``."""
        n = len(rows)
        arrays: dict[str, np.ndarray] = {}
        # columns some records lack: the rows that name them
        named: dict[str, list[int]] = {}
        for name, values in columns.items():
            types = set(map(type, values))
            if UnsetType in types:  # some records lack the key (UNSET), others do not
                if len(types) == 1:
                    continue  # no record mentions this column
                named[name] = [i for i, v in enumerate(values) if v is not UNSET]
                values = [None if v is UNSET else v for v in values]
                types.discard(UnsetType)
                types.add(type(None))
            if dict in types or list in types:
                values = list(values)
                for i, v in enumerate(values):
                    if type(v) is dict or type(v) is list:
                        mark(
                            bad,
                            i,
                            rows,
                            "bad_value",
                            f"{name} is {type_name(v)}; values are numbers, text or null",
                        )
                        values[i] = None
                types = set(map(type, values))
            if int in types:  # integers no float64 (or no text) can hold
                values = self._huge_ints(name, values, rows, bad)
            if self._kinds[name] is Kind.NUMERIC:
                arrays[name] = numeric_column(values, types)
            else:
                arrays[name] = categorical_column(values, types)
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
            versions = [
                v if type(v) is str else self._version(i, v, rows, bad)
                for i, v in enumerate(versions)
            ]
        batch = DecodedBatch(
            columns=arrays,
            event_time=event_time,
            request_id=objects(request_id),
            row_key=row_keys(key_text),
            model_version=objects(versions),
            traceparent=objects(rows.trace),
            partition=np.fromiter(map(_PARTITION, rows.message), np.int32, n),
            offset=np.fromiter(map(_OFFSET, rows.message), np.int64, n),
            failures=failures,
            messages=n_messages,
        )
        if self.attributions is not None:
            logged = rows.attribution if len(rows.attribution) == n else [None] * n
            batch.attributions, batch.attribution_codes = self.attributions.convert(logged)
        if bad:
            # A column only set-aside rows name is absent from the rows kept.
            for name, where in named.items():
                if all(i in bad for i in where):
                    del batch.columns[name]
            keep = np.ones(n, dtype=bool)
            keep[list(bad)] = False
            batch = batch.take(keep)
            batch.failures = failures + [bad[i] for i in sorted(bad)]
            batch.messages = n_messages
        return batch

    def concat(self, parts: list[DecodedBatch]) -> DecodedBatch:
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
        batch = DecodedBatch(
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
        if self.attributions is not None and any(p.attributions is not None for p in parts):
            d = len(self.attributions.features)
            filled = [
                (p.attributions, p.attribution_codes)
                if p.attributions is not None and p.attribution_codes is not None
                else missing_rows(p.rows, d)
                for p in parts
            ]
            batch.attributions = np.concatenate([a for a, _ in filled])
            batch.attribution_codes = np.concatenate([c for _, c in filled])
        return batch

    def _huge_ints(
        self, name: str, values: Sequence[Any], rows: Rows, bad: dict[int, DecodeFailure]
    ) -> Sequence[Any]:
        """``values`` with integers beyond float64 set aside as ``bad_value`` (None in
        their place): a number no sketch can count, and for a categorical one whose text
        may be too long to make."""
        huge = out_of_range(values)
        if not huge:
            return values
        values = list(values)
        for i in huge:
            mark(bad, i, rows, "bad_value", f"{name} is an integer beyond the range of a float")
            values[i] = None
        return values

    def _version(self, i: int, v: Any, rows: Rows, bad: dict[int, DecodeFailure]) -> str:
        """Text of a model version that is not text; a row without one is set aside."""
        if type(v) is not dict and type(v) is not list:
            version = text_or_none(v)
            if version is not None and len(version) <= MAX_VERSION_CHARS:
                return version
        mark(
            bad,
            i,
            rows,
            "bad_value",
            f"{self.config.model_version_field!r} is {type_name(v)}, not text",
        )
        return self.config.default_model_version

    def _event_times(self, rows: Rows, now: float, bad: dict[int, DecodeFailure]) -> np.ndarray:
        raw = rows.time_raw
        if raw and set(map(type, raw)) <= {int, float} and not out_of_range(raw):
            return scale_epochs(np.asarray(raw, dtype=np.float64))
        out = np.empty(len(raw), dtype=np.float64)
        require = self.config.require_event_time and self.config.format == "driftline"
        for i, v in enumerate(raw):
            if v is None:
                if require:
                    mark(
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
                mark(bad, i, rows, "bad_timestamp", str(exc))
                out[i] = now
        return out

    def _request_ids(self, rows: Rows, bad: dict[int, DecodeFailure]) -> list[str | None]:
        ids = rows.request_id
        if set(map(type, ids)) <= TEXT_TYPES:
            return ids
        fixed: list[str | None] = []
        for i, v in enumerate(ids):
            if v is None or type(v) is str:
                fixed.append(v)
            elif (type(v) is int or type(v) is float) and (t := text_or_none(v)) is not None:
                fixed.append(t)
            else:
                mark(
                    bad,
                    i,
                    rows,
                    "bad_value",
                    f"{self.config.request_id_field!r} is {type_name(v)}, not text",
                )
                fixed.append(None)
        return fixed
