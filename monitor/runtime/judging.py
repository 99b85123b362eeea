"""Whether this aggregator still judges its model, so that only the judge is scraped.

Several members of a model's aggregator group (the sidecars of one model with
``aggregation.role: both``, or standby aggregators) each hold the model's last judged
window in their gauges once they have judged one. Kafka gives the partials partition to
one member at a time; a member that lost it would keep exporting its last window's
values next to the new judge's, and a stale ``drifted`` or an old last-window time
would keep an alert firing for a model that recovered (docs/agent.md, "Scaling out").
A member that holds no partials partition for ``STANDBY_AFTER`` seconds drops those
gauges; counters stay (they only go up, and a sum over pods stays right).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds without the partials partition before the judged gauges go: longer than a
#: rebalance that hands the partition straight back, so a judge keeps its series then.
STANDBY_AFTER = 15.0


class JudgeSeries:
    """Drops the judged gauges once this member has stopped judging."""

    def __init__(
        self,
        drop: Callable[[], None],
        after: float = STANDBY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._drop = drop
        self.after = float(after)
        self._clock = clock
        self.exported = False  # gauges of a judged window are set here
        self._standby_since: float | None = None

    def judged(self) -> None:
        """A window was judged here and its gauges set."""
        self.exported = True
        self._standby_since = None

    def observe(self, holding: bool) -> None:
        """Called every turn: ``holding`` says whether a partials partition is assigned."""
        if holding or not self.exported:
            self._standby_since = None
            return
        now = self._clock()
        if self._standby_since is None:
            self._standby_since = now
        elif now - self._standby_since >= self.after:
            log.info("another member judges the model now: this one's window gauges are dropped")
            self._drop()
            self.exported = False
            self._standby_since = None
