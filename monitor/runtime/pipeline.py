"""The synchronous core shared by ``driftline run`` and ``driftline replay``: decode a
batch, count what was set aside, feed the windows, and hand back the windows that closed.

Keeping one core for both is what makes a replay's reports the agent's reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from detectors.profile import Profile
from detectors.schema import Schema
from monitor.config.model import MonitorConfig
from monitor.ingest.attributions import reason_counts
from monitor.ingest.batch import DecodedBatch, DecodeFailure, SourceMessage
from monitor.ingest.decoder import Decoder
from monitor.labels.decode import LabelDecoder
from monitor.labels.tracker import PerformanceTracker
from monitor.outputs.exporter import Exporter
from monitor.runtime.evaluation import WindowEvaluator
from monitor.runtime.event_time import bound_event_time
from monitor.runtime.sequential import SequentialMonitor
from monitor.runtime.windows import ClosedWindow, WindowManager

if TYPE_CHECKING:
    from monitor.explain.logged import LoggedAttributor
    from monitor.explain.window import WindowAttributor
    from monitor.ingest.attributions import AttributionField
    from monitor.labels.decode import LabelBatch
    from monitor.runtime.multivariate import MultivariateMonitor

log = logging.getLogger(__name__)


def window_label(config: MonitorConfig) -> str:
    """The ``window`` metric label: the window's length as people write it."""
    w = config.windows
    if w.rows:
        return f"{w.rows}rows"
    size = w.size
    for unit, seconds in (("h", 3600), ("m", 60), ("s", 1)):
        if size >= seconds and size % seconds == 0:
            return f"{int(size // seconds)}{unit}"
    return f"{size:g}s"


