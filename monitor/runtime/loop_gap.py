"""Time the agent's own loop did not run, so that it is not taken for silence.

``windows.idle_timeout`` is processing time: a partition with no record for that long
stops holding windows back, and open windows close anyway (docs/architecture.md,
"Windows"). A process that was itself frozen (SIGSTOP, a paused node, a long GC or CPU
throttling stall, a sleeping laptop) observed nothing while it was stopped; on waking it
would see every partition "silent" for the whole pause, close its open windows as idle
and then count the backlog it reads for them as late. The agent's loop turns every
``poll_timeout`` or so; a gap between two turns far larger than that (more than
``max(2 × poll_timeout, min_gap)``) is time nobody watched, and the windows' idle clocks
are moved forward by it (``WindowManager.shift``), as are the KServe halves' pairing
TTLs (``Pipeline.shift``): a partner in the backlog is not one that never came. A
partition really quiet while the loop keeps turning still goes idle after
``idle_timeout``.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

MIN_GAP = 5.0  # seconds: a turn slower than this is not the loop working normally


class LoopGap:
    """Notices a gap between consecutive turns of the agent's loop."""

    def __init__(self, poll_timeout: float, min_gap: float = MIN_GAP) -> None:
        self.threshold = max(2.0 * float(poll_timeout), float(min_gap))
        self._last = math.nan

    def observe(self, now: float) -> float:
        """Seconds since the previous turn the loop did not run (0.0: none to discount).

        The whole gap counts as unobserved once it passes the threshold: nothing was read
        during it. A clock that stepped back gives no gap.
        """
        last, self._last = self._last, float(now)
        if math.isnan(last):
            return 0.0
        gap = float(now) - last
        if gap <= self.threshold:
            return 0.0
        log.warning(
            "the agent did not run for %.1f s (frozen or paused); idle timeouts do not "
            "count that time",
            gap,
        )
        return gap
