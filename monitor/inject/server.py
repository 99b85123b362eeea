"""The sidecar injector's HTTPS server: ``POST /mutate`` for the API server, ``/healthz``.

The Kubernetes API server only calls webhooks over TLS, so this server speaks nothing
else. The certificate and key are files (a Secret volume, written by cert-manager or the
chart) and are re-read when they change, checked once per new connection: cert-manager
renews a certificate in place, and a webhook that kept serving the old one would be
refused by the API server once it expires, which with ``failurePolicy: Ignore`` silently
stops injection. A TLS handshake happens in the connection's own thread, so a slow or
broken client never stalls the accept loop.

It is a standard library ``ThreadingHTTPServer``: one short request per pod creation does
not call for a framework.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import threading
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.inject.settings import InjectorSettings
from monitor.inject.webhook import handle_review
from monitor.outputs.connections import BoundedServerMixin, ConnectionLimits
from monitor.outputs.server import BackgroundServer, JSONRequestHandler, Response

__all__ = ["CertificateFiles", "InjectorServer", "serve"]

log = logging.getLogger(__name__)

# The API server's AdmissionReview of a big pod is a few hundred KiB; 16 MiB is ample.
MAX_BODY_BYTES = 16 << 20


class CertificateFiles:
    """A server-side TLS context from a certificate and key file, reloaded on change.

    A reload that fails (a half-written pair during rotation) keeps the previous context
    and is tried again on the next connection.
    """

    def __init__(self, cert_file: str | Path, key_file: str | Path) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._context: ssl.SSLContext | None = None
        self.reloads = 0
        self.context()  # fail at start-up, not at the first review

    def _current_stamp(self) -> tuple[int, ...]:
        cert, key = os.stat(self.cert_file), os.stat(self.key_file)
        return (cert.st_mtime_ns, cert.st_size, cert.st_ino, key.st_mtime_ns, key.st_size)

    def context(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = self._current_stamp()
            except OSError:
                if self._context is None:
                    raise
                return self._context
            if stamp != self._stamp or self._context is None:
                try:
                    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    context.minimum_version = ssl.TLSVersion.TLSv1_2
                    context.load_cert_chain(self.cert_file, self.key_file)
                except (ssl.SSLError, OSError) as exc:
                    if self._context is None:
                        raise
                    log.error("cannot reload the TLS certificate, keeping the old one: %s", exc)
                    return self._context
                if self._context is not None:
                    log.info("reloaded the TLS certificate %s", self.cert_file)
                    self.reloads += 1
                self._context, self._stamp = context, stamp
            return self._context


class _TLSServer(BoundedServerMixin, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls = True
    certificates: CertificateFiles
    settings: InjectorSettings
    handshake_timeout: float = 10.0

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], limits: ConnectionLimits
    ) -> None:
        self.init_limits(limits, "driftline-inject")
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # the handshake runs under the connection's deadline (armed when it was accepted)
        request.settimeout(min(self.handshake_timeout, self.limits.request_timeout))
        try:
            tls = self.certificates.context().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            # typeshed types the server argument as the handler's own server class (Self)
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            tls.close()


class _TLSServer6(_TLSServer):
    address_family = socket.AF_INET6


class _Handler(JSONRequestHandler):
    server_version = "driftline-injector"
    server: _TLSServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/healthz", "/readyz"):
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif path == "/mutate":
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"}, allow="POST")
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        # The body is read before routing, so every answer leaves the connection usable.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length"}, close=True)
            return
        raw = self.headers.get("Content-Length", "").strip()
        if not raw.isdigit():
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length"}, close=True)
            return
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body of {length} bytes exceeds {MAX_BODY_BYTES}"},
                close=True,
            )
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "body shorter than Content-Length"}, True)
            return
        path = urlsplit(self.path).path  # the API server appends ?timeout=10s
        if path != "/mutate":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})
            return
        status, answer = handle_review(body, self.server.settings)
        self._send(HTTPStatus(status), answer)

    def _send(
        self, status: HTTPStatus, data: Any, close: bool = False, allow: str | None = None
    ) -> None:
        headers = () if allow is None else (("Allow", allow),)
        self.respond(Response.json(data, status, headers), close)


class InjectorServer(BackgroundServer):
    """The injector on ``host:port`` (port 0: an ephemeral port, see ``port``)."""

    what = "the injector"
    thread_name = "driftline-inject"
    port_setting = "--port of driftline inject serve"

    def __init__(
        self,
        settings: InjectorSettings,
        cert_file: str | Path,
        key_file: str | Path,
        host: str = "0.0.0.0",
        port: int = 8443,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(host, port)
        if limits is not None:
            self.limits = limits
        self.settings = settings
        self.certificates = CertificateFiles(cert_file, key_file)

    def _bind(self) -> ThreadingHTTPServer:
        cls = _TLSServer6 if ":" in self.host else _TLSServer
        httpd = cls((self.host, self.requested_port), _Handler, self.limits)
        httpd.certificates = self.certificates
        httpd.settings = self.settings
        return httpd

    def _started(self) -> None:
        log.info("sidecar injector listening on https://%s:%d/mutate", self.host, self.port)


def serve(
    settings: InjectorSettings, cert_file: str | Path, key_file: str | Path, host: str, port: int
) -> int:
    """Run the injector until SIGTERM or SIGINT (a Deployment's pod stopping)."""
    server = InjectorServer(settings, cert_file, key_file, host, port)  # bad files fail here
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with server:
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("sidecar injector stopped")
    return 0
