"""The endpoints of ``monitor.actions`` on the agent's HTTP server.

============================================  =========================================
``POST /v1/alerts``                           Alertmanager webhook receiver (bearer token)
``GET  /v1/gates/argo?model=M&version=V``     verdict for an Argo AnalysisTemplate
``POST /v1/gates/flagger/rollout``            Flagger ``rollout`` hook
``POST /v1/gates/flagger/rollback``           Flagger ``rollback`` hook
============================================  =========================================

The gates use the same bearer token as ``/v1/alerts`` unless ``alerts.gates.token_env``
names another variable, or ``alerts.gates.auth: none`` opens them.
"""

from __future__ import annotations

from typing import Any

from monitor.actions.alerts import AlertReceiver
from monitor.actions.argo import ArgoGate
from monitor.actions.flagger import FlaggerGate
from monitor.actions.policy import PolicyEngine
from monitor.config.rollback import RollbackSettings
from monitor.outputs.server import AgentServer, Handler, require_bearer_token

__all__ = [
    "ALERTS_PATH",
    "ARGO_GATE_PATH",
    "FLAGGER_ROLLBACK_PATH",
    "FLAGGER_ROLLOUT_PATH",
    "register",
]

ALERTS_PATH = "/v1/alerts"
ARGO_GATE_PATH = "/v1/gates/argo"
FLAGGER_ROLLOUT_PATH = "/v1/gates/flagger/rollout"
FLAGGER_ROLLBACK_PATH = "/v1/gates/flagger/rollback"


def register(
    server: AgentServer, engine: PolicyEngine, config: Any = None
) -> list[tuple[str, str]]:
    """Add the endpoints ``config`` enables (a ``MonitorConfig`` or
    :class:`RollbackSettings`; default: the engine's) to ``server``; the routes added."""
    settings = engine.settings if config is None else RollbackSettings.from_config(config)
    alerts = settings.alerts
    added: list[tuple[str, str]] = []

    def add(method: str, path: str, handler: Handler) -> None:
        server.add_route(method, path, handler)
        added.append((method, path))

    if alerts.enabled:
        assert alerts.token_env is not None  # checked on validation
        receiver = AlertReceiver(
            engine, max_body_bytes=alerts.max_body_bytes, remember=alerts.remember
        )
        add("POST", ALERTS_PATH, require_bearer_token(alerts.token_env)(receiver.handle))
    if alerts.gates.enabled:
        token_env = alerts.gate_token_env()
        argo: Handler = ArgoGate(engine).handle
        if token_env is not None:
            argo = require_bearer_token(token_env)(argo)
        add("GET", ARGO_GATE_PATH, argo)
        flagger = FlaggerGate(engine, token_env=token_env)
        add("POST", FLAGGER_ROLLOUT_PATH, flagger.rollout)
        add("POST", FLAGGER_ROLLBACK_PATH, flagger.rollback)
    return added
