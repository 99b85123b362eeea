"""The agent's side of aggregation: closed windows go out as partials, not as reports.

With ``aggregation.role: agent`` (or ``both``) the agent judges nothing itself. It keeps
its windows per source partition (``monitor/runtime/partitioned.py``); each closed window
of a partition becomes a window partial on the partials topic (``monitor/runtime/
partials.py``), followed by a progress message saying, for every partition it owns —
the empty ones included, so the aggregator can tell "no traffic" from "not reported" —
how far its windows are closed. At every checkpoint, before the offsets are committed,
the windows of partitions it no longer owns are handed off and a progress message goes
out. Sends are awaited one after the other (the aggregator relies on their order) and
retried until acknowledged: the checkpoint waits for them, so offsets are never
committed past records whose partial is not in Kafka (docs/architecture.md, decision
7).

A window partial carries the window's performance state when the profile learnt from
labels (the tracker keeps it per partition here); labels that arrive after a window's
partial was sent go out as a *revision* partial at the next checkpoint, before the
offsets of the labels topic are committed.

The agent's id is the identity of its window state: made once, kept in the state
directory (``agent-id``) unless ``aggregation.agent_id`` names it; the epoch
(``agent-epoch``) grows by one at every start, so partials a restarted agent sends again
for a window replace the ones it sent before (and a zombie's older epoch is stale).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer, TopicPartition

from detectors.profile import Profile
from monitor.config.model import MonitorConfig
from monitor.outputs.exporter import Exporter
from monitor.runtime.aggregated_performance import PARTIAL_BYTES, performance_bytes
from monitor.runtime.checkpoint import CheckpointError, CheckpointStore, decode
from monitor.runtime.durable import write_durably
from monitor.runtime.panes import ClosedWindow
from monitor.runtime.partials import Partial, PartitionProgress
from monitor.runtime.partition_state import PartitionChangelog
from monitor.runtime.partitioned import Origin, PartitionedWindows
from monitor.runtime.window_snapshot import SnapshotError
from monitor.runtime.windows import WindowManager, WindowsSettings

if TYPE_CHECKING:
    from detectors.performance import PerformanceState
    from monitor.labels.tracker import PerformanceTracker

log = logging.getLogger(__name__)

Send = Callable[[str, bytes, bytes], Awaitable[None]]
#: Seconds between attempts to send a partial the broker did not acknowledge.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


def agent_identity(state_dir: Path, configured: str | None) -> tuple[str, int]:
    """(agent id, epoch): the id made once per state directory, the epoch one more than
    at the last start. Both are written (and fsynced) before anything is published.

    A configured id outlives the directory (a pod restarted on a node with no disk keeps
    its name): with no epoch file it starts at the wall clock's seconds, above any epoch an
    earlier process of that name counted to, whose partials would otherwise make this
    one's stale."""
    state_dir.mkdir(parents=True, exist_ok=True)
    id_path, epoch_path = state_dir / "agent-id", state_dir / "agent-epoch"
    agent_id = configured
    if agent_id is None:
        try:
            agent_id = id_path.read_text().strip() or None
        except FileNotFoundError:
            agent_id = None
        if agent_id is None:
            agent_id = uuid.uuid4().hex[:16]
            write_durably(id_path, agent_id.encode())
    try:
        epoch = int(epoch_path.read_text().strip()) + 1
    except (FileNotFoundError, ValueError):
        epoch = 1 if configured is None else int(time.time())
    write_durably(epoch_path, str(epoch).encode())
    return agent_id, epoch


