"""The value conventions every decoder shares, so that all record formats give the
sketches the same columns: event times in epoch seconds, scalars as text the way the
reference profile writes categories, column arrays (float64 or object), and row keys."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from operator import methodcaller
from typing import Any

import numpy as np

NUMBER_TYPES = frozenset({int, float, type(None)})
TEXT_TYPES = frozenset({str, type(None)})
# The largest integer that converts to a finite float64.
FLOAT_MAX_INT = int(np.finfo(np.float64).max)


def row_keys(ids: Iterable[str]) -> np.ndarray:
    """Stable 64-bit keys (uint64) of row identities: BLAKE2b-64 of the UTF-8 text, read
    little-endian. The same in every process and on every machine, unlike ``hash()``."""
    digests = b"".join(hashlib.blake2b(i.encode(), digest_size=8).digest() for i in ids)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def parse_event_time(value: object) -> float:
    """Seconds since the epoch from epoch seconds, milli-, micro- or nanoseconds (told
    apart by magnitude: above 1e11 is ms, 1e14 µs, 1e17 ns) or an ISO-8601 string (UTC
    when it has no offset). Raises ValueError for anything else."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"event time is a {type(value).__name__}")
    if isinstance(value, int | float):
        try:
            x = float(value)
        except OverflowError:  # an integer literal of hundreds of digits
            raise ValueError("event time is a number out of range") from None
    elif isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("event time is text that is not an ISO-8601 time") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
    else:
        raise ValueError(f"event time is a {type(value).__name__}")
    if not math.isfinite(x):
        raise ValueError("event time is not finite")
    return scale_epoch(x)


def scale_epoch(x: float) -> float:
    """Epoch seconds from seconds, ms, µs or ns (see :func:`parse_event_time`)."""
    ax = abs(x)
    if ax > 1e17:
        return x / 1e9
    if ax > 1e14:
        return x / 1e6
    if ax > 1e11:
        return x / 1e3
    return x


def scale_epochs(x: np.ndarray) -> np.ndarray:
    """:func:`scale_epoch` of every element of a float64 array, in one pass."""
    ax = np.abs(x)
    return np.where(
        ax > 1e17, x / 1e9, np.where(ax > 1e14, x / 1e6, np.where(ax > 1e11, x / 1e3, x))
    )


def type_name(value: object) -> str:
    """What a JSON value is, for a failure detail (never the value itself)."""
    names: dict[type, str] = {dict: "an object", list: "a list"}
    return names.get(type(value), type(value).__name__)


def text(v: Any) -> str:
    """Text of a scalar; integral floats without ".0" (as the profile writes categories).

    Raises ValueError for an integer of more digits than Python converts to text."""
    if type(v) is float and v.is_integer():
        return str(int(v))
    return str(v)


def text_or_none(v: Any) -> str | None:
    """:func:`text`, or None for a value that has no text (an integer of thousands of
    digits)."""
    try:
        return text(v)
    except ValueError:
        return None


def objects(values: Sequence[Any]) -> np.ndarray:
    """An object array holding ``values`` as they are (no conversion, no nesting)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def out_of_range(values: Sequence[Any]) -> list[int]:
    """Where ``values`` holds an integer no float64 can hold (JSON allows ``1`` followed by
    400 zeros; msgspec reads it as a Python int, and numpy would raise OverflowError)."""
    return [
        i
        for i, v in enumerate(values)
        if type(v) is int and not -FLOAT_MAX_INT <= v <= FLOAT_MAX_INT
    ]


def numeric_column(values: Sequence[Any], types: set[type]) -> np.ndarray:
    """float64 when every value is a number or null; else the values as objects (so the
    sketch counts the type errors). Integers beyond float64 must be taken out first
    (:func:`out_of_range`)."""
    if types <= NUMBER_TYPES:
        return np.array(values, dtype=np.float64)
    return objects(values)


def categorical_column(values: Sequence[Any], types: set[type]) -> np.ndarray:
    """Text or None; numbers and booleans as their text (3.0 as "3", like the profile).
    Integers too long for text must be taken out first (:func:`text_or_none`)."""
    if types <= TEXT_TYPES:
        return objects(values)
    return objects([v if v is None or type(v) is str else text(v) for v in values])


def at_path(value: Any, parts: Sequence[str]) -> Any:
    """The value under the keys ``parts`` of nested dicts; None where a step is missing
    or not a dict (the record field paths of docs/configuration.md, split on dots)."""
    cur = value
    for p in parts:
        if type(cur) is not dict:
            return None
        cur = cur.get(p)
    return cur


def path_getter(path: str) -> Callable[[dict], Any]:
    """A function reading the dotted ``path`` from a record object (:func:`at_path`); one
    key is a plain ``dict.get``."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        return methodcaller("get", parts[0])
    return lambda record: at_path(record, parts)
