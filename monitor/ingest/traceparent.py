"""W3C trace context on prediction records: a ``traceparent`` Kafka header (or CloudEvents
extension attribute) checked and normalised, so an evaluation span can link to the traces
of the records in its window."""

from __future__ import annotations

import re

from monitor.ingest.batch import SourceMessage

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: bytes | str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` value, or None when it is not valid."""
    traceparent = valid_traceparent(value)
    return None if traceparent is None else traceparent.split("-")[1]


def valid_traceparent(value: bytes | str | None) -> str | None:
    """A W3C ``traceparent`` value, normalised to ``00-<trace>-<span>-<flags>``, or None
    when it is not valid. Windows keep a few of these so an evaluation span can link to
    the traces of its records (a link needs the span id too, not only the trace id).

    Version ``00`` must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``; later versions may
    append fields; ``ff`` and all-zero ids are invalid (W3C Trace Context, section 3.2).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return f"{version}-{trace}-{span}-{flags}"


def message_traceparent(m: SourceMessage) -> str | None:
    """The valid ``traceparent`` header of a message (the first one, any case), or None."""
    for k, v in m.headers:
        if k.lower() == "traceparent":
            return valid_traceparent(v)
    return None
