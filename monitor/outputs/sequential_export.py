"""The sequential detectors' series (``drift.sequential``; docs/metrics.md): what the
exporter writes from each report, and the alarm gauges that hold until acknowledged."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from detectors.results import WindowReport
from monitor.outputs import metrics as m

# (feature or None for the dataset) for each column / dataset detector that fired
Fired = tuple[str | None, ...]


def put_sequential(put: Callable[..., None], report: WindowReport) -> None:
    """Statistic and threshold of every column's detector and of the features' dataset
    detector, as gauges of the last window (``put`` is the exporter's live-series writer)."""
    for result in (report.drift, report.prediction_drift):
        for c in result.columns:
            if c.sequential is not None:
                put(m.SEQUENTIAL_STATISTIC, c.sequential.statistic, feature=c.feature)
                put(m.SEQUENTIAL_THRESHOLD, c.sequential.threshold, feature=c.feature)
    ds = report.drift.sequential
    if ds is not None:
        put(m.DATASET_SEQUENTIAL_STATISTIC, ds.statistic)
        put(m.DATASET_SEQUENTIAL_THRESHOLD, ds.threshold)


def fired(report: WindowReport) -> Iterator[str | None]:
    """The columns whose detector fired in this window, and None for the dataset's."""
    for result in (report.drift, report.prediction_drift):
        for c in result.columns:
            if c.sequential is not None and c.sequential.fired:
                yield c.feature
    if report.drift.sequential is not None and report.drift.sequential.fired:
        yield None
