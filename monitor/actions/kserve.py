"""The KServe action: send no more traffic to an InferenceService's canary.

KServe splits traffic between the last ready revision and the latest one by
``spec.predictor.canaryTrafficPercent``; setting it to 0 routes everything back to the
previous revision while the canary keeps running for inspection. The action sends the
JSON merge patch ``{"spec": {"predictor": {"canaryTrafficPercent": 0}}}`` to
``/apis/serving.kserve.io/v1beta1/namespaces/<ns>/inferenceservices/<name>``, the same
request as ``kubectl patch isvc <name> --type merge -p ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.actions import ActionError
from monitor.actions.kubernetes import KubernetesPatchAction, status_message

if TYPE_CHECKING:
    from monitor.actions.decision import Decision

__all__ = ["KServeCanaryAction", "inference_service_path"]

GROUP_VERSION = "serving.kserve.io/v1beta1"


def inference_service_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/inferenceservices/{name}"


class KServeCanaryAction(KubernetesPatchAction):
    """Set ``canaryTrafficPercent`` of the model's InferenceService to 0."""

    kind = "kserve"

    def execute(self, decision: Decision) -> str:
        isvc = self.config.target_name(decision.model, decision.version)
        path = inference_service_path(self.namespace, isvc)
        patch = {self.config.component: {"canaryTrafficPercent": 0}}
        reply = self.client().merge_patch(path, {"spec": patch})
        if 200 <= reply.status < 300:
            return f"PATCH {path} canaryTrafficPercent=0 answered {reply.status}"
        raise ActionError(
            f"PATCH {path} answered {reply.status}: {status_message(reply)}",
            status=reply.status,
        )
