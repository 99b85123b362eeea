"""The generic webhook action: a signed JSON POST that tells any system about a decision.

The body describes the decision (model, version, reason) and its evidence (a summary of
the window reports or alerts behind it). Every request carries:

* ``X-Driftline-Signature: t=<unix>,v1=<hex>``: HMAC-SHA256 over ``"<t>.<body>"`` with the
  secret from the environment variable ``secret_env`` (see ``monitor.actions.signing``;
  receivers check it with ``verify``). It is computed afresh for each attempt;
* ``X-Driftline-Idempotency-Key``: the same for every attempt and every replay of the same
  decision (it derives from the decision and the action's name), so a receiver can drop
  duplicates;
* ``X-Driftline-Event: rollback`` and ``User-Agent: driftline/<version>``.

A 2xx answer is success. 5xx answers, connection errors and timeouts are retried with
exponential backoff and full jitter; any other answer (4xx: the receiver refused this
request, sending it again will not help) fails at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from monitor import __version__
from monitor.actions import ActionError, Retry, http_request
from monitor.actions.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature_header
from monitor.config.rollback import ActionConfig
from monitor.redaction import redact_text, redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from monitor.actions.decision import Decision

__all__ = ["EVENT_HEADER", "WebhookAction", "idempotency_key", "payload"]

EVENT_HEADER = "X-Driftline-Event"
PAYLOAD_TYPE = "driftline.rollback.v1"


def idempotency_key(decision_id: str, action: str) -> str:
    """Stable per decision and action: retries and replays share it."""
    return hashlib.sha256(f"{decision_id}\0{action}".encode()).hexdigest()[:40]


def payload(decision: Decision, action: str) -> dict[str, object]:
    """What the webhook POSTs (documented in docs/alerting.md)."""
    return {
        "type": PAYLOAD_TYPE,
        "action": action,
        "decision_id": decision.id,
        "policy": decision.policy,
        "model": decision.model,
        "version": decision.version,
        "stable_version": decision.stable_version,
        "reason": decision.reason,
        "trigger": decision.trigger,
        "dry_run": decision.dry_run,
        "decided_at": decision.decided_at,
        "evidence": decision.evidence(),
    }


class WebhookAction:
    """POST the decision to ``config.url``; see the module docstring."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        config: ActionConfig,
        *,
        retry: Retry | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if config.kind != "webhook" or config.url is None:
            raise ValueError(f"action {name}: not a webhook action")
        self.name = name
        self.config = config
        self.url = config.url
        self.shown_url = redact_url(config.url)  # what logs and the audit log may show
        self.retry = retry or Retry(config.retries, config.backoff, config.max_backoff)
        self._clock = clock

    def _headers(self, body: bytes, key: str, secret: bytes) -> Mapping[str, str]:
        now = None if self._clock is None else int(self._clock())
        return {
            **self.config.headers,
            "Content-Type": "application/json",
            "User-Agent": f"driftline/{__version__}",
            EVENT_HEADER: "rollback",
            IDEMPOTENCY_HEADER: key,
            SIGNATURE_HEADER: signature_header(secret, body, now),
        }

    def execute(self, decision: Decision) -> str:
        secret = self.config.secret()
        if secret is None:
            # fail closed: an unsigned request could not be told from a forged one
            raise ActionError(
                f"the signing secret variable {self.config.secret_env} is not set or empty"
            )
        body = orjson.dumps(payload(decision, self.name))
        key = idempotency_key(decision.id, self.name)

        def attempt(n: int) -> str:
            reply = http_request(
                "POST",
                self.url,
                body=body,
                headers=self._headers(body, key, secret),
                timeout=self.config.timeout,
            )
            if 200 <= reply.status < 300:
                return f"POST {self.shown_url} answered {reply.status} (attempt {n + 1})"
            raise ActionError(
                f"POST {self.shown_url} answered {reply.status}: {redact_text(reply.text())}",
                retryable=reply.status >= 500,
                status=reply.status,
            )

        return self.retry.run(attempt)
