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
  reference profile;
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
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import yaml

# Imported here, not at the first review: it takes about a second, and the API server
# gives a review a few.
from monitor.config.errors import ConfigError
from monitor.config.loader import parse_config
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
    "escape_pointer",
    "handle_review",
]

log = logging.getLogger(__name__)

API_VERSION = "admission.k8s.io/v1"
PREFIX = "driftline.io/"
ANNOTATION_INJECT = PREFIX + "inject"
ANNOTATION_INJECTED = PREFIX + "injected"
# Why a pod that asked for the sidecar did not get it (failure policy Ignore).
ANNOTATION_ERROR = PREFIX + "injection-error"
ANNOTATION_CONFIG = PREFIX + "config"
ANNOTATION_MODEL = PREFIX + "model"
ANNOTATION_TOPIC = PREFIX + "topic"
ANNOTATION_BOOTSTRAP = PREFIX + "bootstrap-servers"
ANNOTATION_GROUP = PREFIX + "group-id"
ANNOTATION_REFERENCE = PREFIX + "reference"
ANNOTATION_REFERENCE_CONFIGMAP = PREFIX + "reference-configmap"
ANNOTATION_REFERENCE_SHA256 = PREFIX + "reference-sha256"
ANNOTATION_RECORD_FORMAT = PREFIX + "record-format"
ANNOTATION_WINDOW = PREFIX + "window"
# Annotations that build monitor.yaml; ignored (with a warning) next to driftline.io/config.
CONFIG_ANNOTATIONS = (
    ANNOTATION_MODEL,
    ANNOTATION_TOPIC,
    ANNOTATION_BOOTSTRAP,
    ANNOTATION_GROUP,
    ANNOTATION_REFERENCE,
    ANNOTATION_REFERENCE_SHA256,
    ANNOTATION_RECORD_FORMAT,
    ANNOTATION_WINDOW,
)
# Labels that name the model when driftline.io/model does not (KServe sets the second).
MODEL_LABELS = ("app.kubernetes.io/name", "serving.kserve.io/inferenceservice", "app")

