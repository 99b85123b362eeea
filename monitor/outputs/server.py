"""The agent's HTTP server: metrics, health, readiness, latest reports, and extra routes.

A small threaded server on the standard library (``ThreadingHTTPServer``), because the
agent needs a handful of endpoints and no framework. Routes are exact paths with one
handler per method; a handler takes a :class:`Request` and returns a :class:`Response`
(or raises :class:`HTTPError`), so endpoints added later (Alertmanager webhooks, gates)
are plain functions, and :func:`require_bearer_token` guards the ones that need it.

Built-in routes:

* ``GET /metrics``: the Prometheus exposition; OpenMetrics when the scraper's ``Accept``
  asks for it (that is where exemplars appear), else the classic text format; gzip when
  accepted.
* ``GET /healthz``: 200 while the agent's loop ticks (liveness), 503 once the last tick
  is older than ``stale_after`` seconds; the body says how old it is.
* ``GET /readyz``: 200 only when the reference profile is loaded and the source is
  consuming; else 503 with the reason.
* ``GET /v1/reports/latest``: the last WindowReport per model version and baseline
  (``?model_version=v`` filters).

Bad requests get a 4xx with a JSON ``{"error": reason}``, never a crash: 404 for an
unknown path, 405 (with ``Allow``) for a method the path does not serve, 411 for a
chunked body, 413 for a body over the limit, 400 for a bad ``Content-Length`` or bad JSON.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from detectors.results import WindowReport
from monitor.outputs.connections import BoundedServerMixin, ConnectionLimits

if TYPE_CHECKING:
    from monitor.config.exporter import ExporterConfig

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1 << 20
# Bodies of rejected requests up to this size are read and dropped (see _discard).
DISCARD_LIMIT = 16 << 20
JSON_CONTENT_TYPE = "application/json"

__all__ = [
    "AgentServer",
    "BackgroundServer",
    "HTTPError",
    "Handler",
    "JSONRequestHandler",
    "PortInUseError",
    "Request",
    "Response",
    "expected_token",
    "require_bearer_token",
]


@dataclass(frozen=True)
class Request:
    """One HTTP request as a handler sees it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def query_value(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        """The body parsed as JSON; a 400 (via HTTPError) when it is not JSON."""
        if not self.body:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "the request has no body; JSON expected")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class Response:
    """What a handler answers: status, extra headers, body (Content-Length is added)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def json(
        cls, data: Any, status: int = HTTPStatus.OK, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        return cls(int(status), (("Content-Type", JSON_CONTENT_TYPE), *headers), orjson.dumps(data))

    @classmethod
    def error(cls, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls.json({"error": reason}, status, headers)


class HTTPError(Exception):
    """Raised by a handler to answer ``status`` with a JSON reason."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = int(status)
        self.reason = reason
        self.headers = headers

    def response(self) -> Response:
        return Response.error(self.status, self.reason, self.headers)


Handler = Callable[[Request], Response]


def expected_token(token_env: str) -> str:
    """The token held by the environment variable ``token_env``, surrounding whitespace
    removed ("" when unset).

    A Secret written with ``echo`` or from a file ends in a newline; Alertmanager trims its
    ``credentials_file`` and the offered token is stripped too, so the expected one must be
    stripped as well or every request would get 401.
    """
    return os.environ.get(token_env, "").strip()


def require_bearer_token(token_env: str) -> Callable[[Handler], Handler]:
    """Guard a handler with ``Authorization: Bearer <token>``, the token read from
    the environment variable ``token_env`` at each request (so it can be rotated).

    Fails closed: when the variable is unset or empty every request gets 401. The
    comparison is constant-time; neither token appears in a response or a log.
    """
    challenge = (("WWW-Authenticate", 'Bearer realm="driftline"'),)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def guarded(request: Request) -> Response:
            expected = expected_token(token_env)
            if not expected:
                return Response.error(
                    HTTPStatus.UNAUTHORIZED,
                    "bearer token authentication is not configured on this agent",
                    challenge,
                )
            scheme, _, token = request.header("authorization").strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                return Response.error(
                    HTTPStatus.UNAUTHORIZED, "missing Authorization: Bearer <token>", challenge
                )
            # digests first: compare_digest on the raw tokens would leak their length
            offered = hashlib.sha256(token.encode()).digest()
            if not hmac.compare_digest(offered, hashlib.sha256(expected.encode()).digest()):
                return Response.error(HTTPStatus.UNAUTHORIZED, "invalid bearer token", challenge)
            return handler(request)

        return guarded

    return decorate


def _discard(h: BaseHTTPRequestHandler, length: int) -> bool:
    """Read past a body that will not be used, so the client gets the answer.

    Closing a socket with unread data makes the kernel send a reset, which can destroy
    the error response before the client reads it. Bodies up to ``DISCARD_LIMIT`` are
    read and dropped (the connection stays usable); larger ones close the connection.
    """
    if length > DISCARD_LIMIT:
        return False
    remaining = length
    while remaining:
        chunk = h.rfile.read(min(remaining, 65536))
        if not chunk:
            return False
        remaining -= len(chunk)
    return True


