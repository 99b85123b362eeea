"""``monitor.yaml``: the one file that says what the agent watches and how (decision 8).

The file is validated on load, all of it at once, and every problem is reported with the
file, the dotted key and what to write instead::

    monitor.yaml: windows.size: "sixty" is not a duration; use a number of seconds or
    500ms, 60s, 5m, 1h

Unknown keys are errors, with a "did you mean" suggestion, because a misspelt optional
key silently keeps its default. Secrets never live in the file: it names the environment
variables that hold them (``sasl_password_env``, ``otlp_headers_env``), so the effective
configuration can be printed and logged as it is. Paths written in the file are relative
to the file's directory; the defaults are relative to the working directory.

Checks that need the reference profile (is ``drift.columns.age`` a column, does its test
apply to the column's kind) run in :meth:`MonitorConfig.check_against_profile` once the
profile is loaded.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from detectors.schema import Kind, Schema
from detectors.settings import (
    CATEGORICAL_TESTS,
    DEFAULT_QUALITY_THRESHOLDS,
    DEFAULT_THRESHOLDS,
    NUMERIC_TESTS,
    P_VALUE_TESTS,
    QUALITY_CHECKS,
    ColumnTest,
    DriftSettings,
    QualitySettings,
)
from monitor.actions.config import (
    ActionConfig,
    AlertsConfig,
    AuditConfig,
    PolicyConfig,
    rollback_problems,
)
from monitor.config.durations import DURATION_HINT, format_duration
from monitor.config.rules import ERROR_TYPE, Duration, check_duration, env_name, fail

DOCS = "docs/configuration.md"
ALL_TESTS = tuple(dict.fromkeys(NUMERIC_TESTS + CATEGORICAL_TESTS))
# Quality checks that only make sense for one kind of column.
NUMERIC_ONLY_CHECKS = frozenset({"out_of_range", "non_finite"})
CATEGORICAL_ONLY_CHECKS = frozenset({"unseen"})

_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9_.:\-]+\]?:\d{1,5}$")
# Keys people reach for when they want to write a secret into the file.
_SECRET_KEYS = {
    "password": "sasl_password_env",
    "sasl_password": "sasl_password_env",
    "otlp_headers": "otlp_headers_env",
    "headers": "otlp_headers_env",
}


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


def _show(value: object, limit: int = 60) -> str:
    """A value as it would be written in YAML/JSON, shortened for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- value types -------------------------------------------------------------------------


def _optional_duration(value: object) -> float | None:
    return None if value is None else check_duration(value)


def _duration_text(value: float | None) -> str | None:
    return None if value is None else format_duration(value)


OptionalDuration = Annotated[
    float | None,
    BeforeValidator(_optional_duration),
    PlainSerializer(_duration_text, return_type=str | None, when_used="json"),
]


EnvName = Annotated[str | None, BeforeValidator(env_name("KAFKA_PASSWORD"))]


def _check_path(value: str, key: str) -> None:
    parts = value.split(".")
    if any(not p for p in parts):
        raise fail(key, f"{_show(value)} is not a dotted path; write field names joined by dots")


