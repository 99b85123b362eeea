"""alert_rules/thresholds.yaml as a validated model: the numbers every generated rule uses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from alert_rules import THRESHOLDS_FILE

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h)?\s*$")


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _seconds(value: object) -> int:
    """Whole seconds from 30s / 5m / 1h or a number: PromQL has no fractional durations."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 5m or 1h is expected, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a duration; use whole units such as 30s, 5m or 1h")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


Seconds = Annotated[int, BeforeValidator(_seconds), Field(gt=0)]


# A `window` label value as the agent writes it (monitor.runtime.pipeline.window_label).
WindowLabel = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|rows)$")]


Windows = Annotated[int, Field(ge=1)]


Ratio = Annotated[float, Field(gt=0, lt=1)]


def _http_url(value: str) -> str:
    """An http(s) URL without a trailing ``/``, so ``<base>/<model>/...`` has one slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http(s) URL; write e.g. https://reports.example.com/driftline")
    if "{{" in value or "}}" in value:
        raise ValueError("must not contain {{ or }}: alert annotations are Go templates")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftThresholds(_Section):
    dataset_windows: Windows
    feature_windows: Windows
    prediction_windows: Windows
    sequential_for: Seconds


class QualityThresholds(_Section):
    windows: Windows


class PipelineThresholds(_Section):
    stalled_windows: Windows
    not_covered_for: Seconds
    no_records_for: Seconds
    consumer_lag_records: Annotated[int, Field(gt=0)]
    consumer_lag_for: Seconds
    decode_error_ratio: Ratio
    decode_errors_for: Seconds
    late_record_ratio: Ratio
    late_records_for: Seconds
    evaluation_seconds: Annotated[float, Field(gt=0)]
    evaluation_slow_for: Seconds
    evaluation_failed_for: Seconds
    checkpoint_stale_after: Seconds


class PerformanceThresholds(_Section):
    estimated_windows: Windows
    realized_for: Seconds
    realized_min_coverage: Ratio
    min_label_coverage: Ratio
    coverage_lookback: Seconds
    coverage_low_for: Seconds


class AvailabilityThresholds(_Section):
    agent_down_for: Seconds
    agent_absent_for: Seconds
    source_down_for: Seconds


class Thresholds(_Section):
    """The contents of thresholds.yaml (durations in seconds); documented in that file."""

    runbook_base_url: Annotated[str, Field(min_length=1)]
    report_base_url: HttpUrl | None = None
    scrape_job: Annotated[str, Field(pattern=r"^[^\"\\]+$")]
    windows: Annotated[dict[WindowLabel, Seconds], Field(min_length=1)]
    rate_window: Seconds
    drift: DriftThresholds
    quality: QualityThresholds
    pipeline: PipelineThresholds
    performance: PerformanceThresholds
    availability: AvailabilityThresholds
    prometheus_rule_labels: dict[str, str]


class ThresholdsError(ValueError):
    """A thresholds file that cannot be used; the message names the key and the problem."""


# Mappings that an override file replaces as a whole instead of merging into.
_REPLACED = frozenset({"windows", "prometheus_rule_labels"})


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in _REPLACED:
            merged[key] = value
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ThresholdsError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ThresholdsError(f"{path}: a mapping of thresholds is expected")
    return data


def load_thresholds(path: Path | None = None) -> Thresholds:
    """The shipped thresholds, with the values of ``path`` (when given) merged over them."""
    data = _read_yaml(THRESHOLDS_FILE)
    if path is not None and path.resolve() != THRESHOLDS_FILE:
        data = _merge(data, _read_yaml(path))
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ThresholdsError(f"{path or THRESHOLDS_FILE}: {problems}") from None
