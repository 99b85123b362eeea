"""The HTML drift report of one window: the page an on-call engineer opens from an alert.

What it shows, top to bottom: the verdict; every feature (and prediction) with its test,
statistic, threshold and decision; the drift share over the windows given; what changed
since the previous window; the data-quality table; per column, the reference against the
current distribution drawn from the binned statistics the tests used; and Evidently's
report on the window's reservoir sample when Evidently is installed.

One self-contained file: styles, plots (inline SVG) and the few lines of script are in
the page, so it can be attached to a ticket, served from any static host or opened from
disk, and it loads nothing from the network.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

import numpy as np

import monitor
from detectors.profile import CategoricalProfile, NumericProfile, Profile
from detectors.results import QualityCheck, TestResult, WindowReport
from detectors.schema import Kind, Role
from detectors.settings import P_VALUE_TESTS
from detectors.sketch import WindowSketch
from monitor.report.evidently_section import EvidentlySection, render_section, run_evidently
from monitor.report.plots import (
    SharePoint,
    bin_shares_svg,
    category_rows,
    category_svg,
    cdf_svg,
    drift_share_svg,
    fmt,
    pct,
)

# progress(description, done, total): called as the page is built, for a progress bar.
ProgressFn = Callable[[str, int, int], None]

# Windows drawn on the drift-share chart, the newest ones.
MAX_HISTORY = 200

TEST_NAMES = {
    "ks": "Kolmogorov–Smirnov",
    "chi_square": "chi-square",
    "cramer_von_mises": "Cramér–von Mises",
    "psi": "PSI",
    "jensen_shannon": "Jensen–Shannon distance",
    "wasserstein": "Wasserstein (normalised)",
    "hellinger": "Hellinger distance",
    "linf": "L∞ distance",
}


class ReportInputError(ValueError):
    """Inputs that do not belong together (another reference, another window's sketch)."""


@dataclass(frozen=True)
class _Column:
    """One tested column and where its numbers live in the profile and the sketch."""

    result: TestResult
    kind: Kind
    role: Role
    index: int  # row in the sketch's numeric or categorical arrays
    anchor: str


def hash_matches(report_hash: str, profile: Profile) -> bool:
    """Reports carry the full content hash; accept a short one (as in metric labels) too."""
    return bool(report_hash) and profile.content_hash.startswith(report_hash)


def check_inputs(report: WindowReport, profile: Profile, sketch: WindowSketch | None) -> None:
    """Refuse to draw a window against a reference or a sketch it was not judged on."""
    if not hash_matches(report.reference_hash, profile):
        raise ReportInputError(
            f"the window was judged against reference {report.reference_hash[:12]}, "
            f"not {profile.short_hash}; pass the profile the agent used"
        )
    if sketch is not None and sketch.profile.content_hash != profile.content_hash:
        raise ReportInputError("the sketch was built on another reference profile")
    names = set(profile.schema.names)
    unknown = [
        c.feature
        for c in (*report.drift.columns, *report.prediction_drift.columns)
        if c.feature not in names
    ]
    if unknown:
        raise ReportInputError(f"columns {unknown} of the report are not in the profile")


def render_report(
    report: WindowReport,
    profile: Profile,
    *,
    sketch: WindowSketch | None = None,
    previous: WindowReport | None = None,
    history: Sequence[WindowReport] = (),
    evidently: bool = True,
    evidently_note: str | None = None,
    progress: ProgressFn | None = None,
    generated_at: float | None = None,
) -> str:
    """The self-contained HTML page of ``report``.

    ``sketch`` (the window's WindowSketch) gives the current distributions and the
    reservoir sample; without it the plots show the reference alone. ``previous`` is the
    window before it (same model version and baseline) and ``history`` the windows drawn
    on the drift-share chart, ``report`` included. ``evidently=False`` leaves Evidently's
    section out (``evidently_note`` says why on the page).
    """
    check_inputs(report, profile, sketch)
    columns = _columns(report, profile)
    total = len(columns) + 2 + (1 if evidently else 0)
    done = 0

    def step(description: str) -> None:
        nonlocal done
        if progress is not None:
            progress(description, done, total)
        done += 1

    step("summary")
    warnings = _warnings(report, sketch)
    head = _header(report, warnings)
    summary = _summary(report, columns, previous)
    changes = _changes(report, previous)
    quality = _quality(report)
    chart = _history(report, history)
    articles = []
    for col in columns:
        step(f"plotting {col.result.feature}")
        articles.append(_article(col, profile, sketch, report))
    if evidently:
        step("running Evidently on the reservoir sample")
        section = run_evidently(profile, sketch, report.drift.share_threshold)
    else:
        section = EvidentlySection(
            "skipped", evidently_note or "Evidently's report was not requested for this page."
        )
    step("writing the page")
    features = [a for a, c in zip(articles, columns, strict=True) if c.role is Role.FEATURE]
    predictions = [a for a, c in zip(articles, columns, strict=True) if c.role is Role.PREDICTION]
    body = [
        head,
        _nav(bool(predictions)),
        summary,
        chart,
        changes,
        quality,
        '<section id="features" class="card"><h2>Features</h2>'
        '<label class="filter"><input type="checkbox" id="only-drifted"> only drifted columns'
        "</label>" + "".join(features) + "</section>",
    ]
    if predictions:
        body.append(
            '<section id="predictions" class="card"><h2>Predictions</h2>'
            + "".join(predictions)
            + "</section>"
        )
    body.append(render_section(section, report.drift, report.prediction_drift))
    body.append(_footer(generated_at))
    if progress is not None:
        progress("done", total, total)
    return _page(_title(report), "".join(body))


# -- the parts ------------------------------------------------------------------------------


def _columns(report: WindowReport, profile: Profile) -> list[_Column]:
    """Tested columns, drifted first (in report order otherwise)."""
    out: list[_Column] = []
    results = [*report.drift.columns, *report.prediction_drift.columns]
    for i, r in enumerate(results):
        col = profile.schema.column(r.feature)
        names = profile.numeric_names if col.kind is Kind.NUMERIC else profile.categorical_names
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", r.feature).strip("-")[:40] or "column"
        out.append(_Column(r, col.kind, col.role, names.index(r.feature), f"col-{i}-{slug}"))
    return sorted(out, key=lambda c: (c.role is not Role.FEATURE, not c.result.drifted))


def _verdict(report: WindowReport) -> tuple[str, str]:
    if report.drifted:
        return "drift", "Drift detected"
    if report.quality.breached:
        return "breach", "Data quality breached"
    return "ok", "No drift"


def when(t: float, kind: str = "time") -> str:
    """A window bound for people: UTC time, or a row offset for row-count windows."""
    if kind == "rows":
        return f"row {int(t):,}"
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return fmt(t)


def window_text(report: WindowReport) -> str:
    if report.window_kind == "rows":
        return f"rows {int(report.window_start):,}–{int(report.window_end):,}"
    start, end = when(report.window_start), when(report.window_end)
    if start[:10] == end[:10]:
        end = end[11:]
    return f"{start} – {end}"


def _title(report: WindowReport) -> str:
    return f"{_verdict(report)[1]} · {report.model} {report.model_version} · {window_text(report)}"


def _warnings(report: WindowReport, sketch: WindowSketch | None) -> list[str]:
    out = []
    if sketch is None:
        out.append(
            "No window sketch was given: the plots show the reference alone and Evidently "
            "cannot run (pass the window's sketch file)."
        )
    elif sketch.rows != report.rows:
        out.append(
            f"The sketch holds {sketch.rows:,} rows but the report counts {report.rows:,}: "
            "it may belong to another window."
        )
    if report.baseline != "reference":
        out.append(
            f"This window was tested against {escape(report.baseline)}'s window of the same "
            "period, not the reference; the plots compare it with the reference profile."
        )
    return out


def _header(report: WindowReport, warnings: list[str]) -> str:
    status, title = _verdict(report)
    d, p, q = report.drift, report.prediction_drift, report.quality
    drifted = [c.feature for c in d.columns if c.drifted]
    verdict = "<strong>drifted</strong>" if d.drifted else "no drift"
    lines = [
        f"Features: {verdict}, {d.drifted_count} of {d.tested_count} tested drifted "
        f"(share {pct(d.share)}; the set drifts at {pct(d.share_threshold)} or more"
        + (f", {escape(d.correction)} correction" if d.correction != "none" else "")
        + ")"
        + (f": <strong>{escape(', '.join(drifted))}</strong>." if drifted else "."),
    ]
    if p.columns:
        pdrifted = [c.feature for c in p.columns if c.drifted]
        lines.append(
            f"Predictions: {'<strong>drifted</strong>' if p.drifted else 'no drift'} "
            f"({p.drifted_count} of {p.tested_count} tested"
            + (f": {escape(', '.join(pdrifted))}" if pdrifted else "")
            + ")."
        )
    breaches = [f"{b.feature} {b.check} {pct(b.rate)}" for b in q.breaches]
    if q.missing_columns:
        breaches.append("missing columns: " + ", ".join(q.missing_columns))
    lines.append(
        "Data quality: "
        + (f"<strong>breached</strong> ({escape('; '.join(breaches))})." if q.breached else "ok.")
    )
    meta = [
        ("model", escape(report.model)),
        ("version", escape(report.model_version)),
        ("window", escape(window_text(report))),
        ("baseline", escape(report.baseline)),
        ("rows", f"{report.rows:,}"),
        ("late / duplicate records", f"{report.late_records:,} / {report.duplicate_records:,}"),
        ("reference", f"<code>{escape(report.reference_hash[:12])}</code>"),
        (
            "evaluated",
            escape(when(report.evaluated_at)) if report.evaluated_at is not None else "–",
        ),
    ]
    if report.exemplar_trace_ids:
        ids = ", ".join(f"<code>{escape(t)}</code>" for t in report.exemplar_trace_ids[:5])
        meta.append(("exemplar traces", ids))
    meta_html = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in meta)
    warn_html = "".join(f'<p class="warning">{w}</p>' for w in warnings)
    items = "".join(f"<li>{line}</li>" for line in lines)
    return (
        f'<header id="verdict" class="verdict {status}" data-verdict="{status}">'
        f'<p class="product">driftline window report</p><h1>{title}</h1>'
        f'<ul class="verdict-lines">{items}</ul><dl class="meta">{meta_html}</dl>{warn_html}'
        "</header>"
    )


