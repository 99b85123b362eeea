"""The containers the injector adds: the sidecar (non-root, read-only root filesystem) and
the init container that writes its monitor.yaml."""

from __future__ import annotations

from typing import Any

from monitor.inject.names import (
    CONFIG_DIR,
    CONFIG_FILE,
    CONFIG_VOLUME,
    CONTAINER_NAME,
    INIT_CONTAINER_NAME,
    METRICS_PORT_NAME,
    MONITOR_YAML_ENV,
    STATE_DIR,
)
from monitor.inject.reference import (
    _Reference,
)
from monitor.inject.settings import InjectorSettings


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
