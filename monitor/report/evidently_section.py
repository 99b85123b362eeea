"""Evidently's DataDriftPreset on the window's reservoir sample against the profile's sample.

A second opinion from a peer tool on raw rows: its own tests and plots, next to ours. It
sees a sample (the reservoir holds up to ``reservoir_size`` rows of the window, the
profile up to ``sample_rows`` of the reference), never the binned statistics of the
whole window, which is why the page leads with our plots and keeps Evidently's report
as a section.

Evidently is the optional extra ``report``: without it the section says so and the rest
of the page renders. Its HTML (its JavaScript bundle and font inlined, nothing fetched)
is embedded in an ``<iframe srcdoc>`` so its styles and scripts stay apart from ours.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from html import escape
from typing import Literal

import numpy as np
import pandas as pd

from detectors.profile import Profile
from detectors.results import DriftResult
from detectors.sketch import WindowSketch
from monitor.report.plots import fmt

log = logging.getLogger(__name__)

Status = Literal["ok", "unavailable", "skipped", "failed"]

INSTALL_HINT = "pip install 'driftline[report]'"
_DRIFT_TEST_PREFIX = "Value Drift for column "


@dataclass(frozen=True)
class EvidentlyColumn:
    """Evidently's drift verdict on one column."""

    column: str
    method: str
    score: float
    threshold: float | None
    drifted: bool


@dataclass(frozen=True)
class EvidentlyTest:
    """One of Evidently's tests, as it reports it."""

    name: str
    status: str
    description: str


@dataclass(frozen=True)
class EvidentlySection:
    """What the Evidently part of the page shows."""

    status: Status
    note: str
    html: str | None = None
    columns: tuple[EvidentlyColumn, ...] = ()
    tests: tuple[EvidentlyTest, ...] = ()
    reference_rows: int = 0
    current_rows: int = 0
    version: str | None = None


def reference_frame(profile: Profile) -> pd.DataFrame:
    """The profile's row-aligned reference sample as a DataFrame in schema order."""
    return pd.DataFrame({name: profile.sample[name] for name in profile.schema.names})