def _nav(predictions: bool) -> str:
    links = [
        ("summary", "Summary"),
        ("history", "Drift share"),
        ("changes", "Since previous window"),
        ("quality", "Data quality"),
        ("features", "Features"),
    ]
    if predictions:
        links.append(("predictions", "Predictions"))
    links.append(("evidently", "Evidently"))
    return '<nav class="toc">' + "".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


def test_name(test: str) -> str:
    return TEST_NAMES.get(test, test)


def decision_text(r: TestResult) -> str:
    """How the verdict on a column follows from its numbers, in words."""
    if math.isnan(r.statistic):
        return "not tested: no values on one side"
    if r.mode == "calibrated":
        op = ">" if r.drifted else "≤"
        return f"statistic {fmt(r.statistic)} {op} calibrated threshold {fmt(r.threshold)}"
    if r.test in P_VALUE_TESTS:
        if r.p_value is None:
            return "not tested: no p-value"
        op = "<" if r.drifted else "≥"
        return f"p = {fmt(r.p_value, 3)} {op} {fmt(r.threshold, 3)}"
    op = "≥" if r.drifted else "<"
    return f"statistic {fmt(r.statistic)} {op} threshold {fmt(r.threshold)}"


def _badge(drifted: bool, untested: bool = False) -> str:
    if untested:
        return '<span class="badge untested">not tested</span>'
    if drifted:
        return '<span class="badge drift">drift</span>'
    return '<span class="badge ok">ok</span>'


