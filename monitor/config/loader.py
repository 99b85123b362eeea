"""Reading ``monitor.yaml``: the file, its YAML, then the model; any problem is a
:class:`~monitor.config.errors.ConfigError` naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monitor.config.errors import DOCS, ConfigError
from monitor.config.model import MonitorConfig
from monitor.config.safe_yaml import YAMLLimitError, load_yaml

__all__ = ["load_config", "parse_config"]


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate one YAML file; raises :class:`ConfigError` on any problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            source, [("", "no such file; pass -c PATH to an existing file")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [("", f"cannot read the file: {exc}")]) from None
    try:
        data = load_yaml(text)
    except YAMLLimitError as exc:
        raise ConfigError(source, [("", f"refused: {exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            source, [("", f"{where}not valid YAML ({problem}); check indentation and quoting")]
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            [("", "must be a mapping of keys (model, reference, source, ...); see " + DOCS)],
        )
    config = MonitorConfig.model_validate(data, source=source)
    return config.resolve_paths(path.parent)


def parse_config(data: Any, source: str = "config") -> MonitorConfig:
    """Validate an already parsed mapping (tests, the Helm chart's rendered values)."""
    return MonitorConfig.model_validate(data, source=source)
