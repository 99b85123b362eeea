"""The sidecar injector's admission logic: an AdmissionReview in, an AdmissionReview out.

The Kubernetes API server sends every Pod CREATE in the namespaces the webhook selects
(``admission.k8s.io/v1``). A pod annotated ``driftline.io/inject: "true"`` gets, as one
JSONPatch (RFC 6902):

* the ``driftline`` container running ``driftline run -c /etc/driftline/monitor.yaml``
  (non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault), with
  its HTTP port ``dl-metrics`` and a liveness probe on ``/healthz``;
* its configuration at ``/etc/driftline``: the ConfigMap named by ``driftline.io/config``,
  or a ``monitor.yaml`` built from the pod's annotations, validated here with the agent's
  own config model and written into an ``emptyDir`` by the init container
  ``driftline-config`` (``driftline inject prepare``), which also fetches an http(s)
  reference profile; the built ``monitor.yaml`` has ``aggregation: {role: both}`` unless
  ``driftline.io/aggregation`` (or the injector's ``aggregation``) says ``none``, so the
  sidecars of a model's replicas elect one that judges each window for the model;
* its state directory (``emptyDir`` at ``/var/lib/driftline``);
* the annotation and label ``driftline.io/injected: "true"`` (never injected twice), and
  ``prometheus.io/scrape|port|path`` when the pod has no scrape annotations of its own.

Everything else is admitted unchanged: other kinds, other operations, pods without the
annotation or with ``driftline.io/inject: "false"``, pods already injected. A review
that cannot be handled (malformed, or annotations that do not make a valid config) is
answered per the webhook's failure policy: ``Ignore`` admits the pod without the
sidecar, with a warning and the reason in its annotation ``driftline.io/injection-error``
(the malformed ones unchanged), ``Fail`` rejects it with the reason; so the webhook
behaves the same whether the API server cannot reach it or it cannot understand the
pod. Only a body without a readable ``request.uid`` gets HTTP 400: there is nothing to
answer to.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import yaml

# Imported here, not at the first review: it takes about a second, and the API server
# gives a review a few.
from monitor.config.errors import ConfigError
from monitor.config.loader import parse_config
from monitor.inject.containers import _init_container, _sidecar, _sidecar_env
from monitor.inject.names import (
    AGGREGATION_ROLES,
    ANNOTATION_AGGREGATION,
    ANNOTATION_BOOTSTRAP,
    ANNOTATION_CONFIG,
    ANNOTATION_ERROR,
    ANNOTATION_GROUP,
    ANNOTATION_INJECT,
    ANNOTATION_INJECTED,
    ANNOTATION_MODEL,
    ANNOTATION_RECORD_FORMAT,
    ANNOTATION_REFERENCE,
    ANNOTATION_TOPIC,
    ANNOTATION_WINDOW,
    API_VERSION,
    CONFIG_ANNOTATIONS,
    CONFIG_DIR,
    CONFIG_VOLUME,
    CONFIG_VOLUME_LIMIT,
    CONTAINER_NAME,
    INIT_CONTAINER_NAME,
    MAX_ERROR_CHARS,
    METRICS_PORT_NAME,
    MODEL_LABELS,
    MONITOR_YAML_ENV,
    REFERENCE_VOLUME,
    STATE_DIR,
    STATE_VOLUME,
)
from monitor.inject.patch import _add_map, _Additions, _patch
from monitor.inject.reference import (
    _configmap_mode_reference,
    _dict_list,
    _is_dns_subdomain,
    _PodProblem,
    _Reference,
    _reference,
)
from monitor.inject.settings import InjectorSettings

__all__ = [
    "ANNOTATION_CONFIG",
    "ANNOTATION_ERROR",
    "ANNOTATION_INJECT",
    "ANNOTATION_INJECTED",
    "CONFIG_DIR",
    "CONTAINER_NAME",
    "INIT_CONTAINER_NAME",
    "METRICS_PORT_NAME",
    "MONITOR_YAML_ENV",
    "STATE_DIR",
    "Outcome",
    "decide",
    "handle_review",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the webhook decided for one pod: ``inject`` (with the patch), ``skip`` (no
    change; ``reason`` says why) or ``error`` (the pod's request cannot be honoured)."""

    action: Literal["inject", "skip", "error"]
    reason: str
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


# -- the decision ------------------------------------------------------------------------


