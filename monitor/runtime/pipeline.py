"""The synchronous core shared by ``driftline run`` and ``driftline replay``: decode a
batch, count what was set aside, feed the windows, and hand back the windows that closed.

Keeping one core for both is what makes a replay's reports the agent's reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.profile import Profile
from detectors.schema import Schema
from monitor.config.model import MonitorConfig
from monitor.ingest.batch import DecodedBatch, DecodeFailure, SourceMessage
from monitor.ingest.decoder import Decoder
from monitor.outputs.exporter import Exporter
from monitor.runtime.evaluation import WindowEvaluator
from monitor.runtime.sequential import SequentialMonitor
from monitor.runtime.windows import ClosedWindow, WindowManager

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

    def __post_init__(self) -> None:
        self.decoder = Decoder(self.config.record, self.schema)
        self.windows = WindowManager.from_config(self.profile, self.config.windows)
        self.evaluator = WindowEvaluator(
            self.profile,
            self.config.model,
            self.config.drift.to_settings(),
            self.config.quality.to_settings(),
            stable_version=self.config.windows.stable_version,
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

    @property
    def schema(self) -> Schema:
        return self.profile.schema

    def ingest_messages(self, messages: Sequence[SourceMessage], now: float) -> list[ClosedWindow]:
        """Decode raw messages and add their rows; failures are counted and set aside."""
        batch = self.decoder.decode(messages, now=now)
        self.set_aside(batch.failures)
        return self.ingest_batch(batch, now)

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
        if batch.rows:
            versions, counts = np.unique(batch.model_version.astype(str), return_counts=True)
            for version, n in zip(versions.tolist(), counts.tolist(), strict=True):
                self.exporter.count_records("decoded", n, model_version=version)
        result = self.windows.add(batch, now)
        for version, n in result.late.items():
            if n:
                self.exporter.count_records("late", n, model_version=version)
        for version, n in result.duplicates.items():
            if n:
                self.exporter.count_records("duplicate", n, model_version=version)
        return result.closed
