"""A restart that lost its window state is said out loud, never silently.

An agent that starts with no checkpoint (no state directory, nothing in the changelog)
while its consumer group has committed offsets resumes after records whose rows were in
windows still open at the crash: those windows now hold only what comes after the
committed offset. The agent cannot get the rows back, but it can say so: a warning in
the log, ``driftline_state_lost_partitions_total``, and each affected window's report
marked ``partial`` with ``partial_reason: state_lost`` (docs/agent.md, "State").

A window is affected when, in a partition that lost its state, it holds the first record
read after the restart (its lowest offset there is the resume offset): rows before that
offset may have belonged to it. Windows opened later hold every row of theirs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping

from detectors.results import WindowReport
from monitor.runtime.panes import ClosedWindow

log = logging.getLogger(__name__)

#: ``partial_reason`` of a report whose window lost rows with the agent's state.
REASON = "state_lost"


class StateLoss:
    """Finds the partitions whose state was lost at start-up, and the windows it hit."""

    def __init__(self, topics: Iterable[str], restored: bool) -> None:
        self.topics = set(topics)
        self.restored = restored
        self.checked = False
        self.lost: dict[int, int] = {}  # source partition -> offset it resumed at
        self._affected: set[tuple[str, float]] = set()  # (model_version, window start)

    def check(self, origins: Mapping[tuple[str, int], tuple[int, bool]]) -> int:
        """Look once, at the first assignment, at where each partition starts and whether
        the group had committed an offset there; returns how many partitions lost state."""
        if self.checked or not origins:
            return 0
        self.checked = True
        if self.restored:
            return 0
        self.lost = {
            p: offset
            for (topic, p), (offset, fresh) in origins.items()
            if topic in self.topics and not fresh and offset > 0
        }
        if self.lost:
            log.warning(
                "no window state to restore (no checkpoint in the state directory or the "
                "changelog) but the consumer group had committed offsets: resuming %d "
                "partitions after records whose windows were still open (%s); those windows "
                "will be reported as partial (state_lost)",
                len(self.lost),
                ", ".join(f"partition {p} at offset {o}" for p, o in sorted(self.lost.items())),
            )
        return len(self.lost)

    def closed(self, windows: Iterable[ClosedWindow]) -> None:
        """Note which of these closed windows hold a lost partition's first resumed row."""
        if not self.lost:
            return
        for w in windows:
            for p, resumed in self.lost.items():
                span = w.offsets.get(p)
                if span is not None and span[0] <= resumed:
                    self._affected.add((w.model_version, float(w.start)))
                    break

    def mark(self, report: WindowReport) -> WindowReport:
        """The report, marked partial when its window lost rows with the state."""
        if (report.model_version, float(report.window_start)) not in self._affected:
            return report
        if report.partial:  # already partial for another reason: keep both
            reason = f"{report.partial_reason},{REASON}" if report.partial_reason else REASON
        else:
            reason = REASON
        return dataclasses.replace(report, partial=True, partial_reason=reason)