def decide(pod: dict[str, Any], namespace: str, settings: InjectorSettings) -> Outcome:
    """Whether and how to inject the sidecar into ``pod`` (a Pod object as the API server
    sends it; ``namespace`` from the review, since a new pod's metadata may lack it)."""
    meta = pod.get("metadata")
    spec = pod.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        return Outcome("error", "the object has no metadata or spec; it is not a Pod")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        return Outcome("error", "spec.containers is not a list of containers")
    annotations = _string_map(meta.get("annotations"))
    labels = _string_map(meta.get("labels"))

    wanted = annotations.get(ANNOTATION_INJECT)
    if wanted is None:
        return Outcome("skip", f"no {ANNOTATION_INJECT} annotation")
    if wanted.strip().lower() == "false":
        return Outcome("skip", f'opted out ({ANNOTATION_INJECT}: "false")')
    if wanted.strip().lower() != "true":
        return Outcome(
            "skip",
            f"{ANNOTATION_INJECT} is {wanted!r}",
            warnings=(
                f'{ANNOTATION_INJECT}: {wanted!r} is neither "true" nor "false"; '
                "the driftline sidecar was not added",
            ),
        )
    if ANNOTATION_INJECTED in annotations:
        return Outcome("skip", f"already injected ({ANNOTATION_INJECTED} is set)")
    names = {c.get("name") for c in containers}
    names |= {c.get("name") for c in _dict_list(spec.get("initContainers"))}
    if CONTAINER_NAME in names or INIT_CONTAINER_NAME in names:
        return Outcome("skip", f"already has a container named {CONTAINER_NAME}")
    try:
        additions, warnings = _plan(pod, meta, spec, annotations, labels, namespace, settings)
    except _PodProblem as exc:
        return Outcome("error", str(exc))
    return Outcome("inject", "sidecar added", _patch(meta, spec, additions), tuple(warnings))


def _plan(
    pod: dict[str, Any],
    meta: dict[str, Any],
    spec: dict[str, Any],
    annotations: dict[str, str],
    labels: dict[str, str],
    namespace: str,
    settings: InjectorSettings,
) -> tuple[_Additions, list[str]]:
    _check_conflicts(spec, settings)
    add = _Additions()
    warnings: list[str] = []
    state_volume = {"name": STATE_VOLUME, "emptyDir": {}}
    mounts: list[dict[str, Any]] = [
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": STATE_VOLUME, "mountPath": STATE_DIR},
    ]
    env = _sidecar_env(settings)

    configmap = annotations.get(ANNOTATION_CONFIG)
    if configmap is not None:
        configmap = configmap.strip()
        if not _is_dns_subdomain(configmap):
            raise _PodProblem(
                f"{ANNOTATION_CONFIG}: {configmap!r} is not a ConfigMap name; name the "
                "ConfigMap holding monitor.yaml"
            )
        ignored = [a for a in CONFIG_ANNOTATIONS if a in annotations and a != ANNOTATION_REFERENCE]
        if ignored:
            warnings.append(
                f"{', '.join(ignored)} ignored: {ANNOTATION_CONFIG} names the whole configuration"
            )
        add.volumes.append({"name": CONFIG_VOLUME, "configMap": {"name": configmap}})
        reference = _configmap_mode_reference(spec, annotations)
        add.volumes.extend(reference.volumes)
        mounts.extend(reference.mounts)
    else:
        data, reference = _config_from_annotations(meta, spec, annotations, labels, settings)
        _validate(data, namespace, meta)
        add.volumes.append({"name": CONFIG_VOLUME, "emptyDir": {"sizeLimit": CONFIG_VOLUME_LIMIT}})
        add.volumes.extend(reference.volumes)
        mounts.extend(reference.mounts)
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
        add.init_containers.append(_init_container(settings, text, reference))
    add.volumes.append(state_volume)
    add.containers.append(_sidecar(settings, mounts, env))

    add.annotations[ANNOTATION_INJECTED] = "true"
    if settings.pod_label:
        add.labels[ANNOTATION_INJECTED] = "true"
    if settings.scrape_annotations and "prometheus.io/scrape" not in annotations:
        add.annotations["prometheus.io/scrape"] = "true"
        add.annotations["prometheus.io/port"] = str(settings.metrics_port)
        add.annotations["prometheus.io/path"] = "/metrics"
    return add, warnings


