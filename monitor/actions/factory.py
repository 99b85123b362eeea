"""The action objects the ``actions`` section of monitor.yaml describes."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.actions import Action
from monitor.actions.argo import ArgoAbortAction
from monitor.actions.kserve import KServeCanaryAction
from monitor.actions.webhook import WebhookAction
from monitor.config.rollback import ActionConfig

__all__ = ["build_actions"]


def build_actions(actions: Mapping[str, ActionConfig]) -> dict[str, Action]:
    """One action object per entry, by its ``kind``."""
    built: dict[str, Action] = {}
    for name, config in actions.items():
        if config.kind == "webhook":
            built[name] = WebhookAction(name, config)
        elif config.kind == "argo_rollouts":
            built[name] = ArgoAbortAction(name, config)
        else:
            built[name] = KServeCanaryAction(name, config)
    return built
