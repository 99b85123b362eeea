"""Slow and greedy clients against the agent's HTTP server and the sidecar injector, on
loopback: a request has a deadline however slowly its bytes trickle in (TLS handshake
included), connections beyond the limit are answered at once, and a burst is queued,
not reset. Every wait is a bounded loop."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from monitor.inject.server import InjectorServer
from monitor.inject.settings import InjectorSettings
from monitor.outputs.connections import ConnectionLimits
from monitor.outputs.server import AgentServer

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 400 + b"\r\n\r\n"


def trickle(port: int, data: bytes, pause: float = 0.05) -> int:
    """Send ``data`` a byte at a time; the number of bytes sent before the server closed
    the connection (len(data) if it never did)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for i in range(len(data)):
            readable, _, _ = select.select([sock], [], [], pause)
            if readable and sock.recv(1024) == b"":
                return i  # the server shut the connection down
            try:
                sock.sendall(data[i : i + 1])
            except OSError:
                return i
    return len(data)


def wait_closed(sock: socket.socket, seconds: float = 10.0) -> bool:
    """Whether the server closes ``sock`` (EOF) within ``seconds``. What it still sends
    first (the rest of an answer that arrived in two segments) is read and dropped."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(4096) == b"":
                return True
        return False
    except TimeoutError:
        return False
    except OSError:
        return True


def get(port: int, path: str = "/healthz") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def agent_server() -> Iterator[AgentServer]:
    limits = ConnectionLimits(request_timeout=0.5, idle_timeout=0.5, max_connections=3)
    with AgentServer("127.0.0.1", 0, limits=limits) as server:
        yield server


def test_a_trickling_client_is_cut_off_at_the_request_deadline(
    agent_server: AgentServer,
) -> None:
    # 450 bytes at one per 50 ms would take 22 s; the deadline is 0.5 s
    sent = trickle(agent_server.port, REQUEST)
    assert sent < len(REQUEST)
    assert agent_server._httpd is not None and agent_server._httpd.watchdog.expired >= 1
    assert get(agent_server.port) == 200  # and the server still serves


def test_an_idle_keep_alive_connection_is_closed(agent_server: AgentServer) -> None:
    with socket.create_connection(("127.0.0.1", agent_server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert wait_closed(sock)  # after idle_timeout + request_timeout without a request


def test_connections_beyond_the_limit_are_answered_503_at_once(agent_server: AgentServer) -> None:
    hogs = [socket.create_connection(("127.0.0.1", agent_server.port), timeout=5) for _ in range(3)]
    try:
        # the three hogs hold every slot (accepted in order, before this request)
        conn = http.client.HTTPConnection("127.0.0.1", agent_server.port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 503 and b"too many connections" in response.read()
        conn.close()
        assert agent_server._httpd is not None and agent_server._httpd.refused >= 1
        # the hogs run out of time; their slots come back
        assert all(wait_closed(h) for h in hogs)
    finally:
        for h in hogs:
            h.close()
    for _ in range(50):  # the slots are released just after the sockets close
        if get(agent_server.port) == 200:
            break
    assert get(agent_server.port) == 200


def test_a_burst_of_clients_is_queued_not_reset() -> None:
    statuses: list[int | str] = []
    lock = threading.Lock()
    with AgentServer("127.0.0.1", 0) as server:  # default limits: 64 connections, backlog 128
        start = threading.Barrier(100)

        def client() -> None:
            start.wait()
            try:
                status: int | str = get(server.port)
            except OSError as exc:
                status = type(exc).__name__
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=client) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert server._httpd is not None and server._httpd.request_queue_size == 128
    assert len(statuses) == 100
    assert set(statuses) <= {200, 503}, statuses  # an answer each, never a reset


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "injector")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_the_injector_cuts_off_a_stalled_tls_handshake_and_trickled_requests(
    tmp_path: Path,
) -> None:
    cert, key = _self_signed(tmp_path)
    limits = ConnectionLimits(request_timeout=0.5, idle_timeout=0.5, max_connections=2)
    with InjectorServer(
        InjectorSettings(), cert, key, host="127.0.0.1", port=0, limits=limits
    ) as server:
        # a client that opens a connection and never says hello
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
            assert wait_closed(silent)
        # a client that trickles its ClientHello
        hello = ssl.create_default_context(cafile=str(cert))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = hello.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        client_hello = outgoing.read()
        assert trickle(server.port, client_hello) < len(client_hello)
        # a TLS client that trickles its request after the handshake
        context = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            cut = False
            for i in range(len(REQUEST)):
                try:
                    sock.sendall(REQUEST[i : i + 1])
                except OSError:
                    cut = True
                    break
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    try:
                        if sock.recv(1024) == b"":
                            cut = True
                            break
                    except (OSError, ssl.SSLError):
                        cut = True
                        break
            assert cut
        # and a good client is still served
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()


def test_refusals_are_logged_in_bulk_not_one_line_each(
    agent_server: AgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="monitor.outputs.connections")
    hogs = [socket.create_connection(("127.0.0.1", agent_server.port), timeout=5) for _ in range(3)]
    try:
        for _ in range(10):  # every one refused while the hogs hold the slots
            with socket.create_connection(("127.0.0.1", agent_server.port), timeout=5) as s:
                answer = b""
                for _ in range(100):  # until the server closes it
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 503")
        assert agent_server._httpd is not None and agent_server._httpd.refused == 10
        lines = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1
    finally:
        for h in hogs:
            h.close()
