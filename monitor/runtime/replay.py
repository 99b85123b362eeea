"""Offline replay: the agent's pipeline over a file, one WindowReport per window.

Time windows when the records carry event times, row-count windows otherwise (``--window
N`` rows, or the configured ``windows.rows``). Reports come out in window order as the
windows close, and the trailing windows are flushed at the end of the input.

With labels (``--labels FILE`` or ``labels.file``), a label with an event time arrives
once the predictions' event time has reached it — so a label later than its window's
close revises that window's report, which comes out again with ``performance.revised``
— and a label without a time is known from the start (it joins as its prediction is
read). What never met a prediction is counted at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from detectors.profile import Profile
from detectors.results import WindowReport
from detectors.sketch import WindowSketch
from monitor.config.model import MonitorConfig
from monitor.ingest.files import (
    file_format,
    is_record_lines,
    iter_messages,
    iter_table_batches,
)
from monitor.labels.decode import LabelBatch
from monitor.outputs.exporter import Exporter
from monitor.report.store import artifact_paths
from monitor.runtime.pipeline import Pipeline, window_label
from monitor.runtime.windows import ClosedWindow

Progress = Callable[[int], None]


def replay(
    config: MonitorConfig,
    profile: Profile,
    path: Path,
    exporter: Exporter | None = None,
    progress: Progress | None = None,
    labels: LabelBatch | None = None,
    sketches: Path | None = None,
) -> Iterator[WindowReport]:
    """Yield the reports the agent would have produced for the records in ``path``
    (and, with ``labels``, the revisions late labels make).

    With ``sketches``, each window's sketch is written where the agent's HTML reports
    keep theirs (``<sketches>/<model>/<version>/<window start>.sketch``, see
    monitor/report/store.py), so ``driftline report --sketches`` can plot the window.
    """
    exporter = exporter or Exporter(
        model=config.model,
        window_label=window_label(config),
        reference_hash=profile.short_hash,
    )
    pipeline = Pipeline(config, profile, exporter)
    now = time.time()

    feed = _LabelFeed(labels) if labels is not None and labels.rows else None
    if feed is not None:
        pipeline.join_labels(feed.due(-np.inf))  # labels without a time: known from the start

    def emit(closed: list[ClosedWindow]) -> Iterator[WindowReport]:
        by_window = {(c.model_version, c.start): c.sketch for c in closed}
        for result in pipeline.evaluator.evaluate(closed):
            exporter.observe_report(result.report, result.seconds)
            if sketches is not None:
                _write_sketch(sketches, result.report, by_window)
            if pipeline.performance is not None:
                pipeline.performance.remember(result.report)
            yield result.report
        tracker = pipeline.performance
        if feed is not None and tracker is not None:
            pipeline.join_labels(feed.due(tracker.join.watermark))
            tracker.expire()
            for report in tracker.revisions():
                exporter.observe_revision(report)
                yield report

    if file_format(path, config.source.file.format if config.source.file else None) == "table" or (
        not is_record_lines(path, config.record)
    ):
        for batch in iter_table_batches(
            path, profile.schema, config.record, attributions=pipeline.decoder.attributions
        ):
            pipeline.set_aside(batch.failures)  # lines that are not rows: counted, skipped
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
    if feed is not None:
        pipeline.join_labels(feed.rest())
        yield from emit([])
    yield from emit(pipeline.flush())
    pipeline.end_of_labels()


def _write_sketch(
    root: Path, report: WindowReport, sketches: dict[tuple[str, float], WindowSketch]
) -> None:
    sketch = sketches.get((report.model_version, report.window_start))
    if sketch is None:
        return
    target = artifact_paths(root, report).sketch
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(sketch.to_bytes())
    tmp.replace(target)


class _LabelFeed:
    """Labels released in event-time order as the predictions' event time passes them;
    the ones without a time first."""

    def __init__(self, labels: LabelBatch) -> None:
        t = labels.event_time
        order = np.argsort(np.where(np.isnan(t), -np.inf, t), kind="stable")
        self.labels = labels.take(order)
        self.times = np.where(np.isnan(t[order]), -np.inf, t[order])
        self.pos = 0

    def due(self, watermark: float) -> LabelBatch:
        end = int(np.searchsorted(self.times, watermark, side="right"))
        end = max(end, self.pos)
        out = self.labels.take(np.arange(self.pos, end))
        self.pos = end
        return out

    def rest(self) -> LabelBatch:
        return self.due(np.inf)