def _mode_text(r: TestResult) -> str:
    text = escape(r.mode)
    if r.error_bound is not None:
        bound = f"+{fmt(r.error_bound, 2)}" if r.test == "ks" else f"±{fmt(r.error_bound, 2)}"
        text += f" <span class=bound>({bound})</span>"
    source = getattr(r, "threshold_source", None)
    if source:
        text += f" <span class=bound>threshold: {escape(str(source))}</span>"
    return text


def _summary(report: WindowReport, columns: list[_Column], previous: WindowReport | None) -> str:
    before: dict[str, TestResult] = {}
    if previous is not None:
        before = {c.feature: c for c in _results(previous)}
    rows = []
    for col in columns:
        r = col.result
        untested = math.isnan(r.statistic)
        prev = before.get(r.feature)
        if prev is None:
            change = "–"
        elif prev.test != r.test:
            change = f"test was {escape(prev.test)}"
        else:
            delta = r.statistic - prev.statistic
            change = ("+" if delta > 0 else "") + fmt(delta, 3)
            if prev.drifted != r.drifted:
                change += " (" + ("new drift" if r.drifted else "recovered") + ")"
        role = "prediction" if col.role is Role.PREDICTION else "feature"
        rows.append(
            f'<tr class="{"drifted" if r.drifted else ""}" data-feature="{escape(r.feature)}">'
            f'<td><a href="#{col.anchor}">{escape(r.feature)}</a></td>'
            f"<td>{col.kind.value} {role}</td>"
            f"<td>{escape(test_name(r.test))}</td>"
            f"<td class=num>{fmt(r.statistic)}</td>"
            f"<td class=num>{fmt(r.p_value, 3) if r.p_value is not None else '–'}</td>"
            f"<td class=num>{fmt(r.threshold)}</td>"
            f"<td>{_mode_text(r)}</td>"
            f"<td>{_badge(r.drifted, untested)}</td>"
            f"<td class=num>{change}</td>"
            "</tr>"
        )
    return (
        '<section id="summary" class="card"><h2>Drift by column</h2>'
        '<table class="summary"><thead><tr><th>column</th><th>kind</th><th>test</th>'
        "<th>statistic</th><th>p-value</th><th>threshold</th><th>mode</th><th>verdict</th>"
        "<th>change since previous</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        '<p class="note">p-value tests (KS, chi-square, Cramér–von Mises) drift when p is below '
        "the threshold; distances when the statistic reaches it; calibrated thresholds were "
        "measured on the reference for windows of this size. Binned statistics carry their "
        "error bound against the exact value.</p></section>"
    )


