"""Changelog reads at assignment tried again, briefly, when the brokers do not answer.

A partition's state is read from the changelog when the group assigns the partition
(``monitor/runtime/partition_state.py`` for an agent's source partitions,
``monitor/runtime/aggregator_state.py`` for the aggregator's partials partitions). A read
the brokers did not answer (``ChangelogUnreachable``) says nothing about the state: a
broker restarting or a leader moving during the rebalance answers a second later, and
giving up at once would start the partition with fresh windows and lose the rows of its
open windows (docs/agent.md, "State"). So such a read is tried again with back-off
(0.5, 1, 2, 4 s ...) within :data:`RESTORE_RETRY_BUDGET`; a read that answered with no
usable state (any other ``ChangelogError``, a damaged checkpoint) is not retried: asking
again gets the same answer.

The budget is short because the restore holds the rebalance:

* aiokafka (``monitor/ingest/kafka.py``) runs it inside ``on_partitions_assigned``, with
  the member's heartbeat task stopped until the callback returns: past
  ``session_timeout_ms`` (10 s by default) the coordinator expires the member and
  rebalances again. 5 s is half the default, and the budget is cut to half the configured
  session timeout when that is shorter;
* librdkafka (``monitor/ingest/confluent.py``) heartbeats from its own thread, but its
  consume thread waits in ``on_assign`` for the restore (``REVOKE_TIMEOUT``, 60 s) and
  ``max.poll.interval.ms`` is at least 60 s: 5 s is well inside both.

One budget serves every read of an assignment (:meth:`RestoreRetry.start`), counted from
its first unanswered read, so a whole assignment's retries, however many partitions it
brings, end within it (plus the one read under way then, bounded by its own timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from monitor.runtime.changelog import ChangelogUnreachable

log = logging.getLogger(__name__)

#: Seconds an assignment's unanswered changelog reads are retried for, from the first one
#: (see the module docstring for why this is safe for the consumer group).
RESTORE_RETRY_BUDGET = 5.0
#: Seconds before the first retry; each further one waits twice as long.
FIRST_DELAY = 0.5

T = TypeVar("T")


class RestoreRetry:
    """Retries of unanswered changelog reads, within one budget per assignment.

    ``clock`` and ``sleep`` are ``time.monotonic`` and ``asyncio.sleep`` unless given
    (tests pass a fake clock, so they never wait).
    """

    def __init__(
        self,
        budget: float = RESTORE_RETRY_BUDGET,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.budget = budget
        self.clock = clock
        self.sleep = sleep
        self._deadline: float | None = None

    @classmethod
    def for_session(cls, session_timeout_ms: int) -> RestoreRetry:
        """The budget for a consumer whose session times out after ``session_timeout_ms``:
        :data:`RESTORE_RETRY_BUDGET`, or half the session timeout when that is shorter."""
        return cls(min(RESTORE_RETRY_BUDGET, session_timeout_ms / 2000))

    def start(self) -> None:
        """A new assignment: its reads get the whole budget again."""
        self._deadline = None

    async def read(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``'s result, trying again while it raises ``ChangelogUnreachable``
        and the budget allows the next wait; then the last ``ChangelogUnreachable`` is
        raised. Any other error is raised at once. ``what`` names the state in the log."""
        delay = FIRST_DELAY
        tries = 0
        while True:
            tries += 1
            try:
                return await attempt()
            except ChangelogUnreachable as exc:
                now = self.clock()
                if self._deadline is None:
                    self._deadline = now + self.budget
                if now + delay > self._deadline:
                    if tries > 1:
                        log.warning("%s: changelog still unreachable after %d tries", what, tries)
                    raise
                log.warning(
                    "%s: changelog unreachable (%s); try %d again in %.1fs",
                    what,
                    type(exc.__cause__ or exc).__name__,
                    tries + 1,
                    delay,
                )
            await self.sleep(delay)
            delay *= 2
