"""Partials: what agents send the aggregator through the partials topic.

Every message is keyed by the model's name (one partition of the partials topic, and one
aggregator, holds a model's partials) and is one of four kinds:

* ``window`` — one closed window of one source partition and model version as an agent
  saw it: the sketch (``WindowSketch.to_bytes``; merging is exact, docs/architecture.md
  decision 2), row, late and duplicate counts, the offset range of its rows, a few
  traceparents, and the *origin* of the partition's state it comes from (the offset that
  state started at); ``handoff`` marks a window handed off open;
* ``progress`` — per partition the agent owns, empty ones included: the origin of its
  state, whether that was the partition's beginning, how far its windows are closed
  (``horizon``: every window ending at or before it is closed and sent) and whether it
  holds no open row (idle); so the aggregator can tell "no traffic" from "not reported";
* ``handoff`` — a partition left this agent: the offset its state ends at (where the next
  owner starts), its origin, how far its windows were closed, and the windows that were
  open and went out as pieces;
* ``judged`` — the aggregator's own marker after it judged a window;
* ``revision`` — a window partial's performance state again, after labels that arrived
  once the window was closed changed it (the same window, version, partition and
  origin; the performance bytes only, no sketch): the aggregator swaps it in, and
  re-evaluates and republishes the window's report (``revised: true``) if it has judged
  it already.

A window partial (and a revision) of a model whose profile learnt from labels also
carries the window's ``PerformanceState`` (``detectors/performance/state.py``; exact
sums and a bottom-k sample by row hash, so merging the partitions' states gives the state
one agent would have had).

Every message carries the sender's id (an agent's is the identity of its window state,
kept in its state directory), its ``epoch`` (one more at every start from that state:
a message of an older epoch is stale), the consumer group's generation (for a partition
claimed by two agents, the later generation owns it) and the reference profile's hash.
An agent sends a window's partial before any message whose horizon passes that window,
and awaits each send, so messages of one agent arrive in the order they were made.

Wire format: ``DLPT`` magic, a format number, the JSON header's length, the header, the
sketch bytes (window partials only), then the performance state's bytes (``perf`` in the
header is their length). A message with a performance state is format 2, so an older
aggregator refuses it by name instead of misreading it; format 1 (no performance state)
is still read and written.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
#: The format of a message that carries a performance state (``perf``).
FORMAT_PERFORMANCE = 2
_MAGIC = b"DLPT"
_HEAD = struct.Struct("<4sHI")  # magic, format, header length
#: Largest header accepted (a partial's header is a few hundred bytes per partition).
MAX_HEADER = 1 << 20


class PartialError(ValueError):
    """A message on the partials topic that is not a partial this aggregator can use."""


Kind = str  # "window" | "progress" | "handoff" | "judged" | "revision"
KINDS = ("window", "progress", "handoff", "judged", "revision")


@dataclass(frozen=True)
class PartitionProgress:
    """A progress message's word on one owned partition."""

    origin: int  # offset the agent's state of this partition started at
    fresh: bool  # that offset was the partition's beginning (nothing committed before)
    horizon: float | None  # windows ending at or before this are closed and sent
    idle: bool  # no record for idle_timeout and no open window: nothing more to come
    first_time: float | None = None  # event time of the first row of this state