def _history(report: WindowReport, history: Sequence[WindowReport]) -> str:
    runs = list(history)[-MAX_HISTORY:]
    if len(runs) < 2:
        return (
            '<section id="history" class="card"><h2>Drift share over windows</h2>'
            '<p class="note">Only this window is known; give more reports to see a trend.</p>'
            "</section>"
        )
    times = [r.window_start for r in runs]
    same_day = when(times[0])[:10] == when(times[-1])[:10]

    def label(r: WindowReport) -> str:
        if r.window_kind == "rows":
            return f"{int(r.window_start):,}"
        text = when(r.window_start)
        return text[11:16] if same_day else text[5:16]

    points = [
        SharePoint(
            label=label(r),
            share=r.drift.share,
            drifted=r.drift.drifted,
            selected=r is report or r == report,
            breached=r.quality.breached,
        )
        for r in runs
    ]
    drifted = sum(r.drift.drifted for r in runs)
    svg = drift_share_svg(
        points,
        report.drift.share_threshold,
        f"drift share of the last {len(runs)} windows of {report.model_version}",
    )
    return (
        '<section id="history" class="card"><h2>Drift share over windows</h2>'
        f"{svg}<p class=note>{len(runs)} windows of {escape(report.model_version)} "
        f"(baseline {escape(report.baseline)}), {drifted} with feature drift; this window is "
        "ringed.</p></section>"
    )