def _check_conflicts(spec: dict[str, Any], settings: InjectorSettings) -> None:
    """Names and ports the sidecar needs must be free, or the API server refuses the pod."""
    for volume in _dict_list(spec.get("volumes")):
        if volume.get("name") in (CONFIG_VOLUME, STATE_VOLUME, REFERENCE_VOLUME):
            raise _PodProblem(
                f"the pod already has a volume named {volume.get('name')}; rename it so the "
                "driftline sidecar's volumes fit"
            )
    for container in _dict_list(spec.get("containers")):
        for port in _dict_list(container.get("ports")):
            if port.get("containerPort") == settings.metrics_port:
                raise _PodProblem(
                    f"container {container.get('name')} already uses port "
                    f"{settings.metrics_port}, the driftline sidecar's metrics port; change "
                    "one of them (the injector's metricsPort setting)"
                )
            if port.get("name") == METRICS_PORT_NAME:
                raise _PodProblem(
                    f"container {container.get('name')} already has a port named "
                    f"{METRICS_PORT_NAME}; rename it"
                )


def _config_from_annotations(
    meta: dict[str, Any],
    spec: dict[str, Any],
    annotations: dict[str, str],
    labels: dict[str, str],
    settings: InjectorSettings,
) -> tuple[dict[str, Any], _Reference]:
    """``monitor.yaml`` (as a mapping) for a pod that describes its model by annotations."""
    model = annotations.get(ANNOTATION_MODEL, "").strip()
    if not model:
        model = next((labels[k] for k in MODEL_LABELS if labels.get(k, "").strip()), "")
    if not model:
        raise _PodProblem(
            f"set {ANNOTATION_MODEL} (or the label app.kubernetes.io/name), or name a "
            f"ConfigMap holding monitor.yaml in {ANNOTATION_CONFIG}"
        )
    topics = [t.strip() for t in annotations.get(ANNOTATION_TOPIC, "").split(",") if t.strip()]
    if not topics:
        raise _PodProblem(
            f"set {ANNOTATION_TOPIC} to the Kafka topic of the model's prediction log, or "
            f"name a ConfigMap holding monitor.yaml in {ANNOTATION_CONFIG}"
        )
    servers = annotations.get(ANNOTATION_BOOTSTRAP, "").strip() or (
        settings.kafka.bootstrap_servers or ""
    )
    if not servers:
        raise _PodProblem(
            f"set {ANNOTATION_BOOTSTRAP} (host:port,...), or the chart's "
            "injector.kafka.bootstrapServers for every pod"
        )
    reference = _reference(spec, annotations)
    kafka: dict[str, Any] = {
        "bootstrap_servers": servers,
        "topics": topics,
        "group_id": annotations.get(ANNOTATION_GROUP, "").strip() or f"driftline-{model}",
    }
    k = settings.kafka
    if k.security_protocol != "PLAINTEXT":
        kafka["security_protocol"] = k.security_protocol
    if k.sasl_mechanism is not None:
        kafka["sasl_mechanism"] = k.sasl_mechanism
    if k.sasl_username is not None:
        kafka["sasl_username"] = k.sasl_username
    if k.password_secret is not None:
        kafka["sasl_password_env"] = k.password_env
    data: dict[str, Any] = {
        "model": model,
        "reference": reference.path,
        "source": {"kind": "kafka", "kafka": kafka},
    }
    record_format = annotations.get(ANNOTATION_RECORD_FORMAT, "").strip()
    if record_format:
        data["record"] = {"format": record_format}
    window = annotations.get(ANNOTATION_WINDOW, "").strip()
    if window:
        data["windows"] = {"size": window}
    data["exporter"] = {"host": "0.0.0.0", "port": settings.metrics_port}
    data["state"] = {"dir": STATE_DIR}
    if _aggregation(annotations, settings) == "both":
        # Every replica's sidecar publishes its partitions' partial windows and joins the
        # model's aggregator group (<group>-aggregator); the one Kafka gives the partials
        # partition judges each window for the whole model (docs/agent.md, "Scaling out").
        # Its state is under state.dir/aggregator, in this pod's own volume.
        data["aggregation"] = {"role": "both"}
    return data, reference


def _aggregation(annotations: dict[str, str], settings: InjectorSettings) -> str:
    """The sidecar's ``aggregation.role``: the pod's annotation, else the injector's."""
    value = annotations.get(ANNOTATION_AGGREGATION)
    if value is None:
        return settings.aggregation
    role = value.strip().lower()
    if role not in AGGREGATION_ROLES:
        raise _PodProblem(
            f'{ANNOTATION_AGGREGATION}: {value!r} is neither "both" nor "none"; "both" (the '
            "chart's default) has the sidecars of the model's replicas elect one that judges "
            'each window for all of them, "none" has each sidecar judge only its own partitions'
        )
    return role