class _Section(BaseModel):
    """Common settings: unknown keys are errors; ``schema`` may be written for ``schema_``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=False)


# -- source ------------------------------------------------------------------------------


class KafkaSourceConfig(_Section):
    """A consumer-group member per agent; credentials come from the environment."""

    bootstrap_servers: str = Field(description='brokers as "host:port,host:port"')
    topics: list[str] = Field(description="topics holding the model's prediction log")
    group_id: str = Field(description="consumer group shared by the agents of one model")
    start: Literal["earliest", "latest"] = "earliest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: EnvName = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    dead_letter_topic: str | None = None
    max_batch_records: int = Field(5000, ge=1)
    session_timeout_ms: int = Field(10000, ge=1)
    heartbeat_interval_ms: int = Field(3000, ge=1)
    rebalance_timeout_ms: int = Field(10000, ge=1)

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _join_servers(cls, value: object) -> object:
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return value

    @field_validator("topics", mode="before")
    @classmethod
    def _one_topic(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> KafkaSourceConfig:
        servers = [s.strip() for s in self.bootstrap_servers.split(",")]
        for server in servers:
            if not _HOST_PORT.match(server):
                raise fail(
                    "bootstrap_servers",
                    f"{_show(server)} is not host:port; write brokers as "
                    '"kafka-0.kafka:9092,kafka-1.kafka:9092"',
                )
        if not self.topics or any(not t for t in self.topics):
            raise fail("topics", "needs at least one topic name, e.g. [predictions]")
        if not self.group_id:
            raise fail("group_id", "is empty; name the consumer group, e.g. driftline-<model>")
        sasl = self.security_protocol.startswith("SASL")
        if not sasl:
            for key in ("sasl_mechanism", "sasl_username", "sasl_password_env"):
                if getattr(self, key) is not None:
                    raise fail(
                        key,
                        f"is only used with security_protocol SASL_PLAINTEXT or SASL_SSL "
                        f"(it is {self.security_protocol}); set security_protocol or "
                        f"remove {key}",
                    )
        else:
            if not self.sasl_username:
                raise fail("sasl_username", "is required with SASL; add the user name")
            if not self.sasl_password_env:
                raise fail(
                    "sasl_password_env",
                    "is required with SASL; name the environment variable that holds the "
                    "password, e.g. KAFKA_PASSWORD",
                )
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, key) is not None:
                    raise fail(
                        key,
                        f"is only used with security_protocol SSL or SASL_SSL (it is "
                        f"{self.security_protocol}); set security_protocol or remove {key}",
                    )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise fail(
                "heartbeat_interval_ms",
                f"{self.heartbeat_interval_ms} must be below session_timeout_ms "
                f"({self.session_timeout_ms}); about a third of it is usual",
            )
        return self

    def sasl_password(self) -> str | None:
        """The SASL password, read from the environment variable the config names."""
        if self.sasl_password_env is None:
            return None
        value = os.environ.get(self.sasl_password_env)
        if value is None:
            raise ConfigError(
                "environment",
                [
                    (
                        "source.kafka.sasl_password_env",
                        f"names {self.sasl_password_env}, which is not set; export it "
                        "(in Kubernetes, from a Secret via env.valueFrom.secretKeyRef)",
                    )
                ],
            )
        return value


FileFormat = Literal["jsonl", "parquet", "csv"]


def format_from_extension(path: Path) -> FileFormat | None:
    """The data format a file name implies (the same rules as ``read_frame``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes:
        return "csv"
    if {".jsonl", ".ndjson", ".json"} & set(suffixes):
        return "jsonl"
    return None


class FileSourceConfig(_Section):
    """A file replayed through the same decoder and windows as the agent."""

    path: Path = Field(description="file to replay")
    format: FileFormat | None = None

    @model_validator(mode="after")
    def _check(self) -> FileSourceConfig:
        if self.format is None and format_from_extension(self.path) is None:
            raise fail(
                "format",
                f"cannot tell the format of {_show(str(self.path))} from its extension; "
                "set format: jsonl, parquet or csv",
            )
        return self

    def resolved_format(self) -> FileFormat:
        """``format``, or the one the file's extension implies."""
        fmt = self.format or format_from_extension(self.path)
        assert fmt is not None  # checked on validation
        return fmt


class SourceConfig(_Section):
    """Where prediction records come from."""

    kind: Literal["kafka", "file"] = Field(description="kafka, or file for replay")
    kafka: KafkaSourceConfig | None = None
    file: FileSourceConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if self.kind == "kafka" and self.kafka is None:
            raise fail(
                "kafka",
                "is required when kind is kafka; add bootstrap_servers, topics and group_id",
            )
        if self.kind == "file" and self.file is None:
            raise fail("file", "is required when kind is file; add path: predictions.jsonl")
        return self


# -- records -----------------------------------------------------------------------------


class RecordConfig(_Section):
    """How one message becomes prediction rows (see monitor.ingest.records)."""

    format: Literal["driftline", "kserve_v2"] = "driftline"
    max_bytes: int = Field(1_048_576, ge=1)
    features_field: str = "features"
    prediction_field: str = "prediction"
    request_id_field: str = "request_id"
    event_time_field: str = "timestamp"
    model_version_field: str = "model_version"
    default_model_version: str = "unknown"
    require_event_time: bool = False
    # A message holding several predictions: {"predictions": [...]} (or a JSON array).
    batch_field: str = "predictions"
    # KServe v2: a single 2-D input (output) tensor's columns, in order.
    kserve_input_columns: list[str] = Field(default_factory=list)
    kserve_output_columns: list[str] = Field(default_factory=list)
    # KServe's logger `mode`: which halves it sends. With "all" a row needs both.
    kserve_logger_mode: Literal["all", "request", "response"] = "all"
    kserve_pair_ttl: Duration = 60.0
    kserve_max_pending: int = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _check(self) -> RecordConfig:
        for key in (
            "prediction_field",
            "request_id_field",
            "event_time_field",
            "model_version_field",
            "batch_field",
        ):
            _check_path(getattr(self, key), key)
        if self.features_field:  # "" means: the record itself holds the columns
            _check_path(self.features_field, "features_field")
        for key in ("kserve_input_columns", "kserve_output_columns"):
            names = getattr(self, key)
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise fail(key, f"names {dupes} twice; list each column once")
        if self.kserve_pair_ttl <= 0:
            raise fail("kserve_pair_ttl", f"must be positive; {DURATION_HINT}")
        return self


class SchemaConfig(_Section):
    """Which columns are features and predictions; by default the profile's schema."""

    infer_from_reference: bool = True
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    prediction: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SchemaConfig:
        for key in ("numeric", "categorical", "prediction"):
            names = getattr(self, key)
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise fail(key, f"names {dupes} twice; list each column once")
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise fail("categorical", f"{both} are also listed as numeric; keep one kind")
        if not self.infer_from_reference and not (self.numeric or self.categorical):
            raise fail(
                "infer_from_reference",
                "is false but no columns are listed; list numeric and categorical columns "
                "or set infer_from_reference: true",
            )
        return self

    def to_schema(self) -> Schema | None:
        """The columns written here, or None when the reference's schema is used.

        A prediction column's kind is taken from ``numeric``/``categorical`` when it is
        listed there too, else it is numeric.
        """
        if self.infer_from_reference:
            return None
        pred = set(self.prediction)
        return Schema.build(
            numeric=[n for n in self.numeric if n not in pred],
            categorical=[n for n in self.categorical if n not in pred],
            prediction_numeric=[n for n in self.prediction if n not in self.categorical],
            prediction_categorical=[n for n in self.prediction if n in self.categorical],
        )


# -- windows -----------------------------------------------------------------------------


class WindowsConfig(_Section):
    """Event-time windows (or row counts), lateness, deduplication and sampling."""

    size: Duration = 60.0
    slide: OptionalDuration = None
    rows: int | None = Field(None, ge=1)
    allowed_lateness: Duration = 10.0
    idle_timeout: Duration = 30.0
    dedupe: bool = True
    dedupe_max_ids: int = Field(1_000_000, ge=1)
    reservoir_size: int = Field(1024, ge=0)
    segment_by_version: bool = True
    stable_version: str | None = None

    @model_validator(mode="after")
    def _check(self) -> WindowsConfig:
        if self.rows is not None:
            if "size" in self.model_fields_set:
                raise fail(
                    "rows",
                    "and windows.size are both set; a window is either a duration (size) "
                    "or a row count (rows): remove one",
                )
            if self.slide is not None:
                raise fail(
                    "slide",
                    "needs time windows; remove slide, or use size instead of rows",
                )
        if self.size <= 0:
            raise fail("size", f"must be longer than 0; {DURATION_HINT}")
        if self.slide is not None:
            if self.slide <= 0 or self.slide > self.size:
                raise fail(
                    "slide",
                    f"{format_duration(self.slide)} must be positive and at most size "
                    f"({format_duration(self.size)})",
                )
            panes = self.size / self.slide
            if abs(panes - round(panes)) > 1e-9 * max(1.0, panes):
                raise fail(
                    "slide",
                    f"{format_duration(self.slide)} does not divide size "
                    f"({format_duration(self.size)}); use a slide such as "
                    f"{_divisor_hint(self.size, self.slide)}",
                )
        if self.idle_timeout <= 0:
            raise fail("idle_timeout", f"must be longer than 0; {DURATION_HINT}")
        if self.stable_version is not None and not self.segment_by_version:
            raise fail(
                "stable_version",
                "compares versions, which needs segment_by_version: true; set it or remove "
                "stable_version",
            )
        return self


_NICE_SLIDES = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)


