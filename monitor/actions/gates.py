"""What the rollout gates (Argo Rollouts analysis, Flagger webhooks) answer about a version.

A version passes when none of its last ``alerts.gates.windows`` windows shows a condition
of ``alerts.gates.fail_on`` and none of the alerts named there is firing for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.actions.history import Window, window_problems
from monitor.config.rollback import ALERT_PREFIX, REPORT_CONDITIONS, GatesConfig

__all__ = ["GateSource", "GateVerdict", "build_verdict", "gate_alerts"]


@dataclass(frozen=True)
class GateVerdict:
    """What the rollout gates answer about a version."""

    ok: bool
    model: str
    version: str
    windows: int
    reason: str
    problems: tuple[str, ...] = ()
    latest_window: dict[str, Any] | None = None
    firing_alerts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "model": self.model,
            "version": self.version,
            "windows": self.windows,
            "reason": self.reason,
            "problems": list(self.problems),
            "latest_window": self.latest_window,
            "firing_alerts": list(self.firing_alerts),
        }


class GateSource(Protocol):
    """What the gates ask of the policy engine."""

    @property
    def default_model(self) -> str: ...

    def gate_verdict(self, model: str, version: str) -> GateVerdict | None: ...


def gate_alerts(gates: GatesConfig) -> list[str]:
    """The alert names ``fail_on`` lists (its ``{alert: X}`` entries)."""
    return [c[len(ALERT_PREFIX) :] for c in gates.fail_on if c.startswith(ALERT_PREFIX)]


def build_verdict(
    gates: GatesConfig,
    model: str,
    version: str,
    windows: Sequence[Window],
    firing: Sequence[str],
) -> GateVerdict | None:
    """The verdict on ``version`` from its last windows (oldest first) and the names of
    its gate alerts firing now; None when no window of it was evaluated."""
    conditions = [c for c in gates.fail_on if c in REPORT_CONDITIONS]
    if not windows:
        return None
    problems: list[str] = []
    for w in windows:
        for p in window_problems(w, conditions, gates.baselines):
            problems.append(f"window [{w.start:g}, {w.end:g}): {p}")
    problems += [f"alert {name} is firing" for name in firing]
    latest = windows[-1]
    n = len(windows)
    reason = (
        "; ".join(problems) if problems else f"no drift or quality breach in the last {n} window(s)"
    )
    return GateVerdict(
        ok=not problems,
        model=model,
        version=version,
        windows=n,
        reason=reason,
        problems=tuple(problems),
        latest_window={
            "start": latest.start,
            "end": latest.end,
            "kind": latest.kind,
            "baselines": sorted(latest.reports),
        },
        firing_alerts=tuple(firing),
    )
