"""The rules every section of ``monitor.yaml`` follows: the base model, the error shape,
durations, dotted paths and environment variable names.

Each section module of ``monitor.config`` builds on these and nothing else of the package,
so no section imports another's module or the root model. An error made by :func:`fail`
or :func:`bad_value` has the pydantic type :data:`ERROR_TYPE`, which
``monitor.config.messages`` reports as ``<file>: <section>.<key>: <message>``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic_core import PydanticCustomError

from monitor.config.durations import format_duration, parse_duration
from monitor.config.errors import show

__all__ = [
    "ERROR_TYPE",
    "Duration",
    "OptionalDuration",
    "Section",
    "bad_value",
    "check_duration",
    "check_path",
    "env_name",
    "fail",
    "unknown_name",
]

ERROR_TYPE = "driftline"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def fail(key: str, message: str) -> PydanticCustomError:
    """An error for ``key`` (relative to the model that raises it), message with its fix."""
    return PydanticCustomError(ERROR_TYPE, "{message}", {"key": key, "message": message})


def bad_value(message: str) -> PydanticCustomError:
    """An error for the value being validated (the key is where pydantic found it)."""
    return PydanticCustomError(ERROR_TYPE, "{message}", {"message": message})


def check_duration(value: object) -> float:
    """The validator of :data:`Duration`: seconds, or the error that says what to write."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise bad_value(str(exc)) from None


Duration = Annotated[
    float,
    BeforeValidator(check_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


def _optional_duration(value: object) -> float | None:
    return None if value is None else check_duration(value)


def _duration_text(value: float | None) -> str | None:
    return None if value is None else format_duration(value)


OptionalDuration = Annotated[
    float | None,
    BeforeValidator(_optional_duration),
    PlainSerializer(_duration_text, return_type=str | None, when_used="json"),
]


class Section(BaseModel):
    """Common settings: unknown keys are errors; ``schema`` may be written for ``schema_``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=False)


def check_path(value: str, key: str) -> None:
    """A dotted field path (``payload.features``): no empty part."""
    parts = value.split(".")
    if any(not p for p in parts):
        raise fail(key, f"{show(value)} is not a dotted path; write field names joined by dots")


def unknown_name(name: str, known: tuple[str, ...] | frozenset[str], what: str) -> str:
    """The message for a name that is not one of ``known``, with a "did you mean"."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return f"{show(name)} is not a known {what}; {hint}use one of {', '.join(known)}"


def env_name(example: str) -> Callable[[object], object]:
    """A validator of an environment variable's NAME (``example`` shows one in the fix).

    The value is never echoed: someone who writes the secret itself there would see it in
    the error, and in the logs that keep it.
    """

    def check(value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or not _ENV_NAME.match(value):
            raise bad_value(
                "is not an environment variable name (the value is not shown: it may be a "
                "secret); write the NAME of a variable that holds the secret, e.g. "
                f"{example}, never the secret itself"
            )
        return value

    return check