CONTAINER_NAME = "driftline"
INIT_CONTAINER_NAME = "driftline-config"
CONFIG_VOLUME = "driftline-config"
STATE_VOLUME = "driftline-state"
REFERENCE_VOLUME = "driftline-reference"
CONFIG_DIR = "/etc/driftline"
CONFIG_FILE = CONFIG_DIR + "/monitor.yaml"
REFERENCE_DIR = "/etc/driftline-reference"
DEFAULT_REFERENCE_FILE = "reference.json.gz"
STATE_DIR = "/var/lib/driftline"
# IANA service names are at most 15 characters: "driftline-metrics" would be refused.
METRICS_PORT_NAME = "dl-metrics"
MONITOR_YAML_ENV = "DRIFTLINE_MONITOR_YAML"
# The emptyDir holding monitor.yaml and a fetched reference profile.
CONFIG_VOLUME_LIMIT = "512Mi"
MAX_ERROR_CHARS = 1024

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def escape_pointer(token: str) -> str:
    """One reference token of a JSON Pointer (RFC 6901): ``~`` → ``~0``, ``/`` → ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


class _PodProblem(Exception):
    """The pod asked for injection but cannot get it; the message says what to change."""


@dataclass(frozen=True)
class Outcome:
    """What the webhook decided for one pod: ``inject`` (with the patch), ``skip`` (no
    change; ``reason`` says why) or ``error`` (the pod's request cannot be honoured)."""

    action: Literal["inject", "skip", "error"]
    reason: str
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


@dataclass
class _Additions:
    """What injection adds to the pod, before it becomes JSONPatch operations."""

    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    containers: list[dict[str, Any]] = field(default_factory=list)


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


@dataclass
class _Reference:
    """Where the sidecar finds the reference profile, and what that needs."""

    path: str
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    url: str | None = None
    sha256: str | None = None


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
    return data, reference


def _reference(spec: dict[str, Any], annotations: dict[str, str]) -> _Reference:
    """The reference profile: a file of a ConfigMap, an http(s) URL fetched by the init
    container, or a path inside a volume one of the pod's containers mounts."""
    value = annotations.get(ANNOTATION_REFERENCE, "").strip()
    configmap = annotations.get(ANNOTATION_REFERENCE_CONFIGMAP)
    sha256 = annotations.get(ANNOTATION_REFERENCE_SHA256, "").strip() or None
    if sha256 is not None and not _SHA256.match(sha256):
        raise _PodProblem(f"{ANNOTATION_REFERENCE_SHA256}: is not 64 hexadecimal digits")
    if configmap is not None:
        name = value or DEFAULT_REFERENCE_FILE
        if not _FILE_NAME.match(name) or name in (".", ".."):
            raise _PodProblem(
                f"{ANNOTATION_REFERENCE}: {name!r} must be a key (file name) of the ConfigMap "
                f"{configmap.strip()} when {ANNOTATION_REFERENCE_CONFIGMAP} is set"
            )
        return _Reference(
            path=f"{REFERENCE_DIR}/{name}",
            volumes=[_reference_configmap_volume(configmap.strip())],
            mounts=[{"name": REFERENCE_VOLUME, "mountPath": REFERENCE_DIR, "readOnly": True}],
        )
    if not value:
        raise _PodProblem(
            f"set {ANNOTATION_REFERENCE} to the reference profile: an http(s) URL, a path in "
            f"a volume the pod mounts, or a key of {ANNOTATION_REFERENCE_CONFIGMAP}"
        )
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise _PodProblem(f"{ANNOTATION_REFERENCE}: {value!r} is not a URL")
        suffix = ".json.gz" if parts.path.endswith(".gz") else ".json"
        return _Reference(path=f"{CONFIG_DIR}/reference{suffix}", url=value, sha256=sha256)
    if parts.scheme:
        raise _PodProblem(
            f"{ANNOTATION_REFERENCE}: {parts.scheme}:// is not supported; use an http(s) URL, "
            "a path in a mounted volume, or a ConfigMap"
        )
    if sha256 is not None:
        raise _PodProblem(f"{ANNOTATION_REFERENCE_SHA256} only applies to an http(s) reference")
    path = posixpath.normpath(value)
    if not path.startswith("/"):
        raise _PodProblem(
            f"{ANNOTATION_REFERENCE}: {value!r} is relative; write the absolute path at "
            "which a container of this pod mounts it"
        )
    mount = _mount_holding(spec, path)
    if mount is None:
        raise _PodProblem(
            f"{ANNOTATION_REFERENCE}: {path} is not inside a volume mounted by a container of "
            f"this pod; mount one there, or use {ANNOTATION_REFERENCE_CONFIGMAP} or a URL"
        )
    sidecar_mount = {"name": mount["name"], "mountPath": mount["mountPath"], "readOnly": True}
    for key in ("subPath", "subPathExpr"):
        if key in mount:
            sidecar_mount[key] = mount[key]
    return _Reference(path=path, mounts=[sidecar_mount])


def _configmap_mode_reference(spec: dict[str, Any], annotations: dict[str, str]) -> _Reference:
    """With ``driftline.io/config`` the ConfigMap's monitor.yaml names the reference; the
    pod only says what to mount: ``driftline.io/reference-configmap`` (at
    /etc/driftline-reference) or ``driftline.io/reference``, a path in one of its volumes."""
    if ANNOTATION_REFERENCE_CONFIGMAP in annotations:
        return _reference(spec, annotations)
    value = annotations.get(ANNOTATION_REFERENCE, "").strip()
    if not value:
        return _Reference(path="")  # in the ConfigMap itself
    if urlsplit(value).scheme:
        raise _PodProblem(
            f"{ANNOTATION_REFERENCE}: a URL is fetched only when the annotations build the "
            f"configuration; with {ANNOTATION_CONFIG}, put the profile in a ConfigMap or a "
            "volume"
        )
    return _reference(spec, annotations)


def _mount_holding(spec: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The deepest volume mount of the pod's containers that contains ``path``."""
    best: dict[str, Any] | None = None
    best_len = -1
    for container in _dict_list(spec.get("containers")):
        for mount in _dict_list(container.get("volumeMounts")):
            where = mount.get("mountPath")
            if not isinstance(where, str) or not isinstance(mount.get("name"), str):
                continue
            where = posixpath.normpath(where)
            inside = path == where or path.startswith(where.rstrip("/") + "/")
            if inside and len(where) > best_len:
                best, best_len = mount, len(where)
    return best


def _reference_configmap_volume(name: str) -> dict[str, Any]:
    if not _is_dns_subdomain(name):
        raise _PodProblem(f"{ANNOTATION_REFERENCE_CONFIGMAP}: {name!r} is not a ConfigMap name")
    return {"name": REFERENCE_VOLUME, "configMap": {"name": name}}


def _validate(data: dict[str, Any], namespace: str, meta: dict[str, Any]) -> None:
    """Check the built configuration with the agent's own model, so a mistake in the
    annotations is reported at admission instead of as a crash-looping sidecar."""
    name = meta.get("name") or meta.get("generateName") or "pod"
    try:
        parse_config(data, source=f"annotations of {namespace}/{name}")
    except ConfigError as exc:
        raise _PodProblem(str(exc).replace("\n", "; ")) from None


# -- the containers ----------------------------------------------------------------------


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _sidecar_env(settings: InjectorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    secret = settings.kafka.password_secret
    if secret is not None:
        env.append(
            {
                "name": settings.kafka.password_env,
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        )
    env.extend(settings.extra_env)
    return env


def _sidecar(
    settings: InjectorSettings, mounts: list[dict[str, Any]], env: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["run", "-c", CONFIG_FILE],
        # The default state dir ("./state") lands in the writable emptyDir.
        "workingDir": STATE_DIR,
        "env": env,
        "ports": [
            {"name": METRICS_PORT_NAME, "containerPort": settings.metrics_port, "protocol": "TCP"}
        ],
        "resources": settings.resources,
        "securityContext": _security_context(),
        "volumeMounts": mounts,
        # No readiness probe: a monitoring sidecar must not take the model out of its
        # Service while Kafka is unreachable. Liveness restarts a stalled agent.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": METRICS_PORT_NAME},
            "initialDelaySeconds": 15,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _init_container(settings: InjectorSettings, text: str, reference: _Reference) -> dict[str, Any]:
    args = ["inject", "prepare", "--output-dir", CONFIG_DIR]
    if reference.url is not None:
        args += ["--reference-url", reference.url, "--reference-file", reference.path]
        if reference.sha256 is not None:
            args += ["--reference-sha256", reference.sha256]
    return {
        "name": INIT_CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": args,
        "env": [
            {"name": MONITOR_YAML_ENV, "value": text},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "resources": settings.init_resources,
        "securityContext": _security_context(),
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


# -- JSONPatch ---------------------------------------------------------------------------


def _patch(meta: dict[str, Any], spec: dict[str, Any], add: _Additions) -> list[dict[str, Any]]:
    """RFC 6902 operations that apply ``add`` to the pod. An absent (or null) map or list
    is added whole first: ``/metadata/annotations/x`` fails when there are none."""
    ops: list[dict[str, Any]] = []
    _add_map(ops, meta.get("annotations"), "/metadata/annotations", add.annotations)
    _add_map(ops, meta.get("labels"), "/metadata/labels", add.labels)
    _add_list(ops, spec.get("volumes"), "/spec/volumes", add.volumes)
    _add_list(ops, spec.get("initContainers"), "/spec/initContainers", add.init_containers)
    _add_list(ops, spec.get("containers"), "/spec/containers", add.containers)
    return ops


def _add_map(ops: list[dict[str, Any]], existing: Any, path: str, items: dict[str, str]) -> None:
    if not items:
        return
    if not isinstance(existing, dict):
        ops.append({"op": "add", "path": path, "value": dict(items)})
        return
    for key, value in items.items():
        if key not in existing:
            ops.append({"op": "add", "path": f"{path}/{escape_pointer(key)}", "value": value})


def _add_list(ops: list[dict[str, Any]], existing: Any, path: str, items: list[Any]) -> None:
    if not items:
        return
    if not isinstance(existing, list):
        ops.append({"op": "add", "path": path, "value": list(items)})
        return
    ops.extend({"op": "add", "path": f"{path}/-", "value": item} for item in items)


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


def _dict_list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _is_dns_subdomain(name: str) -> bool:
    return (
        0 < len(name) <= 253
        and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name)
        is not None
    )


def _pod_name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") or meta.get("generateName") or "<unnamed>"
    return str(name)