class PartialPublisher:
    """Builds one agent's messages and sends them in order, each acknowledged first."""

    def __init__(
        self,
        *,
        model: str,
        topic: str,
        reference_hash: str,
        agent_id: str,
        epoch: int,
        send: Send,
        on_sent: Callable[[str, int], None] | None = None,
    ) -> None:
        self.model = model
        self.topic = topic
        self.reference_hash = reference_hash
        self.agent_id = agent_id
        self.epoch = epoch
        self._send = send
        self._on_sent = on_sent  # (kind, count), for the published-partials metric
        self._lock = asyncio.Lock()  # FIFO: sends leave in the order they were asked for

    def _common(self, kind: str, generation: int) -> dict[str, Any]:
        return {
            "kind": kind,
            "model": self.model,
            "agent_id": self.agent_id,
            "epoch": self.epoch,
            "generation": generation,
            "reference_hash": self.reference_hash,
            "sent_at": time.time(),
        }

    def window_partials(
        self,
        closed: list[ClosedWindow],
        generation: int,
        origins: dict[int, Origin],
        handoff: bool = False,
    ) -> list[Partial]:
        """A window partial per closed window of one partition (time windows only)."""
        out = []
        for w in closed:
            if w.kind != "time" or w.partition is None:
                continue
            origin, fresh = origins[w.partition]
            span = w.offsets.get(w.partition)
            sketch = w.sketch.to_bytes()
            out.append(
                Partial(
                    **self._common("window", generation),
                    partition=w.partition,
                    origin=origin,
                    fresh=fresh,
                    window=(w.start, w.end),
                    model_version=w.model_version,
                    rows=w.rows,
                    late=w.late,
                    duplicates=w.duplicates,
                    offsets=None if span is None else (span[0], span[1]),
                    traceparents=tuple(w.traceparents),
                    closed_at=time.time(),
                    handoff=handoff,
                    sketch=sketch,
                    performance=performance_bytes(w.performance, PARTIAL_BYTES - len(sketch)),
                )
            )
        return out

    def revision(self, info: list[Any], state: PerformanceState, generation: int) -> Partial:
        """A sent window's performance state again (``info`` is the tracker's ``sent``
        entry: version, partition, start, end, rows, origin, fresh)."""
        version, partition, start, end, rows, origin, fresh = info
        return Partial(
            **self._common("revision", generation),
            partition=int(partition),
            origin=int(origin),
            fresh=bool(fresh),
            window=(float(start), float(end)),
            model_version=str(version),
            rows=int(rows),
            performance=performance_bytes(state, PARTIAL_BYTES),
        )

    def progress(self, owned: dict[int, PartitionProgress], generation: int) -> Partial:
        return Partial(**self._common("progress", generation), owned=dict(owned))

    def handoff(
        self,
        partition: int,
        at: int,
        origin: Origin,
        open_windows: list[tuple[float, float]],
        generation: int,
        horizon: float | None = None,
    ) -> Partial:
        return Partial(
            **self._common("handoff", generation),
            partition=partition,
            origin=origin[0],
            fresh=origin[1],
            at=at,
            open_windows=tuple(open_windows),
            horizon=horizon,
        )

    async def publish(self, messages: list[Partial]) -> None:
        """Send ``messages`` in order, each retried until acknowledged."""
        async with self._lock:
            for message in messages:
                await self._deliver(message)

    async def _deliver(self, message: Partial) -> None:
        value = message.to_bytes()
        attempt = 0
        while True:
            try:
                await self._send(self.topic, self.model.encode(), value)
                if self._on_sent is not None:
                    self._on_sent(message.kind, 1)
                return
            except Exception as exc:  # a broker error of any kind: retry, never lose it
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                attempt += 1
                if type(exc).__name__ == "MessageSizeTooLargeError":
                    # never sent, and offsets stay uncommitted until it is: say what to change
                    log.error(
                        "a %d-byte partial is over the producer's or the partials topic's "
                        "message size limit; raise max.message.bytes of %s (docs/kubernetes.md)"
                        " or lower windows.reservoir_size",
                        len(value),
                        self.topic,
                    )
                log.warning(
                    "publishing a partial to %s failed (%s); retrying in %.1fs",
                    self.topic,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)


def group_generation(consumer: object) -> int:
    """The consumer group's generation as this member last joined it (-1: unknown)."""
    coordinator = getattr(consumer, "_coordinator", None)
    generation = getattr(coordinator, "generation", -1)
    return int(generation) if isinstance(generation, int) else -1


