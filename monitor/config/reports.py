"""``reports``: where each closed window's JSON report and HTML page go."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import model_validator

from monitor.config.rules import Section, fail

__all__ = ["ReportsConfig"]


class ReportsConfig(Section):
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
