"""Offline replay: the agent's pipeline over a file, one WindowReport per window.

Time windows when the records carry event times, row-count windows otherwise (``--window
N`` rows, or the configured ``windows.rows``). Reports come out in window order as the
windows close, and the trailing windows are flushed at the end of the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from detectors.profile import Profile
from detectors.results import WindowReport
from monitor.config.model import MonitorConfig
from monitor.ingest.files import (
    file_format,
    is_record_lines,
    iter_messages,
    iter_table_batches,
)
from monitor.outputs.exporter import Exporter
from monitor.runtime.pipeline import Pipeline, window_label
from monitor.runtime.windows import ClosedWindow

Progress = Callable[[int], None]


def replay(
    config: MonitorConfig,
    profile: Profile,
    path: Path,
    exporter: Exporter | None = None,
    progress: Progress | None = None,
) -> Iterator[WindowReport]:
    """Yield the reports the agent would have produced for the records in ``path``."""
    exporter = exporter or Exporter(
        model=config.model,
        window_label=window_label(config),
        reference_hash=profile.short_hash,
    )
    pipeline = Pipeline(config, profile, exporter)
    now = time.time()

    def emit(closed: list[ClosedWindow]) -> Iterator[WindowReport]:
        for result in pipeline.evaluator.evaluate(closed):
            exporter.observe_report(result.report, result.seconds)
            yield result.report

    if file_format(path, config.source.file.format if config.source.file else None) == "table" or (
        not is_record_lines(path, config.record)
    ):
        for batch in iter_table_batches(path, profile.schema, config.record):
            if config.windows.rows is None and np.isnan(batch.event_time).any():
                raise ValueError(
                    f"{path}: rows without a time in column {config.record.event_time_field!r}; "
                    "use --window N for row-count windows"
                )
            yield from emit(pipeline.ingest_batch(batch, now))
            if progress is not None:
                progress(batch.rows)
    else:
        for messages in iter_messages(path):
            yield from emit(pipeline.ingest_messages(messages, now))
            if progress is not None:
                progress(len(messages))
    yield from emit(pipeline.windows.flush())
