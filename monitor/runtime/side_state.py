"""State checkpointed beside the windows (docs/agent.md, "State"): the sequential
detectors' CUSUMs, the label join with the windows' performance state, and the online
MMD's run. Each part restores on its own: one that cannot be used is reported and starts
afresh, and the windows resume regardless."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.outputs.exporter import Exporter
    from monitor.runtime.pipeline import Pipeline

log = logging.getLogger(__name__)


def side_state(pipeline: Pipeline) -> dict[str, object]:
    """What a checkpoint keeps beside the windows (``Checkpoint.extra``)."""
    extra: dict[str, object] = {}
    sequential = pipeline.evaluator.sequential
    if sequential is not None:
        extra["sequential"] = sequential.snapshot()
    if pipeline.performance is not None:
        extra["performance"] = pipeline.performance.snapshot()
    multivariate = pipeline.evaluator.multivariate
    if multivariate is not None:
        extra["multivariate"] = multivariate.snapshot()
    return extra


def restore_side_state(pipeline: Pipeline, extra: dict[str, object], exporter: Exporter) -> None:
    """Each part of :func:`side_state` back into the pipeline's detectors."""
    tracker, saved = pipeline.performance, extra.get("performance")
    if tracker is not None and saved is not None:
        try:
            tracker.restore(saved)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            # the windows resume; only the labels joined so far are lost
            log.warning("checkpoint performance state unusable (%s); starting it afresh", exc)
    sequential = pipeline.evaluator.sequential
    if sequential is not None and sequential.restore(extra.get("sequential")):  # type: ignore[arg-type]
        exporter.set_sequential_alarms(sequential.alarms())
    multivariate = pipeline.evaluator.multivariate
    if multivariate is not None:
        multivariate.restore(extra.get("multivariate"))
