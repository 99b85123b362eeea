"""A policy's decision about one version, and what came of it (the audit log's record).

The decision is what every action receives (``Action.execute``), so it lives apart from
the engine that makes it: the actions, the receiver and the engine all import it and it
imports none of them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitor.actions.notifications import Alert

__all__ = ["OUTCOMES", "PENDING", "AlertSink", "Decision", "decision_id"]

OUTCOMES: tuple[str, ...] = (
    "acted",
    "action_failed",
    "dry_run",
    "cooldown",
    "rate_limited",
    "stable_version_protected",
    "already_acted",
    "no_target",
)
PENDING = "pending"


@dataclass
class Decision:
    """What a policy concluded about one version, and what came of it."""

    id: str
    policy: str
    model: str
    version: str
    stable_version: str | None
    reason: str
    trigger: dict[str, Any]
    dry_run: bool
    decided_at: float
    actions: tuple[str, ...]
    reports: tuple[dict[str, Any], ...] = ()
    alerts: tuple[Alert, ...] = ()
    outcome: str = PENDING
    # action name -> (outcome, detail)
    results: dict[str, tuple[str, str]] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        return {
            "reports": list(self.reports),
            "alerts": [a.to_dict() for a in self.alerts],
        }

    def summary(self) -> dict[str, Any]:
        """Short form for HTTP answers."""
        return {
            "decision_id": self.id,
            "policy": self.policy,
            "model": self.model,
            "version": self.version,
            "outcome": self.outcome,
            "reason": self.reason,
            "actions": {
                name: self.results.get(name, (self.outcome, ""))[0] for name in self.actions
            },
        }

    def audit_record(self, action: str, outcome: str, detail: str) -> dict[str, Any]:
        return {
            "ts": time.time(),
            "decision_id": self.id,
            "policy": self.policy,
            "model": self.model,
            "version": self.version,
            "stable_version": self.stable_version,
            "action": action,
            "outcome": outcome,
            "detail": detail,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "decided_at": self.decided_at,
            "trigger": self.trigger,
            "evidence": self.evidence(),
        }


def decision_id(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:32]


class AlertSink(Protocol):
    """What the ``/v1/alerts`` receiver hands new alerts to (the policy engine)."""

    def observe_alerts(self, alerts: Iterable[Alert]) -> list[Decision]: ...
