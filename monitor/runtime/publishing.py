"""The agent's side of aggregation: closed windows go out as partials, not as reports.

With ``aggregation.role: agent`` (or ``both``) the agent judges nothing itself: each
closed window becomes a window partial on the partials topic (``monitor/runtime/
partials.py``), followed by a progress message saying how far its windows are closed;
and at every checkpoint, before the offsets are committed, a progress message says which
partitions it owns — the empty ones included, so the aggregator can tell "no traffic"
from "not reported". Sends are awaited one after the other (the aggregator relies on
their order) and retried until acknowledged: the checkpoint waits for them, so offsets
are never committed past records whose partial is not in Kafka (docs/architecture.md,
decision 7).

The agent's id is the identity of its window state: made once, kept in the state
directory (``agent-id``) unless ``aggregation.agent_id`` names it; the epoch
(``agent-epoch``) grows by one at every start, so partials a restarted agent sends again
for a window replace the ones it sent before (and a zombie's older epoch is stale).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from monitor.config.model import MonitorConfig
from monitor.ingest.kafka import KafkaSource
from monitor.outputs.exporter import Exporter
from monitor.runtime.panes import ClosedWindow
from monitor.runtime.partials import Partial
from monitor.runtime.windows import WindowManager

log = logging.getLogger(__name__)

Send = Callable[[str, bytes, bytes], Awaitable[None]]
#: Seconds between attempts to send a partial the broker did not acknowledge.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


def agent_identity(state_dir: Path, configured: str | None) -> tuple[str, int]:
    """(agent id, epoch): the id made once per state directory, the epoch one more than
    at the last start. Both are written (and fsynced) before anything is published."""
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
            _write(id_path, agent_id)
    try:
        epoch = int(epoch_path.read_text().strip()) + 1
    except (FileNotFoundError, ValueError):
        epoch = 1
    _write(epoch_path, str(epoch))
    return agent_id, epoch


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PartialPublisher:
    """Sends one agent's partials, in order, each acknowledged before the next."""

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
        self.stopping = False

    def _base(self, owned: set[int], generation: int, horizon: float | None, drained: bool) -> dict:
        return {
            "model": self.model,
            "agent_id": self.agent_id,
            "epoch": self.epoch,
            "generation": generation,
            "reference_hash": self.reference_hash,
            "owned": tuple(sorted(owned)),
            "horizon": horizon,
            "drained": drained,
        }

    def window_partials(
        self, closed: list[ClosedWindow], owned: set[int], generation: int, horizon: float | None
    ) -> list[Partial]:
        """The messages for windows closed together: a partial each (their horizon is the
        one before them), then the progress that passes them."""
        now = time.time()
        out = []
        for w in closed:
            if w.kind != "time":
                continue
            out.append(
                Partial(
                    **self._base(owned, generation, None, False),
                    sent_at=now,
                    window=(w.start, w.end),
                    model_version=w.model_version,
                    rows=w.rows,
                    late=w.late,
                    duplicates=w.duplicates,
                    offsets={p: list(r) for p, r in w.offsets.items()},
                    traceparents=tuple(w.traceparents),
                    closed_at=now,
                    sketch=w.sketch.to_bytes(),
                )
            )
        out.append(Partial(**self._base(owned, generation, horizon, False), sent_at=now))
        return out

    def progress(
        self, owned: set[int], generation: int, horizon: float | None, drained: bool
    ) -> Partial:
        return Partial(**self._base(owned, generation, horizon, drained), sent_at=time.time())

    async def publish(self, messages: list[Partial]) -> None:
        """Send ``messages`` in order, each retried until acknowledged (or stopping)."""
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
                    self._on_sent("window" if message.is_window else "progress", 1)
                return
            except Exception as exc:  # a broker error of any kind: retry, never lose it
                if self.stopping:
                    log.warning("partial not published at shutdown (%s)", type(exc).__name__)
                    raise
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                attempt += 1
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

    def __init__(self, publisher: PartialPublisher) -> None:
        self.publisher = publisher

    @classmethod
    def from_config(cls, config: MonitorConfig, reference_hash: str) -> AgentPartials | None:
        """None unless ``aggregation.role`` is ``agent`` or ``both``; the send function is
        set by :meth:`start` once the Kafka producer is up."""
        if not config.aggregation.publishes:
            return None
        agent_id, epoch = agent_identity(config.state.dir, config.aggregation.agent_id)
        log.info("publishing partials as agent %s, epoch %d", agent_id, epoch)
        return cls(
            PartialPublisher(
                model=config.model,
                topic=config.aggregation.topic(config.model),
                reference_hash=reference_hash,
                agent_id=agent_id,
                epoch=epoch,
                send=_not_started,
            )
        )

    def start(self, producer: AIOKafkaProducer, exporter: Exporter | None = None) -> None:
        """Send through the agent's producer; count what is sent in ``exporter``."""

        async def send(topic: str, key: bytes, value: bytes) -> None:
            await producer.send_and_wait(topic, value=value, key=key)

        self.publisher._send = send
        if exporter is not None:
            self.publisher._on_sent = exporter.count_partials_published

    @staticmethod
    def _where(source: KafkaSource | None) -> tuple[set[int], int]:
        if source is None or source.consumer is None:
            return set(), -1
        return {p for _, p in source.assigned()}, group_generation(source.consumer)

    def closed(
        self, closed: list[ClosedWindow], source: KafkaSource | None, windows: WindowManager
    ) -> Coroutine[Any, Any, None]:
        """The send of windows closed just now, with what is true now (ownership, the
        horizon), to run as a task: tasks send in the order they were made."""
        owned, generation = self._where(source)
        messages = self.publisher.window_partials(closed, owned, generation, windows.closed_until)
        return self.publisher.publish(messages)

    async def progress(
        self, source: KafkaSource | None, windows: WindowManager, now: float
    ) -> None:
        """Before a checkpoint commits: owned partitions (empty ones too) and the horizon."""
        owned, generation = self._where(source)
        idle = windows.partitions.idle(now)
        drained = windows.open_panes == 0 and owned <= idle
        message = self.publisher.progress(owned, generation, windows.closed_until, drained)
        await self.publisher.publish([message])


async def _not_started(topic: str, key: bytes, value: bytes) -> None:
    raise RuntimeError("the partials producer is not started")
