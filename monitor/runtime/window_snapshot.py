"""The binary form of the window state in a checkpoint: a JSON header (parameters, counters,
panes) followed by the panes' sketches and the deduplicator as blobs."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

SNAPSHOT_FORMAT = 1


_MAGIC = b"DLWM"


_HEAD = struct.Struct("<4sHI")  # magic, format, meta length


class SnapshotError(ValueError):
    """A window snapshot that cannot be restored (corrupt, or other window parameters)."""


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _float_or_none(x: Any) -> float | None:
    return None if x is None else float(x)


def _float_or(x: Any, default: float) -> float:
    return default if x is None else float(x)


def _read_snapshot(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    if len(data) < _HEAD.size:
        raise SnapshotError(f"window state is truncated ({len(data)} bytes)")
    magic, fmt, meta_len = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise SnapshotError("not a window state (bad magic)")
    if fmt != SNAPSHOT_FORMAT:
        raise SnapshotError(f"window state format {fmt} is not supported ({SNAPSHOT_FORMAT})")
    pos = _HEAD.size + meta_len
    try:
        meta = json.loads(data[_HEAD.size : pos])
        lengths = [int(n) for n in meta["blobs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"corrupt window state header: {exc}") from exc
    if pos + sum(lengths) != len(data):
        raise SnapshotError(
            f"window state is truncated or padded: {len(data)} bytes, expected {pos + sum(lengths)}"
        )
    blobs = []
    for n in lengths:
        blobs.append(data[pos : pos + n])
        pos += n
    return meta, blobs
