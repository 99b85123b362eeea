"""Where HTML reports come from and where they go.

Reading: a file of WindowReport JSON lines (``driftline replay`` output, the agent's
report file) and picking one window, the window before it (same model, version and
baseline) and the windows up to it.

Writing: the artifacts of one window under a directory, in a layout a static web server
can serve as it is::

    <dir>/<model>/<version>/<window_start>.html    the page
    <dir>/<model>/<version>/<window_start>.json    the WindowReport
    <dir>/<model>/<version>/<window_start>.sketch  the WindowSketch (to re-render it)
    <dir>/<model>/<version>/latest.html            a copy of the newest page

Windows compared with another version's window (a canary) get ``.vs-<version>`` before
the extension, and their own ``latest.vs-<version>.html``. Every file is written to a
temporary name and renamed, so a reader never sees half a page.

The agent's side is :class:`HtmlReportWriter`: it renders and writes the pages of
windows with drift or a quality breach, in the evaluation worker, and records where the
page is in the report's ``extra`` (``html_path``, and ``html_url`` when a base URL is
configured) before the report goes to the sinks.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import orjson

from detectors.profile import Profile
from detectors.results import WindowReport
from detectors.sketch import WindowSketch
from monitor.report.html import MAX_HISTORY, render_report
from monitor.runtime.evaluation import EvaluatedWindow
from monitor.runtime.windows import ClosedWindow

log = logging.getLogger(__name__)

LATEST = "latest"
AGENT_EVIDENTLY_NOTE = (
    "Pages written by the agent leave Evidently out (it costs seconds and megabytes per "
    "page). The window's report and sketch are saved next to this page: "
    "driftline report --reference PROFILE --reports <start>.json --sketch <start>.sketch "
    "-o full.html adds it."
)


class ReportSelectionError(ValueError):
    """No report matches, or the reports file cannot be read; the message says which."""


# -- reading ----------------------------------------------------------------------------------


def read_reports(path: str | Path) -> list[WindowReport]:
    """Every WindowReport of a JSON-lines file, in file order (blank lines skipped)."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ReportSelectionError(f"{path}: cannot read reports: {exc.strerror}") from exc
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(WindowReport.from_json(line))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ReportSelectionError(
                f"{path}:{number}: not a driftline window report ({exc!r})"
            ) from exc
    if not out:
        raise ReportSelectionError(f"{path}: no window reports in the file")
    return out


def parse_window_start(text: str) -> float:
    """Seconds since the epoch (or a row offset), or an ISO 8601 time (UTC if no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReportSelectionError(
            f"--window-start {text!r}: use seconds since the epoch or an ISO time such as "
            "2025-01-31T14:05:00Z"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


@dataclass(frozen=True)
class Selection:
    """The window to render, the one before it and the windows up to it."""

    report: WindowReport
    previous: WindowReport | None
    history: tuple[WindowReport, ...]


def _same_series(a: WindowReport, b: WindowReport) -> bool:
    return (a.model, a.model_version, a.baseline) == (b.model, b.model_version, b.baseline)


def select_report(
    reports: Sequence[WindowReport],
    *,
    window_start: float | None = None,
    index: int | None = None,
    model_version: str | None = None,
    baseline: str | None = None,
) -> Selection:
    """Pick one window: by start, by position (negative from the end), or the latest.

    ``model_version`` and ``baseline`` narrow the candidates first; ``index`` counts
    among them. With several matches for a start (one per version or baseline), the
    reference comparison is preferred, then the last in the file.
    """
    candidates = [
        (i, r)
        for i, r in enumerate(reports)
        if (model_version is None or r.model_version == model_version)
        and (baseline is None or r.baseline == baseline)
    ]
    where = f" of version {model_version!r}" if model_version else ""
    if not candidates:
        versions = sorted({r.model_version for r in reports})
        raise ReportSelectionError(f"no reports{where}; the file has versions {versions}")
    if window_start is not None:
        found = [(i, r) for i, r in candidates if math.isclose(r.window_start, window_start)]
        if not found:
            starts = [r.window_start for _, r in candidates]
            raise ReportSelectionError(
                f"no window{where} starts at {window_start}; starts range from {min(starts)} "
                f"to {max(starts)}"
            )
        preferred = [c for c in found if c[1].baseline == "reference"] or found
        pos, report = preferred[-1]
    elif index is not None:
        if not -len(candidates) <= index < len(candidates):
            raise ReportSelectionError(
                f"--index {index} is out of range: {len(candidates)} reports{where}"
            )
        pos, report = candidates[index]
    else:
        pos, report = candidates[-1]
    earlier = [r for r in reports[:pos] if _same_series(r, report)]
    return Selection(
        report=report,
        previous=earlier[-1] if earlier else None,
        history=(*earlier[-(MAX_HISTORY - 1) :], report),
    )


# -- writing ----------------------------------------------------------------------------------


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def path_part(name: str) -> str:
    """A model or version name as one safe path (and URL) component.

    Letters, digits, ``.``, ``_`` and ``-`` stay; anything else becomes ``_``, so a name
    like ``fraud-scorer``/``v2.1`` keeps its spelling and an alert annotation can build
    the same path from the metric labels.
    """
    part = _UNSAFE.sub("_", name)
    return part if part.strip(".") else part.replace(".", "_") or "_"


def window_stem(report: WindowReport) -> str:
    """The file name (without extension) of a window's artifacts."""
    start = float(report.window_start)
    text = f"{start:.0f}" if start.is_integer() else f"{start:.6f}".rstrip("0")
    if report.window_kind == "rows":
        text = f"rows-{text}"
    return text + _baseline_suffix(report)


