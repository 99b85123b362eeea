"""Where WindowReports go: the log (one JSON line per window on stdout), a file of JSON
lines, a Kafka topic. Every sink gets the same report; delivery is at-least-once, so a
consumer keys reports by (model, model_version, window start, baseline)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO, Protocol

from detectors.results import WindowReport

log = logging.getLogger(__name__)


class ReportSink(Protocol):
    def write(self, report: WindowReport) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """One JSON line per report on a text stream (stdout by default)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def write(self, report: WindowReport) -> None:
        self.stream.write(report.to_json().decode() + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class FileSink:
    """Appends JSON lines to a file, flushed per report so a crash loses none written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("ab")

    def write(self, report: WindowReport) -> None:
        self._fh.write(report.to_json() + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class KafkaSink:
    """Publishes reports to a topic, keyed by model and version, through the agent's
    producer (an aiokafka producer driven from the event loop)."""

    def __init__(self, topic: str, send: object) -> None:
        self.topic = topic
        self._send = send  # callable(topic, key: bytes, value: bytes) scheduling a send

    def write(self, report: WindowReport) -> None:
        key = f"{report.model}/{report.model_version}".encode()
        self._send(self.topic, key, report.to_json())  # type: ignore[operator]

    def close(self) -> None:
        return None
