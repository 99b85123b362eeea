"""``source``: where prediction records come from (a Kafka consumer group, or a file).

Credentials are never written in the file: ``sasl_password_env`` names the environment
variable that holds the password, read only when the consumer is built.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from monitor.config.errors import ConfigError, show
from monitor.config.rules import Section, env_name, fail

__all__ = [
    "FileFormat",
    "FileSourceConfig",
    "KafkaSourceConfig",
    "SourceConfig",
    "format_from_extension",
]

_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9_.:\-]+\]?:\d{1,5}$")

EnvName = Annotated[str | None, BeforeValidator(env_name("KAFKA_PASSWORD"))]


class KafkaSourceConfig(Section):
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
    client: Literal["aiokafka", "confluent"] = "aiokafka"
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
                    f"{show(server)} is not host:port; write brokers as "
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
        if self.client == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
            raise fail(
                "client",
                "confluent needs the confluent-kafka package, which is not installed; "
                "pip install 'driftline[kafka-fast]', or set client: aiokafka",
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


class FileSourceConfig(Section):
    """A file replayed through the same decoder and windows as the agent."""

    path: Path = Field(description="file to replay")
    format: FileFormat | None = None

    @model_validator(mode="after")
    def _check(self) -> FileSourceConfig:
        if self.format is None and format_from_extension(self.path) is None:
            raise fail(
                "format",
                f"cannot tell the format of {show(str(self.path))} from its extension; "
                "set format: jsonl, parquet or csv",
            )
        return self

    def resolved_format(self) -> FileFormat:
        """``format``, or the one the file's extension implies."""
        fmt = self.format or format_from_extension(self.path)
        assert fmt is not None  # checked on validation
        return fmt


class SourceConfig(Section):
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
