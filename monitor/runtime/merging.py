"""The aggregator's bookkeeping: which partials of which windows it holds, who owns each
source partition, and when a window is ready to be judged. No I/O (the Kafka side is
``monitor/runtime/aggregator.py``), so every rule here is unit-tested directly.

Rules (docs/agent.md, "Scaling out"):

* A window partial is kept per (window, model version, agent). Another one for the same
  key replaces it only when it comes from a later epoch of that agent (a restarted agent
  closes the window again from its checkpoint, possibly with fewer partitions); the same
  one again is a *repeat*, one from an earlier epoch is *stale*: both are ignored, so
  reading the partials topic twice (after a restart) changes nothing.
* A source partition is *covered* for a window when its owner — the agent whose latest
  message claims it with the highest group generation — has closed past the window's end
  (its ``horizon``), or holds nothing open at all (``drained``). An agent that owns no
  partition now but still holds rows of open windows (its state outlived a rebalance)
  also holds the window back while it is heard from.
* A window is judged once: when every source partition is covered, or when
  ``deadline`` seconds (processing time) have passed since its first partial; then the
  report says ``partial: true`` and which partitions it had. A window partial arriving
  after its window was judged is counted *late* and dropped.
* Two agents' partials covering the same offsets of one partition would count those
  records twice (an agent that published a window and died before committing its
  offsets, never to come back); the window is then reported as partial with the reason
  ``overlap``.
"""

from __future__ import annotations

import io
import json
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from detectors.results import Coverage
from monitor.runtime.partials import Partial

Bounds = tuple[float, float]
#: How many judged windows are remembered (to drop their late partials).
MAX_EVALUATED = 10_000
_LEN = struct.Struct("<I")


@dataclass
class AgentStatus:
    """What the latest message of an agent said about it."""

    agent_id: str
    epoch: int
    generation: int
    owned: tuple[int, ...]
    horizon: float | None
    drained: bool
    heard_at: float  # processing time it was received

    def closed_past(self, end: float) -> bool:
        return self.drained or (self.horizon is not None and self.horizon >= end)


@dataclass(frozen=True)
class DueWindow:
    """A window ready to be judged: its partials, what they cover, and why it is due."""

    bounds: Bounds
    partials: tuple[Partial, ...]
    coverage: Coverage
    complete: bool
    overlap: bool
    first_seen: float


