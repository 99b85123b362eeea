"""The audit log: one JSON line per rollback decision, on disk before anyone asks.

When a model version was rolled back (or was not, and why) someone will want to know
later, possibly after the agent restarted. Each decision is appended as one JSON object
per line and ``fsync``'d, so a line that was written survives a crash of the pod or the
node. Lines are written whole under a lock (threads: the agent's loop, the HTTP server,
the action workers). A write that fails is logged and counted, never raised: an audit
problem must not stop the agent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from monitor.redaction import redact_text

__all__ = ["AuditLog", "read_audit"]

log = logging.getLogger(__name__)


class AuditLog:
    """Append-only JSON-lines file at ``path`` (its directory is created on first write)."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.failures = 0
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> bool:
        """Write ``record`` as one line; False (and a logged error) when it could not be.

        Credentials in any URL the record mentions are masked (monitor/redaction.py).
        """
        raw = orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
        line = redact_text(raw).encode() + b"\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    view = memoryview(line)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.failures += 1
                log.error("cannot write the audit log %s: %s", self.path, exc)
                return False
        return True


def read_audit(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of an audit log, oldest first (a torn last line is skipped)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
