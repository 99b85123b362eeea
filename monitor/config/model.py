"""``monitor.yaml``: the root model, one field per section, and the checks that span them.

Each section is its own module of ``monitor.config`` (see the package docstring); this
module only puts them together, checks what needs more than one section (a report topic
needs the Kafka brokers, a policy names an action that exists) or the reference profile
(:meth:`MonitorConfig.check_against_profile`), and prints the effective configuration.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from detectors.schema import Kind, Schema
from detectors.settings import CATEGORICAL_TESTS, NUMERIC_TESTS
from monitor.config.aggregation import AggregationConfig
from monitor.config.drift import DriftConfig
from monitor.config.errors import ConfigError, show
from monitor.config.explain import ExplainConfig
from monitor.config.exporter import ExporterConfig
from monitor.config.labels import KpiConfig, LabelsConfig
from monitor.config.messages import validation_problems
from monitor.config.multivariate import MultivariateConfig
from monitor.config.quality import CATEGORICAL_ONLY_CHECKS, NUMERIC_ONLY_CHECKS, QualityConfig
from monitor.config.record import RecordConfig
from monitor.config.replay_input import record_layout
from monitor.config.reports import ReportsConfig
from monitor.config.rollback import (
    ActionConfig,
    AlertsConfig,
    AuditConfig,
    PolicyConfig,
    rollback_problems,
)
from monitor.config.rules import Section, fail
from monitor.config.schema import SchemaConfig
from monitor.config.source import FileFormat, SourceConfig, format_from_extension
from monitor.config.state import StateConfig
from monitor.config.windows import WindowsConfig
from monitor.redaction import redact

__all__ = ["DEFAULT_REPLAY_ROWS", "MonitorConfig"]


class MonitorConfig(Section):
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
    # Several agents, one verdict per window: see docs/agent.md, "Scaling out".
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    # Row-level drift tests (kernel MMD, classifier test, online MMD).
    multivariate: MultivariateConfig = Field(default_factory=MultivariateConfig)
    # SHAP attribution drift: see docs/explainability.md.
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    # Ground truth and business KPIs: see docs/performance.md.
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    kpis: list[KpiConfig] = Field(default_factory=list)
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
        ("explain", "model"),
        ("labels", "file"),
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
        if self.aggregation.role != "none":
            if self.source.kafka is None:
                raise fail(
                    "aggregation.role",
                    f"{self.aggregation.role} needs source.kafka (partials go through Kafka); "
                    "add a source.kafka section or set role: none",
                )
            if self.windows.rows is not None:
                raise fail(
                    "aggregation.role",
                    "merges time windows; replace windows.rows with windows.size or set role: none",
                )
        if self.labels.source == "kafka" and self.source.kafka is None:
            raise fail(
                "labels.source",
                "kafka needs the brokers of source.kafka (the agent's own consumer group reads "
                "the labels topic); for replay use source: file or --labels",
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
            raise ConfigError(source, validation_problems(exc, cls)) from None
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
                    f"{show(name)} is not a column of the reference profile; {hint}"
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
                        f"{show(col.test)} does not apply to {name}, a {kinds[name].value} "
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
                            f"{show(name)} is {kinds[name].value} in the reference profile; "
                            "rebuild the profile with this schema or move the column",
                        )
                    )
        if self.labels.enabled and getattr(profile, "performance", None) is None:
            problems.append(
                (
                    "labels.source",
                    "the reference profile learnt no performance estimators, so labels would "
                    "join nothing; rebuild it with `driftline reference build --labels COLUMN`",
                )
            )
        for i, kpi in enumerate(self.kpis):
            if kpi.from_ == "predictions" and kinds.get(kpi.path) is not Kind.NUMERIC:
                problems.append(
                    (
                        f"kpis.{i}.field",
                        f"{show(kpi.path)} is not a numeric column of the reference profile; "
                        "a KPI from the predictions is one of their numeric columns",
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
                        f"{show(name)} is a feature in the reference profile; rebuild the "
                        "profile with --schema naming it as a prediction",
                    )
                )
        for name in self.explain.features or ():
            if name not in kinds:
                unknown("explain.features", name)
        if self.explain.source == "record" and getattr(profile, "attribution", None) is None:
            problems.append(
                (
                    "explain.source",
                    "is record, but the reference profile has no attributions; rebuild it "
                    "with `driftline reference build ... --attributions COLUMN` (the "
                    "training data's logged attributions) or `--model FILE`",
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
            problems.append(("source.file.path", f"{file.path} does not exist"))
        model = self.explain.model
        if model is not None and not model.is_file():
            problems.append(
                (
                    "explain.model",
                    f"{model} does not exist; name the model file the reference's "
                    "attributions were built with (driftline reference build --model)",
                )
            )
        if problems:
            raise ConfigError(self._source, problems)

    def effective_yaml(self) -> str:
        """The configuration with every default filled in, as YAML that loads back to it.

        Nothing secret is printed: the file only ever names environment variables, and
        credentials written into any URL (a webhook's, the OTLP endpoint's) are masked
        (monitor/redaction.py). A masked URL does not load back to the same secret.
        """
        data = redact(self.model_dump(mode="json", by_alias=True))
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
        flat), unless it is JSON lines of driftline's own records (a ``features`` object,
        or a batch), which are decoded with the default ``record:`` settings; KServe v2
        records are refused (see monitor/config/replay_input.py). Windows are
        ``window_rows`` rows when given; else ``window_size`` (60s by default) of event
        time when the input has the time column (``event_time_field``, by default
        "timestamp"); else :data:`DEFAULT_REPLAY_ROWS` rows.
        """
        time_field = event_time_field or RecordConfig.model_fields["event_time_field"].default
        path = Path(input_path)
        layout, first = "flat", None
        if (format or format_from_extension(path)) == "jsonl":
            layout, first = record_layout(path)
        if layout == "driftline":
            record: dict[str, Any] = {"event_time_field": time_field}
            has_time = first is not None and time_field in first
        else:
            record = {"features_field": "", "event_time_field": time_field}
            has_time = _has_column(path, time_field)
        windows: dict[str, Any] = {}
        if window_rows is not None:
            windows["rows"] = window_rows
        elif window_size is not None or has_time:
            windows["size"] = 60.0 if window_size is None else window_size
        else:
            windows["rows"] = DEFAULT_REPLAY_ROWS
        data = {
            "model": model,
            "reference": str(reference),
            "source": {"kind": "file", "file": {"path": str(input_path), "format": format}},
            "record": record,
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
