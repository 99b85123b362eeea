"""Durations as people write them in ``monitor.yaml`` ("500ms", "60s", "5m", "1h", "90d" or a
number of seconds), held as float seconds so the rest of the agent never parses units.
"""

from __future__ import annotations

import json
import math
import re

DURATION_HINT = "use a number of seconds or 500ms, 60s, 5m, 1h, 90d"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "500ms", "60s", "5m", "1h".

    Raises ``ValueError`` whose message quotes the value and says what to write instead.
    Booleans are refused: YAML reads ``yes`` as true, which is never a duration.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{_show(value)} is not a duration; {DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(f"{_show(value)} is not a duration; {DURATION_HINT}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"{_show(value)} is not a duration; {DURATION_HINT}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{_show(value)} is not a duration; {DURATION_HINT}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest of "500ms", "60s", "5m", "1h" that says exactly ``seconds``.

    ``parse_duration(format_duration(x)) == x`` for every duration that is a whole number
    of milliseconds, and a close approximation (``%g`` seconds) otherwise.
    """
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    ms = seconds * 1000.0
    if 0 < seconds < 1 and abs(ms - round(ms)) < 1e-9:
        return f"{round(ms)}ms"
    return f"{seconds!r}s" if seconds else "0s"


def _show(value: object) -> str:
    """The value as written in YAML (strings in double quotes), for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