class AgentPartials:
    """What ``Agent`` calls when it publishes partials: one place for its few hooks."""

    def __init__(
        self, publisher: PartialPublisher, windows: WindowsSettings, state_dir: Path | None = None
    ) -> None:
        self.publisher = publisher
        self.state_dir = state_dir  # where the agent's checkpoint files are
        self.idle_timeout = float(windows.idle_timeout)
        self._assigned_since: dict[int, float] = {}
        self.changelog: PartitionChangelog | None = None
        self._performance: PerformanceTracker | None = None

    def shift(self, gap: float) -> None:
        """The agent did not run for ``gap`` seconds (loop_gap.py): a partition without
        windows is not idle for that time either."""
        for p in self._assigned_since:
            self._assigned_since[p] += gap

    @property
    def performance(self) -> PerformanceTracker | None:
        """The agent's performance tracker, set by the agent when its profile learnt from
        labels: hand-offs attach their state, sent windows can be revised, and each
        partition's state in the changelog carries its share."""
        return self._performance

    @performance.setter
    def performance(self, tracker: PerformanceTracker | None) -> None:
        self._performance = tracker
        if self.changelog is not None:
            self.changelog.performance = tracker

    @classmethod
    def from_config(cls, config: MonitorConfig, reference_hash: str) -> AgentPartials | None:
        """None unless ``aggregation.role`` is ``agent`` or ``both``; the send function is
        set by :meth:`start` once the Kafka producer is up."""
        if not config.aggregation.publishes:
            return None
        agent_id, epoch = agent_identity(config.state.dir, config.aggregation.agent_id)
        log.info("publishing partials as agent %s, epoch %d", agent_id, epoch)
        publisher = PartialPublisher(
            model=config.model,
            topic=config.aggregation.topic(config.model),
            reference_hash=reference_hash,
            agent_id=agent_id,
            epoch=epoch,
            send=_not_started,
        )
        out = cls(publisher, config.windows, config.state.dir)
        # each partition's state in the changelog, restored by its next owner
        out.changelog = PartitionChangelog.for_agent(config, agent_id, epoch, reference_hash)
        return out

    def windows(self, profile: Profile, config: MonitorConfig) -> PartitionedWindows:
        """The agent's windows: one line of state per partition."""
        windows = PartitionedWindows.from_config(profile, config.windows)
        if self.changelog is not None:
            self.changelog.attach(windows)
        return windows

    def start(self, producer: AIOKafkaProducer, exporter: Exporter | None) -> None:
        """Send through the agent's producer; count what is sent in ``exporter``."""

        async def send(topic: str, key: bytes, value: bytes) -> None:
            await producer.send_and_wait(topic, value=value, key=key)

        self.publisher._send = send
        if exporter is not None:
            self.publisher._on_sent = exporter.count_partials_published
        if self.changelog is not None:
            self.changelog.exporter = exporter

    def bind(self, windows: WindowManager, source: Any) -> None:
        """New partitions' windows start where the source says they start."""
        if isinstance(windows, PartitionedWindows):
            windows.origin_of = lambda p: _origin(source, p)
        if self.changelog is not None:
            self.changelog.bind(source)

    @staticmethod
    def _where(source: Any) -> tuple[set[int], int]:
        if source is None or source.consumer is None:
            return set(), -1
        return {p for _, p in source.assigned()}, group_generation(source.consumer)

    def _owned(
        self, source: Any, windows: PartitionedWindows, now: float
    ) -> tuple[dict[int, PartitionProgress], int]:
        owned, generation = self._where(source)
        for p in list(self._assigned_since):
            if p not in owned:
                del self._assigned_since[p]
        out: dict[int, PartitionProgress] = {}
        for p in owned:
            since = self._assigned_since.setdefault(p, now)
            m = windows.by_partition.get(p)
            if m is None:
                origin = windows.known_origins.get(p) or (
                    _origin(source, p) if source is not None else None
                )
                if origin is None:
                    continue  # where it starts is not known yet: not reported
                idle = now - since >= self.idle_timeout
                out[p] = PartitionProgress(origin[0], origin[1], None, idle, None)
                continue
            idle = m.open_panes == 0 and p in m.partitions.idle(now)
            origin = windows.origins[p]
            out[p] = PartitionProgress(
                origin[0], origin[1], m.closed_until, idle, windows.first_time.get(p)
            )
        return out, generation

    def closed(
        self, closed: list[ClosedWindow], source: Any, windows: WindowManager
    ) -> Coroutine[Any, Any, None]:
        """The send of windows closed just now, then the progress that passes them,
        captured now, to run as a task: tasks send in the order they were made."""
        assert isinstance(windows, PartitionedWindows)
        owned, generation = self._owned(source, windows, time.time())
        origins = {p: windows.origins[p] for p in windows.by_partition}
        messages = self.publisher.window_partials(closed, generation, origins)
        self._note_sent(closed, origins)
        messages.append(self.publisher.progress(owned, generation))
        return self.publisher.publish(messages)

    def _note_sent(self, closed: list[ClosedWindow], origins: dict[int, Origin]) -> None:
        if self.performance is None:
            return
        for w in closed:
            if w.kind == "time" and w.partition is not None and w.partition in origins:
                self.performance.note_partial(w, *origins[w.partition])

    def release(self, windows: WindowManager, partitions: set[tuple[str, int]]) -> None:
        """Partitions revoked: hand their windows off at the next checkpoint."""
        if isinstance(windows, PartitionedWindows):
            windows.release({p for _, p in partitions})

    async def progress(
        self,
        source: Any,
        windows: WindowManager,
        offsets: dict[tuple[str, int], int],
        now: float,
        positions: dict[tuple[str, int], int] | None = None,
    ) -> None:
        """Before a checkpoint commits: hand off partitions no longer owned (their open
        windows, then where their state ends), then every owned partition's progress.

        The next owner starts a partition at the group's committed offset, which lags
        this agent's state when a commit did not get through (a rebalance under way, or
        a crash between a checkpoint and its commit). So a partition is handed off at its
        committed offset, with the state that ends there: the one in memory when they
        agree, else the checkpoint file that does (docs/agent.md, "Scaling out"); its
        entry in ``positions`` (the agent's offsets) goes back to that offset, so the
        checkpoint that follows commits no further.
        """
        assert isinstance(windows, PartitionedWindows)
        generation = -1 if source is None else group_generation(source.consumer)
        joined = generation >= 0 or (source is not None and bool(source.assigned()))
        messages: list[Partial] = []
        # with partition states in the changelog the next owner restores them instead
        handing = set() if self.changelog is not None else windows.to_hand_off(joined=joined)
        for p in sorted(handing):
            key = next((k for k in offsets if k[1] == p), None)
            if key is None:
                continue  # no offset known: nothing of it is in the state's windows
            at = offsets[key]
            committed = await _committed(source, key)
            if committed is not None and committed != at:
                older = self._checkpointed(windows, p, key, committed)
                if older is not None:
                    windows.by_partition[p], windows.origins[p], performance = older
                    self._rewind_performance(p, performance)
                    at = committed
                    if positions is not None:
                        positions[key] = committed
                else:
                    log.warning(
                        "partition %d is handed off at offset %d but the group committed %d: "
                        "its next owner reads %d records again (the window says overlap)",
                        p,
                        at,
                        committed,
                        at - committed,
                    )
            closed, origin, horizon = windows.hand_off(p)
            if self.performance is not None:
                self.performance.on_closed(closed)
            messages += self.publisher.window_partials(closed, generation, {p: origin}, True)
            self._note_sent(closed, {p: origin})
            bounds = [(w.start, w.end) for w in closed]
            messages.append(self.publisher.handoff(p, at, origin, bounds, generation, horizon))
            log.info("handing off partition %d at offset %d (%d open windows)", p, at, len(bounds))
        if self.performance is not None:  # labels that came after windows were sent
            for info, state in self.performance.partial_revisions():
                messages.append(self.publisher.revision(info, state, generation))
        owned, generation = self._owned(source, windows, now)
        messages.append(self.publisher.progress(owned, generation))
        await self.publisher.publish(messages)

    def _checkpointed(
        self, windows: PartitionedWindows, p: int, key: tuple[str, int], offset: int
    ) -> tuple[WindowManager, Origin, Any] | None:
        """Partition ``p``'s windows from the checkpoint file (newest, then previous) whose
        offset for it is ``offset``, if one is, and that file's performance state."""
        if self.state_dir is None:
            return None
        store = CheckpointStore(self.state_dir)
        for path in (store.path, store.prev_path):
            try:
                checkpoint = decode(path.read_bytes(), path)
                if checkpoint.offsets.get(key) != offset:
                    continue
                params = windows._params_kw
                older = PartitionedWindows.restore(windows.profile, checkpoint.windows, **params)
            except (OSError, CheckpointError, SnapshotError):
                continue
            if p in older.by_partition:
                return older.by_partition[p], older.origins[p], checkpoint.extra.get("performance")
        return None

    def _rewind_performance(self, p: int, saved: Any) -> None:
        """Partition ``p``'s performance state as the checkpoint file that its windows now
        come from had it (what is in memory also holds rows after it, which the next owner
        reads again)."""
        if self.performance is None or saved is None:
            return
        then = self.performance.empty_like()
        try:
            then.restore(saved)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("partition %d handed off with its performance state in memory: %s", p, exc)
            return
        self.performance.partition_state(p, remove=True)
        self.performance.restore_partition(then.partition_state(p))


async def _committed(source: Any, key: tuple[str, int]) -> int | None:
    """The group's committed offset of a partition (None: none, or unknown)."""
    consumer = getattr(source, "consumer", None)
    if consumer is None:
        return None
    try:
        return await asyncio.wait_for(consumer.committed(TopicPartition(*key)), 3.0)
    except Exception:  # unknown: hand off what is in memory
        return None


def _origin(source: Any, p: int) -> Origin | None:
    for (_, q), origin in getattr(source, "origins", {}).items():
        if q == p:
            return origin
    return None


async def _not_started(topic: str, key: bytes, value: bytes) -> None:
    raise RuntimeError("the partials producer is not started")