class _HTTPServer(BoundedServerMixin, ThreadingHTTPServer):
    daemon_threads = True
    app: AgentServer

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        limits: ConnectionLimits,
    ) -> None:
        self.init_limits(limits, "driftline-http")
        super().__init__(address, handler)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class JSONRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, answering :class:`Response` values.

    The base of the agent's handler and of the sidecar injector's, so both frame
    answers, close connections and log requests the same way.
    """

    protocol_version = "HTTP/1.1"
    # No HTTP/0.9: a malformed request line is answered with a status line, not bare HTML.
    default_request_version = "HTTP/1.0"
    timeout = 30  # seconds one read or write may block (the request's deadline is shorter)
    _served = 0

    def handle_one_request(self) -> None:
        # every request has a deadline (monitor/outputs/connections.py): a client that
        # trickles its bytes cannot hold this thread
        if isinstance(self.server, BoundedServerMixin):
            self.server.arm_request(self.connection, first=not self._served)
        super().handle_one_request()
        self._served += 1

    def respond(self, response: Response, close: bool = False) -> None:
        """Send ``response`` (no body to HEAD); ``close`` ends the connection after it."""
        body = b"" if self.command == "HEAD" else response.body
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            # an unread request body would be taken for the next request
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # to the logger of the module that defines the handler, at debug level
        logging.getLogger(type(self).__module__).debug("%s " + format, self.address_string(), *args)


class _RequestHandler(JSONRequestHandler):
    """Hands every request, whatever its method, to the router."""

    server_version = "driftline"
    server: _HTTPServer

    def __getattr__(self, name: str) -> Any:
        # The stdlib looks up do_<METHOD>; routing every method here lets an unsupported
        # method on a known path get 405 (with Allow) instead of a blanket 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        try:
            response, reusable = self.server.app._handle(self)
        except Exception:  # a bug in routing itself: answer, keep serving
            log.exception("HTTP request failed")
            response, reusable = Response.error(500, "internal error"), False
        self.respond(response, close=not reusable)


class PortInUseError(RuntimeError):
    """The server's address is taken; the message names it and the setting that moves it."""


class BackgroundServer:
    """A ``ThreadingHTTPServer`` served from a daemon thread between ``start`` and ``stop``.

    The lifecycle the agent's server and the sidecar injector share; a subclass binds its
    own server class in :meth:`_bind` and says where it listens in :meth:`_started`.
    """

    what = "the server"  # names the server in errors
    thread_name = "driftline-http"
    limits = ConnectionLimits()
    # the setting that chooses the port, named when the port is taken
    port_setting = "the port"

    def __init__(self, host: str, port: int, *, port_setting: str | None = None) -> None:
        self.host = host
        self.requested_port = port
        if port_setting is not None:
            self.port_setting = port_setting
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def _started(self) -> None:
        """Called once the server accepts connections (to log where)."""

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError(f"{self.what} is already running")
        try:
            httpd = self._bind()
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                raise
            where = f"{self.host}:{self.requested_port}"
            problem = {
                errno.EADDRINUSE: "is already in use (another process listens there)",
                errno.EACCES: "needs privileges this process does not have",
                errno.EADDRNOTAVAIL: "is not an address of this machine",
            }[exc.errno]
            raise PortInUseError(
                f"{self.what} cannot listen on {where}: the address {problem}; choose "
                f"another with {self.port_setting} (or stop what holds port "
                f"{self.requested_port})"
            ) from None
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name=self.thread_name
        )
        self._thread.daemon = True
        self._thread.start()
        self._started()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{self.what} is not running")
        return int(self._httpd.server_address[1])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


ReportsProvider = Callable[[], Mapping[Any, WindowReport] | Iterable[WindowReport]]


