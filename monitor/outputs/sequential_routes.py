"""``POST /v1/sequential/reset``: an operator acknowledges sequential alarms.

Body (JSON, optional; an empty body acknowledges everything)::

    {"model_version": "v2", "feature": "age"}

Either key may be left out (all model versions; every column and the dataset). ``feature``
may also be ``features`` or ``predictions``, the dataset-level detectors. The CUSUMs
covered restart at 0 and their ``driftline_sequential_alarm`` gauges return to 0, which
resolves the alert. Guarded by the same bearer token as ``/v1/alerts``
(``alerts.token_env``).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from monitor.outputs.server import AgentServer, HTTPError, Request, Response, require_bearer_token
from monitor.runtime.sequential import SequentialMonitor

RESET_PATH = "/v1/sequential/reset"
_KEYS = ("model_version", "feature")


def reset_handler(
    monitor: SequentialMonitor, on_reset: Callable[[str | None, str | None], None]
) -> Callable[[Request], Response]:
    """The handler: validates the body, resets ``monitor`` and calls ``on_reset``."""

    def handle(request: Request) -> Response:
        body = request.json() if request.body.strip() else {}
        if not isinstance(body, dict):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        unknown = sorted(set(body) - set(_KEYS))
        if unknown:
            raise HTTPError(
                HTTPStatus.BAD_REQUEST, f"unknown keys {unknown}; use model_version and feature"
            )
        for key in _KEYS:
            if body.get(key) is not None and not isinstance(body[key], str):
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"{key} must be a string")
        version, feature = body.get("model_version"), body.get("feature")
        if feature is not None and not monitor.knows(feature):
            raise HTTPError(
                HTTPStatus.NOT_FOUND,
                "no sequential detector for that feature; name a schema column, "
                "'features' or 'predictions'",
            )
        touched = monitor.reset(version, feature)
        on_reset(version, feature)
        return Response.json({"reset": touched, "model_version": version, "feature": feature})

    return handle


def register_sequential(
    server: AgentServer,
    monitor: SequentialMonitor,
    token_env: str,
    on_reset: Callable[[str | None, str | None], None],
) -> None:
    server.add_route(
        "POST", RESET_PATH, require_bearer_token(token_env)(reset_handler(monitor, on_reset))
    )
