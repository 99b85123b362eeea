"""``injector.yaml``: what the sidecar injector adds to a pod, set once per cluster.

The Helm chart renders this file from its values and mounts it into the injector; pods
only choose *what* to monitor (annotations), never which image runs next to them or with
which privileges. Keys follow the style of ``monitor.yaml``: snake_case, unknown keys are
errors, secrets are named (a Kubernetes Secret and key), never written here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.config.safe_yaml import YAMLLimitError, load_yaml

__all__ = ["InjectorSettings", "KafkaDefaults", "SecretRef", "SettingsError", "load_settings"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# RFC 1123 subdomain: what Kubernetes accepts as a Secret or ConfigMap name.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class SettingsError(ValueError):
    """An ``injector.yaml`` that cannot be used; the message names the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(_Section):
    """A key of a Kubernetes Secret in the injected pod's namespace."""

    name: str
    key: str = "password"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a Secret name (lower-case RFC 1123 subdomain)")
        return value


class KafkaDefaults(_Section):
    """Broker settings shared by every injected agent unless a pod's annotation says
    otherwise (the brokers), mirroring ``source.kafka`` of ``monitor.yaml``."""

    bootstrap_servers: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    # The password comes from this Secret into the variable ``password_env``.
    password_secret: SecretRef | None = None
    password_env: str = "KAFKA_PASSWORD"

    @field_validator("password_env")
    @classmethod
    def _env(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


class InjectorSettings(_Section):
    """Everything about the injected containers that is not the pod's to decide."""

    image: str = "ghcr.io/driftline/driftline:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # The agent's HTTP port (/metrics, /healthz), named ``dl-metrics`` in the pod.
    metrics_port: int = Field(9108, ge=1, le=65535)
    resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            # measured (docs/benchmarks.md, "Footprint"); the chart's defaults too
            "requests": {"cpu": "200m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        }
    )
    init_resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "256Mi"},
        }
    )
    # Ignore: a review the injector cannot handle admits the pod unchanged, with a
    # warning; Fail: it is rejected with the reason. Mirror of the webhook's policy.
    failure_policy: Literal["Ignore", "Fail"] = "Ignore"
    # prometheus.io/scrape|port|path on pods that do not have their own.
    scrape_annotations: bool = True
    # The label ``driftline.io/injected: "true"``, which the chart's PodMonitor selects.
    pod_label: bool = True
    kafka: KafkaDefaults = Field(default_factory=KafkaDefaults)
    # aggregation.role of the sidecars a pod's driftline.io/aggregation does not choose:
    # "both" gives a model one verdict per window however many replicas it has.
    aggregation: Literal["none", "both"] = "both"
    # Environment variables added to every sidecar, e.g. an OTLP endpoint's headers from
    # a Secret: plain Kubernetes EnvVar objects.
    extra_env: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("resources", "init_resources")
    @classmethod
    def _resources(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = set(value) - {"requests", "limits"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; use requests and limits")
        return {k: {r: str(q) for r, q in v.items()} for k, v in value.items()}

    @field_validator("extra_env")
    @classmethod
    def _extra_env(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in value:
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise ValueError(f"{item!r} is not an EnvVar with a valid name")
        return value


def load_settings(path: str | Path | None) -> InjectorSettings:
    """Read ``injector.yaml`` (the defaults when ``path`` is None)."""
    if path is None:
        return InjectorSettings()
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, YAMLLimitError) as exc:
        raise SettingsError(f"{path}: cannot read injector settings: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: must be a mapping of keys (image, resources, kafka, ...)")
    try:
        return InjectorSettings.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise SettingsError("\n".join(lines)) from None