@dataclass(frozen=True)
class Partial:
    """One message of the partials topic (see the module docstring)."""

    kind: Kind
    model: str
    agent_id: str
    epoch: int
    generation: int
    reference_hash: str
    sent_at: float = 0.0
    # window partials and handoffs: the source partition and its state's origin
    partition: int | None = None
    origin: int = 0
    fresh: bool = False
    # window partials (and judged markers: the window)
    window: tuple[float, float] | None = None  # [start, end) in event-time seconds
    model_version: str | None = None
    rows: int = 0
    late: int = 0
    duplicates: int = 0
    offsets: tuple[int, int] | None = None  # first and last offset of the rows
    traceparents: tuple[str, ...] = ()
    closed_at: float = 0.0  # processing time the agent closed the window
    handoff: bool = False
    sketch: bytes = b""
    # window partials and revisions: PerformanceState.to_bytes(), or b"" (none)
    performance: bytes = b""
    # progress
    owned: dict[int, PartitionProgress] = field(default_factory=dict)
    # handoff: the offset the partition's state ends at, and the windows handed off open
    at: int = 0
    open_windows: tuple[tuple[float, float], ...] = ()
    horizon: float | None = None  # windows ending at or before this were closed and sent

    @property
    def is_window(self) -> bool:
        return self.kind == "window"

    def to_bytes(self) -> bytes:
        head: dict[str, Any] = {
            "kind": self.kind,
            "model": self.model,
            "agent": self.agent_id,
            "epoch": self.epoch,
            "generation": self.generation,
            "reference": self.reference_hash,
            "sent_at": self.sent_at,
        }
        if self.kind in ("window", "handoff", "revision"):
            head.update(partition=self.partition, origin=self.origin, fresh=self.fresh)
        if self.kind in ("window", "judged", "revision"):
            head["window"] = None if self.window is None else list(self.window)
        if self.kind == "revision":
            head.update(model_version=self.model_version, rows=self.rows)
        if self.kind == "window":
            head.update(
                model_version=self.model_version,
                rows=self.rows,
                late=self.late,
                duplicates=self.duplicates,
                offsets=None if self.offsets is None else list(self.offsets),
                traceparents=list(self.traceparents),
                closed_at=self.closed_at,
                handoff=self.handoff,
            )
        if self.kind == "progress":
            head["owned"] = [
                [p, o.origin, o.fresh, o.horizon, o.idle, o.first_time]
                for p, o in sorted(self.owned.items())
            ]
        if self.kind == "handoff":
            head.update(at=self.at, open=[list(w) for w in self.open_windows], horizon=self.horizon)
        fmt = FORMAT
        if self.performance:
            head["perf"] = len(self.performance)
            fmt = FORMAT_PERFORMANCE
        raw = json.dumps(head, separators=(",", ":"), allow_nan=False).encode()
        return _HEAD.pack(_MAGIC, fmt, len(raw)) + raw + self.sketch + self.performance

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Partial:
        """Parse a message value; ``PartialError`` says what is wrong with it."""
        if data is None or len(data) < _HEAD.size:
            raise PartialError("not a partial (too short)")
        magic, fmt, n = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise PartialError("not a partial (bad magic)")
        if fmt not in (FORMAT, FORMAT_PERFORMANCE):
            raise PartialError(
                f"partial format {fmt}; this aggregator reads {FORMAT} and {FORMAT_PERFORMANCE}"
            )
        if n > MAX_HEADER or _HEAD.size + n > len(data):
            raise PartialError("truncated partial header")
        try:
            h = json.loads(data[_HEAD.size : _HEAD.size + n])
            kind = str(h["kind"])
            if kind not in KINDS:
                raise ValueError(kind)
            window = h.get("window")
            offsets = h.get("offsets")
            partition = h.get("partition")
            body = bytes(data[_HEAD.size + n :])
            perf = int(h.get("perf", 0))
            if not 0 <= perf <= len(body):
                raise ValueError("perf")
            sketch, performance = body[: len(body) - perf], body[len(body) - perf :]
            return cls(
                kind=kind,
                model=str(h["model"]),
                agent_id=str(h["agent"]),
                epoch=int(h["epoch"]),
                generation=int(h["generation"]),
                reference_hash=str(h["reference"]),
                sent_at=float(h.get("sent_at", 0.0)),
                partition=None if partition is None else int(partition),
                origin=int(h.get("origin", 0)),
                fresh=bool(h.get("fresh", False)),
                window=None if window is None else (float(window[0]), float(window[1])),
                model_version=(
                    None if kind not in ("window", "revision") else str(h["model_version"])
                ),
                rows=int(h.get("rows", 0)),
                late=int(h.get("late", 0)),
                duplicates=int(h.get("duplicates", 0)),
                offsets=None if offsets is None else (int(offsets[0]), int(offsets[1])),
                traceparents=tuple(str(t) for t in h.get("traceparents", [])),
                closed_at=float(h.get("closed_at", 0.0)),
                handoff=bool(h.get("handoff", False)),
                sketch=sketch,
                performance=performance,
                owned={
                    int(p): PartitionProgress(int(o), bool(f), _opt(z), bool(i), _opt(t))
                    for p, o, f, z, i, t in h.get("owned", [])
                },
                at=int(h.get("at", 0)),
                open_windows=tuple((float(a), float(b)) for a, b in h.get("open", [])),
                horizon=_opt(h.get("horizon")),
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise PartialError(f"unreadable partial header: {type(exc).__name__}") from exc


def _opt(x: object) -> float | None:
    return None if x is None else float(x)  # type: ignore[arg-type]
