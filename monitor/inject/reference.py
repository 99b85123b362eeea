"""Where the sidecar's reference profile comes from: a URL, a ConfigMap, or a volume the pod
already mounts."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from monitor.inject.names import (
    _FILE_NAME,
    _SHA256,
    ANNOTATION_CONFIG,
    ANNOTATION_REFERENCE,
    ANNOTATION_REFERENCE_CONFIGMAP,
    ANNOTATION_REFERENCE_SHA256,
    CONFIG_DIR,
    DEFAULT_REFERENCE_FILE,
    REFERENCE_DIR,
    REFERENCE_VOLUME,
)


class _PodProblem(Exception):
    """The pod asked for injection but cannot get it; the message says what to change."""


@dataclass
class _Reference:
    """Where the sidecar finds the reference profile, and what that needs."""

    path: str
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    url: str | None = None
    sha256: str | None = None


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


def _dict_list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _is_dns_subdomain(name: str) -> bool:
    return (
        0 < len(name) <= 253
        and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name)
        is not None
    )