def _changes(report: WindowReport, previous: WindowReport | None) -> str:
    head = '<section id="changes" class="card"><h2>Since the previous window</h2>'
    if previous is None:
        return (
            head + '<p class="note no-previous">No earlier window of this model version and '
            "baseline in the reports given.</p></section>"
        )
    was, now = _verdict(previous)[1], _verdict(report)[1]
    items = [
        f"Previous window {escape(window_text(previous))}: {escape(was)} → now {escape(now)}.",
        f"Feature drift share {pct(previous.drift.share)} → {pct(report.drift.share)}; rows "
        f"{previous.rows:,} → {report.rows:,}.",
    ]
    old = {c.feature: c for c in _results(previous)}
    new = {c.feature: c for c in _results(report)}
    started = [f for f, c in new.items() if c.drifted and not (f in old and old[f].drifted)]
    stopped = [f for f, c in old.items() if c.drifted and not (f in new and new[f].drifted)]
    still = [f for f, c in new.items() if c.drifted and f in old and old[f].drifted]
    for label, names in (
        ("Started drifting", started),
        ("Stopped drifting", stopped),
        ("Still drifting", still),
    ):
        if names:
            items.append(f"{label}: <strong>{escape(', '.join(names))}</strong>.")
    old_b = {(b.feature, b.check): b for b in previous.quality.breaches}
    new_b = {(b.feature, b.check): b for b in report.quality.breaches}
    opened = [f"{f} {c} {pct(new_b[(f, c)].rate)}" for f, c in new_b if (f, c) not in old_b]
    closed = [f"{f} {c}" for f, c in old_b if (f, c) not in new_b]
    if opened:
        items.append(f"New quality breaches: <strong>{escape('; '.join(opened))}</strong>.")
    if closed:
        items.append(f"Resolved quality breaches: {escape('; '.join(closed))}.")
    if previous.reference_hash != report.reference_hash:
        items.append("The reference profile changed between the two windows.")
    if not (started or stopped or opened or closed):
        items.append("No column changed its verdict.")
    rows = []
    ranked = sorted(
        (f for f in new if f in old),
        key=lambda f: -abs(_relative(new[f]) - _relative(old[f])),
    )
    for f in ranked:
        a, b = old[f], new[f]
        same = a.test == b.test
        delta = b.statistic - a.statistic if same else float("nan")
        rows.append(
            f'<tr data-feature="{escape(f)}"><td>{escape(f)}</td><td>{escape(test_name(b.test))}'
            + ("" if same else f" (was {escape(test_name(a.test))})")
            + f"</td><td class=num>{fmt(a.statistic)}</td><td class=num>{fmt(b.statistic)}</td>"
            f"<td class=num>{fmt(delta, 3) if same else '–'}</td>"
            f"<td>{_badge(a.drifted)}</td><td>{_badge(b.drifted)}</td></tr>"
        )
    return (
        head
        + "<ul>"
        + "".join(f"<li>{i}</li>" for i in items)
        + "</ul>"
        + '<table class="changes"><thead><tr><th>column</th><th>test</th><th>previous</th>'
        "<th>now</th><th>change</th><th>was</th><th>is</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _results(report: WindowReport) -> tuple[TestResult, ...]:
    return (*report.drift.columns, *report.prediction_drift.columns)


def _relative(r: TestResult) -> float:
    """How far a column is towards its threshold, comparable across tests (for sorting)."""
    if math.isnan(r.statistic):
        return 0.0
    if r.test in P_VALUE_TESTS and r.p_value is not None and r.mode != "calibrated":
        surprise = -math.log10(max(r.p_value, 1e-300))
        return surprise / max(-math.log10(max(r.threshold, 1e-300)), 1e-9)
    return r.statistic / r.threshold if r.threshold else 0.0


_BREACHED = '<span class="badge breach">breached</span>'


def _quality(report: WindowReport) -> str:
    q = report.quality
    checks: list[QualityCheck] = sorted(q.checks, key=lambda c: (not c.breached, -c.rate))
    head = (
        "<thead><tr><th>column</th><th>check</th><th>rate</th><th>count</th>"
        "<th>reference</th><th>limit</th><th>status</th></tr></thead>"
    )

    def row(c: QualityCheck) -> str:
        return (
            f'<tr class="{"breached" if c.breached else ("zero" if c.rate == 0 else "")}" '
            f'data-feature="{escape(c.feature)}" data-check="{escape(c.check)}">'
            f"<td>{escape(c.feature)}</td><td>{escape(c.check.replace('_', ' '))}</td>"
            f"<td class=num>{pct(c.rate)}</td><td class=num>{c.count:,}</td>"
            f"<td class=num>{pct(c.reference_rate)}</td>"
            f"<td class=num>{pct(c.reference_rate + c.threshold)}</td>"
            f"<td>{_BREACHED if c.breached else 'ok'}</td></tr>"
        )

    # Checks at 0% with a reference at 0% say nothing new: folded away, still listed.
    quiet = [c for c in checks if not c.breached and c.rate == 0 and c.reference_rate == 0]
    shown = [c for c in checks if c not in quiet]
    parts = [
        '<section id="quality" class="card"><h2>Data quality</h2>'
        f"<p class=note>{q.rows:,} rows. A check is breached when its rate exceeds the "
        "reference's rate plus the check's threshold (the limit).</p>"
    ]
    if shown:
        rows = "".join(row(c) for c in shown)
        parts.append(f'<table class="quality">{head}<tbody>{rows}</tbody></table>')
    if quiet:
        rows = "".join(row(c) for c in quiet)
        parts.append(
            f"<details><summary>{len(quiet)} more checks at 0%</summary>"
            f'<table class="quality quiet">{head}<tbody>{rows}</tbody></table></details>'
        )
    if q.missing_columns:
        parts.append(
            "<p class=warning>Columns absent from every record: "
            f"<strong>{escape(', '.join(q.missing_columns))}</strong>.</p>"
        )
    if q.extra_columns:
        parts.append(
            "<p class=note>Columns the schema does not know: "
            f"{escape(', '.join(q.extra_columns))}.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _article(
    col: _Column, profile: Profile, sketch: WindowSketch | None, report: WindowReport
) -> str:
    r = col.result
    untested = math.isnan(r.statistic)
    name = r.feature
    role = "prediction" if col.role is Role.PREDICTION else "feature"
    label = f"{name}: {test_name(r.test)} {fmt(r.statistic)}, threshold {fmt(r.threshold)}"
    if col.kind is Kind.NUMERIC:
        plots, stats = _numeric_parts(profile.numeric[name], col.index, sketch, label)
    else:
        plots, stats = _categorical_parts(profile.categorical[name], col.index, sketch, label)
    p_value = f" · p-value {fmt(r.p_value, 3)}" if r.p_value is not None else ""
    bound = ""
    if r.error_bound is not None:
        bound = f" · error bound {fmt(r.error_bound, 2)}"
    return (
        f'<article id="{col.anchor}" class="feature{" drifted" if r.drifted else ""}" '
        f'data-feature="{escape(name)}" data-kind="{col.kind.value}" data-role="{role}">'
        f"<h3>{escape(name)} {_badge(r.drifted, untested)} "
        f'<span class="kind">{col.kind.value} {role}</span></h3>'
        f'<p class="test-line"><strong>{escape(test_name(r.test))}</strong> '
        f'<span class="stat" data-statistic="{fmt(r.statistic)}">{fmt(r.statistic)}</span>'
        f'{p_value} · threshold <span class="thr" data-threshold="{fmt(r.threshold)}">'
        f"{fmt(r.threshold)}</span> · {escape(r.mode)}{bound} — {escape(decision_text(r))}</p>"
        f'<div class="plots">{plots}</div>{stats}</article>'
    )


def _stats_table(rows: list[tuple[str, str, str]], has_current: bool) -> str:
    """Summary numbers, one column per quantity, a row for each side."""
    head = "<th></th>" + "".join(f"<th>{k}</th>" for k, _, _ in rows)
    body = "<tr><th>reference</th>" + "".join(f"<td class=num>{a}</td>" for _, a, _ in rows)
    body += "</tr>"
    if has_current:
        body += "<tr><th>current</th>" + "".join(f"<td class=num>{b}</td>" for _, _, b in rows)
        body += "</tr>"
    return f'<table class="stats"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _numeric_parts(
    np_: NumericProfile, j: int, sketch: WindowSketch | None, label: str
) -> tuple[str, str]:
    ref_counts = np_.counts
    cur_counts = sketch.num_counts[j, : np_.bins] if sketch is not None else None
    cur_range = None
    if sketch is not None and sketch.num_count[j] > 0:
        cur_range = (float(sketch.num_min[j]), float(sketch.num_max[j]))
    plots = bin_shares_svg(np_.edges, ref_counts, cur_counts, label) + cdf_svg(
        np_.edges, ref_counts, cur_counts, (np_.min, np_.max), cur_range, label
    )
    ref_rows = max(np_.rows, 1)
    rows: list[tuple[str, str, str]]
    if sketch is not None:
        n = max(sketch.rows, 1)
        mean, std = sketch.mean()[j], sketch.std()[j]
        count = int(sketch.num_count[j])
        rows = [
            ("values", f"{np_.count:,}", f"{count:,}"),
            ("missing", pct(np_.missing / ref_rows), pct(sketch.num_missing[j] / n)),
            ("mean", fmt(np_.mean), fmt(float(mean))),
            ("std", fmt(np_.std), fmt(float(std))),
            ("min", fmt(np_.min), fmt(float(sketch.num_min[j])) if count else "–"),
            ("max", fmt(np_.max), fmt(float(sketch.num_max[j])) if count else "–"),
            ("below ref. min", "0", f"{int(sketch.num_below[j]):,}"),
            ("above ref. max", "0", f"{int(sketch.num_above[j]):,}"),
            ("non-finite", f"{np_.non_finite:,}", f"{int(sketch.num_non_finite[j]):,}"),
            ("type errors", "0", f"{int(sketch.num_type_error[j]):,}"),
        ]
    else:
        rows = [
            ("values", f"{np_.count:,}", ""),
            ("missing", pct(np_.missing / ref_rows), ""),
            ("mean", fmt(np_.mean), ""),
            ("std", fmt(np_.std), ""),
            ("min", fmt(np_.min), ""),
            ("max", fmt(np_.max), ""),
        ]
    return plots, _stats_table(rows, sketch is not None)


