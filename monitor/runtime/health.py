"""What the agent's /healthz and /readyz answer from (docs/agent.md, "HTTP endpoints"): the
last turn of its loop, the proof of liveness, and whether it is ready to be counted on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["READY", "Health"]

# /readyz's reason when the agent is ready (documented in docs/agent.md)
READY = "ready"


@dataclass
class Health:
    """What /healthz and /readyz answer from: the loop's last turn and readiness.

    ``clock`` is monotonic seconds, the clock the HTTP server measures the tick's age
    with (injectable, so tests need not sleep).
    """

    reference_loaded: bool = False
    consuming: bool = False
    clock: Callable[[], float] = time.monotonic
    last_tick: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        if self.last_tick != self.last_tick:  # NaN: not given
            self.last_tick = self.clock()

    def tick(self) -> None:
        """Called on every turn of the loop: the proof of liveness."""
        self.last_tick = self.clock()

    def ready(self) -> tuple[bool, str]:
        """(ready, reason): the reference loaded and the source consuming, else why not."""
        reasons: list[str] = []
        if not self.reference_loaded:
            reasons.append("reference profile not loaded")
        if not self.consuming:
            reasons.append("source not consuming")
        return not reasons, "; ".join(reasons) or READY
