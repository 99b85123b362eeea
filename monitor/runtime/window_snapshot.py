"""The binary form of the window state in a checkpoint: a JSON header (parameters, counters,
panes, per-partition progress) followed by the panes' sketches and the deduplicator as
blobs."""

from __future__ import annotations

import io
import json
import math
import struct
from typing import Any

from detectors.sketch import WindowSketch
from monitor.ingest.dedupe import Deduplicator
from monitor.runtime.panes import _Pane

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


_LAYOUT = ("size", "slide", "rows", "dedupe", "reservoir_size", "segment_by_version")


def write_state(m: Any) -> bytes:
    """``WindowManager.snapshot()``: everything needed to continue with the same windows."""
    blobs: list[bytes] = []
    panes = []
    for (seg, index), pane in sorted(m._panes.items()):
        panes.append(
            {
                "segment": seg,
                "index": index,
                "rows": pane.rows,
                "t_min": _finite_or_none(pane.t_min),
                "t_max": _finite_or_none(pane.t_max),
                "traceparents": pane.traceparents,
                "duplicates": pane.duplicates,
                "offsets": [[p, *r] for p, r in sorted(pane.offsets.items())],
                "sketch": len(blobs),
            }
        )
        blobs.append(pane.sketch.to_bytes())
    dedupe_blob = None
    if m._dedupe is not None:
        dedupe_blob = len(blobs)
        blobs.append(m._dedupe.to_bytes())
    meta = {
        "profile": m.profile.content_hash,
        "params": m._params(),
        "closed_to": m._closed_to,
        "max_event": m._max_event,
        "partitions": m._clock.to_json(),
        "last_activity": m._last_activity,
        "pending_late": m._pending_late,
        "pending_dup": m._pending_dup,
        "row_base": m._row_base,
        "accepted_total": m.accepted_total,
        "late_total": m.late_total,
        "duplicates_total": m.duplicates_total,
        "panes": panes,
        "dedupe": dedupe_blob,
        "blobs": [len(b) for b in blobs],
    }
    head = json.dumps(meta, separators=(",", ":")).encode()
    buf = io.BytesIO()
    buf.write(_HEAD.pack(_MAGIC, SNAPSHOT_FORMAT, len(head)))
    buf.write(head)
    for blob in blobs:
        buf.write(blob)
    return buf.getvalue()


def read_state(out: Any, data: bytes, now: float | None) -> None:
    """Load ``data`` into a fresh ``WindowManager`` built with the current parameters."""
    profile = out.profile
    meta, blobs = _read_snapshot(data)
    if meta["profile"] != profile.content_hash:
        raise SnapshotError(
            f"window state was built on reference {str(meta['profile'])[:12]}, "
            f"not {profile.short_hash}"
        )
    saved = meta["params"]
    current = out._params()
    changed = [
        f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in _LAYOUT if saved.get(k) != current[k]
    ]
    if changed:
        raise SnapshotError("window parameters changed since the snapshot: " + ", ".join(changed))
    try:
        out._closed_to = int(meta["closed_to"])
        out._max_event = _float_or_none(meta["max_event"])
        out._last_activity = _float_or_none(meta["last_activity"])
        if now is not None and out._last_activity is not None:
            out._last_activity = float(now)
        # Older snapshots have no per-partition progress: their one maximum stands for
        # partition 0 until the partitions' own rows come.
        rows = meta.get("partitions")
        if rows is None and out._max_event is not None:
            rows = [[0, out._max_event, out._last_activity]]
        out._clock.load_json(rows or [], now)
        out._pending_late = {str(k): int(v) for k, v in meta["pending_late"].items()}
        out._pending_dup = {str(k): int(v) for k, v in meta["pending_dup"].items()}
        out._row_base = {str(k): int(v) for k, v in meta["row_base"].items()}
        out.accepted_total = int(meta["accepted_total"])
        out.late_total = {str(k): int(v) for k, v in meta["late_total"].items()}
        out.duplicates_total = {str(k): int(v) for k, v in meta["duplicates_total"].items()}
        for entry in meta["panes"]:
            sketch = WindowSketch.from_bytes(profile, blobs[entry["sketch"]])
            pane = _Pane(
                sketch=sketch,
                rows=int(entry["rows"]),
                t_min=_float_or(entry["t_min"], math.inf),
                t_max=_float_or(entry["t_max"], -math.inf),
                traceparents=[str(x) for x in entry["traceparents"]],
                duplicates=int(entry["duplicates"]),
                offsets={
                    int(p): [int(a), int(b), int(n)] for p, a, b, n in entry.get("offsets", [])
                },
            )
            out._panes[(str(entry["segment"]), int(entry["index"]))] = pane
        if meta["dedupe"] is not None:
            dedupe = Deduplicator.from_bytes(blobs[meta["dedupe"]])
            dedupe.max_ids = out.dedupe_max_ids
            dedupe.horizon_seconds = out.size + out._pane_len + out.allowed_lateness
            out._dedupe = dedupe
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotError(f"corrupt window state: {exc}") from exc
