"""Pydantic's validation errors turned into messages that name the key and the fix.

Unknown keys get a "did you mean" suggestion from the keys of the section they were
written in (found by walking the root model's annotations), and keys people reach for
to write a secret get a pointer to the ``*_env`` key that names it instead.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from monitor.config.errors import DOCS, show
from monitor.config.rules import ERROR_TYPE

__all__ = ["validation_problems"]

# Keys people reach for when they want to write a secret into the file.
_SECRET_KEYS = {
    "password": "sasl_password_env",
    "sasl_password": "sasl_password_env",
    "otlp_headers": "otlp_headers_env",
    "headers": "otlp_headers_env",
}


def validation_problems(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """One ``(dotted key, message with the fix)`` per distinct error; ``root`` is the
    model that was validated (unknown keys are matched against its sections)."""
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == ERROR_TYPE and ctx.get("key"):
            loc = loc + tuple(str(ctx["key"]).split("."))
        item = (_dotted(loc), _message(err, loc, root))
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Any, loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    field_name = str(loc[-1]) if loc else ""
    secret = field_name.endswith("_env")
    if kind == ERROR_TYPE:
        return str(ctx.get("message", err["msg"]))
    if kind == "extra_forbidden":
        return _unknown_key(field_name, loc[:-1], root)
    if kind == "missing":
        description = _description(loc, root)
        what = f": {description}" if description else ""
        return f"is required; add {field_name}{what}"
    shown = "this value" if secret else show(value)
    if kind == "literal_error":
        return f"{shown} is not allowed; use one of {ctx.get('expected', '')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{shown} is not a whole number; write an integer such as 5000"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{shown} is not a number; write a number such as 0.1"
    if kind in ("bool_parsing", "bool_type"):
        return f"{shown} is not a boolean; write true or false"
    if kind in ("string_type", "str_type"):
        return f"{shown} is not text; write a string (quote it if it looks like a number)"
    if kind in ("list_type", "tuple_type"):
        return f"{shown} is not a list; write a list such as [a, b]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{shown} is not a mapping; write key: value pairs under {field_name}"
    if kind in ("path_type", "path_parsing"):
        return f"{shown} is not a file path; write a path such as ./reference.json.gz"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {
            "greater_than_equal": f"at least {ctx.get('ge')}",
            "greater_than": f"more than {ctx.get('gt')}",
            "less_than_equal": f"at most {ctx.get('le')}",
            "less_than": f"less than {ctx.get('lt')}",
        }[kind]
        return f"{shown} is out of range; use a value {bound}"
    return f"{err['msg']}; see {DOCS}"


def _unknown_key(name: str, parent: tuple[Any, ...], root: type[BaseModel]) -> str:
    if name in _SECRET_KEYS:
        return (
            f"secrets are never written in the config; put it in an environment variable "
            f"and name that variable in {_SECRET_KEYS[name]}"
        )
    known = _keys_at(parent, root)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if known else []
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    listing = f"; the keys here are {', '.join(known)}" if known else ""
    return f"unknown key; remove it{listing}"


def _section_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None if not a model)."""
    ann: Any = root
    for part in loc:
        ann = _unwrap(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            info = _field_by_key(ann, str(part))
            if info is None:
                return None
            ann = info
        elif get_origin(ann) is dict:
            ann = get_args(ann)[1]
        elif get_origin(ann) is list:
            ann = get_args(ann)[0]
        else:
            return None
    ann = _unwrap(ann)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _field_by_key(cls: type[BaseModel], key: str) -> Any:
    for name, info in cls.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _unwrap(ann: Any) -> Any:
    """``X | None`` → X; ``Annotated[X, ...]`` → X."""
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            ann = get_args(ann)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return ann
            ann = args[0]
        else:
            return ann


def _keys_at(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    cls = _section_at(loc, root)
    if cls is None:
        return []
    return [info.alias or name for name, info in cls.model_fields.items()]


def _description(loc: tuple[Any, ...], root: type[BaseModel]) -> str | None:
    cls = _section_at(loc[:-1], root)
    if cls is None:
        return None
    for name, info in cls.model_fields.items():
        if str(loc[-1]) in (name, info.alias):
            return info.description
    return None