def _categorical_parts(
    cp: CategoricalProfile, j: int, sketch: WindowSketch | None, label: str
) -> tuple[str, str]:
    cur_counts = sketch.cat_counts[j] if sketch is not None else None
    rows_ = category_rows(cp.vocabulary, cp.counts, cur_counts)
    plots = category_svg(rows_, label)
    ref_total = max(int(cp.counts.sum()), 1)
    ref_rows = max(cp.rows, 1)
    rows: list[tuple[str, str, str]]
    if sketch is not None and cur_counts is not None:
        n = max(sketch.rows, 1)
        total = max(int(cur_counts.sum()), 1)
        seen = int(np.count_nonzero(cur_counts[: len(cp.vocabulary)]))
        rows = [
            ("values", f"{cp.count:,}", f"{int(cur_counts.sum()):,}"),
            ("missing", pct(cp.missing / ref_rows), pct(sketch.cat_missing[j] / n)),
            ("top categories present", f"{len(cp.vocabulary):,}", f"{seen:,}"),
            ("other (rare)", pct(cp.counts[-2] / ref_total), pct(cur_counts[-2] / total)),
            ("unseen", "0%", pct(cur_counts[-1] / total)),
        ]
    else:
        rows = [
            ("values", f"{cp.count:,}", ""),
            ("missing", pct(cp.missing / ref_rows), ""),
            ("top categories", f"{len(cp.vocabulary):,}", ""),
        ]
    return plots, _stats_table(rows, sketch is not None)


