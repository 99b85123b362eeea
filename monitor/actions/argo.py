"""Argo Rollouts: abort a Rollout, and the gate an AnalysisTemplate's Web metric asks.

**Abort.** ``kubectl argo rollouts abort NAME`` sends the JSON merge patch
``{"status":{"abort":true}}`` to the Rollout's ``status`` subresource
(``PATCH /apis/argoproj.io/v1alpha1/namespaces/<ns>/rollouts/<name>/status``) and, when
that answers 404 (clusters whose Rollout CRD has no status subresource), the same patch
to the Rollout itself. The controller then scales the canary down and sends all traffic
back to the stable ReplicaSet. :class:`ArgoAbortAction` sends exactly that.

**Gate.** ``GET /v1/gates/argo?model=M&version=V`` answers 200 with a verdict::

    {"ok": false, "model": "fraud", "version": "v2", "windows": 1,
     "reason": "dataset drift in window ...", ...}

for a Web metric (``successCondition: result == true`` with ``jsonPath: "{$.ok}"``). It
answers non-2xx only when it cannot judge: 400 without a version, 503 while no window of
that version has been evaluated yet. Argo counts a non-2xx answer as a measurement
*error* (bounded by ``consecutiveErrorLimit``), not as a failed measurement.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from monitor.actions import ActionError
from monitor.actions.kubernetes import KubernetesPatchAction, status_message
from monitor.outputs.server import Request, Response

if TYPE_CHECKING:
    from monitor.actions.decision import Decision
    from monitor.actions.gates import GateSource

__all__ = ["ABORT_PATCH", "ArgoAbortAction", "ArgoGate", "rollout_path"]

GROUP_VERSION = "argoproj.io/v1alpha1"
ABORT_PATCH = {"status": {"abort": True}}


def rollout_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/rollouts/{name}"


class ArgoAbortAction(KubernetesPatchAction):
    """Abort the Rollout that serves the decision's version (``rollout`` template)."""

    kind = "argo_rollouts"

    def execute(self, decision: Decision) -> str:
        rollout = self.config.target_name(decision.model, decision.version)
        path = rollout_path(self.namespace, rollout)
        client = self.client()
        reply = client.merge_patch(path + "/status", ABORT_PATCH)
        used = path + "/status"
        if reply.status == HTTPStatus.NOT_FOUND:
            # no status subresource (older CRDs): patch the resource itself
            reply = client.merge_patch(path, ABORT_PATCH)
            used = path
        if 200 <= reply.status < 300:
            return f"aborted rollout {self.namespace}/{rollout} (PATCH {used} {reply.status})"
        raise ActionError(
            f"cannot abort rollout {self.namespace}/{rollout}: PATCH {used} answered "
            f"{reply.status}: {status_message(reply)}",
            status=reply.status,
        )


class ArgoGate:
    """The ``GET /v1/gates/argo`` handler (authentication is added by ``routes``)."""

    def __init__(self, engine: GateSource) -> None:
        self.engine = engine

    def handle(self, request: Request) -> Response:
        version = request.query_value("version")
        if not version:
            return Response.error(
                HTTPStatus.BAD_REQUEST,
                "query parameter version is required: /v1/gates/argo?model=M&version=V",
            )
        model = request.query_value("model") or self.engine.default_model
        verdict = self.engine.gate_verdict(model, version)
        if verdict is None:
            return Response.json(
                {
                    "error": f"no window of model {model} version {version} has been "
                    "evaluated yet; cannot judge",
                    "model": model,
                    "version": version,
                },
                HTTPStatus.SERVICE_UNAVAILABLE,
                (("Retry-After", "30"),),
            )
        return Response.json(verdict.to_dict())
