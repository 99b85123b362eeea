"""HTML drift reports: ``driftline report`` and the pages the agent writes for alerts.

``render_report`` builds the self-contained page of one window; ``read_reports`` and
``select_report`` pick a window out of a reports file; ``write_artifacts`` and
``HtmlReportWriter`` put pages (with the report and sketch next to them) where a static
web server and alert annotations can reach them.
"""

from monitor.report.html import ReportInputError, render_report
from monitor.report.store import (
    ArtifactPaths,
    HtmlReportWriter,
    ReportSelectionError,
    Selection,
    artifact_paths,
    latest_url,
    parse_window_start,
    read_reports,
    select_report,
    write_artifacts,
)

__all__ = [
    "ArtifactPaths",
    "HtmlReportWriter",
    "ReportInputError",
    "ReportSelectionError",
    "Selection",
    "artifact_paths",
    "latest_url",
    "parse_window_start",
    "read_reports",
    "render_report",
    "select_report",
    "write_artifacts",
]
