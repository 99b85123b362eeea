"""What a record-format reader hands to the batch assembler: per-row metadata gathered
while messages are read (the columns themselves are built once, at the end), and the
rows it has already set aside."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.ingest.batch import DecodeFailure, SourceMessage


@dataclass
class Rows:
    """Per-row metadata, one entry per prediction row, in row order."""

    message: list[SourceMessage] = field(default_factory=list)  # where each row came from
    index: list[int] = field(default_factory=list)  # the row's place in its message
    key_text: list[str] = field(default_factory=list)  # what row keys hash (KServe)
    request_id: list[Any] = field(default_factory=list)
    time_raw: list[Any] = field(default_factory=list)  # from the record, or None
    version: list[Any] = field(default_factory=list)
    trace: list[str | None] = field(default_factory=list)
    attribution: list[Any] = field(default_factory=list)  # logged attributions, or empty

    def __len__(self) -> int:
        return len(self.message)


# What a record-format reader returns: values per column (one per row, UNSET where a
# record lacks the key), the row metadata, the messages set aside, and the rows set aside
# by row index.
Read = tuple[Mapping[str, Sequence[Any]], Rows, list[DecodeFailure], dict[int, DecodeFailure]]


def mark(bad: dict[int, DecodeFailure], row: int, rows: Rows, reason: str, detail: str) -> None:
    """Set a row aside (the first problem found is the one reported)."""
    if row not in bad:
        bad[row] = DecodeFailure(reason, detail, rows.message[row])
