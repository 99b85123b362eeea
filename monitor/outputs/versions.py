"""Which model versions get Prometheus series of their own.

``model_version`` comes from the records, so any producer can send a new value with every
message; each value multiplies every per-version family (one series per feature, detector
and check), and a few thousand values make a /metrics page of a hundred megabytes. The
exporter therefore tracks at most ``exporter.max_model_versions`` versions at a time,
first come, first served. Records, windows and rollback decisions of any other version are
counted under ``model_version="other"`` (:data:`OTHER_VERSION`); their per-window gauges
are not exported, since several versions' statistics cannot share one series. A tracked
version that has sent nothing for ``exporter.model_version_idle`` is dropped, with every
series it had, which frees its slot for the next version seen (docs/metrics.md,
"Model versions").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["OTHER_VERSION", "VersionSlots"]

OTHER_VERSION = "other"


class VersionSlots:
    """At most ``limit`` tracked versions; each expires ``idle_seconds`` after it was last
    seen. Thread-safe; ``clock`` is wall-clock seconds (injectable for tests)."""

    def __init__(
        self, limit: int, idle_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if idle_seconds <= 0:
            raise ValueError(f"idle_seconds must be positive, got {idle_seconds}")
        self.limit = limit
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def label(self, version: str) -> str:
        """The ``model_version`` label for ``version`` seen now: itself when it is (or now
        becomes) tracked, else :data:`OTHER_VERSION`. "" (unknown version) stays ""."""
        if version == "":
            return version
        now = self.clock()
        with self._lock:
            if version in self._last_seen or len(self._last_seen) < self.limit:
                self._last_seen[version] = now
                return version
        return OTHER_VERSION

    def tracked(self, version: str) -> bool:
        with self._lock:
            return version in self._last_seen

    def expire(self) -> list[str]:
        """Forget the versions idle for longer than ``idle_seconds``; returns them."""
        cutoff = self.clock() - self.idle_seconds
        with self._lock:
            gone = [v for v, seen in self._last_seen.items() if seen < cutoff]
            for v in gone:
                del self._last_seen[v]
        return gone

    def __len__(self) -> int:
        with self._lock:
            return len(self._last_seen)
