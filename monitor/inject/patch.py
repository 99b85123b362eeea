"""The JSONPatch that adds the injector's containers, volumes and annotations to a pod, as
RFC 6902 operations the API server applies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def escape_pointer(token: str) -> str:
    """One reference token of a JSON Pointer (RFC 6901): ``~`` → ``~0``, ``/`` → ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


@dataclass
class _Additions:
    """What injection adds to the pod, before it becomes JSONPatch operations."""

    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    containers: list[dict[str, Any]] = field(default_factory=list)


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
