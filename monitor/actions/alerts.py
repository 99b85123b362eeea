"""``POST /v1/alerts``: Alertmanager's webhook notifications, checked and remembered.

The payload and its checks are in ``monitor.actions.notifications``; anything malformed
is answered 400 with the reason, so a misconfigured sender shows up in Alertmanager's own
logs instead of silently doing nothing; 4xx is not retried by Alertmanager, 5xx is.

Alertmanager re-sends a group on ``repeat_interval`` and after restarts, and sends the
alerts of a group that were already notified together with new ones. Each alert is
therefore processed once per (fingerprint, status, startsAt, endsAt): a bounded memory
(the most recent ``remember`` keys) drops repeats, and the answer counts them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from http import HTTPStatus

from monitor.actions.decision import AlertSink
from monitor.actions.notifications import PayloadError, parse_notification
from monitor.outputs.server import HTTPError, Request, Response

__all__ = ["AlertReceiver", "SeenKeys"]


class SeenKeys:
    """The most recent ``capacity`` keys; thread-safe. ``add`` says whether a key is new."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return False
            self._keys[key] = None
            if len(self._keys) > self.capacity:
                self._keys.popitem(last=False)
            return True

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


class AlertReceiver:
    """The ``POST /v1/alerts`` handler (authentication is added by ``routes``)."""

    def __init__(
        self, engine: AlertSink, *, max_body_bytes: int = 1 << 20, remember: int = 10_000
    ) -> None:
        self.engine = engine
        self.max_body_bytes = max_body_bytes
        self.seen = SeenKeys(remember)

    def handle(self, request: Request) -> Response:
        if len(request.body) > self.max_body_bytes:
            return Response.error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {len(request.body)} bytes exceeds the limit of "
                f"{self.max_body_bytes} (alerts.max_body_bytes); lower max_alerts in "
                "Alertmanager's webhook_config",
            )
        try:
            doc = request.json()
        except HTTPError as exc:
            return exc.response()
        try:
            notification = parse_notification(doc)
        except PayloadError as exc:
            return Response.error(HTTPStatus.BAD_REQUEST, str(exc))
        fresh = [a for a in notification.alerts if self.seen.add(a.key())]
        try:
            decisions = self.engine.observe_alerts(fresh) if fresh else []
        except Exception:
            # forget them, so Alertmanager's retry (it retries 5xx) is processed again
            for alert in fresh:
                self.seen.discard(alert.key())
            raise
        return Response.json(
            {
                "received": len(notification.alerts),
                "processed": len(fresh),
                "duplicates": len(notification.alerts) - len(fresh),
                "truncated": notification.truncated_alerts,
                "decisions": [d.summary() for d in decisions],
            }
        )
