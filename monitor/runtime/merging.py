"""The aggregator's bookkeeping: the pieces of each open window, who owns each source
partition, the hand-offs between owners, and when a window is ready to be judged. No
I/O (the Kafka side is ``monitor/runtime/aggregator.py``), so every rule is unit-tested.

Rules (docs/agent.md, "Scaling out"):

* A window piece — one window of one partition and model version from one line of an
  agent's state (its *origin* offset) — is kept per (window, version, partition,
  origin). The same key again replaces it only from a later epoch of the agent (a
  restarted agent closing the window again from its checkpoint, or handing it off);
  the same piece again is a *repeat* and one from an earlier epoch is *stale*: both are
  ignored, so reading the partials topic twice changes nothing. From another agent (the
  partition's state moved to it, and the previous owner, a zombie, sent the window too)
  the piece reaching further along the partition wins: both read the same line of state
  in order, so the one that read less of the window (a zombie closing it as idle on
  waking) is *stale*.
* A partition's owner is the agent whose latest progress claims it with the highest
  group generation. The partition is *covered* for a window when its owner has closed
  past the window's end (``horizon``) or is idle, and — unless the owner's state began
  at the partition's start — the previous owner's hand-off at the offset the owner began
  at has arrived: the partials partition is read in order and a hand-off is written
  before the offsets it ends at are committed, so everything the earlier owners sent
  is in by then. Windows starting ``allowed_lateness`` after the owner's first row
  cannot hold earlier owners' rows and need no hand-off; windows the previous owner had
  closed before handing off (its ``horizon``) are covered by the hand-off alone.
* A partition claimed in a later generation (or by a later epoch of its agent) by an
  owner going on with the same line of state (same origin: restored from the changelog)
  keeps the horizon its previous owner had reported (``carried``): the pieces of those
  windows were sent before that progress. The new owner resumes at the committed offset
  with the state written there, which may predate windows the previous owner closed and
  sent since (it was killed before its next checkpoint), and reads those records again;
  the windows need not wait for it. Claims from an earlier generation (a zombie's) carry
  nothing.
* A window is judged once: when every source partition is covered, or ``deadline``
  seconds (processing time) after its first piece; then the report says ``partial:
  true`` and which partitions it had. A piece arriving after its window was judged is
  *late* and dropped.
* A *revision* partial (labels that came after the piece was sent) replaces its piece's
  performance state while the window waits; once it is judged, ``receive`` says
  ``revise`` and the aggregator re-evaluates the judged window
  (``monitor/runtime/aggregated_performance.py``). Either way the piece's state answers
  to whoever set it last (its sender, then its latest reviser): a revision from that
  agent replaces it unless from an earlier epoch; one from another agent (the
  partition's state moved to it, or a zombie revising what it had read) only from the
  same or a later group generation and over at least the piece's rows, so a zombie's
  revision never replaces its new owner's state (``revision_is_stale``).
* Two pieces of one partition from different lines of state covering the same offsets
  would count records twice (an agent that died between its checkpoint and its commit,
  whose partition another agent read again from the older commit); the window is then
  reported partial with reason ``overlap``.
"""

from __future__ import annotations

import io
import json
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from detectors.results import Coverage
from monitor.runtime.partials import Partial, PartitionProgress

Bounds = tuple[float, float]
PieceKey = tuple[str, int, int]  # model version, partition, origin
#: How many judged windows and hand-offs are remembered.
MAX_EVALUATED = 10_000
MAX_HANDOFFS = 10_000
_LEN = struct.Struct("<I")


@dataclass
class AgentStatus:
    """What the latest progress of an agent said about it."""

    agent_id: str
    epoch: int
    generation: int
    owned: dict[int, PartitionProgress] = field(default_factory=dict)
    heard_at: float = 0.0  # processing time it was received


@dataclass(frozen=True)
class DueWindow:
    """A window ready to be judged: its pieces, what they cover, and why it is due."""

    bounds: Bounds
    partials: tuple[Partial, ...]
    coverage: Coverage
    complete: bool
    overlap: bool
    first_seen: float


