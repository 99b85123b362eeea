"""The values that flow between the agent's stages: raw messages from a source, the
columnar batch the decoder makes of them, and the records it had to set aside (with the
fixed reasons why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class SourceMessage(Protocol):
    """What the decoder reads of a message: the attributes of a Kafka client's record.

    aiokafka's ``ConsumerRecord`` has exactly these, so the Kafka source hands its records
    over as they are instead of copying each into a :class:`RawMessage` (that copy was an
    eighth of the agent's CPU per record). As in Kafka, ``value`` and header values may
    be None; ``timestamp`` is in milliseconds since the epoch.
    """

    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...


@dataclass(slots=True)
class RawMessage:
    """A :class:`SourceMessage` made by driftline itself (a line of a replay file, a test).

    Treat it as read-only.
    """

    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp: int | None = None


# Why a record was set aside: the fixed values of the ``reason`` metric label.
FAILURE_REASONS: tuple[str, ...] = (
    "invalid_json",
    "not_an_object",
    "missing_field",
    "bad_value",
    "bad_timestamp",
    "oversized",
    "bad_cloudevent",
    "bad_tensor",
    "unpaired",
    "future_timestamp",
    "model_error",
)


@dataclass(frozen=True)
class DecodeFailure:
    """A record set aside: why (a short, fixed reason label) and where it came from.

    ``reason`` is one of :data:`FAILURE_REASONS`; ``detail`` is a human message that
    never contains the payload.
    """

    reason: str
    detail: str
    message: SourceMessage


class BadRecord(Exception):
    """Raised inside a decoder for a record to set aside; caught per message and turned
    into a :class:`DecodeFailure`, so it never leaves the decoder."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class DecodedBatch:
    """Predictions decoded into columns, one entry per prediction row.

    ``columns`` maps schema column names to arrays (float64 for numeric with NaN where
    missing, object arrays for categorical and for values of the wrong type);
    a column absent from every record is absent from the dict. ``event_time`` is seconds
    since the epoch (float64). ``request_id`` holds the ids as str (None where absent),
    ``row_key`` their 64-bit hashes (used for dedupe and for the sketches' reservoirs),
    ``model_version`` the version per row (str), ``traceparent`` the W3C ``traceparent`` per row
    where the message carried a ``traceparent`` header (else None). ``partition`` and
    ``offset`` say which source message each row came from (a message can hold several
    rows), so the agent can tell when a message's contribution is checkpointed.
    ``attributions`` are the attributions the records logged (``explain.source: record``;
    rows × attribution features, NaN rows where unreadable) and ``attribution_codes`` why
    a row's could not be read (monitor/ingest/attributions.py); both None otherwise.
    """

    columns: dict[str, np.ndarray]
    event_time: np.ndarray
    request_id: np.ndarray
    row_key: np.ndarray
    model_version: np.ndarray
    traceparent: np.ndarray
    partition: np.ndarray
    offset: np.ndarray
    failures: list[DecodeFailure] = field(default_factory=list)
    messages: int = 0
    attributions: np.ndarray | None = None
    attribution_codes: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.event_time)

    def take(self, idx: np.ndarray) -> DecodedBatch:
        """The rows at ``idx`` (a boolean mask or integer indices), without failures."""
        return DecodedBatch(
            columns={k: v[idx] for k, v in self.columns.items()},
            event_time=self.event_time[idx],
            request_id=self.request_id[idx],
            row_key=self.row_key[idx],
            model_version=self.model_version[idx],
            traceparent=self.traceparent[idx],
            partition=self.partition[idx],
            offset=self.offset[idx],
            attributions=None if self.attributions is None else self.attributions[idx],
            attribution_codes=(
                None if self.attribution_codes is None else self.attribution_codes[idx]
            ),
        )

    @classmethod
    def empty(cls) -> DecodedBatch:
        obj = np.empty(0, dtype=object)
        return cls(
            columns={},
            event_time=np.empty(0),
            request_id=obj,
            row_key=np.empty(0, dtype=np.uint64),
            model_version=obj,
            traceparent=obj,
            partition=np.empty(0, dtype=np.int32),
            offset=np.empty(0, dtype=np.int64),
        )
