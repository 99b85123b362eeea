"""Rollback policies and the actions they take, and the endpoints rollouts talk to.

``monitor.actions.policy.PolicyEngine`` decides from window reports and Alertmanager
notifications; the actions (``webhook``, ``argo``, ``kserve``) carry a decision out;
``routes.register`` serves ``/v1/alerts`` and the Argo Rollouts / Flagger gates.

This module holds what every action shares: the :class:`Action` protocol, the error an
action raises, the retry loop (exponential backoff with full jitter) and one plain HTTP
request on the standard library, so no action needs a client dependency.
"""

from __future__ import annotations

import base64
import http.client
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from monitor.redaction import redact_text, redact_url

if TYPE_CHECKING:
    from monitor.actions.decision import Decision

__all__ = [
    "Action",
    "ActionError",
    "HTTPReply",
    "Retry",
    "http_request",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
# What is kept of a response body (error messages quote it).
MAX_REPLY_BYTES = 64 * 1024


class ActionError(Exception):
    """An action that did not happen. ``retryable``: worth another attempt (5xx, a
    connection error, a timeout); ``status``: the HTTP status when there was one."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Action(Protocol):
    """Something a policy does: ``execute`` returns a short description of what was done
    (for the audit log) or raises :class:`ActionError`."""

    name: str
    kind: str

    def execute(self, decision: Decision) -> str: ...


@dataclass(frozen=True)
class HTTPReply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self, limit: int = 300) -> str:
        text = self.body[:limit].decode("utf-8", "replace").strip()
        return text + ("..." if len(self.body) > limit else "")


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> HTTPReply:
    """One request, no redirects followed; connection problems raise a retryable
    :class:`ActionError`, any HTTP status is returned.

    User info in the URL (``https://user:password@host/...``) is sent as HTTP Basic
    authentication (unless ``headers`` has an Authorization) and never shown: errors
    name the URL redacted (monitor/redaction.py).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ActionError(f"not an http(s) URL: {redact_url(url)}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = dict(headers or {})
    if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname,
            parts.port,
            timeout=timeout,
            context=ssl_context or ssl.create_default_context(),
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(MAX_REPLY_BYTES)
        return HTTPReply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except ssl.SSLError as exc:
        # a certificate problem does not fix itself on retry
        raise ActionError(f"TLS error talking to {redact_url(url)}: {exc}") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise ActionError(
            f"{method} {redact_url(url)} failed: {type(exc).__name__}: {redact_text(str(exc))}",
            retryable=True,
        ) from None
    finally:
        conn.close()


@dataclass
class Retry:
    """Attempts with exponential backoff and full jitter.

    After failed attempt ``n`` (0-based) the next one waits a uniformly random time in
    ``[0, min(max_backoff, backoff * 2**n)]`` ("full jitter": retries from many agents
    do not arrive in step). Only :class:`ActionError` with ``retryable`` is retried.
    ``sleep`` and ``rand`` are injectable so tests need not wait.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        return self.rand() * min(self.max_backoff, self.backoff * (2.0**attempt))

    def run(self, call: Callable[[int], T]) -> T:
        """``call(attempt)`` until it returns, raises a final error, or attempts run out."""
        attempt = 0
        while True:
            try:
                return call(attempt)
            except ActionError as exc:
                if not exc.retryable or attempt >= self.retries:
                    if attempt:
                        raise ActionError(
                            f"{exc} (after {attempt + 1} attempts)",
                            retryable=exc.retryable,
                            status=exc.status,
                        ) from None
                    raise
                wait = self.delay(attempt)
                log.info("attempt %d failed (%s); retrying in %.2fs", attempt + 1, exc, wait)
                self.sleep(wait)
                attempt += 1
