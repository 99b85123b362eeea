"""The file source for replay: JSON lines of prediction records (decoded exactly as Kafka
messages are), or a table (Parquet, CSV, or JSON lines of flat rows) whose columns are
the features.

Tables skip JSON decoding but go through the same windows, sketches and evaluation as
the agent. Without a time column, windows are counted in rows.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from detectors.profile import MISSING, ProfileError, category_strings, read_frame
from detectors.schema import Kind, Schema
from monitor.config.record import RecordConfig
from monitor.ingest.attributions import AttributionField, frame_attributions, missing_rows
from monitor.ingest.batch import DecodedBatch, DecodeFailure, RawMessage
from monitor.ingest.values import row_keys


def file_format(path: Path, declared: str | None = None) -> str:
    """ "records" for JSON lines of prediction records, "table" for anything tabular."""
    if declared in ("parquet", "csv"):
        return "table"
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes or ".csv" in suffixes:
        return "table"
    return "records"


def is_record_lines(path: Path, record: RecordConfig) -> bool:
    """JSON lines whose first object carries the features field are prediction records."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = orjson.loads(line)
                except orjson.JSONDecodeError:
                    return True  # let the decoder count it as a failure
                if isinstance(first, list):
                    return True
                head = record.features_field.split(".")[0]
                return isinstance(first, dict) and (head in first or "predictions" in first)
    return True


def iter_messages(path: Path, batch_lines: int = 5000) -> Iterator[list[RawMessage]]:
    """Each line as a RawMessage, in batches; the line number is the offset."""
    batch: list[RawMessage] = []
    topic = str(path)
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh):
            if not line.strip():
                continue
            batch.append(RawMessage(value=line.rstrip(b"\r\n"), topic=topic, offset=lineno))
            if len(batch) >= batch_lines:
                yield batch
                batch = []
    if batch:
        yield batch


def iter_table_batches(
    path: Path,
    schema: Schema,
    record: RecordConfig,
    batch_rows: int = 100_000,
    attributions: AttributionField | None = None,
) -> Iterator[DecodedBatch]:
    """Column batches of a table: schema columns as the sketch expects them (and the
    logged attributions ``attributions`` names). Lines of a JSON-lines table that are not
    JSON objects ride on the first batch as failures."""
    failures: list[DecodeFailure] = []
    if _is_json_lines(path):
        frame, failures = read_json_lines(path)
    else:
        frame = read_frame(path)
    first = True
    for batch in frame_batches(frame, schema, record, str(path), batch_rows, attributions):
        if first:
            batch.failures, first = failures, False
        yield batch
    if first and failures:  # no good line at all
        empty = DecodedBatch.empty()
        empty.failures = failures
        yield empty


def _is_json_lines(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    return any(s in suffixes for s in (".jsonl", ".ndjson", ".json")) and not any(
        s in suffixes for s in (".parquet", ".pq", ".csv")
    )


def read_json_lines(path: Path) -> tuple[pd.DataFrame, list[DecodeFailure]]:
    """A JSON-lines table read as ``read_frame`` reads it, less the lines that are not a
    JSON object (invalid JSON, numbers beyond float64, nesting past 1,024 levels): each
    of those is a failure at its line number, and the file is read on (decision 7 of
    docs/architecture.md: count a bad record and go on)."""
    try:
        return read_frame(path), []
    except ProfileError:
        pass  # find the lines that spoil it
    good: list[bytes] = []
    failures: list[DecodeFailure] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh):
            if not line.strip():
                continue
            where = RawMessage(value=None, topic=str(path), offset=lineno)
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                failures.append(DecodeFailure("invalid_json", f"line {lineno + 1}", where))
                continue
            if type(obj) is not dict:
                failures.append(DecodeFailure("not_an_object", f"line {lineno + 1}", where))
                continue
            good.append(line.rstrip(b"\r\n"))
    if not good:
        return pd.DataFrame(), failures
    frame = pd.read_json(io.BytesIO(b"\n".join(good)), lines=True, precise_float=True)
    return frame, failures


def frame_batches(
    frame: pd.DataFrame,
    schema: Schema,
    record: RecordConfig,
    origin: str,
    batch_rows: int = 100_000,
    attributions: AttributionField | None = None,
) -> Iterator[DecodedBatch]:
    for start in range(0, len(frame), batch_rows):
        part = frame.iloc[start : start + batch_rows]
        batch = frame_to_batch(part, schema, record, origin, start)
        if attributions is not None:
            batch.attributions, batch.attribution_codes = _table_attributions(part, attributions)
        yield batch


def _table_attributions(
    part: pd.DataFrame, field: AttributionField
) -> tuple[np.ndarray, np.ndarray]:
    """A table's logged attributions: the column (or PREFIX* columns) ``field`` names;
    without it, every row's are missing."""
    try:
        values, codes, _ = frame_attributions(part, field.path, field.features)
    except ValueError:
        return missing_rows(len(part), len(field.features))
    return values, codes


def frame_to_batch(
    part: pd.DataFrame, schema: Schema, record: RecordConfig, origin: str, first_row: int
) -> DecodedBatch:
    n = len(part)
    columns: dict[str, np.ndarray] = {}
    for col in schema.columns:
        if col.name not in part.columns:
            continue
        raw = part[col.name].to_numpy()
        if col.kind is Kind.NUMERIC:
            columns[col.name] = raw.astype(np.float64) if raw.dtype.kind in "fiub" else raw
        else:
            strings, miss = category_strings(raw)
            columns[col.name] = np.where(miss, MISSING, strings).astype(object)
    rows = np.arange(first_row, first_row + n)
    time_field = record.event_time_field
    if time_field in part.columns:
        event_time = _event_seconds(part[time_field])
    else:
        event_time = np.full(n, np.nan)
    if record.request_id_field in part.columns:
        ids = part[record.request_id_field].astype(str).to_numpy(dtype=object)
    else:
        ids = np.array([f"{origin}#{r}" for r in rows], dtype=object)
    if record.model_version_field in part.columns:
        versions = part[record.model_version_field].astype(str).to_numpy(dtype=object)
    else:
        versions = np.full(n, record.default_model_version, dtype=object)
    return DecodedBatch(
        columns=columns,
        event_time=event_time,
        request_id=ids,
        row_key=row_keys(ids),
        model_version=versions,
        traceparent=np.full(n, None, dtype=object),
        partition=np.zeros(n, dtype=np.int32),
        offset=rows.astype(np.int64),
        messages=n,
    )


def _event_seconds(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series):
        values = series.dt.tz_localize(None) if series.dt.tz is not None else series
        return values.astype("int64").to_numpy() / 1e9
    if pd.api.types.is_numeric_dtype(series):
        x = series.to_numpy(dtype=np.float64)
        return np.where(x > 1e11, x / 1000.0, x)
    parsed = pd.to_datetime(series, errors="coerce", utc=True)
    return np.where(parsed.isna(), np.nan, parsed.astype("int64").to_numpy() / 1e9)