class MergeState:
    """Partials of open windows, agents' statuses and judged windows of one model."""

    def __init__(self, model: str, reference_hash: str, partitions: int, deadline: float) -> None:
        self.model = model
        self.reference_hash = reference_hash
        self.partitions = int(partitions)
        self.deadline = float(deadline)
        self.windows: dict[Bounds, dict[tuple[str, str], Partial]] = {}
        self.first_seen: dict[Bounds, float] = {}
        self.agents: dict[str, AgentStatus] = {}
        self.evaluated: dict[Bounds, float] = {}
        self.counts: Counter[str] = Counter()

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, p: Partial, now: float) -> str:
        """File one message; returns its outcome: ``accepted``, ``repeated``, ``stale``,
        ``late`` or ``foreign`` (another model or reference profile)."""
        outcome = self._receive(p, now)
        self.counts[outcome] += 1
        return outcome

    def _receive(self, p: Partial, now: float) -> str:
        if p.model != self.model or p.reference_hash != self.reference_hash:
            return "foreign"
        status = self.agents.get(p.agent_id)
        if status is not None and p.epoch < status.epoch:
            return "stale"
        self.agents[p.agent_id] = AgentStatus(
            p.agent_id, p.epoch, p.generation, p.owned, p.horizon, p.drained, now
        )
        if p.window is None:
            return "accepted"
        if p.window in self.evaluated:
            return "late"
        held = self.windows.setdefault(p.window, {})
        key = (str(p.model_version), p.agent_id)
        old = held.get(key)
        if old is not None:
            if old.epoch > p.epoch:
                return "stale"
            if old.epoch == p.epoch and old.sketch == p.sketch and old.offsets == p.offsets:
                return "repeated"
        held[key] = p
        self.first_seen.setdefault(p.window, now)
        return "accepted"

    # -- judging -----------------------------------------------------------------------------

    def owners(self) -> dict[int, AgentStatus]:
        """Each source partition's owner: the latest claim by group generation."""
        out: dict[int, AgentStatus] = {}
        for status in self.agents.values():
            for part in status.owned:
                cur = out.get(part)
                if cur is None or (status.generation, status.heard_at) > (
                    cur.generation,
                    cur.heard_at,
                ):
                    out[part] = status
        return out

    def coverage(self, bounds: Bounds, now: float) -> tuple[Coverage, bool]:
        """What the window's partials cover, and whether nothing more is to come."""
        owners = self.owners()
        end = bounds[1]
        reported = tuple(
            p for p in range(self.partitions) if p in owners and owners[p].closed_past(end)
        )
        owner_ids = {s.agent_id for s in owners.values()}
        holding = any(
            s.agent_id not in owner_ids
            and not s.closed_past(end)
            and now - s.heard_at < self.deadline
            for s in self.agents.values()
        )
        agents = len({agent for _, agent in self.windows.get(bounds, {})})
        coverage = Coverage(self.partitions, reported, agents)
        return coverage, len(reported) == self.partitions and not holding

    def due(self, now: float) -> list[DueWindow]:
        """Windows to judge now, by end time: complete ones, and those past the deadline."""
        out: list[DueWindow] = []
        for bounds in sorted(self.windows, key=lambda b: (b[1], b[0])):
            coverage, complete = self.coverage(bounds, now)
            first = self.first_seen.get(bounds, now)
            if not complete and now - first < self.deadline:
                continue
            partials = tuple(self.windows[bounds].values())
            out.append(DueWindow(bounds, partials, coverage, complete, _overlap(partials), first))
        return out

    def done(self, bounds: Bounds, now: float) -> None:
        """Forget a judged window's partials; its late partials will be dropped."""
        self.windows.pop(bounds, None)
        self.first_seen.pop(bounds, None)
        self.evaluated[bounds] = now
        while len(self.evaluated) > MAX_EVALUATED:
            del self.evaluated[min(self.evaluated, key=lambda b: (b[1], b[0]))]

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything above, so a restarted aggregator (or the next owner) goes on."""
        blobs = [p.to_bytes() for held in self.windows.values() for p in held.values()]
        meta = {
            "model": self.model,
            "reference": self.reference_hash,
            "first_seen": [[*b, t] for b, t in self.first_seen.items()],
            "agents": [
                [s.agent_id, s.epoch, s.generation, list(s.owned), s.horizon, s.drained, s.heard_at]
                for s in self.agents.values()
            ],
            "evaluated": [[*b, t] for b, t in self.evaluated.items()],
            "counts": dict(self.counts),
        }
        buf = io.BytesIO()
        head = json.dumps(meta, separators=(",", ":")).encode()
        buf.write(_LEN.pack(len(head)) + head)
        for blob in blobs:
            buf.write(_LEN.pack(len(blob)) + blob)
        return buf.getvalue()

    def restore(self, data: bytes, now: float) -> None:
        """Load :meth:`snapshot`; idle and deadline clocks restart at ``now``."""
        (n,) = _LEN.unpack_from(data)
        meta = json.loads(data[_LEN.size : _LEN.size + n])
        if meta["model"] != self.model or meta["reference"] != self.reference_hash:
            raise ValueError("aggregator state of another model or reference profile")
        pos = _LEN.size + n
        self.windows = {}
        while pos < len(data):
            (m,) = _LEN.unpack_from(data, pos)
            p = Partial.from_bytes(data[pos + _LEN.size : pos + _LEN.size + m])
            pos += _LEN.size + m
            assert p.window is not None
            self.windows.setdefault(p.window, {})[(str(p.model_version), p.agent_id)] = p
        self.first_seen = {(float(a), float(b)): now for a, b, _ in meta["first_seen"]}
        self.agents = {
            a: AgentStatus(a, int(e), int(g), tuple(o), h, bool(d), now)
            for a, e, g, o, h, d, _ in meta["agents"]
        }
        self.evaluated = {(float(a), float(b)): float(t) for a, b, t in meta["evaluated"]}
        self.counts = Counter({str(k): int(v) for k, v in meta["counts"].items()})


def _overlap(partials: Iterable[Partial]) -> bool:
    """Whether two agents' partials cover the same offsets of a partition."""
    ranges: dict[int, list[tuple[int, int, str]]] = {}
    for p in partials:
        for part, (lo, hi, _) in p.offsets.items():
            ranges.setdefault(part, []).append((lo, hi, p.agent_id))
    for spans in ranges.values():
        spans.sort()
        reach, owner = spans[0][1], spans[0][2]
        for lo, hi, agent in spans[1:]:
            if lo <= reach and agent != owner:
                return True
            if hi > reach:
                reach, owner = hi, agent
    return False
