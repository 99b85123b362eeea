"""Bounds on what a client can hold: time per request, connections, the listen queue.

``ThreadingHTTPServer`` gives each connection a thread and only a per-``recv`` timeout, so
a client that trickles one byte every few seconds (or never finishes a TLS handshake)
keeps its thread forever, and enough of them exhaust the process; its listen queue of 5
resets connections under a burst. The agent's HTTP server and the sidecar injector share
:class:`BoundedServerMixin`, which adds:

* a deadline per request: the TLS handshake, the request line, the headers, the body
  and the answer must all fit in ``request_timeout`` seconds (a keep-alive connection
  gets ``idle_timeout`` more to start its next request). A watchdog thread shuts the
  socket down when a deadline passes, which ends any blocked read or write at once;
* at most ``max_connections`` connections at a time; one more is answered 503 (plain
  HTTP) or closed (TLS) at once instead of queueing a thread;
* a listen backlog of ``backlog`` connections.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["BoundedServerMixin", "ConnectionLimits", "Slot", "current_slot"]

log = logging.getLogger(__name__)

_BUSY_BODY = b'{"error": "too many connections; retry shortly"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a request may take and how many connections may be open."""

    request_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 64
    backlog: int = 128

    def __post_init__(self) -> None:
        if self.request_timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("request_timeout and idle_timeout must be positive")
        if self.max_connections < 1 or self.backlog < 1:
            raise ValueError("max_connections and backlog must be at least 1")


class Slot:
    """One connection's deadline: the socket to shut down when it passes."""

    __slots__ = ("deadline", "expired", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = float("inf")
        self.expired = False


class _Watchdog:
    """Shuts down the sockets whose deadline has passed (one thread per server)."""

    def __init__(self, name: str) -> None:
        self._heap: list[tuple[float, int, Slot]] = []
        self._count = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self.expired = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def arm(self, slot: Slot, seconds: float) -> None:
        with self._cond:
            slot.deadline = time.monotonic() + seconds
            heapq.heappush(self._heap, (slot.deadline, next(self._count), slot))
            self._cond.notify()

    def disarm(self, slot: Slot) -> None:
        with self._cond:
            slot.deadline = float("inf")  # its heap entries are skipped when they come up

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    deadline, _, slot = heapq.heappop(self._heap)
                    if deadline == slot.deadline:  # not re-armed or disarmed since
                        slot.expired = True
                        self.expired += 1
                        with contextlib.suppress(OSError):  # already closed
                            slot.sock.shutdown(socket.SHUT_RDWR)
                wait = self._heap[0][0] - now if self._heap else None
                self._cond.wait(wait)


_current = threading.local()
# Seconds between two log lines about refused connections.
_REFUSAL_LOG_INTERVAL = 10.0


def current_slot() -> Slot | None:
    """The slot of the connection this thread serves (None outside a bounded server)."""
    return getattr(_current, "slot", None)


class BoundedServerMixin:
    """Mix into a ``ThreadingHTTPServer`` subclass before it (see the module docstring).

    Call :meth:`init_limits` before the base class's ``__init__`` (the backlog is used
    when the socket starts listening); the handler calls :meth:`arm_request` before each
    request it reads.
    """

    limits: ConnectionLimits
    refused: int
    tls = False  # a refused TLS connection is closed, not answered in clear text

    def init_limits(self, limits: ConnectionLimits, name: str) -> None:
        self.limits = limits
        self.request_queue_size = limits.backlog
        self.refused = 0
        self._refusals_logged = -_REFUSAL_LOG_INTERVAL
        self._refused_logged = 0
        self._connections = threading.BoundedSemaphore(limits.max_connections)
        self.watchdog = _Watchdog(f"{name}-watchdog")

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        self.watchdog.stop()

    def arm_request(self, connection: socket.socket, first: bool) -> None:
        """Called by the handler before it reads a request: the request (after ``idle``
        seconds of keep-alive, for any but the first) must be done in time."""
        slot = current_slot()
        if slot is None:
            return
        slot.sock = connection  # after a TLS handshake, the wrapped socket
        wait = self.limits.request_timeout + (0.0 if first else self.limits.idle_timeout)
        self.watchdog.arm(slot, wait)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            self.refused += 1
            now = time.monotonic()
            if now - self._refusals_logged >= _REFUSAL_LOG_INTERVAL:
                # once per interval, with the count: a flood of clients is not a flood of logs
                log.warning(
                    "refused %d connection(s) since the last such line: %d connections open "
                    "(the limit)",
                    self.refused - self._refused_logged,
                    self.limits.max_connections,
                )
                self._refusals_logged, self._refused_logged = now, self.refused
            if not self.tls:
                with contextlib.suppress(OSError):
                    request.settimeout(0.5)
                    request.sendall(_BUSY)
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        slot = Slot(request)
        self.watchdog.arm(slot, self.limits.request_timeout)
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address, slot), daemon=True
        )
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any, slot: Slot) -> None:
        _current.slot = slot
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
        except Exception:
            self.handle_error(request, client_address)  # type: ignore[attr-defined]
        finally:
            self.watchdog.disarm(slot)
            _current.slot = None
            self.shutdown_request(request)  # type: ignore[attr-defined]
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that vanished or ran out of time: not worth a traceback on stderr
        log.debug("connection from %s ended with an error", client_address, exc_info=True)