def _validate(data: dict[str, Any], namespace: str, meta: dict[str, Any]) -> None:
    """Check the built configuration with the agent's own model, so a mistake in the
    annotations is reported at admission instead of as a crash-looping sidecar."""
    name = meta.get("name") or meta.get("generateName") or "pod"
    try:
        parse_config(data, source=f"annotations of {namespace}/{name}")
    except ConfigError as exc:
        raise _PodProblem(str(exc).replace("\n", "; ")) from None


# -- the containers ----------------------------------------------------------------------


# -- JSONPatch ---------------------------------------------------------------------------


# -- the review --------------------------------------------------------------------------


def handle_review(body: bytes, settings: InjectorSettings) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON answer for one ``POST /mutate`` body. Never raises."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return 400, {"error": f"the body is not JSON: {exc}"}
    request = review.get("request") if isinstance(review, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    if not isinstance(uid, str) or not uid:
        return 400, {"error": "not an AdmissionReview: request.uid is missing"}
    assert isinstance(request, dict) and isinstance(review, dict)
    api_version = review.get("apiVersion")
    answer_version = (
        api_version
        if isinstance(api_version, str) and api_version.startswith("admission.k8s.io/")
        else API_VERSION
    )
    if api_version != API_VERSION or review.get("kind") != "AdmissionReview":
        return 200, _failed(
            answer_version,
            uid,
            settings,
            f"expected apiVersion {API_VERSION}, kind AdmissionReview; got "
            f"{api_version!r}, {review.get('kind')!r} (set admissionReviewVersions: [v1])",
            400,
        )
    try:
        return 200, _review(request, uid, settings)
    except Exception as exc:  # a bug here must not block pods, nor kill the server
        log.exception("admission review %s failed", uid)
        return 200, _failed(API_VERSION, uid, settings, f"internal error: {exc!r}", 500)


def _review(request: dict[str, Any], uid: str, settings: InjectorSettings) -> dict[str, Any]:
    kind = request.get("kind")
    resource = request.get("resource")
    is_pod = (
        isinstance(kind, dict)
        and kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and (not isinstance(resource, dict) or resource.get("resource", "pods") == "pods")
        and not request.get("subResource")
    )
    if not is_pod:
        return _answer(API_VERSION, uid)
    if request.get("operation") != "CREATE":
        return _answer(API_VERSION, uid)
    pod = request.get("object")
    if not isinstance(pod, dict):
        return _failed(API_VERSION, uid, settings, "request.object is not a Pod", 400)
    namespace = request.get("namespace")
    namespace = namespace if isinstance(namespace, str) and namespace else "default"
    outcome = decide(pod, namespace, settings)
    name = _pod_name(pod)
    log.info("review %s pod %s/%s: %s (%s)", uid, namespace, name, outcome.action, outcome.reason)
    if outcome.action == "error":
        answer = _failed(
            API_VERSION, uid, settings, f"pod {namespace}/{name}: {outcome.reason}", 400
        )
        if answer["response"]["allowed"]:
            # Warnings reach whoever created the pod: for a Deployment's pods, that is the
            # ReplicaSet controller. The annotation is where people look.
            ops: list[dict[str, Any]] = []
            meta = pod.get("metadata")
            if isinstance(meta, dict):
                reason = outcome.reason[:MAX_ERROR_CHARS]
                _add_map(
                    ops,
                    meta.get("annotations"),
                    "/metadata/annotations",
                    {ANNOTATION_ERROR: reason},
                )
            if ops:
                answer["response"]["patchType"] = "JSONPatch"
                answer["response"]["patch"] = base64.b64encode(orjson.dumps(ops)).decode()
        return answer
    return _answer(API_VERSION, uid, patch=outcome.patch, warnings=outcome.warnings)


def _answer(
    api_version: str,
    uid: str,
    *,
    allowed: bool = True,
    patch: list[dict[str, Any]] | None = None,
    warnings: tuple[str, ...] | list[str] = (),
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode("ascii")
    if warnings:
        response["warnings"] = [f"driftline: {w}" for w in warnings]
    if status is not None:
        response["status"] = status
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def _failed(
    api_version: str, uid: str, settings: InjectorSettings, message: str, code: int
) -> dict[str, Any]:
    """An answer for a review the injector cannot honour, per its failure policy."""
    if settings.failure_policy == "Fail":
        status = {
            "status": "Failure",
            "code": code,
            "reason": "BadRequest" if code == 400 else "InternalError",
            "message": f"driftline sidecar injector: {message}",
        }
        return _answer(api_version, uid, allowed=False, status=status)
    return _answer(api_version, uid, warnings=(f"sidecar not injected: {message}",))


# -- small helpers -----------------------------------------------------------------------


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _pod_name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") or meta.get("generateName") or "<unnamed>"
    return str(name)
