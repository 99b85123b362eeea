"""Partials: what an agent sends the aggregator through the partials topic.

Two kinds of message, both keyed by the model's name (so one partition of the partials
topic, and one aggregator, holds a model's partials):

* a **window partial** — one closed window of one model version as this agent saw it:
  the sketch (``WindowSketch.to_bytes``; merging is exact, docs/architecture.md decision
  2), its row, late and duplicate counts, the source partitions and offset ranges its
  rows came from, and a few traceparents;
* a **progress** message — no window: the partitions this agent owns, how far its windows
  are closed (``horizon``: every window ending at or before it is closed and its partial
  sent) and whether it holds rows of no open window at all (``drained``: its owned
  partitions are idle and it has no open pane).

Every message carries the agent's id (the identity of its window state: generated once
and kept in its checkpoints), its ``epoch`` (one more at every start from that state:
fencing, a message of an older epoch is stale), the consumer group's generation when it
was sent (ownership: for a partition claimed by two agents, the later generation wins),
and the reference profile's hash. An agent sends a window's partial before any message
whose horizon passes that window's end, and awaits each send, so the aggregator that
sees an owner's horizon past a window has every partial of that window from that owner.

Wire format: ``DLPT`` magic, a format number, the JSON header's length, the header, and
the sketch bytes (none for progress).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
_MAGIC = b"DLPT"
_HEAD = struct.Struct("<4sHI")  # magic, format, header length
#: Largest header accepted (a partial's header is a few hundred bytes per partition).
MAX_HEADER = 1 << 20


class PartialError(ValueError):
    """A message on the partials topic that is not a partial this aggregator can use."""


@dataclass(frozen=True)
class Partial:
    """One message of the partials topic (see the module docstring)."""

    model: str
    agent_id: str
    epoch: int
    generation: int
    reference_hash: str
    owned: tuple[int, ...]
    horizon: float | None  # windows ending at or before this are closed (None: none yet)
    drained: bool = False
    sent_at: float = 0.0
    # window partials only
    window: tuple[float, float] | None = None  # [start, end) in event-time seconds
    model_version: str | None = None
    rows: int = 0
    late: int = 0
    duplicates: int = 0
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition -> [lo, hi, rows]
    traceparents: tuple[str, ...] = ()
    closed_at: float = 0.0  # processing time the agent closed the window
    sketch: bytes = b""

    @property
    def is_window(self) -> bool:
        return self.window is not None

    def to_bytes(self) -> bytes:
        head: dict[str, Any] = {
            "model": self.model,
            "agent": self.agent_id,
            "epoch": self.epoch,
            "generation": self.generation,
            "reference": self.reference_hash,
            "owned": list(self.owned),
            "horizon": self.horizon,
            "drained": self.drained,
            "sent_at": self.sent_at,
        }
        if self.window is not None:
            head.update(
                window=list(self.window),
                model_version=self.model_version,
                rows=self.rows,
                late=self.late,
                duplicates=self.duplicates,
                offsets=[[p, *r] for p, r in sorted(self.offsets.items())],
                traceparents=list(self.traceparents),
                closed_at=self.closed_at,
            )
        raw = json.dumps(head, separators=(",", ":"), allow_nan=False).encode()
        return _HEAD.pack(_MAGIC, FORMAT, len(raw)) + raw + self.sketch

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Partial:
        """Parse a message value; ``PartialError`` says what is wrong with it."""
        if data is None or len(data) < _HEAD.size:
            raise PartialError("not a partial (too short)")
        magic, fmt, n = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise PartialError("not a partial (bad magic)")
        if fmt != FORMAT:
            raise PartialError(f"partial format {fmt}; this aggregator reads {FORMAT}")
        if n > MAX_HEADER or _HEAD.size + n > len(data):
            raise PartialError("truncated partial header")
        try:
            h = json.loads(data[_HEAD.size : _HEAD.size + n])
            window = h.get("window")
            return cls(
                model=str(h["model"]),
                agent_id=str(h["agent"]),
                epoch=int(h["epoch"]),
                generation=int(h["generation"]),
                reference_hash=str(h["reference"]),
                owned=tuple(int(p) for p in h["owned"]),
                horizon=None if h["horizon"] is None else float(h["horizon"]),
                drained=bool(h.get("drained", False)),
                sent_at=float(h.get("sent_at", 0.0)),
                window=None if window is None else (float(window[0]), float(window[1])),
                model_version=None if window is None else str(h["model_version"]),
                rows=int(h.get("rows", 0)),
                late=int(h.get("late", 0)),
                duplicates=int(h.get("duplicates", 0)),
                offsets={int(p): [int(a), int(b), int(c)] for p, a, b, c in h.get("offsets", [])},
                traceparents=tuple(str(t) for t in h.get("traceparents", [])),
                closed_at=float(h.get("closed_at", 0.0)),
                sketch=bytes(data[_HEAD.size + n :]),
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise PartialError(f"unreadable partial header: {type(exc).__name__}") from exc
