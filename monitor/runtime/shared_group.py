"""A lone agent that is not alone: ``aggregation.role: none`` in a consumer group whose
other members hold some of the topic's partitions.

Such an agent judges only its share of each window, and N of them give N verdicts per
window, each on a fraction of the model's traffic: a drift that one share does not show
is missed, and a policy can roll back on a fraction (docs/agent.md, "Scaling out"). It
is a deployment mistake, not a fault of the data, so the agent says so, once per
assignment, and names the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class SharedGroupCheck:
    """Warns when a lone agent's assignment is part of its topics' partitions."""

    def __init__(self, topics: list[str], count: Callable[[str], int | None]) -> None:
        self.topics = list(topics)
        self._count = count
        self._warned: frozenset[tuple[str, int]] | None = None

    def share(self, assigned: set[tuple[str, int]]) -> tuple[int, int] | None:
        """(partitions held, partitions of the topics) when the agent holds only some of
        them; None when it holds them all, holds none, or a count is unknown."""
        total = 0
        for topic in self.topics:
            n = self._count(topic)
            if n is None:
                return None
            total += n
        held = sum(1 for t, _ in assigned if t in self.topics)
        return (held, total) if 0 < held < total else None

    def observe(self, assigned: set[tuple[str, int]]) -> bool:
        """Called every turn; True when it warned now."""
        key = frozenset(assigned)
        if key == self._warned:
            return False
        found = self.share(assigned)
        if found is None:
            if not assigned:
                return False
            self._warned = None
            return False
        self._warned = key
        log.warning(
            "this agent reads %d of the %d partitions of %s and judges each window on that "
            "share alone (aggregation.role: none): other members of its consumer group read "
            "the rest. Run the agents with aggregation.role: both (or agent, with an "
            "aggregator) for one verdict per window of the model (docs/agent.md, Scaling out)",
            found[0],
            found[1],
            ", ".join(self.topics),
        )
        return True
