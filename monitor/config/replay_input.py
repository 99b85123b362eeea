"""What a JSON-lines file given to ``driftline replay`` without ``-c`` holds.

Without a configuration replay must tell flat rows (``{"amount": 12.5, "country":
"DE"}``: the keys are the columns) from driftline's own prediction records
(``{"features": {...}, "prediction": ...}``, one or a batch), which it can decode with the
default ``record:`` settings, and from KServe v2 inference records, whose tensor columns
only a configuration can name. Reading nested records as flat rows would give every
feature 100% missing and a clean verdict: a silent wrong answer, so the first record
decides and what cannot be read right is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import orjson

from monitor.config.errors import ConfigError

__all__ = ["Layout", "first_record", "record_layout"]

Layout = Literal["flat", "driftline"]

# The first record is looked for in this many bytes (a record is at most record.max_bytes).
_SNIFF_BYTES = 4 << 20


def first_record(path: Path) -> Any:
    """The first non-blank line of ``path`` parsed as JSON (None: none, or not JSON)."""
    try:
        with path.open("rb") as fh:
            read = 0
            for line in fh:
                read += len(line)
                if line.strip():
                    try:
                        return orjson.loads(line)
                    except orjson.JSONDecodeError:
                        return None
                if read > _SNIFF_BYTES:
                    return None
    except OSError:
        return None
    return None


def record_layout(
    path: Path, *, features_field: str = "features", batch_field: str = "predictions"
) -> tuple[Layout, dict[str, Any] | None]:
    """("driftline" or "flat", the first single record) of a JSON-lines file.

    Raises ConfigError naming the file when it holds KServe v2 records, which need a
    configuration (``record.format: kserve_v2`` and the tensors' column names).
    """
    first = first_record(path)
    record: Any = first
    if isinstance(first, list):
        record = first[0] if first else None
    elif isinstance(first, dict) and isinstance(first.get(batch_field), list):
        batch = first[batch_field]
        record = batch[0] if batch else None
    if not isinstance(record, dict):
        # a batch of records, or nothing readable: the decoder counts what it cannot read
        return ("driftline" if isinstance(first, list | dict) else "flat"), None
    if isinstance(record.get("inputs"), list) or isinstance(record.get("outputs"), list):
        raise ConfigError(
            "replay",
            [
                (
                    "--input",
                    f"{path} holds KServe v2 inference records (inputs/outputs tensors); "
                    "their columns need a configuration: pass -c monitor.yaml with "
                    "record.format: kserve_v2 and record.kserve_input_columns",
                )
            ],
        )
    nested = isinstance(record.get(features_field), dict)
    if nested or record is not first:
        return "driftline", record
    return "flat", record
