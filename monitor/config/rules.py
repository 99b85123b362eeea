"""The rules both halves of ``monitor.yaml``'s validation follow: the error shape, durations
and environment variable names.

``monitor.config.model`` imports ``monitor.actions.config`` (the rollback sections), so what both
need cannot live in ``monitor.config.model`` without an import cycle; it lives here, once. An
error made by :func:`fail` or :func:`bad_value` has the pydantic type :data:`ERROR_TYPE`,
which ``monitor.config.model`` reports as ``<file>: <section>.<key>: <message>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

from monitor.config.durations import format_duration, parse_duration

__all__ = ["ERROR_TYPE", "Duration", "bad_value", "check_duration", "env_name", "fail"]

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