class MergeState:
    """Pieces of open windows, owners, hand-offs and judged windows of one model."""

    def __init__(
        self,
        model: str,
        reference_hash: str,
        partitions: int,
        deadline: float,
        allowed_lateness: float = 0.0,
    ) -> None:
        self.model = model
        self.reference_hash = reference_hash
        self.partitions = int(partitions)
        self.deadline = float(deadline)
        self.allowed_lateness = float(allowed_lateness)
        self.windows: dict[Bounds, dict[PieceKey, Partial]] = {}
        self.first_seen: dict[Bounds, float] = {}
        self.agents: dict[str, AgentStatus] = {}
        self.handoffs: dict[tuple[int, int], Partial] = {}  # (partition, at) -> hand-off
        self.evaluated: dict[Bounds, float] = {}
        self.counts: Counter[str] = Counter()
        # partition -> (origin, fresh, horizon) its earlier owners of that line reached
        self.carried: dict[int, tuple[int, bool, float]] = {}

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, p: Partial, now: float) -> str:
        """File one message; returns its outcome: ``accepted``, ``repeated``, ``stale``,
        ``late``, ``foreign`` (another model or reference profile) or ``revise`` (a
        revision of a judged window, for the aggregator)."""
        outcome = self._receive(p, now)
        self.counts[outcome] += 1
        return outcome

    def _receive(self, p: Partial, now: float) -> str:
        if p.model != self.model or p.reference_hash != self.reference_hash:
            return "foreign"
        status = self.agents.get(p.agent_id)
        if status is not None and p.epoch < status.epoch:
            return "stale"
        if p.kind == "progress":  # (before a new epoch's status replaces the old claims)
            self._carry(p)
        if status is None or p.epoch > status.epoch:
            status = AgentStatus(p.agent_id, p.epoch, p.generation, {}, now)
            self.agents[p.agent_id] = status
        if p.kind == "progress":
            status.generation, status.owned, status.heard_at = p.generation, dict(p.owned), now
            return "accepted"
        if p.kind == "handoff":
            assert p.partition is not None
            self.handoffs[(p.partition, p.at)] = p
            while len(self.handoffs) > MAX_HANDOFFS:
                del self.handoffs[next(iter(self.handoffs))]
            return "accepted"
        if p.kind == "revision":
            return self._revision(p)
        if p.kind != "window" or p.window is None or p.partition is None:
            return "foreign"
        if p.window in self.evaluated:
            return "late"
        held = self.windows.setdefault(p.window, {})
        key = (str(p.model_version), p.partition, p.origin)
        old = held.get(key)
        if old is not None:
            if old.agent_id != p.agent_id:
                # one line of state read by two members: a zombie (an evicted owner not
                # yet aware of it) closes the window on the rows it had read
                if _reach(p) < _reach(old):
                    return "stale"
                if _reach(p) == _reach(old) and old.sketch == p.sketch:
                    return "repeated"
            elif old.epoch > p.epoch:
                return "stale"
            elif old.epoch == p.epoch and old.sketch == p.sketch and old.offsets == p.offsets:
                return "repeated"
        held[key] = p
        self.first_seen.setdefault(p.window, now)
        return "accepted"

    def _revision(self, p: Partial) -> str:
        if p.window is None or p.partition is None:
            return "foreign"
        if p.window in self.evaluated:
            return "revise"
        key = (str(p.model_version), p.partition, p.origin)
        old = self.windows.get(p.window, {}).get(key)
        if old is None:
            return "late"  # no piece it revises (a stale piece was refused before it)
        if revision_is_stale(old.agent_id, old.epoch, old.generation, old.rows, p):
            return "stale"
        if old.performance == p.performance:
            return "repeated"
        # the piece's state is now the reviser's: later revisions answer to it
        self.windows[p.window][key] = replace(
            old,
            performance=p.performance,
            agent_id=p.agent_id,
            epoch=p.epoch,
            generation=p.generation,
        )
        return "accepted"

    # -- judging -----------------------------------------------------------------------------

    def owners(self) -> dict[int, tuple[AgentStatus, PartitionProgress]]:
        """Each source partition's owner (the latest claim by group generation)."""
        out: dict[int, tuple[AgentStatus, PartitionProgress]] = {}
        for status in self.agents.values():
            for part, progress in status.owned.items():
                cur = out.get(part)
                if cur is None or (status.generation, status.heard_at) > (
                    cur[0].generation,
                    cur[0].heard_at,
                ):
                    out[part] = (status, progress)
        return out

    def _carry(self, claim: Partial) -> None:
        """Before ``claim`` (a progress) is filed: for each partition it takes over from an
        owner of an earlier generation (or epoch) on the same line of state, keep the
        furthest horizon that line reached; a partition going on with another line
        drops it."""
        owners = self.owners()
        for part, prog in claim.owned.items():
            cur = owners.get(part)
            if cur is None:
                continue
            status, before = cur
            later = claim.generation > status.generation or (
                claim.agent_id == status.agent_id and claim.epoch > status.epoch
            )
            if not later:
                continue  # its own progress again, or a zombie's: nothing to carry
            line = (before.origin, before.fresh)
            if (prog.origin, prog.fresh) != line:
                self.carried.pop(part, None)
                continue
            reached = [h for h in (before.horizon, self._carried(part, line)) if h is not None]
            if reached:
                self.carried[part] = (line[0], line[1], max(reached))

    def _carried(self, part: int, line: tuple[int, bool]) -> float | None:
        kept = self.carried.get(part)
        return kept[2] if kept is not None and (kept[0], kept[1]) == line else None

    def _horizon(self, part: int, prog: PartitionProgress) -> float | None:
        """How far the partition's line of state is closed: its owner's word, or further
        where an earlier owner of the line had said so."""
        kept = self._carried(part, (prog.origin, prog.fresh))
        if kept is None or (prog.horizon is not None and prog.horizon >= kept):
            return prog.horizon
        return kept

    def _covered(self, part: int, bounds: Bounds, owners: dict) -> bool:
        owner = owners.get(part)
        if owner is None:
            return False
        _, prog = owner
        handoff = None if prog.fresh else self.handoffs.get((part, prog.origin))
        if handoff is not None and handoff.horizon is not None and handoff.horizon >= bounds[1]:
            return True  # closed by the previous owner, sent before its hand-off
        horizon = self._horizon(part, prog)
        if not (prog.idle or (horizon is not None and horizon >= bounds[1])):
            return False
        if prog.fresh or handoff is not None:
            return True
        first = prog.first_time
        return first is not None and bounds[0] >= first + self.allowed_lateness

    def coverage(self, bounds: Bounds) -> tuple[Coverage, bool]:
        """What the window's pieces cover, and whether nothing more is to come."""
        owners = self.owners()
        reported = tuple(p for p in range(self.partitions) if self._covered(p, bounds, owners))
        agents = len({p.agent_id for p in self.windows.get(bounds, {}).values()})
        return Coverage(self.partitions, reported, agents), len(reported) == self.partitions

    def waiting_for(self, bounds: Bounds) -> str:
        """Why a window is not complete yet, for the log."""
        owners = self.owners()
        parts = []
        for p in range(self.partitions):
            if self._covered(p, bounds, owners):
                continue
            owner = owners.get(p)
            if owner is None:
                parts.append(f"{p}: no owner")
                continue
            prog = owner[1]
            horizon = self._horizon(p, prog)
            if not (prog.idle or (horizon is not None and horizon >= bounds[1])):
                parts.append(f"{p}: {owner[0].agent_id} closed to {horizon}")
            else:
                parts.append(f"{p}: hand-off at offset {prog.origin} not seen")
        return "; ".join(parts)

    def due(self, now: float) -> list[DueWindow]:
        """Windows to judge now, by end time: complete ones, and those past the deadline."""
        out: list[DueWindow] = []
        for bounds in sorted(self.windows, key=lambda b: (b[1], b[0])):
            coverage, complete = self.coverage(bounds)
            first = self.first_seen.get(bounds, now)
            if not complete and now - first < self.deadline:
                continue
            pieces = tuple(self.windows[bounds].values())
            out.append(DueWindow(bounds, pieces, coverage, complete, _overlap(pieces), first))
        return out

    def shift(self, gap: float) -> None:
        """The aggregator did not run for ``gap`` seconds (monitor/runtime/loop_gap.py):
        the windows' deadline clocks move forward by it. Woken from a pause, it reads the
        pieces that arrived meanwhile before a deadline can judge a window without them."""
        for bounds in self.first_seen:
            self.first_seen[bounds] += gap
        for bounds in self.evaluated:
            self.evaluated[bounds] += gap

    def done(self, bounds: Bounds, now: float) -> None:
        """Forget a judged window's pieces; its late pieces will be dropped."""
        self.windows.pop(bounds, None)
        self.first_seen.pop(bounds, None)
        self.evaluated[bounds] = now
        while len(self.evaluated) > MAX_EVALUATED:
            del self.evaluated[min(self.evaluated, key=lambda b: (b[1], b[0]))]

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything above, so a restarted aggregator goes on where it was."""
        blobs = [p.to_bytes() for held in self.windows.values() for p in held.values()]
        blobs += [h.to_bytes() for h in self.handoffs.values()]
        meta = {
            "model": self.model,
            "reference": self.reference_hash,
            "first_seen": [[*b, t] for b, t in self.first_seen.items()],
            "agents": [
                [
                    s.agent_id,
                    s.epoch,
                    s.generation,
                    [
                        [p, o.origin, o.fresh, o.horizon, o.idle, o.first_time]
                        for p, o in s.owned.items()
                    ],
                ]
                for s in self.agents.values()
            ],
            "evaluated": [[*b, t] for b, t in self.evaluated.items()],
            "counts": dict(self.counts),
            "carried": [[p, *kept] for p, kept in self.carried.items()],
        }
        buf = io.BytesIO()
        head = json.dumps(meta, separators=(",", ":")).encode()
        buf.write(_LEN.pack(len(head)) + head)
        for blob in blobs:
            buf.write(_LEN.pack(len(blob)) + blob)
        return buf.getvalue()

    def restore(self, data: bytes, now: float) -> None:
        """Load :meth:`snapshot`; deadline clocks and statuses restart at ``now``."""
        (n,) = _LEN.unpack_from(data)
        meta = json.loads(data[_LEN.size : _LEN.size + n])
        if meta["model"] != self.model or meta["reference"] != self.reference_hash:
            raise ValueError("aggregator state of another model or reference profile")
        pos = _LEN.size + n
        self.windows, self.handoffs = {}, {}
        while pos < len(data):
            (m,) = _LEN.unpack_from(data, pos)
            p = Partial.from_bytes(data[pos + _LEN.size : pos + _LEN.size + m])
            pos += _LEN.size + m
            if p.kind == "handoff" and p.partition is not None:
                self.handoffs[(p.partition, p.at)] = p
            elif p.window is not None and p.partition is not None:
                key = (str(p.model_version), p.partition, p.origin)
                self.windows.setdefault(p.window, {})[key] = p
        self.first_seen = {(float(a), float(b)): now for a, b, _ in meta["first_seen"]}
        self.agents = {
            a: AgentStatus(
                a,
                int(e),
                int(g),
                {
                    int(p): PartitionProgress(int(o), bool(f), z, bool(i), t)
                    for p, o, f, z, i, t in owned
                },
                now,
            )
            for a, e, g, owned in meta["agents"]
        }
        self.evaluated = {(float(a), float(b)): float(t) for a, b, t in meta["evaluated"]}
        self.counts = Counter({str(k): int(v) for k, v in meta["counts"].items()})
        self.carried = {  # (absent from an older aggregator's state)
            int(p): (int(o), bool(f), float(h)) for p, o, f, h in meta.get("carried", [])
        }


def revision_is_stale(agent_id: str, epoch: int, generation: int, rows: int, p: Partial) -> bool:
    """Whether revision ``p`` must not replace a piece's performance state that ``agent_id``
    set last (the piece's sender or latest reviser) at ``epoch`` and group ``generation``,
    over ``rows`` rows of the window. From that agent: an earlier epoch. From another,
    the partition's state moved to it (a later generation, the same window's rows) or it
    is a zombie, an owner evicted while frozen that still revises the windows it had
    read: its generation is earlier and its window may have fewer rows. A generation
    below 0 (not in a group, or rejoining) is unknown and decides nothing."""
    if p.agent_id == agent_id:
        return p.epoch < epoch
    return 0 <= p.generation < generation or p.rows < rows


def _reach(p: Partial) -> int:
    """The last offset of a piece's rows (-1: none)."""
    return -1 if p.offsets is None else p.offsets[1]


def _overlap(pieces: Iterable[Partial]) -> bool:
    """Whether two pieces of one partition (from different lines of state) share offsets."""
    spans: dict[int, list[tuple[int, int, int]]] = {}
    for p in pieces:
        if p.offsets is not None and p.partition is not None:
            spans.setdefault(p.partition, []).append((*p.offsets, p.origin))
    for ranges in spans.values():
        ranges.sort()
        reach, origin = ranges[0][1], ranges[0][2]
        for lo, hi, o in ranges[1:]:
            if lo <= reach and o != origin:
                return True
            if hi > reach:
                reach, origin = hi, o
    return False
