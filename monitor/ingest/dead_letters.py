"""The dead-letter topic: a copy of every record set aside, kept before the offsets move.

At-least-once for dead letters too (docs/architecture.md, decision 7): a record's offset is
committed only once its dead letter is acknowledged by the brokers, or once the agent has
given up on it after ``attempts`` tries and said so in a log line naming the record's
topic, partition and offset (never its payload). :meth:`DeadLetters.hold` gives, per
partition, the lowest offset whose dead letter is still on its way; the agent's checkpoint
commits no further. After a kill -9 those records are read again and their dead letters
sent again (the windows deduplicate their rows).

A dead letter is the record's key, value and headers plus ``x-driftline-reason`` and its
coordinates (``x-driftline-topic``, ``x-driftline-partition``, ``x-driftline-offset``). A
record too large for the producer's request limit (an ``oversized`` record can be) is
sent as a truncated copy: the value cut to fit, ``x-driftline-truncated`` holding its
original size in bytes; headers that alone would not fit are dropped
(``x-driftline-headers-dropped`` counts them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Protocol

from monitor.ingest.batch import DecodeFailure

log = logging.getLogger(__name__)

REASON_HEADER = "x-driftline-reason"
TRUNCATED_HEADER = "x-driftline-truncated"
HEADERS_DROPPED_HEADER = "x-driftline-headers-dropped"
# Bytes kept free for the record batch's own framing (Kafka's is under 100 bytes).
FRAMING_BYTES = 512

Headers = list[tuple[str, bytes]]
Offsets = dict[tuple[str, int], int]


class Publisher(Protocol):
    """What the dead-letter topic needs of a producer."""

    max_request_bytes: int

    def deliver(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers
    ) -> Awaitable[None]:
        """Send one message; the awaitable ends when the brokers acknowledge it and
        raises when they do not."""
        ...


def dead_letter(failure: DecodeFailure, limit: int) -> tuple[bytes | None, bytes, Headers]:
    """Key, value and headers of the dead letter of ``failure``, within ``limit`` bytes."""
    m = failure.message
    key = m.key
    value = m.value or b""
    ours: Headers = [
        (REASON_HEADER, failure.reason.encode()),
        ("x-driftline-topic", m.topic.encode()),
        ("x-driftline-partition", str(m.partition).encode()),
        ("x-driftline-offset", str(m.offset).encode()),
    ]
    theirs: Headers = [(k, v or b"") for k, v in m.headers or ()]
    budget = limit - FRAMING_BYTES - _size(ours) - 64  # 64: room for the two extra headers
    if key is not None and len(key) > budget // 4:
        key = key[: budget // 4]
    budget -= len(key or b"")
    if _size(theirs) > budget // 2:
        ours.append((HEADERS_DROPPED_HEADER, str(len(theirs)).encode()))
        theirs = []
    budget -= _size(theirs)
    if len(value) > budget:
        ours.append((TRUNCATED_HEADER, str(len(value)).encode()))
        value = value[: max(budget, 0)]
    return key, value, theirs + ours


def _size(headers: Headers) -> int:
    # a header's key and value, plus up to 10 bytes of varint lengths each
    return sum(len(k.encode()) + len(v) + 10 for k, v in headers)


class DeadLetters:
    """Sends dead letters to ``topic`` and tracks which offsets they still hold back."""

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.attempts = attempts
        self.backoff = backoff
        # per partition: offset -> dead letters of that offset still on their way
        self._held: dict[tuple[str, int], dict[int, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.lost = 0

    @property
    def pending(self) -> int:
        """Dead letters not yet acknowledged (nor given up)."""
        return len(self._tasks)

    def add(self, failure: DecodeFailure) -> None:
        """Send the dead letter of ``failure`` (from the event loop); its offset is held
        until the brokers acknowledge it or the agent gives up on it."""
        m = failure.message
        where = (m.topic, m.partition)
        offsets = self._held.setdefault(where, {})
        offsets[m.offset] = offsets.get(m.offset, 0) + 1
        task = asyncio.get_running_loop().create_task(self._send(failure))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def hold(self) -> Offsets:
        """Per partition, the lowest offset whose dead letter is still on its way: the
        highest offset a commit may name."""
        return {where: min(offsets) for where, offsets in self._held.items() if offsets}

    async def settle(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the dead letters on their way; the number
        still unacknowledged (their offsets stay held)."""
        tasks = set(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return self.pending

    async def _send(self, failure: DecodeFailure) -> None:
        m = failure.message
        key, value, headers = dead_letter(failure, self.publisher.max_request_bytes)
        error: BaseException | None = None
        try:
            for attempt in range(self.attempts):
                try:
                    await self.publisher.deliver(self.topic, key, value, headers)
                    self.sent += 1
                    return
                except Exception as exc:  # any producer error: try again, then give up
                    error = exc
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(self.backoff * 2**attempt)
            self.lost += 1
            log.error(
                "dead letter of %s[%d]@%d (%s) could not be kept: %s after %d tries; the "
                "record is committed past without its copy",
                m.topic,
                m.partition,
                m.offset,
                failure.reason,
                type(error).__name__,
                self.attempts,
            )
        finally:
            self._release((m.topic, m.partition), m.offset)

    def _release(self, where: tuple[str, int], offset: int) -> None:
        offsets = self._held.get(where)
        if offsets is None or offset not in offsets:
            return
        offsets[offset] -= 1
        if not offsets[offset]:
            del offsets[offset]


def lowest(offsets: Offsets, held: Offsets) -> Offsets:
    """``offsets`` with each partition no further than its ``held`` offset."""
    out = dict(offsets)
    for where, low in held.items():
        if where in out:
            out[where] = min(out[where], low)
    return out