def run_evidently(
    profile: Profile, sketch: WindowSketch | None, drift_share: float = 0.5
) -> EvidentlySection:
    """Run Evidently's DataDriftPreset (with its tests) on the reservoir vs the profile sample.

    Never raises for Evidently's sake: a missing install, an empty sample or a failure
    inside Evidently becomes a section that says what happened.
    """
    if sketch is None:
        return EvidentlySection(
            "skipped", "Needs the window's sketch (its reservoir sample); pass --sketch."
        )
    current = sketch.reservoir_frame()
    if not all(name in profile.sample for name in profile.schema.names):
        return EvidentlySection("skipped", "The reference profile holds no row sample.")
    reference = reference_frame(profile)
    if current.empty or reference.empty:
        return EvidentlySection(
            "skipped",
            f"Nothing to compare: the reservoir holds {len(current)} rows and the reference "
            f"sample {len(reference)}.",
        )
    # Evidently cannot judge a column with no values on one side; it is left to ours.
    usable = [
        n for n in profile.schema.names if current[n].notna().any() and reference[n].notna().any()
    ]
    if not usable:
        return EvidentlySection("skipped", "No column has values on both sides.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import evidently
            from evidently import DataDefinition, Dataset, Report
            from evidently.presets import DataDriftPreset
    except ImportError:
        return EvidentlySection(
            "unavailable",
            f"Evidently is not installed, so its report is not included ({INSTALL_HINT} "
            "adds it). Everything above comes from driftline's own statistics.",
        )
    numeric = [n for n in profile.numeric_names if n in usable]
    categorical = [n for n in profile.categorical_names if n in usable]
    cur = _typed(current[usable], numeric, categorical)
    ref = _typed(reference[usable], numeric, categorical)
    try:
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        report = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = report.run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
            result = snapshot.dict()
            html = snapshot.get_html_str(as_iframe=False)
    except Exception as exc:  # Evidently's failure must not cost us the page
        log.warning("Evidently report failed: %r", exc)
        return EvidentlySection("failed", f"Evidently failed on this window: {exc!r}")
    columns, tests = _parse(result)
    skipped = sorted(set(profile.schema.names) - set(usable))
    note = (
        f"Evidently {evidently.__version__} DataDriftPreset on the window's reservoir sample "
        f"({len(cur):,} of {sketch.rows:,} rows) against the reference profile's sample "
        f"({len(ref):,} rows), with Evidently's default tests and thresholds."
    )
    if skipped:
        note += f" Not passed to Evidently (no values on one side): {', '.join(skipped)}."
    return EvidentlySection(
        "ok",
        note,
        html=html,
        columns=columns,
        tests=tests,
        reference_rows=len(ref),
        current_rows=len(cur),
        version=evidently.__version__,
    )


def _typed(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for n in numeric:
        out[n] = pd.to_numeric(out[n], errors="coerce").astype(np.float64)
    for n in categorical:
        out[n] = out[n].astype(object)
    return out


def _parse(result: dict) -> tuple[tuple[EvidentlyColumn, ...], tuple[EvidentlyTest, ...]]:
    """Per-column drift (metric ``ValueDrift`` + its test) and every test, from ``dict()``."""
    tests = tuple(
        EvidentlyTest(
            name=str(t.get("name", "")),
            status=_status(t.get("status")),
            description=str(t.get("description", "")),
        )
        for t in result.get("tests", [])
    )
    verdicts = {
        t.name.removeprefix(_DRIFT_TEST_PREFIX): t.status == "FAIL"
        for t in tests
        if t.name.startswith(_DRIFT_TEST_PREFIX)
    }
    columns = []
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        name = str(config.get("column"))
        threshold = config.get("threshold")
        columns.append(
            EvidentlyColumn(
                column=name,
                method=str(config.get("method", "")),
                score=float(metric.get("value", float("nan"))),
                threshold=float(threshold) if threshold is not None else None,
                drifted=verdicts.get(name, False),
            )
        )
    return tuple(columns), tests


def _status(value: object) -> str:
    text = str(getattr(value, "value", value) or "")
    return text.rsplit(".", 1)[-1].upper()


def render_section(section: EvidentlySection, ours: DriftResult, predictions: DriftResult) -> str:
    """The page's Evidently section: a verdict comparison, its tests, its embedded report."""
    parts = [
        '<section id="evidently" class="card">',
        "<h2>Evidently report</h2>",
        f'<p class="note evidently-status" data-status="{section.status}">'
        f"{escape(section.note)}</p>",
    ]
    if section.status != "ok":
        parts.append("</section>")
        return "".join(parts)
    by_name = {c.feature: c for c in (*ours.columns, *predictions.columns)}
    rows = []
    for col in section.columns:
        mine = by_name.get(col.column)
        agree = mine is not None and mine.drifted == col.drifted
        rows.append(
            "<tr>"
            f"<td>{escape(col.column)}</td>"
            f"<td>{escape(col.method)}</td>"
            f"<td class=num>{fmt(col.score)}</td>"
            f"<td class=num>{fmt(col.threshold)}</td>"
            f"<td>{_badge(col.drifted)}</td>"
            f"<td>{_badge(mine.drifted) if mine else '–'}</td>"
            f"<td>{'yes' if agree else '<strong>no</strong>'}</td>"
            "</tr>"
        )
    parts.append(
        "<h3>Per-column verdicts: Evidently on the samples, driftline on the whole window</h3>"
        '<table class="evidently-columns"><thead><tr><th>column</th><th>Evidently method</th>'
        "<th>score</th><th>threshold</th><th>Evidently</th><th>driftline</th><th>agree</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    test_rows = "".join(
        f'<tr class="ev-{escape(t.status.lower())}"><td>{escape(t.name)}</td>'
        f"<td>{escape(t.status)}</td><td>{escape(t.description)}</td></tr>"
        for t in section.tests
    )
    parts.append(
        f"<details><summary>Evidently's tests ({len(section.tests)})</summary>"
        '<table class="evidently-tests"><thead><tr><th>test</th><th>status</th>'
        f"<th>description</th></tr></thead><tbody>{test_rows}</tbody></table></details>"
    )
    assert section.html is not None
    parts.append(
        "<h3>Evidently's own report</h3>"
        '<iframe id="evidently-frame" class="evidently-frame" title="Evidently report" '
        f'loading="eager" srcdoc="{escape(section.html, quote=True)}"></iframe>'
    )
    parts.append("</section>")
    return "".join(parts)


def _badge(drifted: bool) -> str:
    if drifted:
        return '<span class="badge drift">drift</span>'
    return '<span class="badge ok">ok</span>'