def _footer(generated_at: float | None) -> str:
    t = time.time() if generated_at is None else generated_at
    return (
        f"<footer>Generated by driftline {escape(monitor.__version__)} at {escape(when(t))}. "
        "Plots are drawn from the binned statistics of the whole window; Evidently's part from "
        "row samples.</footer>"
    )


# -- the page -------------------------------------------------------------------------------

_CSS = """
:root{--ref:#9aa5b1;--cur:#2563eb;--drift:#b91c1c;--breach:#b45309;--ok:#15803d;
--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1240px;margin:0 auto;padding:16px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px;
margin:14px 0}
h1{margin:2px 0 8px;font-size:26px}h2{margin:0 0 10px;font-size:18px}
h3{margin:18px 0 6px;font-size:15px}
.verdict{border-radius:8px;padding:16px 20px;color:#fff}
.verdict.drift{background:var(--drift)}.verdict.breach{background:var(--breach)}
.verdict.ok{background:var(--ok)}
.verdict .product{margin:0;opacity:.85;font-size:12px;text-transform:uppercase;
letter-spacing:.06em}
.verdict-lines{margin:0 0 10px;padding-left:18px}
.meta{display:flex;flex-wrap:wrap;gap:4px 22px;margin:0}
.meta div{min-width:120px}.meta dt{font-size:11px;opacity:.8;text-transform:uppercase}
.meta dd{margin:0}
.verdict code{background:rgba(255,255,255,.18);padding:0 4px;border-radius:3px}
.warning{background:#fef3c7;color:#78350f;border-radius:6px;padding:6px 10px;margin:8px 0 0}
.toc{display:flex;flex-wrap:wrap;gap:6px 16px;margin:12px 2px}
.toc a{color:var(--cur);text-decoration:none}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;color:var(--muted);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.drifted td:first-child,tr.breached td:first-child{border-left:3px solid var(--drift)}
tr.zero td{color:var(--muted)}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.badge.drift{background:#fee2e2;color:var(--drift)}.badge.ok{background:#dcfce7;color:var(--ok)}
.badge.breach{background:#ffedd5;color:var(--breach)}
.badge.untested{background:#f3f4f6;color:var(--muted)}
.bound{color:var(--muted);font-size:12px}
.note{color:var(--muted);font-size:12.5px}
.feature{border-top:1px solid var(--line);padding-top:4px}
.feature .kind{color:var(--muted);font-weight:400;font-size:12px}
.test-line{margin:4px 0 8px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:10px}
.stats{margin-top:6px}.stats thead th{text-align:right}
.stats tbody th{font-weight:500;color:var(--muted);width:90px}
.filter{float:right;font-size:13px;color:var(--muted)}
body.only-drifted .feature:not(.drifted){display:none}
svg.plot{width:100%;height:auto;background:#fff}
svg text{font-size:11px;fill:#374151}
svg .tick{fill:var(--muted);font-size:10px}svg .cap{fill:var(--muted);font-size:10.5px}
svg .note{fill:var(--ink);font-size:10.5px}svg .value{font-size:10px;fill:#374151}
svg .cat-label.other,svg .cat-label.unseen,svg .cat-label.rest{font-style:italic}
svg .grid{stroke:#eef0f3}svg .axis{stroke:#9ca3af}
svg .ref{fill:var(--ref)}svg rect.cur{fill:var(--cur)}svg rect.cur.new{fill:var(--drift)}
svg rect.oor{fill:#fdf2f2}
svg .cur-line{fill:none;stroke:var(--cur);stroke-width:1.6}
svg .ref-line{fill:none;stroke:#6b7280;stroke-width:1.6}
svg .between{fill:var(--cur);fill-opacity:.12;stroke:none}
svg .gap{stroke:var(--drift);stroke-width:2}
svg .threshold{stroke:var(--drift);stroke-dasharray:5 4}
svg .share-line{fill:none;stroke:#9ca3af}
svg .pt.drift{fill:var(--drift)}svg .pt.ok{fill:var(--ok)}svg .pt.breach{fill:var(--breach)}
svg .selected{fill:none;stroke:var(--ink);stroke-width:1.5}
.evidently-frame{width:100%;height:900px;border:1px solid var(--line);border-radius:6px}
footer{color:var(--muted);font-size:12px;margin:20px 0 40px}
"""

# Sizes Evidently's frame to its content (same-origin srcdoc) and filters the columns.
_SCRIPT = """
(function () {
  var box = document.getElementById("only-drifted");
  if (box) {
    box.addEventListener("change", function () {
      document.body.classList.toggle("only-drifted", box.checked);
    });
  }
  var frame = document.getElementById("evidently-frame");
  if (!frame) return;
  function fit() {
    try {
      var doc = frame.contentDocument;
      var h = doc && doc.documentElement ? doc.documentElement.scrollHeight : 0;
      if (h > 0) frame.style.height = (h + 4) + "px";
    } catch (e) { /* not same-origin: the frame keeps its fixed height and scrolls */ }
  }
  frame.addEventListener("load", function () {
    fit();
    try {
      if (window.ResizeObserver) new ResizeObserver(fit).observe(frame.contentDocument.body);
    } catch (e) { /* as above */ }
  });
})();
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Nothing may be fetched: the page is complete as it is.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
        "font-src data:; frame-src 'self' about: data:\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main><script>{_SCRIPT}</script></body></html>"
    )
