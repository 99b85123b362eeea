"""Flagger webhooks: a ``rollout`` check and a ``rollback`` trigger for a canary.

Flagger POSTs the same body to every webhook of a Canary's analysis::

    {"name": "fraud-scorer", "namespace": "ml", "phase": "Progressing",
     "checksum": "85d557f47b", "metadata": {"model": "fraud-scorer", "version": "v2"}}

and reads only the status code:

* ``POST /v1/gates/flagger/rollout`` (a ``type: rollout`` hook, run at each analysis
  iteration): 200 while the canary's windows are clean, 412 while it drifts (Flagger
  halts advancement and counts a failed check; after ``threshold`` of them it rolls
  back), 503 while no window of the version has been evaluated (also a failed check:
  never advance blind).
* ``POST /v1/gates/flagger/rollback`` (a ``type: rollback`` hook): inverted, as Flagger
  wants it: 200 means "roll back now" and is answered while the canary drifts; 412
  (healthy) and 503 (cannot judge) mean "do not".

The model and version come from the hook's ``metadata`` (``model``, ``version``), else
from query parameters (``?model=M&version=V``); the model defaults to the agent's.

Flagger cannot send headers, so besides ``Authorization: Bearer <token>`` the token may
be given as ``metadata.token`` (as Flagger's own load tester does). Both are compared in
constant time with the variable ``alerts.gates.token_env`` (default ``alerts.token_env``)
names; with ``alerts.gates.auth: none`` the endpoints are open.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

from monitor.outputs.server import Request, Response, expected_token

if TYPE_CHECKING:
    from monitor.actions.gates import GateSource, GateVerdict

__all__ = ["FlaggerGate", "FlaggerPayload", "parse_payload"]

DRIFTING = HTTPStatus.PRECONDITION_FAILED
CHALLENGE = (("WWW-Authenticate", 'Bearer realm="driftline"'),)


class _BadPayload(ValueError):
    pass


@dataclass(frozen=True)
class FlaggerPayload:
    name: str
    namespace: str
    phase: str
    checksum: str
    metadata: dict[str, str]


def parse_payload(doc: Any) -> FlaggerPayload:
    """Check Flagger's webhook body; raises ValueError saying what is wrong."""
    if not isinstance(doc, dict):
        raise _BadPayload(f"the body must be a JSON object, not {type(doc).__name__}")
    values: dict[str, str] = {}
    for key in ("name", "namespace", "phase"):
        if key not in doc:
            raise _BadPayload(f"{key} is missing (Flagger sends name, namespace and phase)")
        if not isinstance(doc[key], str):
            raise _BadPayload(f"{key} must be a string, not {type(doc[key]).__name__}")
        values[key] = doc[key]
    checksum = doc.get("checksum", "")
    if not isinstance(checksum, str):
        raise _BadPayload("checksum must be a string")
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _BadPayload(f"metadata must be an object, not {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(v, str):
            raise _BadPayload(f"metadata.{k} must be a string, not {type(v).__name__}")
    return FlaggerPayload(
        values["name"], values["namespace"], values["phase"], checksum, dict(metadata)
    )


def _same(offered: str, expected: str) -> bool:
    # digests first: compare_digest on the raw tokens would leak their length
    return hmac.compare_digest(
        hashlib.sha256(offered.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


class FlaggerGate:
    """Handlers of the two Flagger endpoints; ``token_env`` None leaves them open."""

    def __init__(
        self, engine: GateSource, *, token_env: str | None, token_field: str = "token"
    ) -> None:
        self.engine = engine
        self.token_env = token_env
        self.token_field = token_field

    def rollout(self, request: Request) -> Response:
        return self._handle(request, rollback=False)

    def rollback(self, request: Request) -> Response:
        return self._handle(request, rollback=True)

    def _unauthorized(self, request: Request, doc: Any) -> Response | None:
        if self.token_env is None:
            return None
        expected = expected_token(self.token_env)
        if not expected:
            return Response.error(
                HTTPStatus.UNAUTHORIZED,
                "bearer token authentication is not configured on this agent",
                CHALLENGE,
            )
        scheme, _, token = request.header("authorization").strip().partition(" ")
        offered = token.strip() if scheme.lower() == "bearer" else ""
        if not offered and isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
            value = doc["metadata"].get(self.token_field)
            offered = value.strip() if isinstance(value, str) else ""
        if not offered:
            return Response.error(
                HTTPStatus.UNAUTHORIZED,
                f"missing token: send Authorization: Bearer <token> or metadata.{self.token_field}",
                CHALLENGE,
            )
        if not _same(offered, expected):
            return Response.error(HTTPStatus.UNAUTHORIZED, "invalid token", CHALLENGE)
        return None

    def _handle(self, request: Request, *, rollback: bool) -> Response:
        error: str | None
        try:
            doc: Any = orjson.loads(request.body) if request.body else None
        except orjson.JSONDecodeError as exc:
            doc, error = None, f"the body is not valid JSON: {exc}"
        else:
            error = None if request.body else "the request has no body; Flagger's JSON expected"
        denied = self._unauthorized(request, doc)
        if denied is not None:
            return denied
        if error is not None:
            return Response.error(HTTPStatus.BAD_REQUEST, error)
        try:
            payload = parse_payload(doc)
        except ValueError as exc:
            return Response.error(HTTPStatus.BAD_REQUEST, str(exc))
        model = (
            payload.metadata.get("model")
            or request.query_value("model")
            or self.engine.default_model
        )
        version = payload.metadata.get("version") or request.query_value("version")
        if not version:
            return Response.error(
                HTTPStatus.BAD_REQUEST,
                "no version: set metadata.version in the Canary's webhook (or ?version=)",
            )
        verdict = self.engine.gate_verdict(model, version)
        canary = {
            "canary": f"{payload.namespace}/{payload.name}",
            "phase": payload.phase,
            "checksum": payload.checksum,
        }
        if verdict is None:
            return Response.json(
                {
                    "error": f"no window of model {model} version {version} has been evaluated "
                    "yet; cannot judge",
                    "model": model,
                    "version": version,
                    **canary,
                },
                HTTPStatus.SERVICE_UNAVAILABLE,
            )
        return Response.json({**_body(verdict), **canary}, _status(verdict, rollback))


def _body(verdict: GateVerdict) -> dict[str, Any]:
    return verdict.to_dict()


def _status(verdict: GateVerdict, rollback: bool) -> int:
    if rollback:
        return HTTPStatus.OK if not verdict.ok else DRIFTING
    return HTTPStatus.OK if verdict.ok else DRIFTING
