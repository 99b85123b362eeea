"""The agent's HTTP server against slow and bursty clients, bounded and not.

Scenario 1: 300 clients each trickle a request one byte every 2 s; after 15 s, how many
server threads do they still hold? Scenario 2: 100 clients at once, 20 requests each, a
new connection per request; how many were answered, refused (503) or reset? The
baseline is the same server with no request deadline, no connection cap and the
standard library's listen backlog of 5 (the server before these bounds).

    python3 -m bench.http_slow_clients
"""

from __future__ import annotations

import http.client
import socket
import threading
import time

from monitor.outputs.connections import ConnectionLimits
from monitor.outputs.server import AgentServer

UNBOUNDED = ConnectionLimits(
    request_timeout=1e9, idle_timeout=1e9, max_connections=1_000_000, backlog=5
)


def trickle(port: int, stop: threading.Event) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                if stop.wait(2.0):
                    return
                sock.sendall(bytes([byte]))
    except OSError:
        return  # cut off by the server


def held_threads(limits: ConnectionLimits, clients: int = 300, after: float = 15.0) -> int:
    before = threading.active_count()
    stop = threading.Event()
    with AgentServer("127.0.0.1", 0, limits=limits) as server:
        threads = [
            threading.Thread(target=trickle, args=(server.port, stop), daemon=True)
            for _ in range(clients)
        ]
        for t in threads:
            t.start()
        time.sleep(after)
        held = threading.active_count() - before - clients - 2  # minus clients, server, watchdog
        stop.set()
        for t in threads:
            t.join(5)
    return max(held, 0)


def burst(limits: ConnectionLimits, clients: int = 100, each: int = 20) -> dict[str, int]:
    counts = {"answered": 0, "refused": 0, "reset": 0}
    lock = threading.Lock()
    with AgentServer("127.0.0.1", 0, limits=limits) as server:
        start = threading.Barrier(clients)

        def client() -> None:
            start.wait()
            for _ in range(each):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                try:
                    conn.request("GET", "/healthz")
                    status = conn.getresponse().status
                    key = "answered" if status == 200 else "refused"
                except OSError:
                    key = "reset"
                finally:
                    conn.close()
                with lock:
                    counts[key] += 1

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    return counts


def main() -> None:
    rows = []
    for name, limits in (("bounded (defaults)", ConnectionLimits()), ("unbounded", UNBOUNDED)):
        held = held_threads(limits)
        b = burst(limits)
        rows.append((name, held, b))
    print("300 trickling clients (1 byte / 2 s), threads held after 15 s;")
    print("100 clients x 20 requests at once")
    print(f"{'server':>20} {'threads held':>13} {'answered':>9} {'refused':>8} {'reset':>6}")
    for name, held, b in rows:
        print(f"{name:>20} {held:>13} {b['answered']:>9} {b['refused']:>8} {b['reset']:>6}")


if __name__ == "__main__":
    main()