class AgentServer(BackgroundServer):
    """The agent's HTTP server on ``host:port`` (port 0: an ephemeral port, see ``port``).

    ``registry`` is what ``/metrics`` exposes (the exporter's). The health, readiness and
    report endpoints read three providers: ``ready() -> (bool, reason)``, ``last_tick()``
    (the ``clock`` time of the loop's last turn) and ``latest_reports()`` (a mapping or
    an iterable of WindowReports); the agent hands over its ``Health``
    (monitor/runtime/agent.py) and its latest reports. Without them the server is not
    ready, its tick is its creation and it has no reports.
    """

    what = "the agent's HTTP server"
    port_setting = "exporter.port in monitor.yaml"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        registry: CollectorRegistry | None = None,
        ready: Callable[[], tuple[bool, str]] | None = None,
        last_tick: Callable[[], float] | None = None,
        latest_reports: ReportsProvider | None = None,
        clock: Callable[[], float] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        stale_after: float = 60.0,
        port_setting: str | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(host, port, port_setting=port_setting)
        if limits is not None:
            self.limits = limits
        self.registry = registry
        self._clock = clock or time.monotonic
        created = self._clock()
        self._ready = ready or (lambda: (False, "not serving an agent"))
        self._last_tick = last_tick or (lambda: created)
        self._latest: ReportsProvider = latest_reports or (lambda: ())
        self.max_body_bytes = max_body_bytes
        self.stale_after = stale_after
        self._routes: dict[str, dict[str, Handler]] = {}
        if registry is not None:
            self.add_route("GET", "/metrics", self._metrics)
        self.add_route("GET", "/healthz", self._healthz)
        self.add_route("GET", "/readyz", self._readyz)
        self.add_route("GET", "/v1/reports/latest", self._latest_reports)

    @classmethod
    def from_config(
        cls,
        config: ExporterConfig,
        *,
        registry: CollectorRegistry | None,
    ) -> AgentServer:
        return cls(config.host, config.port, registry=registry)

    # -- routes -----------------------------------------------------------------------------
    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method path`` with ``handler``; a second handler for the same pair is an
        error (it would silently replace the first)."""
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        methods = self._routes.setdefault(path, {})
        if method in methods:
            raise ValueError(f"route {method} {path} is already registered")
        methods[method] = handler

    def routes(self) -> list[tuple[str, str]]:
        return sorted((m, p) for p, ms in self._routes.items() for m in ms)

    # -- lifecycle --------------------------------------------------------------------------
    def _bind(self) -> ThreadingHTTPServer:
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.requested_port), _RequestHandler, self.limits)
        httpd.app = self
        return httpd

    def _started(self) -> None:
        log.info("HTTP server listening on %s:%d", self.host, self.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- request handling -------------------------------------------------------------------
    def _handle(self, h: _RequestHandler) -> tuple[Response, bool]:
        """Route one request; the flag says whether the connection can serve another one
        (False when the request's body could not be read past)."""
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            return Response.error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length"), False
        raw_length = h.headers.get("Content-Length", "0").strip() or "0"
        if not raw_length.isdigit():
            return Response.error(HTTPStatus.BAD_REQUEST, "invalid Content-Length"), False
        length = int(raw_length)

        url = urlsplit(h.path)
        method = h.command.upper()
        methods = self._routes.get(url.path)
        handler = None if methods is None else methods.get(method)
        if handler is None and method == "HEAD" and methods is not None:
            handler = methods.get("GET")
        if methods is None:
            error = Response.error(HTTPStatus.NOT_FOUND, f"no such path: {url.path}")
        elif handler is None:
            allow = ", ".join(sorted({*methods, "HEAD"} if "GET" in methods else methods))
            error = Response.error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method} is not allowed on {url.path}; allowed: {allow}",
                (("Allow", allow),),
            )
        elif length > self.max_body_bytes:
            error = Response.error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes exceeds the limit of {self.max_body_bytes}",
            )
        else:
            error = None
        if error is not None:
            return error, _discard(h, length)

        body = h.rfile.read(length) if length else b""
        if len(body) != length:
            return Response.error(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length"), False
        request = Request(
            method=method,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
        )
        assert handler is not None
        try:
            return handler(request), True
        except HTTPError as exc:
            return exc.response(), True
        except Exception:
            log.exception("handler for %s %s failed", method, url.path)
            return Response.error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error"), True

    # -- built-in endpoints -----------------------------------------------------------------
    def _metrics(self, request: Request) -> Response:
        assert self.registry is not None
        encoder, content_type = choose_encoder(request.header("accept"))
        body = encoder(self.registry)
        headers = [("Content-Type", content_type)]
        if "gzip" in request.header("accept-encoding").lower():
            body = gzip.compress(body, compresslevel=5)
            headers.append(("Content-Encoding", "gzip"))
        return Response(HTTPStatus.OK, tuple(headers), body)

    def _healthz(self, request: Request) -> Response:
        age = max(self._clock() - self._last_tick(), 0.0)
        alive = age <= self.stale_after
        return Response.json(
            {
                "status": "ok" if alive else "stalled",
                "last_tick_age_seconds": round(age, 3),
                "stale_after_seconds": self.stale_after,
            },
            HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE,
        )

    def _readyz(self, request: Request) -> Response:
        ready, reason = self._ready()
        return Response.json(
            {"ready": ready, "reason": reason},
            HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
        )

    def _latest_reports(self, request: Request) -> Response:
        latest = self._latest()
        reports = list(latest.values() if isinstance(latest, Mapping) else latest)
        reports.sort(key=lambda r: (r.model_version, r.baseline))
        version = request.query_value("model_version")
        if version is not None:
            reports = [r for r in reports if r.model_version == version]
        return Response.json({"reports": [r.to_dict() for r in reports]})
