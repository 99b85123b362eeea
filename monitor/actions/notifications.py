"""Alertmanager's webhook notifications (``webhook_config``, version "4"): the payload,
checked field by field, as :class:`Notification` and :class:`Alert` values.

Alertmanager POSTs one JSON document per notification of a group::

    {"version": "4", "groupKey": "{}:{alertname=\\"DriftlineDatasetDrift\\"}",
     "truncatedAlerts": 0, "status": "firing", "receiver": "driftline",
     "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": "http://alertmanager:9093",
     "alerts": [{"status": "firing", "labels": {"alertname": ..., "model": ...,
                 "model_version": ...}, "annotations": {...},
                 "startsAt": "2024-06-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "...", "fingerprint": "c1a3..."}]}

Every field is checked (type and presence; ``truncatedAlerts`` may be absent, older
Alertmanagers do not send it); :func:`parse_notification` raises :class:`PayloadError`
with the reason. These are the values the receiver (``monitor.actions.alerts``), the
policy engine and its decisions share, so they live apart from all three.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Alert", "Notification", "PayloadError", "parse_notification"]

WEBHOOK_VERSION = "4"
STATUSES = ("firing", "resolved")
# RFC 3339 as Go writes it (fractions up to nanoseconds); datetime parses the rest.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)


class PayloadError(ValueError):
    """A notification that is not a valid Alertmanager webhook payload."""


@dataclass(frozen=True)
class Alert:
    """One alert of a notification. ``starts_at``/``ends_at`` are the strings as sent
    (they are part of the identity); ``started``/``ended`` the parsed Unix times."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str
    started: float = 0.0
    ended: float = 0.0

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def key(self) -> tuple[str, str, str, str]:
        """What makes a repeat a repeat."""
        return (self.fingerprint, self.status, self.starts_at, self.ends_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Notification:
    version: str
    group_key: str
    status: str
    receiver: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    truncated_alerts: int
    alerts: tuple[Alert, ...] = field(default=())


def _field(doc: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise PayloadError(f"{where}{key} is missing")
    return doc[key]


def _string(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(doc, key, where)
    if not isinstance(value, str):
        raise PayloadError(f"{where}{key} must be a string, not {type(value).__name__}")
    return value


def _labels(doc: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = _field(doc, key, where)
    if not isinstance(value, dict):
        raise PayloadError(f"{where}{key} must be an object, not {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise PayloadError(f"{where}{key}.{k} must be a string, not {type(v).__name__}")
    return value


def _status(doc: Mapping[str, Any], where: str) -> str:
    status = _string(doc, "status", where)
    if status not in STATUSES:
        raise PayloadError(f'{where}status must be "firing" or "resolved", not {status!r}')
    return status


def _time(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, float]:
    text = _string(doc, key, where)
    match = _RFC3339.match(text)
    if match is None:
        raise PayloadError(f"{where}{key} is not an RFC 3339 time: {text[:40]!r}")
    base, fraction, zone = match.groups()
    fraction = (fraction or "")[:7]  # datetime keeps microseconds
    zone = "+00:00" if zone.upper() == "Z" else zone
    try:
        moment = datetime.fromisoformat(base + fraction + zone)
    except ValueError:
        raise PayloadError(f"{where}{key} is not a valid time: {text[:40]!r}") from None
    if moment.year < 1000:  # Go's zero time: "not set"
        return text, 0.0
    return text, moment.timestamp()


def _alert(doc: Any, i: int) -> Alert:
    where = f"alerts[{i}]."
    if not isinstance(doc, dict):
        raise PayloadError(f"alerts[{i}] must be an object, not {type(doc).__name__}")
    fingerprint = _string(doc, "fingerprint", where)
    if not fingerprint:
        raise PayloadError(f"{where}fingerprint is empty")
    starts_at, started = _time(doc, "startsAt", where)
    ends_at, ended = _time(doc, "endsAt", where)
    return Alert(
        status=_status(doc, where),
        labels=_labels(doc, "labels", where),
        annotations=_labels(doc, "annotations", where),
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=_string(doc, "generatorURL", where),
        fingerprint=fingerprint,
        started=started,
        ended=ended,
    )


def parse_notification(doc: Any) -> Notification:
    """Check a decoded webhook body; raises :class:`PayloadError` saying what is wrong."""
    if not isinstance(doc, dict):
        raise PayloadError(f"the body must be a JSON object, not {type(doc).__name__}")
    version = _field(doc, "version", "")
    if version != WEBHOOK_VERSION:
        raise PayloadError(
            f"version must be {WEBHOOK_VERSION!r} (Alertmanager's webhook format), not {version!r}"
        )
    alerts = _field(doc, "alerts", "")
    if not isinstance(alerts, list):
        raise PayloadError(f"alerts must be an array, not {type(alerts).__name__}")
    truncated = doc.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise PayloadError("truncatedAlerts must be a non-negative integer")
    return Notification(
        version=version,
        group_key=_string(doc, "groupKey", ""),
        status=_status(doc, ""),
        receiver=_string(doc, "receiver", ""),
        group_labels=_labels(doc, "groupLabels", ""),
        common_labels=_labels(doc, "commonLabels", ""),
        common_annotations=_labels(doc, "commonAnnotations", ""),
        external_url=_string(doc, "externalURL", ""),
        truncated_alerts=truncated,
        alerts=tuple(_alert(a, i) for i, a in enumerate(alerts)),
    )
