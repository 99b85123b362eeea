"""``exporter``: the HTTP server (/metrics) and OTLP export.

OTLP headers (they often carry a token) are never written in the file:
``otlp_headers_env`` names the environment variable that holds them.
"""

from __future__ import annotations

import os
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, model_validator

from monitor.config.durations import DURATION_HINT
from monitor.config.errors import ConfigError
from monitor.config.rules import Duration, Section, env_name, fail

__all__ = ["ExporterConfig"]

EnvName = Annotated[str | None, BeforeValidator(env_name("KAFKA_PASSWORD"))]


class ExporterConfig(Section):
    """The HTTP server (/metrics) and OTLP export."""

    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65535)
    otlp_endpoint: str | None = None
    otlp_interval: Duration = 15.0
    otlp_headers_env: EnvName = None
    exemplars: bool = True
    # Versions with series of their own; the rest count under model_version="other"
    # (monitor/outputs/versions.py). Any producer can send a new version with each record.
    max_model_versions: int = Field(5, ge=1, le=1000)
    # A tracked version that sends nothing for this long loses its series and its slot.
    model_version_idle: Duration = 3600.0

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
        if self.model_version_idle <= 0:
            raise fail("model_version_idle", f"must be longer than 0; {DURATION_HINT}")
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