@dataclass
class Pipeline:
    """Decoder, windows and evaluator for one model, plus the exporter they report to."""

    config: MonitorConfig
    profile: Profile
    exporter: Exporter
    on_failure: Callable[[DecodeFailure], None] | None = None
    decoder: Decoder = field(init=False)
    windows: WindowManager = field(init=False)
    evaluator: WindowEvaluator = field(init=False)
    # Realized and estimated performance; None when the profile learnt no labels.
    performance: PerformanceTracker | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.decoder = Decoder(
            self.config.record, self.schema, attributions=self._attribution_field()
        )
        self.windows = WindowManager.from_config(self.profile, self.config.windows)
        self.label_decoder = LabelDecoder(self.config.labels, self.config.kpis)
        if self.profile.performance is not None:
            w = self.config.windows
            self.performance = PerformanceTracker(
                self.profile.performance,
                self.config.labels,
                self.config.kpis,
                pane_length=float(w.rows) if w.rows else float(w.slide or w.size),
                panes_per_window=1 if w.rows or not w.slide else round(w.size / w.slide),
                row_windows=bool(w.rows),
            )
        self.evaluator = WindowEvaluator(
            self.profile,
            self.config.model,
            self.config.drift.to_settings(),
            self.config.quality.to_settings(),
            stable_version=self.config.windows.stable_version,
            multivariate=self._multivariate(),
            attributor=self._attributor(),
            performance=None if self.performance is None else self.performance.evaluate,
            sequential=self._sequential(),
        )

    def _sequential(self) -> SequentialMonitor | None:
        """Page's CUSUMs over the windows unless ``drift.sequential.enabled`` is false."""
        seq = self.config.drift.sequential
        if not seq.enabled:
            return None
        w = self.config.windows
        return SequentialMonitor(
            self.profile, seq.to_settings(w), window_size=w.size, window_slide=w.slide
        )

    def _multivariate(self) -> MultivariateMonitor | None:
        """Row-level tests when ``multivariate.enabled`` (the online MMD calibrates here)."""
        if not self.config.multivariate.enabled:
            return None
        # imported here: with the feature off the agent's path stays without its stack
        # (docs/architecture.md, "Imports on the agent's path")
        from monitor.runtime.multivariate import MultivariateMonitor

        return MultivariateMonitor(
            self.profile,
            self.config.multivariate.to_settings(),
            on_skip=self.exporter.count_multivariate_skipped,
            on_online=self.exporter.set_online_mmd,
        )

    def _attribution_field(self) -> AttributionField | None:
        """Where the records log their attributions (``explain.source: record``)."""
        if self.config.explain.source != "record":
            return None
        from monitor.explain.logged import record_field

        return record_field(self.profile, self.config.explain.to_settings())

    def _attributor(self) -> WindowAttributor | LoggedAttributor | None:
        """Attribution drift when ``explain.model`` is set (the model loads here, once) or
        the records log their attributions (``explain.source: record``)."""
        if not self.config.explain.enabled:
            return None
        if self.config.explain.source == "record":
            from monitor.explain.logged import LoggedAttributor

            return LoggedAttributor.from_settings(
                self.profile,
                self.config.explain.to_settings(),
                on_skip=self.exporter.count_attribution_skipped,
            )
        from monitor.explain.window import WindowAttributor

        return WindowAttributor.from_settings(
            self.profile,
            self.config.explain.to_settings(),
            on_skip=self.exporter.count_attribution_skipped,
        )

    @property
    def schema(self) -> Schema:
        return self.profile.schema

    def ingest_messages(self, messages: Sequence[SourceMessage], now: float) -> list[ClosedWindow]:
        """Decode raw messages and add their rows; failures are counted and set aside."""
        batch = self.decoder.decode(messages, now=now)
        self.set_aside(batch.failures)
        batch, ahead = bound_event_time(batch, now, self.config.windows.max_event_skew, messages)
        self.set_aside(ahead)
        return self.ingest_batch(batch, now)

    def shift(self, gap: float) -> None:
        """The agent did not run for ``gap`` seconds (loop_gap.py): the processing-time
        clocks (window idle timeouts, the KServe pairing TTL) do not count that time."""
        self.windows.shift(gap)
        self.decoder.shift(gap)

    def expire(self, now: float) -> None:
        """Report request/response halves whose partner never came (KServe pairing)."""
        self.set_aside(self.decoder.expire(now))

    def set_aside(self, failures: Sequence[DecodeFailure]) -> None:
        """Count, log (without payload) and hand on each record that could not be used."""
        for failure in failures:
            self.exporter.count_failures(failure.reason, 1)
            log.warning(
                "record set aside: %s (%s) at %s[%d]@%d",
                failure.reason,
                failure.detail,
                failure.message.topic,
                failure.message.partition,
                failure.message.offset,
            )
            if self.on_failure is not None:
                self.on_failure(failure)

    def ingest_batch(self, batch: DecodedBatch, now: float) -> list[ClosedWindow]:
        batch, ahead = bound_event_time(batch, now, self.config.windows.max_event_skew)
        self.set_aside(ahead)  # a table's rows (ingest_messages has done its own)
        if batch.rows:
            versions, counts = np.unique(batch.model_version.astype(str), return_counts=True)
            for version, n in zip(versions.tolist(), counts.tolist(), strict=True):
                self.exporter.count_records("decoded", n, model_version=version)
        if batch.attribution_codes is not None:  # logged attributions that were unreadable
            for reason, n in reason_counts(batch.attribution_codes).items():
                self.exporter.count_attribution_invalid(reason, n)
        if self.evaluator.multivariate is not None:
            self.evaluator.multivariate.observe(batch)
        result = self.windows.add(batch, now)
        if self.performance is not None:
            before = dict(self.performance.join.counts)
            invalid = self.performance.invalid_labels
            self.performance.observe(batch.columns, batch.row_key, batch.event_time, result, now)
            self.performance.on_closed(result.closed)
            self._count_join(before, invalid)
        for version, n in result.late.items():
            if n:
                self.exporter.count_records("late", n, model_version=version)
        for version, n in result.duplicates.items():
            if n:
                self.exporter.count_records("duplicate", n, model_version=version)
        return result.closed

    def ingest_labels(self, messages: Sequence[SourceMessage]) -> None:
        """Decode label records and join them; bad ones are counted and set aside."""
        batch = self.label_decoder.decode(messages)
        for failure in batch.failures:
            self.exporter.count_labels("invalid", 1)
            log.warning(
                "label set aside: %s (%s) at %s[%d]@%d",
                failure.reason,
                failure.detail,
                failure.topic,
                failure.partition,
                failure.offset,
            )
        self.join_labels(batch)

    def join_labels(self, batch: LabelBatch) -> None:
        if self.performance is None:
            self.exporter.count_labels("no_reference", batch.rows)
            return
        before = dict(self.performance.join.counts)
        invalid = self.performance.invalid_labels
        self.performance.add_labels(batch)
        self._count_join(before, invalid)

    def _count_join(self, before: dict[str, int], invalid: int) -> None:
        assert self.performance is not None
        for outcome, n in self.performance.join.counts.items():
            if n > before.get(outcome, 0):
                self.exporter.count_labels(outcome, n - before.get(outcome, 0))
        if self.performance.invalid_labels > invalid:
            self.exporter.count_labels("invalid", self.performance.invalid_labels - invalid)
        self.exporter.set_label_join(
            self.performance.join.pending_predictions, self.performance.join.pending_labels
        )

    def tick(self, now: float) -> list[ClosedWindow]:
        """Windows idle for ``idle_timeout``, closed; expired predictions and labels."""
        closed = self.windows.tick(now)
        if self.performance is not None:
            self.performance.on_closed(closed)
            before = dict(self.performance.join.counts)
            self.performance.expire()
            self._count_join(before, self.performance.invalid_labels)
        return closed

    def end_of_labels(self) -> None:
        """End of a replay's input: labels still waiting for a prediction count as such."""
        if self.performance is not None:
            before = dict(self.performance.join.counts)
            self.performance.join.finish()
            self._count_join(before, self.performance.invalid_labels)

    def flush(self) -> list[ClosedWindow]:
        """Every open window, closed now."""
        closed = self.windows.flush()
        if self.performance is not None:
            self.performance.on_closed(closed)
        return closed
