"""The aggregator: one verdict per window from the partials of every agent of a model.

A consumer group (``aggregation.group_id``) on the partials topic; the member that owns
the partition a model's key hashes to merges that model's partials (the rules are in
``monitor/runtime/merging.py``), judges each window once with the same
``WindowEvaluator`` as a lone agent, and publishes the report through the usual sinks,
the model-level metrics and the rollback policies. Failing over is Kafka's own partition
reassignment (docs/agent.md, "Scaling out"):

* the offsets it commits are those of the oldest partial it still holds (or its position
  when it holds none), so whoever owns the partition next — this process restarted, or
  another replica without its disk — reads every partial of every open window again;
  repeats are ignored, so nothing is merged twice;
* after judging a window it appends a *judged* marker for it to the partials topic and
  awaits it: a reader that meets a window's partials again also meets the marker after
  them, and drops them instead of judging the window a second time;
* its state (open windows' partials, agents' statuses, judged windows) is checkpointed
  to ``state.dir/aggregator`` like an agent's, before the offsets commit, so a restart
  on the same disk resumes without reading much again.

Partials carry each partition's performance state, so the reports have the lone agent's
``performance`` block, and revision partials revise it
(``monitor/runtime/aggregated_performance.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from detectors.profile import Profile, load_profile
from detectors.results import WindowReport
from detectors.sketch import WindowSketch
from monitor.actions.policy import PolicyEngine
from monitor.config.model import MonitorConfig
from monitor.ingest.kafka import KafkaPublisher, KafkaSource
from monitor.outputs.exporter import Exporter
from monitor.outputs.server import AgentServer
from monitor.outputs.sinks import FileSink, KafkaSink, ReportSink, StreamSink
from monitor.runtime.aggregated_performance import RevisableWindows, merged_performance
from monitor.runtime.aggregator_state import AggregatorChangelog
from monitor.runtime.changelog import ChangelogError, restore
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, CheckpointStore
from monitor.runtime.evaluation import EvaluatedWindow
from monitor.runtime.judging import JudgeSeries
from monitor.runtime.loop_gap import LoopGap
from monitor.runtime.merging import DueWindow, MergeState
from monitor.runtime.panes import MAX_TRACEPARENTS, ClosedWindow, merge_offsets
from monitor.runtime.partials import Partial, PartialError
from monitor.runtime.partials_topic import ensure_partials_topic
from monitor.runtime.pipeline import Pipeline, window_label

log = logging.getLogger(__name__)

#: The agent id of the aggregator's own "judged" markers on the partials topic.
JUDGED = "aggregator"
#: Seconds between refreshes of the source topics' partition count.
METADATA_INTERVAL = 30.0
#: Seconds between log lines saying what the oldest open window waits for.
WAIT_LOG_INTERVAL = 10.0
#: Seconds one poll of the partials topic waits; a turn of the loop far longer than
#: this is time the aggregator did not run (monitor/runtime/loop_gap.py).
POLL_SECONDS = 0.2


def merge_window(profile: Profile, due: DueWindow) -> list[ClosedWindow]:
    """The window's partials merged per model version (exact: decision 2), in a fixed
    order (by agent) so the same partials always give the same sketch."""
    out: list[ClosedWindow] = []
    start, end = due.bounds
    by_version: dict[str, list[Partial]] = {}
    for p in sorted(due.partials, key=lambda p: (str(p.model_version), p.agent_id)):
        by_version.setdefault(str(p.model_version), []).append(p)
    for version, parts in by_version.items():
        sketch = WindowSketch.from_bytes(profile, parts[0].sketch)
        for p in parts[1:]:
            sketch = sketch.merge(WindowSketch.from_bytes(profile, p.sketch))
        traceparents: list[str] = []
        for p in parts:
            traceparents += [t for t in p.traceparents if t not in traceparents]
        out.append(
            ClosedWindow(
                model_version=version,
                start=start,
                end=end,
                sketch=sketch,
                rows=sum(p.rows for p in parts),
                late=sum(p.late for p in parts),
                duplicates=sum(p.duplicates for p in parts),
                traceparents=traceparents[:MAX_TRACEPARENTS],
                kind="time",
                performance=merged_performance(profile.performance, parts),
                offsets=merge_offsets(_span(p) for p in parts),
            )
        )
    return out


def _span(p: Partial) -> dict[int, list[int]]:
    if p.offsets is None or p.partition is None:
        return {}
    return {p.partition: [p.offsets[0], p.offsets[1], p.rows]}


def mark(report: WindowReport, due: DueWindow) -> WindowReport:
    """The report with what it covers; ``partial`` when it misses partitions or overlaps."""
    reasons = partial_reasons(due)
    return replace(
        report,
        partial=bool(reasons),
        partial_reason=",".join(reasons) or None,
        coverage=due.coverage,
    )


def partial_reasons(due: DueWindow) -> list[str]:
    return (["coverage"] if not due.complete else []) + (["overlap"] if due.overlap else [])


class Aggregator:
    """``await Aggregator(config).run(stop)``: the aggregator role of one model."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        profile: Profile | None = None,
        exporter: Exporter | None = None,
        sinks: Sequence[ReportSink] | None = None,
        serve_http: bool = True,
    ) -> None:
        if config.source.kafka is None:
            raise ValueError("aggregation needs source.kafka: partials travel through Kafka")
        self.config = config
        self.kafka_cfg = config.source.kafka
        self.profile = profile or load_profile(config.reference)
        self.exporter = exporter or Exporter(
            model=config.model,
            window_label=window_label(config),
            reference_hash=self.profile.short_hash,
        )
        if exporter is None:
            self.exporter.set_reference(self.profile.short_hash, self.profile.rows)
        self.pipeline = Pipeline(config, self.profile, self.exporter)
        tracker, w = self.pipeline.performance, config.windows
        self.revisable = (
            None
            if tracker is None
            else RevisableWindows(
                tracker.ref,
                tracker.evaluate,
                max_windows=config.labels.max_revisable_windows,
                horizon=config.labels.join_horizon + w.size + w.allowed_lateness,
            )
        )
        self.engine = PolicyEngine.from_config(config, self.exporter)
        self.topic = config.aggregation.topic(config.model)
        self.group_id = config.aggregation.group_id or f"{self.kafka_cfg.group_id}-aggregator"
        self.sinks: list[ReportSink] = list(sinks) if sinks is not None else self._sinks()
        self.store = CheckpointStore(config.state.dir / "aggregator")
        # its checkpoints in the changelog too, per partials partition (aggregator_state.py)
        self.changelog = AggregatorChangelog.for_aggregator(
            config, self.group_id, self.topic, self.profile.content_hash
        )
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftline-agg")
        self.state: MergeState | None = None
        self.latest: dict[str, WindowReport] = {}
        self.source: KafkaSource | None = None
        self.publisher: KafkaPublisher | None = None
        self.server: AgentServer | None = None
        self._serve_http = serve_http
        # partials-topic offset of each held partial: the commit never passes the oldest
        self._held: dict[tuple[tuple[float, float], str, int, int], tuple[str, int, int]] = {}
        # hand-offs hold the commit for a while too (see durable_offsets)
        self._handoffs: dict[tuple[int, int], tuple[tuple[str, int, int], float]] = {}
        self._position: dict[tuple[str, int], int] = {}
        self._restored: bytes | None = None
        self._lock = asyncio.Lock()
        self._last_checkpoint = time.monotonic()
        self._last_metadata = -METADATA_INTERVAL
        self._last_wait_log = time.monotonic()
        # only the member holding the partials partition exports the judged gauges
        self.judging = JudgeSeries(self.exporter.drop_judged_series)

    def _sinks(self) -> list[ReportSink]:
        sinks: list[ReportSink] = []
        if self.config.reports.log:
            sinks.append(StreamSink())
        if self.config.reports.file is not None:
            sinks.append(FileSink(self.config.reports.file))
        return sinks

    # -- start -------------------------------------------------------------------------------

    def _restore(self) -> dict[tuple[str, int], int]:
        try:
            checkpoint = self.store.load(reference_hash=self.profile.content_hash)
        except CheckpointError as exc:
            log.warning("aggregator starting without a checkpoint: %s", exc)
            return {}
        if checkpoint is None:
            return {}
        self._apply(checkpoint)
        return dict(checkpoint.offsets)

    def _apply(self, checkpoint: Checkpoint) -> None:
        """Take up a checkpoint's state (the disk's, or the changelog's on assignment)."""
        self._restored, self.state = checkpoint.windows, None
        self._held.clear()
        sequential = self.pipeline.evaluator.sequential
        if sequential is not None:
            sequential.restore(checkpoint.extra.get("sequential"))
        if self.revisable is not None:
            try:
                self.revisable.restore(checkpoint.extra.get("revisable") or [])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("judged windows' performance state unusable (%s): not revised", exc)
        self._position = dict(checkpoint.offsets)
        for a, b, version, source, origin, topic, part, offset in checkpoint.extra.get("held", []):
            key = ((float(a), float(b)), str(version), int(source), int(origin))
            self._held[key] = (topic, part, offset)

    async def _partitions(self) -> int | None:
        """Partitions of the source topics (the largest count, partitions being numbers)."""
        if self.config.aggregation.source_partitions is not None:
            return self.config.aggregation.source_partitions
        assert self.source is not None and self.source.consumer is not None
        try:
            client = self.source.consumer._client
            metadata = await asyncio.wait_for(client.fetch_all_metadata(), 5.0)
        except Exception as exc:  # a broker hiccup: keep the count known so far
            log.warning("source topic metadata unavailable (%s)", type(exc).__name__)
            return None
        counts = [len(metadata.partitions_for_topic(t) or ()) for t in self.kafka_cfg.topics]
        return max(counts) if counts and max(counts) > 0 else None

    async def _refresh_partitions(self) -> bool:
        if time.monotonic() - self._last_metadata < METADATA_INTERVAL and self.state is not None:
            return True
        n = await self._partitions()
        self._last_metadata = time.monotonic()
        if n is None:
            return self.state is not None
        if self.state is None:
            self.state = self._new_state(n)
            if self._restored is not None:
                try:
                    self.state.restore(self._restored, time.time())
                except (ValueError, KeyError, PartialError) as exc:
                    log.warning("aggregator state unusable (%s); reading partials again", exc)
                    self.state = self._new_state(n)
                    self._held.clear()
                self._restored = None
        elif n != self.state.partitions:
            log.info("source topics now have %d partitions (were %d)", n, self.state.partitions)
            self.state.partitions = n
        return True

    def _new_state(self, partitions: int) -> MergeState:
        return MergeState(
            self.config.model,
            self.profile.content_hash,
            partitions,
            self.config.aggregation.deadline,
            self.config.windows.allowed_lateness,
        )

    async def run(self, stop: asyncio.Event) -> None:
        start_offsets = self._restore()
        if self._serve_http:
            self.server = AgentServer(
                host=self.config.exporter.host,
                port=self.config.exporter.port,
                registry=self.exporter.registry,
                ready=lambda: (self.state is not None, "ready" if self.state else "starting"),
                latest_reports=lambda: dict(self.latest),
                port_setting="exporter.port",
            )
            self.server.start()
            log.info("serving /metrics on %s:%d", self.config.exporter.host, self.server.port)
        cfg = self.kafka_cfg.model_copy(
            update={"topics": [self.topic], "group_id": self.group_id, "dead_letter_topic": None}
        )
        await ensure_partials_topic(self.config)  # before subscribing to it
        self.source = KafkaSource(cfg, start_offsets, on_revoke=self._on_revoke)
        if self.changelog is not None:
            await restore(self.changelog, self.profile.content_hash, stop, lambda: None)
            self.changelog.bind(self.source, self._apply)
            self.changelog.local = dict(start_offsets)
        try:
            if not await self.source.start(stop):
                return
            self.publisher = KafkaPublisher(self.kafka_cfg)
            await self.publisher.start()
            if self.config.reports.kafka_topic:
                self.sinks.append(KafkaSink(self.config.reports.kafka_topic, self.publisher.send))
            log.info(
                "aggregating %s from %s (group %s)", self.config.model, self.topic, cfg.group_id
            )
            await self._loop(stop)
        finally:
            await self._shutdown()

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self.source is not None
        gaps = LoopGap(poll_timeout=POLL_SECONDS)  # a turn far longer than a poll: frozen
        while not stop.is_set():
            messages = await self.source.poll(timeout_ms=int(POLL_SECONDS * 1000))
            if not await self._refresh_partitions():
                await asyncio.sleep(0.5)
                continue
            now = time.time()
            assert self.state is not None  # set by _refresh_partitions
            self.judging.observe(bool(self.source.assigned()))
            if gap := gaps.observe(now):  # time not run does not count toward a deadline
                self.state.shift(gap)
            for m in messages:
                self._receive(m.value, (m.topic, m.partition, m.offset), now)
            self._position.update(self.source.polled)
            await self._judge_due(time.time())
            interval = self.config.state.checkpoint_interval
            if time.monotonic() - self._last_checkpoint >= interval:
                await self.checkpoint()

    def _receive(self, value: bytes | None, where: tuple[str, int, int], now: float) -> None:
        assert self.state is not None
        try:
            p = Partial.from_bytes(value)
        except PartialError as exc:
            self.exporter.count_partials_received("invalid")
            log.warning("partial set aside at %s[%d]@%d: %s", *where, exc)
            return
        if p.kind == "judged":
            if p.window is not None and p.model == self.state.model:
                self._forget(p.window, now)
            return
        outcome = self.state.receive(p, now)
        if outcome == "revise":  # late labels of a judged window
            outcome = self._revise(p)
        self.exporter.count_partials_received(outcome)
        if outcome != "accepted" or p.partition is None:
            return
        if p.kind == "window" and p.window is not None:
            self._held[(p.window, str(p.model_version), p.partition, p.origin)] = where
        elif p.kind == "handoff":
            self._handoffs[(p.partition, p.at)] = (where, now)

    def _revise(self, p: Partial) -> str:
        """Re-evaluate a judged window's performance; its report goes out again."""
        if self.revisable is None:
            return "late"
        try:
            outcome, report = self.revisable.revise(p)
        except ValueError as exc:
            log.warning("revision partial of window %s set aside: %s", p.window, exc)
            return "invalid"
        if report is not None:
            self.exporter.observe_revision(report)
            if self.latest.get(report.model_version, report).window_start == report.window_start:
                self.latest[report.model_version] = report
            self.engine.observe_report(report)  # a realized drop may be found late
            self._write(report)
        return outcome

    def _forget(self, bounds: tuple[float, float], now: float) -> None:
        assert self.state is not None
        self.state.done(bounds, now)
        for key in [k for k in self._held if k[0] == bounds]:
            del self._held[key]

    async def _judge_due(self, now: float) -> None:
        assert self.state is not None
        for due in self.state.due(now):
            await self._judge(due)
        self.exporter.set_open_windows(len(self.state.windows))
        if self.state.windows and time.monotonic() - self._last_wait_log >= WAIT_LOG_INTERVAL:
            self._last_wait_log = time.monotonic()
            oldest = min(self.state.windows, key=lambda b: (b[1], b[0]))
            log.info(
                "window [%.0f, %.0f) waits: %s",
                *oldest,
                self.state.waiting_for(oldest),
            )

    async def _judge(self, due: DueWindow) -> None:
        """Evaluate once, publish, then the marker; then the window's partials go."""
        assert self.state is not None and self.publisher is not None
        loop = asyncio.get_running_loop()
        closed = merge_window(self.profile, due)
        try:
            results = await loop.run_in_executor(
                self.executor, self.pipeline.evaluator.evaluate, closed
            )
        except Exception:
            log.exception("evaluation of aggregated window %s failed", due.bounds)
            self.exporter.count_failed_evaluations("given_up", len(closed))
            results = []
        for result in results:
            result = replace(result, report=mark(result.report, due))
            self._publish(result)
            if self.revisable is not None:
                self.revisable.keep(result.report, due.partials)
        latency = time.time() - max((p.closed_at for p in due.partials), default=time.time())
        coverage = len(due.coverage.reported) / max(1, due.coverage.partitions)
        self.state.done(due.bounds, time.time())
        for key in [k for k in self._held if k[0] == due.bounds]:
            del self._held[key]
        self.exporter.observe_aggregation(
            latency, coverage, partial_reasons(due), len(self.state.windows)
        )
        marker = Partial(
            kind="judged",
            model=self.config.model,
            agent_id=JUDGED,
            epoch=0,
            generation=-1,
            reference_hash=self.profile.content_hash,
            sent_at=time.time(),
            window=due.bounds,
        )
        await self._send_marker(marker)

    async def _send_marker(self, marker: Partial) -> None:
        assert self.publisher is not None
        delay = 0.2
        while True:
            try:
                await self.publisher.producer.send_and_wait(
                    self.topic, value=marker.to_bytes(), key=self.config.model.encode()
                )
                return
            except Exception as exc:
                log.warning("judged marker not published (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _publish(self, result: EvaluatedWindow) -> None:
        report = result.report
        self.exporter.observe_report(report, result.seconds)
        self.judging.judged()
        if report.baseline == "reference":
            self.latest[report.model_version] = report
        self.engine.observe_report(report)
        self._write(report)

    def _write(self, report: WindowReport) -> None:
        for sink in self.sinks:
            try:
                sink.write(report)
            except Exception:
                log.exception("report sink %s failed", type(sink).__name__)

    # -- checkpoints -------------------------------------------------------------------------

    def durable_offsets(self) -> dict[tuple[str, int], int]:
        """Per partials partition: the oldest held partial's offset, else the position."""
        offsets = dict(self._position)
        now = time.time()
        horizon = 2 * self.config.aggregation.deadline
        for handoff, (_, arrived) in list(self._handoffs.items()):
            if now - arrived >= horizon:
                del self._handoffs[handoff]
        held = [*self._held.values(), *(where for where, _ in self._handoffs.values())]
        for topic, partition, offset in held:
            key = (topic, partition)
            offsets[key] = min(offsets.get(key, offset), offset)
        return offsets

    async def checkpoint(self) -> None:
        async with self._lock:
            self._last_checkpoint = time.monotonic()
            if self.state is None:
                return
            extra: dict[str, object] = {
                "held": [[*b, v, p, o, *where] for (b, v, p, o), where in self._held.items()]
            }
            sequential = self.pipeline.evaluator.sequential
            if sequential is not None:
                extra["sequential"] = sequential.snapshot()
            if self.revisable is not None:
                extra["revisable"] = self.revisable.snapshot()
            snapshot = Checkpoint(
                offsets=self.durable_offsets(),
                windows=self.state.snapshot(),
                reference_hash=self.profile.content_hash,
                created_at=time.time(),
                extra=extra,
            )
            try:
                await asyncio.to_thread(self.store.save, snapshot)
            except OSError as exc:
                log.error("aggregator checkpoint not written to %s: %s", self.store.path, exc)
                return
            if self.changelog is not None:  # offsets committed once it is acknowledged
                try:
                    await self.changelog.save(snapshot)
                except ChangelogError as exc:
                    log.error("aggregator checkpoint not written: %s; offsets not committed", exc)
                    return
                self.changelog.local = dict(snapshot.offsets)  # the state in memory
            self.exporter.set_checkpoint(snapshot.created_at)
            if self.source is not None:
                await self.source.commit(snapshot.offsets)

    async def _on_revoke(self, partitions: set[tuple[str, int]]) -> None:
        await self.checkpoint()

    async def _shutdown(self) -> None:
        try:
            if self.source is not None and self.source.consumer is not None:
                await self.checkpoint()
        except Exception:
            log.exception("final aggregator checkpoint failed")
        if self.source is not None:
            await self.source.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.changelog is not None:
            await self.changelog.close()
        for sink in self.sinks:
            sink.close()
        self.engine.close(timeout=10)
        if self.server is not None:
            self.server.stop()
        self.executor.shutdown(wait=True)


def run(config: MonitorConfig, role: str | None = None) -> int:
    """``driftline run``: the agent, the aggregator, or both, by ``aggregation.role``
    (``role`` overrides it); until SIGTERM or SIGINT. Returns the exit code."""
    from monitor.runtime.agent import Agent, freeze_startup_heap, run_agent

    if role is not None:
        config = config.model_copy(
            update={"aggregation": config.aggregation.model_copy(update={"role": role})}
        )
    if not config.aggregation.aggregates:
        return run_agent(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if config.aggregation.role == "aggregator":
            aggregator = Aggregator(config)
            freeze_startup_heap()
            await aggregator.run(stop)
            return
        agent = Agent(config)
        aggregator = Aggregator(
            config, profile=agent.profile, exporter=agent.exporter, serve_http=False
        )
        freeze_startup_heap()
        await asyncio.gather(agent.run(stop), aggregator.run(stop))

    asyncio.run(main())
    return 0