def _baseline_suffix(report: WindowReport) -> str:
    if report.baseline == "reference":
        return ""
    return ".vs-" + path_part(report.baseline.removeprefix("version:"))


@dataclass(frozen=True)
class ArtifactPaths:
    """Where one window's files are (or will be) written."""

    html: Path
    json: Path
    sketch: Path
    latest: Path

    @property
    def relative_html(self) -> str:
        """The page's path below the reports directory, with ``/`` separators."""
        return "/".join(self.html.parts[-3:])

    @property
    def relative_latest(self) -> str:
        return "/".join(self.latest.parts[-3:])


def artifact_paths(root: str | Path, report: WindowReport) -> ArtifactPaths:
    folder = Path(root) / path_part(report.model) / path_part(report.model_version)
    stem = window_stem(report)
    return ArtifactPaths(
        html=folder / f"{stem}.html",
        json=folder / f"{stem}.json",
        sketch=folder / f"{stem}.sketch",
        latest=folder / f"{LATEST}{_baseline_suffix(report)}.html",
    )


def join_url(base: str, relative: str) -> str:
    """``base`` + ``/`` + the relative path, each component percent-encoded."""
    return base.rstrip("/") + "/" + "/".join(quote(p) for p in relative.split("/"))


def latest_url(base: str, model: str, version: str) -> str:
    """The stable URL of a version's newest page, for alert annotations."""
    return join_url(base, f"{path_part(model)}/{path_part(version)}/{LATEST}.html")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_artifacts(
    root: str | Path,
    report: WindowReport,
    html: str,
    sketch: WindowSketch | None = None,
    *,
    update_latest: bool = True,
) -> ArtifactPaths:
    """Write a window's page, report JSON and sketch, then refresh ``latest.html``."""
    paths = artifact_paths(root, report)
    page = html.encode()
    if sketch is not None:
        _atomic_write(paths.sketch, sketch.to_bytes())
    _atomic_write(paths.json, report.to_json() + b"\n")
    _atomic_write(paths.html, page)
    if update_latest:
        _atomic_write(paths.latest, page)
    return paths


# -- the agent's writer -------------------------------------------------------------------------


class HtmlReportWriter:
    """Writes a page for each window with drift or a quality breach (agent side).

    Sees every report (clean ones too) so that a page can say what changed since the
    previous window and draw the drift share of the recent windows. Runs in the
    evaluation worker; never raises: a page that cannot be written is logged and the
    report goes out without a link.
    """

    def __init__(
        self,
        profile: Profile,
        directory: str | Path,
        base_url: str | None = None,
        *,
        evidently: bool = False,
        history: int = 48,
    ) -> None:
        self.profile = profile
        self.directory = Path(directory)
        self.base_url = base_url
        self.evidently = evidently
        self._history: dict[tuple[str, str, str], deque[WindowReport]] = {}
        self._size = max(history, 1)

    @staticmethod
    def wants_page(report: WindowReport) -> bool:
        return report.drifted or report.quality.breached

    def attach(
        self, closed: Sequence[ClosedWindow], results: Sequence[EvaluatedWindow]
    ) -> list[EvaluatedWindow]:
        """The results with links added to the reports whose pages were written."""
        sketches = {(w.model_version, w.start, w.end): w.sketch for w in closed}
        out = []
        for result in results:
            report = result.report
            key = (report.model, report.model_version, report.baseline)
            series = self._history.setdefault(key, deque(maxlen=self._size))
            previous = series[-1] if series else None
            if self.wants_page(report):
                bounds = (report.model_version, report.window_start, report.window_end)
                sketch = sketches.get(bounds)
                try:
                    report = self.write(report, sketch, previous, (*series, report))
                except Exception:
                    log.exception(
                        "could not write the HTML report of %s %s window %s",
                        report.model,
                        report.model_version,
                        report.window_start,
                    )
                result = replace(result, report=report)
            series.append(report)
            out.append(result)
        return out

    def links(self, report: WindowReport) -> dict[str, str]:
        paths = artifact_paths(self.directory, report)
        extra = {"html_path": str(paths.html)}
        if self.base_url:
            extra["html_url"] = join_url(self.base_url, paths.relative_html)
            extra["html_latest_url"] = join_url(self.base_url, paths.relative_latest)
        return extra

    def write(
        self,
        report: WindowReport,
        sketch: WindowSketch | None,
        previous: WindowReport | None,
        history: Sequence[WindowReport],
    ) -> WindowReport:
        """Render and write one window's artifacts; the report with its links."""
        linked = replace(report, extra={**report.extra, **self.links(report)})
        history = (*history[:-1], linked)
        html = render_report(
            linked,
            self.profile,
            sketch=sketch,
            previous=previous,
            history=history,
            evidently=self.evidently,
            evidently_note=None if self.evidently else AGENT_EVIDENTLY_NOTE,
        )
        write_artifacts(self.directory, linked, html, sketch)
        return linked