def _divisor_hint(size: float, slide: float) -> str:
    """A slide near the one written that divides the window size."""
    divisors = [d for d in _NICE_SLIDES if d <= size and (size / d).is_integer()]
    if not divisors:
        return format_duration(size / max(1, round(size / slide)))
    return format_duration(min(divisors, key=lambda d: abs(math.log(d / slide))))


# -- drift and quality -------------------------------------------------------------------


class ColumnTestConfig(_Section):
    """A per-column override of the test and/or its threshold."""

    test: str | None = None
    threshold: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        # `age: ks` is short for `age: {test: ks}`.
        return {"test": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ColumnTestConfig:
        if self.test is not None and self.test not in ALL_TESTS:
            raise fail("test", _unknown_name(self.test, ALL_TESTS, "test"))
        if self.threshold is not None:
            _check_threshold(self.test, self.threshold, "threshold")
        if self.test is None and self.threshold is None:
            raise fail("test", "is missing; set test and/or threshold for this column")
        return self


def _unknown_name(name: str, known: tuple[str, ...] | frozenset[str], what: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return f"{_show(name)} is not a known {what}; {hint}use one of {', '.join(known)}"


def _check_threshold(test: str | None, value: float, key: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise fail(key, f"{_show(value)} must be a positive number")
    if test in P_VALUE_TESTS and value >= 1:
        raise fail(key, f"{_show(value)} is a p-value threshold for {test}; use e.g. 0.05")


class DriftConfig(_Section):
    """What counts as drift; mirrors ``detectors.settings.DriftSettings``."""

    small_window_rows: int = Field(1000, ge=0)
    numeric_small: str = "ks"
    numeric_large: str = "wasserstein"
    categorical_small: str = "chi_square"
    categorical_large: str = "jensen_shannon"
    thresholds: dict[str, float] = Field(default_factory=dict)
    columns: dict[str, ColumnTestConfig] = Field(default_factory=dict)
    share_threshold: float = 0.5
    correction: Literal["none", "bonferroni", "benjamini_hochberg"] = "none"
    use_calibration: bool = True
    exact: Literal["auto", "never", "always"] = "auto"
    exact_max_rows: int = Field(5000, ge=0)
    psi_epsilon: float = Field(1e-4, gt=0, lt=1)
    noise_floor_alpha: float | None = Field(0.001, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> DriftConfig:
        for key in ("numeric_small", "numeric_large"):
            if getattr(self, key) not in NUMERIC_TESTS:
                raise fail(key, _unknown_name(getattr(self, key), NUMERIC_TESTS, "numeric test"))
        for key in ("categorical_small", "categorical_large"):
            if getattr(self, key) not in CATEGORICAL_TESTS:
                raise fail(
                    key, _unknown_name(getattr(self, key), CATEGORICAL_TESTS, "categorical test")
                )
        for test, value in self.thresholds.items():
            if test not in DEFAULT_THRESHOLDS:
                raise fail(
                    f"thresholds.{test}", _unknown_name(test, tuple(DEFAULT_THRESHOLDS), "test")
                )
            _check_threshold(test, value, f"thresholds.{test}")
        if not 0.0 < self.share_threshold <= 1.0:
            raise fail(
                "share_threshold",
                f"{_show(self.share_threshold)} is a share of features; use a number in (0, 1]"
                ", e.g. 0.5",
            )
        return self

    def to_settings(self) -> DriftSettings:
        """The detectors' settings: thresholds written here override the defaults."""
        return DriftSettings(
            small_window_rows=self.small_window_rows,
            numeric_small=self.numeric_small,
            numeric_large=self.numeric_large,
            categorical_small=self.categorical_small,
            categorical_large=self.categorical_large,
            thresholds={**DEFAULT_THRESHOLDS, **self.thresholds},
            columns={
                name: ColumnTest(test=c.test, threshold=c.threshold)
                for name, c in self.columns.items()
            },
            share_threshold=self.share_threshold,
            correction=self.correction,
            use_calibration=self.use_calibration,
            exact=self.exact,
            exact_max_rows=self.exact_max_rows,
            psi_epsilon=self.psi_epsilon,
            noise_floor_alpha=self.noise_floor_alpha,
        )


class QualityConfig(_Section):
    """Data-quality limits; mirrors ``detectors.settings.QualitySettings``."""

    thresholds: dict[str, float] = Field(default_factory=dict)
    columns: dict[str, dict[str, float]] = Field(default_factory=dict)
    min_rows: int = Field(20, ge=0)

    @model_validator(mode="after")
    def _check(self) -> QualityConfig:
        items = [(f"thresholds.{k}", k, v) for k, v in self.thresholds.items()]
        for column, checks in self.columns.items():
            items += [(f"columns.{column}.{k}", k, v) for k, v in checks.items()]
        for key, check, value in items:
            if check not in QUALITY_CHECKS:
                raise fail(key, _unknown_name(check, QUALITY_CHECKS, "quality check"))
            if not 0.0 <= value <= 1.0:
                raise fail(
                    key,
                    f"{_show(value)} is a rate above the reference's; use a number in "
                    "[0, 1], e.g. 0.05",
                )
        return self

    def to_settings(self) -> QualitySettings:
        """The detectors' settings: thresholds written here override the defaults."""
        return QualitySettings(
            thresholds={**DEFAULT_QUALITY_THRESHOLDS, **self.thresholds},
            columns={c: dict(checks) for c, checks in self.columns.items()},
            min_rows=self.min_rows,
        )


# -- outputs and state -------------------------------------------------------------------


class ExporterConfig(_Section):
    """The HTTP server (/metrics) and OTLP export."""

    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65535)
    otlp_endpoint: str | None = None
    otlp_interval: Duration = 15.0
    otlp_headers_env: EnvName = None
    exemplars: bool = True

    @model_validator(mode="after")
    def _check(self) -> ExporterConfig:
        if self.otlp_endpoint is not None:
            parts = urlsplit(self.otlp_endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise fail(
                    "otlp_endpoint",
                    "is not an http(s) URL; write e.g. http://otel-collector:4318",
                )
        if self.otlp_interval <= 0:
            raise fail("otlp_interval", f"must be longer than 0; {DURATION_HINT}")
        return self

    def otlp_headers(self) -> dict[str, str]:
        """OTLP headers from the named environment variable ("k1=v1,k2=v2", the format of
        ``OTEL_EXPORTER_OTLP_HEADERS``); empty when none is named."""
        if self.otlp_headers_env is None:
            return {}
        raw = os.environ.get(self.otlp_headers_env)
        if raw is None:
            raise ConfigError(
                "environment",
                [
                    (
                        "exporter.otlp_headers_env",
                        f"names {self.otlp_headers_env}, which is not set; export it as "
                        '"key=value,key2=value2"',
                    )
                ],
            )
        headers: dict[str, str] = {}
        for item in raw.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    "environment",
                    [
                        (
                            "exporter.otlp_headers_env",
                            f"{self.otlp_headers_env} is not a list of key=value pairs "
                            "separated by commas",
                        )
                    ],
                )
            headers[key.strip()] = value.strip()
        return headers


class ReportsConfig(_Section):
    """Where the JSON report of each closed window goes, and the HTML page of each window
    with drift or a quality breach (``html_dir``; ``html_base_url`` is where a web server
    serves that directory, for the links in reports and alerts)."""

    log: bool = True
    file: Path | None = None
    kafka_topic: str | None = None
    html_dir: Path | None = None
    html_base_url: str | None = None

    @model_validator(mode="after")
    def _check_html(self) -> ReportsConfig:
        if self.html_base_url is not None:
            if self.html_dir is None:
                raise fail(
                    "html_base_url",
                    "needs html_dir, the directory the pages are written to; add html_dir",
                )
            parts = urlsplit(self.html_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise fail(
                    "html_base_url",
                    "is not an http(s) URL; write e.g. https://reports.example.com/driftline",
                )
        return self


class StateConfig(_Section):
    """Checkpoints: offsets are committed only once their records are in one."""

    dir: Path = Path("./state")
    checkpoint_interval: Duration = 5.0

    @model_validator(mode="after")
    def _check(self) -> StateConfig:
        if self.checkpoint_interval <= 0:
            raise fail("checkpoint_interval", f"must be longer than 0; {DURATION_HINT}")
        return self


# -- the whole file ----------------------------------------------------------------------


class MonitorConfig(_Section):
    """The whole of ``monitor.yaml``."""

    model: str = Field(description="the model's name, the model label of every metric")
    reference: Path = Field(
        description="the reference profile file, made by driftline reference build"
    )
    source: SourceConfig = Field(description="where prediction records come from")
    record: RecordConfig = Field(default_factory=RecordConfig)
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    exporter: ExporterConfig = Field(default_factory=ExporterConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    # Receiving alerts, deciding rollbacks and acting on them: see docs/alerting.md.
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    policies: list[PolicyConfig] = Field(default_factory=list)
    actions: dict[str, ActionConfig] = Field(default_factory=dict)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    # Where the configuration came from, for messages: the file, or "config".
    _source: str = PrivateAttr(default="config")
    # Paths that, written in a file, are relative to the file's directory.
    _PATH_KEYS: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("reference",),
        ("source", "kafka", "ssl_cafile"),
        ("source", "kafka", "ssl_certfile"),
        ("source", "kafka", "ssl_keyfile"),
        ("source", "file", "path"),
        ("reports", "file"),
        ("reports", "html_dir"),
        ("state", "dir"),
    )

    @model_validator(mode="after")
    def _check(self) -> MonitorConfig:
        if not self.model.strip():
            raise fail("model", "is empty; name the model, e.g. fraud-scorer")
        if self.reports.kafka_topic is not None and self.source.kafka is None:
            raise fail(
                "reports.kafka_topic",
                "needs the brokers of source.kafka; add a source.kafka section or remove "
                "reports.kafka_topic",
            )
        problems = rollback_problems(self.policies, self.actions)
        if problems:
            raise fail(*problems[0])
        return self

    @classmethod
    def model_validate(  # type: ignore[override]
        cls, obj: Any, *args: Any, source: str = "config", **kwargs: Any
    ) -> MonitorConfig:
        """Validate a mapping; problems raise :class:`ConfigError` naming each key."""
        try:
            config = super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(source, _problems(exc)) from None
        config._source = source
        return config

    # -- after loading ---------------------------------------------------------------------

    def check_against_profile(self, profile: Any) -> None:
        """Check the column names and tests against the reference profile's schema.

        Raises :class:`ConfigError` naming e.g. ``drift.columns.age`` when a column is not
        in the profile or its test does not apply to the column's kind.
        """
        schema: Schema = profile.schema
        kinds = {c.name: c.kind for c in schema.columns}
        known = list(kinds)
        problems: list[tuple[str, str]] = []

        def unknown(key: str, name: str) -> None:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            problems.append(
                (
                    key,
                    f"{_show(name)} is not a column of the reference profile; {hint}"
                    f"its columns are {', '.join(known)}",
                )
            )

        for name, col in self.drift.columns.items():
            key = f"drift.columns.{name}"
            if name not in kinds:
                unknown(key, name)
                continue
            if col.test is None:
                continue
            allowed = NUMERIC_TESTS if kinds[name] is Kind.NUMERIC else CATEGORICAL_TESTS
            if col.test not in allowed:
                problems.append(
                    (
                        f"{key}.test",
                        f"{_show(col.test)} does not apply to {name}, a {kinds[name].value} "
                        f"column; use one of {', '.join(allowed)}",
                    )
                )
        for name, checks in self.quality.columns.items():
            key = f"quality.columns.{name}"
            if name not in kinds:
                unknown(key, name)
                continue
            wrong = CATEGORICAL_ONLY_CHECKS if kinds[name] is Kind.NUMERIC else NUMERIC_ONLY_CHECKS
            for check in checks:
                if check in wrong:
                    problems.append(
                        (
                            f"{key}.{check}",
                            f"does not apply to {name}, a {kinds[name].value} column; remove it",
                        )
                    )
        sc = self.schema_
        for attr, kind in (("numeric", Kind.NUMERIC), ("categorical", Kind.CATEGORICAL)):
            for name in getattr(sc, attr):
                if name not in kinds:
                    unknown(f"schema.{attr}", name)
                elif kinds[name] is not kind:
                    problems.append(
                        (
                            f"schema.{attr}",
                            f"{_show(name)} is {kinds[name].value} in the reference profile; "
                            "rebuild the profile with this schema or move the column",
                        )
                    )
        predictions = {c.name for c in schema.predictions()}
        for name in sc.prediction:
            if name not in kinds:
                unknown("schema.prediction", name)
            elif name not in predictions:
                problems.append(
                    (
                        "schema.prediction",
                        f"{_show(name)} is a feature in the reference profile; rebuild the "
                        "profile with --schema naming it as a prediction",
                    )
                )
        for attr in ("kserve_input_columns", "kserve_output_columns"):
            for name in getattr(self.record, attr):
                if name not in kinds:
                    unknown(f"record.{attr}", name)
        if problems:
            raise ConfigError(f"{self._source} (against {self.reference})", problems)

    def check_files(self) -> None:
        """Raise :class:`ConfigError` for files the agent will need that do not exist."""
        problems: list[tuple[str, str]] = []
        if not self.reference.is_file():
            problems.append(
                (
                    "reference",
                    f"{self.reference} does not exist; build it with "
                    "`driftline reference build --data TRAINING_DATA -o PROFILE`",
                )
            )
        if self.source.kafka is not None:
            for attr in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path = getattr(self.source.kafka, attr)
                if path is not None and not path.is_file():
                    problems.append((f"source.kafka.{attr}", f"{path} does not exist"))
        file = self.source.file
        if self.source.kind == "file" and file is not None and not file.path.is_file():
            problems.append(("source.file.path", f"{self.source.file.path} does not exist"))
        if problems:
            raise ConfigError(self._source, problems)

    def effective_yaml(self) -> str:
        """The configuration with every default filled in, as YAML that loads back to it.

        Nothing secret is printed: the file only ever names environment variables, and a
        password written into a URL's user info is masked.
        """
        data = self.model_dump(mode="json", by_alias=True)
        endpoint = data["exporter"]["otlp_endpoint"]
        if endpoint:
            data["exporter"]["otlp_endpoint"] = _mask_userinfo(endpoint)
        header = (
            "# effective driftline configuration: every default filled in.\n"
            "# Secrets are not here: *_env keys name the environment variables holding them.\n"
        )
        return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)

    def resolve_paths(self, base: Path) -> MonitorConfig:
        """Paths written in the file (relative ones) taken relative to ``base``."""
        for keys in self._PATH_KEYS:
            obj: Any = self
            for attr in keys[:-1]:
                obj = getattr(obj, attr, None)
                if obj is None:
                    break
            if obj is None or keys[-1] not in obj.model_fields_set:
                continue
            value = getattr(obj, keys[-1])
            if value is not None and not value.is_absolute():
                setattr(obj, keys[-1], base / value)
        self.audit.resolve_paths(base)
        for action in self.actions.values():
            action.resolve_paths(base)
        return self

    @classmethod
    def for_replay(
        cls,
        reference: str | Path,
        input_path: str | Path,
        *,
        model: str = "replay",
        window_rows: int | None = None,
        window_size: float | str | None = None,
        event_time_field: str | None = None,
        format: FileFormat | None = None,
    ) -> MonitorConfig:
        """A configuration for ``driftline replay`` without a file.

        The input's columns are the features (``features_field`` is empty: each record is
        flat). Windows are ``window_rows`` rows when given; else ``window_size`` (60s by
        default) of event time when the input has the time column (``event_time_field``,
        by default "timestamp"); else :data:`DEFAULT_REPLAY_ROWS` rows.
        """
        time_field = event_time_field or RecordConfig.model_fields["event_time_field"].default
        windows: dict[str, Any] = {}
        if window_rows is not None:
            windows["rows"] = window_rows
        elif window_size is not None or _has_column(Path(input_path), time_field):
            windows["size"] = 60.0 if window_size is None else window_size
        else:
            windows["rows"] = DEFAULT_REPLAY_ROWS
        data = {
            "model": model,
            "reference": str(reference),
            "source": {"kind": "file", "file": {"path": str(input_path), "format": format}},
            "record": {"features_field": "", "event_time_field": time_field},
            "windows": windows,
            "reports": {"log": True},
        }
        return cls.model_validate(data, source="replay")


def _has_column(path: Path, name: str) -> bool:
    """Whether a data file has a column (Parquet schema, CSV header, first JSON line)."""
    try:
        fmt = format_from_extension(path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return name in pq.read_schema(path).names
        if fmt == "csv":
            import csv

            with path.open(newline="", encoding="utf-8") as fh:
                return name in next(csv.reader(fh), [])
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    first = json.loads(line)
                    return isinstance(first, dict) and name in first
    except (OSError, ValueError, ImportError):
        return False
    return False


DEFAULT_REPLAY_ROWS = 1000


def _mask_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


# -- loading -----------------------------------------------------------------------------


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
        data = yaml.safe_load(text)
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


# -- turning pydantic's errors into messages with a fix ----------------------------------


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == ERROR_TYPE and ctx.get("key"):
            loc = loc + tuple(str(ctx["key"]).split("."))
        item = (_dotted(loc), _message(err, loc))
        if item not in seen:
            seen.add(item)
            problems.append(item)
    return problems


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    field_name = str(loc[-1]) if loc else ""
    secret = field_name.endswith("_env")
    if kind == ERROR_TYPE:
        return str(ctx.get("message", err["msg"]))
    if kind == "extra_forbidden":
        return _unknown_key(field_name, loc[:-1])
    if kind == "missing":
        description = _description(loc)
        what = f": {description}" if description else ""
        return f"is required; add {field_name}{what}"
    shown = "this value" if secret else _show(value)
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


def _unknown_key(name: str, parent: tuple[Any, ...]) -> str:
    if name in _SECRET_KEYS:
        return (
            f"secrets are never written in the config; put it in an environment variable "
            f"and name that variable in {_SECRET_KEYS[name]}"
        )
    known = _keys_at(parent)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if known else []
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    listing = f"; the keys here are {', '.join(known)}" if known else ""
    return f"unknown key; remove it{listing}"


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None if not a model)."""
    ann: Any = MonitorConfig
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


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    cls = _section_at(loc)
    if cls is None:
        return []
    return [info.alias or name for name, info in cls.model_fields.items()]


def _description(loc: tuple[Any, ...]) -> str | None:
    cls = _section_at(loc[:-1])
    if cls is None:
        return None
    for name, info in cls.model_fields.items():
        if str(loc[-1]) in (name, info.alias):
            return info.description
    return None
