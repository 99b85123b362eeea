"""Labels from a file, for ``driftline replay --labels``: JSON lines of label records
(decoded exactly as the labels topic's messages are) or a table (Parquet, CSV, JSON lines
of flat rows) with the request id, label, and optionally time and KPI columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from detectors.profile import read_frame
from monitor.config.labels import KpiConfig, LabelsConfig
from monitor.ingest.files import iter_messages
from monitor.labels.decode import LabelBatch, LabelDecoder


class LabelFileError(ValueError):
    """A labels file that cannot be read; the message names it and the fix."""


def read_labels(path: Path, config: LabelsConfig, kpis: Sequence[KpiConfig] = ()) -> LabelBatch:
    """Every label of ``path``, in file order (failures in ``.failures``)."""
    if not path.exists():
        raise LabelFileError(f"{path}: no such labels file")
    if _is_record_lines(path, config):
        decoder = LabelDecoder(config, kpis)
        parts = [decoder.decode(batch) for batch in iter_messages(path)]
        if not parts:
            return LabelBatch.from_columns([], [])
        out = LabelBatch.from_columns(
            np.concatenate([p.request_id for p in parts]).tolist(),
            np.concatenate([p.label for p in parts]).tolist(),
            np.concatenate([p.event_time for p in parts]),
            {k: np.concatenate([p.kpis[k] for p in parts]) for k in parts[0].kpis},
        )
        out.failures = [f for p in parts for f in p.failures]
        return out
    frame = read_frame(path)
    for key in ("request_id_field", "label_field"):
        column = getattr(config, key)
        if column not in frame.columns:
            raise LabelFileError(
                f"{path}: no {column!r} column (labels.{key}); the columns are "
                f"{', '.join(map(str, frame.columns))}"
            )
    times = None
    if config.event_time_field in frame.columns:
        from monitor.ingest.files import _event_seconds

        times = _event_seconds(frame[config.event_time_field])
    kpi_columns = {
        k.name: frame[k.path].to_numpy(dtype=np.float64)
        for k in kpis
        if k.from_ == "labels" and k.path in frame.columns
    }
    return LabelBatch.from_columns(
        frame[config.request_id_field].astype(str).tolist(),
        frame[config.label_field].tolist(),
        times,
        kpi_columns,
    )


def _is_record_lines(path: Path, config: LabelsConfig) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes or ".csv" in suffixes:
        return False
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = orjson.loads(line)
                except orjson.JSONDecodeError:
                    return True
                head = config.label_field.split(".")[0]
                nested = "." in config.label_field or "." in config.request_id_field
                return isinstance(first, list) or (
                    nested and isinstance(first, dict) and head in first
                )
    return True
