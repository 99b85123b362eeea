"""The error a configuration that cannot be used raises, and how values are shown in it.

Every problem names the file, the dotted key and what to write instead (see
docs/configuration.md); this module is the one place that shape is made.
"""

from __future__ import annotations

import json

__all__ = ["DOCS", "ConfigError", "show"]

DOCS = "docs/configuration.md"


class ConfigError(ValueError):
    """A configuration that cannot be used.

    ``problems`` holds one ``(dotted key, message)`` per problem; ``key`` is the first
    one's key. ``str()`` gives one line per problem, each naming the file, the key and
    the fix.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        self.key = problems[0][0] if problems else ""
        lines = [f"{source}: {key}: {msg}" if key else f"{source}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


def show(value: object, limit: int = 60) -> str:
    """A value as it would be written in YAML/JSON, shortened for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
