"""The agent: Kafka in, window reports and metrics out, with at-least-once checkpoints.

One asyncio loop consumes, decodes and updates the sketches inline (fast enough, decision
6); the tests of each closed window run in a worker thread so consumption continues.
The delivery protocol (docs/architecture.md, decision 7):

1. a batch's rows go into the open windows' sketches;
2. every ``state.checkpoint_interval`` the agent waits for the reports of windows closed
   so far to be written, then writes a checkpoint (window state + next offset per
   partition) to the state directory, atomically;
3. only then it commits those offsets to the consumer group.

After a crash the agent restores the checkpoint and resumes each partition at the
checkpoint's offsets, so every record counts exactly once in the windows (reports of
windows that closed after the last checkpoint are written again: sinks are
at-least-once). SIGTERM drains: pending evaluations finish, a final checkpoint is
written and committed, then the agent exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from detectors.profile import Profile, load_profile
from detectors.results import WindowReport
from monitor.actions.policy import PolicyEngine
from monitor.actions.routes import register
from monitor.config.model import MonitorConfig
from monitor.config.record import pairs_topic_for
from monitor.ingest.batch import DecodeFailure
from monitor.ingest.dead_letters import REASON_HEADER, DeadLetters, lowest
from monitor.ingest.kafka import KafkaPublisher
from monitor.ingest.repartition import PairsRepartition
from monitor.ingest.source_factory import make_source
from monitor.ingest.sources import Source
from monitor.outputs.exporter import Exporter
from monitor.outputs.sequential_routes import register_sequential
from monitor.outputs.server import AgentServer
from monitor.outputs.sinks import FileSink, KafkaSink, ReportSink, StreamSink
from monitor.outputs.telemetry import Telemetry
from monitor.runtime.changelog import Changelog, ChangelogError, newest, restore
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, CheckpointStore
from monitor.runtime.evaluation import EvaluatedWindow
from monitor.runtime.failed_windows import FailedWindows
from monitor.runtime.health import Health
from monitor.runtime.loop_gap import LoopGap
from monitor.runtime.partials_topic import ensure_partials_topic
from monitor.runtime.pipeline import Pipeline, window_label
from monitor.runtime.publishing import AgentPartials
from monitor.runtime.resumed import take_resumed
from monitor.runtime.shared_group import SharedGroupCheck
from monitor.runtime.side_state import restore_side_state, side_state
from monitor.runtime.state_loss import StateLoss
from monitor.runtime.window_snapshot import SnapshotError
from monitor.runtime.windows import ClosedWindow

if TYPE_CHECKING:
    from monitor.report.store import HtmlReportWriter

log = logging.getLogger(__name__)

DEAD_LETTER_REASON_HEADER = REASON_HEADER
# Seconds a SIGTERM waits for dead letters on their way before the final checkpoint.
DEAD_LETTER_SHUTDOWN_WAIT = 20.0

# Seconds one poll of the source waits for records; a turn of the loop far longer than
# this is time the agent did not run (monitor/runtime/loop_gap.py).
POLL_SECONDS = 0.2


class Agent:
    """One model's monitor: ``await Agent(config).run(stop_event)``."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        profile: Profile | None = None,
        sinks: Sequence[ReportSink] | None = None,
        serve_http: bool = True,
    ) -> None:
        if config.source.kind != "kafka" or config.source.kafka is None:
            raise ValueError(
                "source.kind: the agent needs a kafka source; use `driftline replay` for files"
            )
        self.config = config
        self.kafka_cfg = config.source.kafka
        self.profile = profile or load_profile(config.reference)
        config.check_against_profile(self.profile)
        self.health = Health(reference_loaded=True)
        self.exporter = Exporter(
            model=config.model,
            window_label=window_label(config),
            reference_hash=self.profile.short_hash,
            exemplars=config.exporter.exemplars,
            max_model_versions=config.exporter.max_model_versions,
            model_version_idle=config.exporter.model_version_idle,
        )
        self.exporter.set_reference(self.profile.short_hash, self.profile.rows)
        self.engine = PolicyEngine.from_config(config, self.exporter)
        self.telemetry = Telemetry.from_config(config.exporter, config.model, self.exporter)
        self.pipeline = Pipeline(config, self.profile, self.exporter, on_failure=self._dead_letter)
        self.sinks: list[ReportSink] = list(sinks) if sinks is not None else self._default_sinks()
        # HTML pages of windows with drift or a quality breach, written in the worker.
        self.html_reports: HtmlReportWriter | None = None
        if config.reports.html_dir is not None:
            # the report's stack (pandas, the page) only when pages are written
            # (docs/architecture.md, "Imports on the agent's path")
            from monitor.report.store import HtmlReportWriter

            self.html_reports = HtmlReportWriter(
                self.profile, config.reports.html_dir, config.reports.html_base_url
            )
        self.store = CheckpointStore(config.state.dir)
        # Checkpoints in a compacted topic too (docs/agent.md, "State"); None when off.
        self.changelog = Changelog.from_config(config)
        # KServe halves forwarded keyed by CloudEvent id, to pair across partitions.
        pairs_topic = config.record.kserve_pairs_topic or pairs_topic_for(config.model)
        self.pairs = (
            PairsRepartition(self.kafka_cfg, pairs_topic)
            if config.record.kserve_repartition
            else None
        )
        row_topics = [self.pairs.topic] if self.pairs is not None else self.kafka_cfg.topics
        self.state_loss = StateLoss(row_topics, restored=False)
        self._from_changelog = False  # whether a checkpoint came from the changelog
        # Labels come from their own topic, read by this consumer group (labels: in
        # monitor.yaml); None when they come from nowhere or from a file.
        self.labels_topic = config.labels.topic if config.labels.source == "kafka" else None
        # Windows whose evaluation raised: kept on disk and retried (never lost silently).
        self.failed = FailedWindows(config.state.dir / "failed-windows", self.profile)
        # With aggregation.role agent/both, closed windows go out as partials (publishing.py).
        self.partials = AgentPartials.from_config(config, self.profile.content_hash)
        if self.partials is not None:  # windows kept per partition (partitioned.py)
            self.pipeline.windows = self.partials.windows(self.profile, config)
            if self.partials.changelog is not None:  # state per partition (partition_state.py)
                self.changelog, self.state_loss.restored = self.partials.changelog, True
            self.partials.performance = self.pipeline.performance  # partials carry it
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftline-eval")
        self.offsets: dict[tuple[str, int], int] = {}
        self.latest: dict[str, WindowReport] = {}
        self.publisher: KafkaPublisher | None = None
        self.dead_letters: DeadLetters | None = None
        self.source: Source | None = None
        self.shared: SharedGroupCheck | None = None  # role none in a shared group
        self.server: AgentServer | None = None
        self._serve_http = serve_http
        self._evaluations: set[asyncio.Task[None]] = set()
        self._last_checkpoint = time.monotonic()
        self._checkpoint_lock = asyncio.Lock()

    # -- set-up ---------------------------------------------------------------------------

    def _default_sinks(self) -> list[ReportSink]:
        sinks: list[ReportSink] = []
        if self.config.reports.log:
            sinks.append(StreamSink())
        if self.config.reports.file is not None:
            sinks.append(FileSink(self.config.reports.file))
        return sinks

    async def _load_changelog(self, stop: asyncio.Event) -> Checkpoint | None:
        """The newest checkpoint in the changelog topic (None: off, empty or unusable)."""
        if self.changelog is None:
            return None
        checkpoint, ours = await restore(
            self.changelog, self.profile.content_hash, stop, self.health.tick
        )
        if not ours:  # another running agent's key: neither restored nor overwritten
            self.changelog = None
        self._from_changelog = checkpoint is not None
        return checkpoint

    def _restore(self, remote: Checkpoint | None = None) -> dict[tuple[str, int], int]:
        """Window state and resume offsets from the last good checkpoint, if any: the
        newer of the state directory's and the changelog's (``remote``).

        A checkpoint that cannot be used (corrupt, another reference, changed window
        layout) is reported and the agent starts its windows afresh from the group's
        committed offsets.
        """
        if getattr(self.changelog, "per_partition", False):
            return {}  # restored per partition on assignment, the directory as a cache
        try:
            checkpoint = newest(self.store.load(reference_hash=self.profile.content_hash), remote)
        except CheckpointError as exc:
            log.warning("starting without a local checkpoint: %s", exc)
            checkpoint = remote
        if checkpoint is None:
            return {}
        try:
            self.pipeline.windows = type(self.pipeline.windows).restore(
                self.profile, checkpoint.windows, config=self.config.windows, now=time.time()
            )
        except SnapshotError as exc:
            log.warning("checkpoint window state unusable (%s); starting windows afresh", exc)
            return {}
        restore_side_state(self.pipeline, checkpoint.extra, self.exporter)
        log.info(
            "restored checkpoint from %.0f with %d partitions",
            checkpoint.created_at,
            len(checkpoint.offsets),
        )
        self.offsets = dict(checkpoint.offsets)
        self.state_loss.restored = True
        return dict(checkpoint.offsets)

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if self._serve_http:
            self.server = AgentServer(
                host=self.config.exporter.host,
                port=self.config.exporter.port,
                registry=self.exporter.registry,
                ready=self.health.ready,
                last_tick=lambda: self.health.last_tick,
                clock=self.health.clock,
                latest_reports=lambda: dict(self.latest),
            )
            register(self.server, self.engine, self.config)
            if self.pipeline.evaluator.sequential is not None:
                register_sequential(
                    self.server,
                    self.pipeline.evaluator.sequential,
                    self.config.alerts.token_env or "DRIFTLINE_TOKEN",
                    self.exporter.clear_sequential_alarms,
                )
            self.server.start()
            log.info("serving /metrics on %s:%d", self.config.exporter.host, self.server.port)
        # after the server: /healthz answers while an unreachable changelog is retried
        start_offsets = self._restore(await self._load_changelog(stop))
        kept = self.failed.load(time.time())
        if kept:
            log.warning("retrying %d windows whose evaluation failed in an earlier run", kept)
        needs_publisher = (
            self.kafka_cfg.dead_letter_topic or self.config.reports.kafka_topic or self.partials
        )
        if self.pairs is not None:  # a broker refusing or silent is a warning there
            await self.pairs.ensure_topic()
        if self.partials is not None:  # before the first partial goes out
            await ensure_partials_topic(self.config)
        extra = [self.labels_topic, self.pairs.topic if self.pairs is not None else None]
        self.source = make_source(
            self.kafka_cfg,
            start_offsets,
            on_revoke=self._on_revoke,
            extra_topics=[t for t in extra if t],
        )
        # restored from the changelog: a commit ahead of it is another member's
        self.source.foreign_commits = self._from_changelog
        if self.partials is not None:
            self.partials.bind(self.pipeline.windows, self.source)
        else:  # a lone agent: say so if other members read some of the topic
            self.shared = SharedGroupCheck(self.kafka_cfg.topics, self.source.partition_count)
        self.exporter.set_source_up(False)
        try:
            if not await self.source.start(stop):
                return
            if needs_publisher:
                self.publisher = KafkaPublisher(self.kafka_cfg)
                await self.publisher.start()
                if self.partials is not None:
                    self.partials.start(self.publisher.producer, self.exporter)
                if self.kafka_cfg.dead_letter_topic:
                    topic = self.kafka_cfg.dead_letter_topic
                    self.dead_letters = DeadLetters(self.publisher, topic)
                if self.config.reports.kafka_topic:
                    self.sinks.append(
                        KafkaSink(self.config.reports.kafka_topic, self.publisher.send)
                    )
            await self._consume(stop)
        finally:
            await self._shutdown()

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self.source is not None
        interval = self.config.state.checkpoint_interval
        gaps = LoopGap(poll_timeout=POLL_SECONDS)  # a turn far longer than a poll: frozen
        while not stop.is_set():
            messages = await self.source.poll(timeout_ms=int(POLL_SECONDS * 1000))
            take_resumed(self.offsets, self.source)  # before this poll's records' offsets
            now = time.time()
            if gap := gaps.observe(now):  # time not run is no partition's silence
                self.pipeline.shift(gap)
                if self.partials is not None:
                    self.partials.shift(gap)
            if self.state_loss.check(getattr(self.source, "origins", {})):
                self.exporter.count_state_lost(len(self.state_loss.lost))
            self.health.tick()
            self.health.consuming = self.source.up
            self.exporter.set_source_up(self.source.up)
            # owned partitions hold the watermark back; revoked ones stop (watermarks.py)
            self.pipeline.windows.assign(self._row_partitions(), now)
            if self.shared is not None:
                self.shared.observe(self.source.assigned())
            labels = [m for m in messages if m.topic == self.labels_topic]
            if labels:
                messages = [m for m in messages if m.topic != self.labels_topic]
            if self.pairs is not None and messages:  # KServe halves go round by id first
                messages, forward = self.pairs.split(messages)
                if not await self.pairs.forward_until_sent(forward, stop):
                    break
                if forward:
                    sources = self.pairs.source_topics
                    self.offsets.update(
                        {tp: o for tp, o in self.source.polled.items() if tp[0] in sources}
                    )
            if messages:
                closed = self.pipeline.ingest_messages(messages, now)
                # The last message's, not max(): a partition whose log was lost restarts
                # at a lower offset.
                self.offsets.update(self.source.polled)
                self._submit(closed)
            else:
                self.pipeline.expire(now)
            if labels:
                # after this poll's predictions, so a label and its prediction meet now
                self.pipeline.ingest_labels(labels)
                self.offsets.update(self.source.polled)
            self._submit(self.pipeline.tick(now))
            self._submit(self.failed.due(now), retry=True)
            for (topic, partition), lag in self.source.lag().items():
                self.exporter.set_lag(topic, partition, lag)
            if time.monotonic() - self._last_checkpoint >= interval:
                await self.checkpoint()

    def _row_partitions(self) -> set[int]:
        """The partitions whose records become rows here: with KServe repartitioning
        the pairs topic's, not the source topic's (their events are forwarded)."""
        assert self.source is not None
        skip = self.pairs.source_topics if self.pairs is not None else set()
        return {p for t, p in self.source.assigned() if t not in skip}

    def _submit(self, closed: list[ClosedWindow], retry: bool = False) -> None:
        if not closed:
            return
        self.state_loss.closed(closed)
        if self.partials is not None:  # an aggregator judges them (publishing.py)
            work = self.partials.closed(closed, self.source, self.pipeline.windows)
        else:
            work = self._evaluate(closed, retry)
        task = asyncio.create_task(work)
        self._evaluations.add(task)
        task.add_done_callback(self._evaluations.discard)

    async def _evaluate(self, closed: list[ClosedWindow], retry: bool = False) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self._evaluate_closed, closed)
        except Exception as exc:
            # Kept on disk before the next checkpoint commits past the windows' records
            # (checkpoint() drains evaluations first), then retried with back-off.
            given_up = self.failed.keep(closed, exc, time.time())
            log.exception(
                "window evaluation failed for %d windows (%d given up, kept in %s)",
                len(closed),
                given_up,
                self.failed.directory,
            )
            if len(closed) > given_up:
                self.exporter.count_failed_evaluations("retry", len(closed) - given_up)
            if given_up:
                self.exporter.count_failed_evaluations("given_up", given_up)
            return
        if retry:
            for w in closed:
                self.failed.succeeded(w)
        for result in results:
            self._publish(result)

    def _evaluate_closed(self, closed: list[ClosedWindow]) -> list[EvaluatedWindow]:
        """In the worker: the reports, and the HTML pages (linked from the reports)."""
        results = self.pipeline.evaluator.evaluate(closed)
        if self.html_reports is not None:
            results = self.html_reports.attach(closed, results)
        return results

    def _publish(self, result: EvaluatedWindow) -> None:
        report = self.state_loss.mark(result.report)
        self.exporter.observe_report(report, result.seconds)
        self.telemetry.window_evaluated(report, result.seconds, result.traceparents)
        if report.baseline == "reference":
            self.latest[report.model_version] = report
            if self.pipeline.performance is not None:
                self.pipeline.performance.remember(report)
        self.engine.observe_report(report)
        for sink in self.sinks:
            try:
                sink.write(report)
            except Exception:
                log.exception("report sink %s failed", type(sink).__name__)

    async def drain(self) -> None:
        """Wait until every closed window's report is written."""
        while self._evaluations:
            await asyncio.gather(*list(self._evaluations), return_exceptions=True)

    async def checkpoint(self) -> None:
        """Reports first, then durable state, then the offsets commit.

        One at a time: a rebalance calls this from the consumer's own task, possibly
        while the loop's periodic checkpoint is under way, and two saves at once would
        race on the store's temporary file.
        """
        async with self._checkpoint_lock:
            # a partition assigned in the poll now under way resumes where the source put it
            take_resumed(self.offsets, self.source)
            await self.drain()
            if self.partials is not None:  # hand-offs, then owned partitions' progress
                await self.partials.progress(
                    self.source,
                    self.pipeline.windows,
                    self._durable_offsets(),
                    time.time(),
                    self.offsets,
                )
            self._publish_revisions()
            snapshot = Checkpoint(
                offsets=self._durable_offsets(),
                windows=self.pipeline.windows.snapshot(),
                reference_hash=self.profile.content_hash,
                created_at=time.time(),
                extra=side_state(self.pipeline),
            )
            try:
                await asyncio.to_thread(self.store.save, snapshot)
            except OSError as exc:
                # Disk full or unwritable: keep consuming; offsets stay uncommitted, so
                # nothing is lost, and the next interval tries again. The checkpoint-age
                # alert fires if this lasts. With a changelog the directory is a cache.
                log.error("checkpoint not written to %s: %s", self.store.path, exc)
                if self.changelog is None:
                    self._last_checkpoint = time.monotonic()
                    return
            if self.changelog is not None:  # offsets committed once it is acknowledged
                try:
                    await self.changelog.save(snapshot)
                    self.exporter.count_changelog_write("acknowledged")
                except ChangelogError as exc:
                    log.error("checkpoint not written: %s; offsets not committed", exc)
                    self.exporter.count_changelog_write("failed")
                    self._last_checkpoint = time.monotonic()
                    return
            self._last_checkpoint = time.monotonic()
            self.exporter.set_checkpoint(snapshot.created_at)
            if self.source is not None:
                await self.source.commit(snapshot.offsets)

    def _publish_revisions(self) -> None:
        """Reports of closed windows whose performance late labels changed, sent again."""
        tracker = self.pipeline.performance
        if tracker is None:
            return
        for report in tracker.revisions():
            self.exporter.observe_revision(report)
            self.engine.observe_report(report)  # a realized drop may be found late
            for sink in self.sinks:
                try:
                    sink.write(report)
                except Exception:
                    log.exception("report sink %s failed", type(sink).__name__)

    def _durable_offsets(self) -> dict[tuple[str, int], int]:
        """Next offsets whose records are all in the window state.

        A message the decoder still holds (half of a request/response pair) is not in
        the windows yet: its partition's offset stays at it until it is.
        """
        offsets = lowest(self.offsets, self.pipeline.decoder.pending_offsets())
        if self.dead_letters is not None:  # and none past a dead letter on its way
            offsets = lowest(offsets, self.dead_letters.hold())
        return offsets

    async def _on_revoke(self, partitions: set[tuple[str, int]]) -> None:
        # The next owner resumes from the committed offsets: make them match our state.
        if self.partials is not None:  # their windows are handed off first
            self.partials.release(self.pipeline.windows, partitions)
        await self.checkpoint()
        # The revoked partitions' offsets stay: the windows still hold their records, and
        # a restart must resume after them. They are not committed while not assigned, and
        # if a partition comes back after another member read on and committed further
        # (this agent a zombie whose commit above was refused, or a plain rebalance), the
        # source says where it resumes and that replaces the offset before any commit
        # (monitor/runtime/resumed.py), so the group's offset never moves back.
        # Held KServe halves of those partitions: committed below them, so re-read and
        # paired by the next owner; forgotten here, not expired as unpaired.
        self.pipeline.decoder.kserve.release(partitions)
        # A partition that is no longer ours has no lag here (a kept one gets it back).
        for topic, partition in partitions:
            self.exporter.set_lag(topic, partition, None)

    def _dead_letter(self, failure: DecodeFailure) -> None:
        if self.dead_letters is not None:
            self.dead_letters.add(failure)

    async def _shutdown(self) -> None:
        if self.dead_letters is not None:
            unsent = await self.dead_letters.settle(DEAD_LETTER_SHUTDOWN_WAIT)
            if unsent:
                log.warning(
                    "%d dead letters not acknowledged at shutdown; their records stay "
                    "uncommitted and are read again at the next start",
                    unsent,
                )
        try:
            if self.source is not None and self.source.consumer is not None:
                await self.checkpoint()
        except Exception:
            log.exception("final checkpoint failed")
        if self.source is not None:
            await self.source.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.changelog is not None:
            await self.changelog.close()
        if self.pairs is not None:
            await self.pairs.close()
        for sink in self.sinks:
            sink.close()
        self.engine.close(timeout=10)
        self.telemetry.shutdown()
        if self.server is not None:
            self.server.stop()
        self.executor.shutdown(wait=True)


def freeze_startup_heap() -> None:
    """Take what start-up left alive (modules, the reference profile, pandas and scipy)
    out of the cyclic garbage collector's view.

    Consuming allocates short-lived objects by the million, which trigger collections;
    without this, each full collection walks the whole start-up heap again (about 12% of
    the agent's CPU in ``bench/agent_bench.py``). Frozen objects are still freed by
    reference counting.
    """
    gc.collect()
    gc.freeze()


def run_agent(config: MonitorConfig) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        agent = Agent(config)
        freeze_startup_heap()
        await agent.run(stop)

    asyncio.run(main())
    return 0
