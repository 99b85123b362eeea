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
from collections.abc import Callable, Sequence
from html import escape

from detectors.profile import Profile
from detectors.results import QualityCheck, TestResult, WindowReport
from detectors.schema import Kind, Role
from detectors.settings import P_VALUE_TESTS
from detectors.sketch import WindowSketch
from monitor.report.attribution import section as attribution_section
from monitor.report.columns import (
    _article,
    _Column,
)
from monitor.report.evidently_section import EvidentlySection, render_section, run_evidently
from monitor.report.multivariate import section as multivariate_section
from monitor.report.page import _BREACHED, _badge, _footer, _page
from monitor.report.performance import section as performance_section
from monitor.report.plots import (
    SharePoint,
    drift_share_svg,
    fmt,
    pct,
)
from monitor.report.verdict import headline
from monitor.report.wording import (
    EFFECT_NOTE,
    SEQUENTIAL_NOTE,
    effect_text,
    test_name,
    when,
)

# progress(description, done, total): called as the page is built, for a progress bar.
ProgressFn = Callable[[str, int, int], None]

# Windows drawn on the drift-share chart, the newest ones.
MAX_HISTORY = 200


class ReportInputError(ValueError):
    """Inputs that do not belong together (another reference, another window's sketch)."""


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
    # sections that are empty when neither the window nor the profile has the block
    optional = {
        "performance": performance_section(report, profile),
        "attribution": attribution_section(report, profile),
        "multivariate": multivariate_section(report, profile, sketch),
    }
    body = [
        head,
        _nav(bool(predictions), {k for k, html in optional.items() if html}),
        summary,
        chart,
        changes,
        quality,
        *optional.values(),
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
    """(status, headline): the headline names what drifted (monitor/report/verdict.py),
    so it agrees with the features, predictions and quality lines under it."""
    status = "drift" if report.drifted else "breach" if report.quality.breached else "ok"
    return status, headline(report)


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


def _nav(predictions: bool, optional: set[str]) -> str:
    """Links to the page's sections; ``optional`` names the optional ones it has, so no
    link points at a section that was left out."""
    links = [
        ("summary", "Summary"),
        ("history", "Drift share"),
        ("changes", "Since previous window"),
        ("quality", "Data quality"),
    ]
    links += [
        (a, t)
        for a, t in (
            ("performance", "Performance"),
            ("attribution", "Attributions"),
            ("multivariate", "Multivariate"),
        )
        if a in optional
    ]
    links.append(("features", "Features"))
    if predictions:
        links.append(("predictions", "Predictions"))
    links.append(("evidently", "Evidently"))
    return '<nav class="toc">' + "".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


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
            f"<td class=num>{effect_text(r)}</td>"
            f"<td>{_mode_text(r)}</td>"
            f"<td>{_badge(r.drifted, untested)}</td>"
            f"<td class=num>{change}</td>"
            "</tr>"
        )
    return (
        '<section id="summary" class="card"><h2>Drift by column</h2>'
        '<table class="summary"><thead><tr><th>column</th><th>kind</th><th>test</th>'
        "<th>statistic</th><th>p-value</th><th>threshold</th><th>effect [interval]</th>"
        "<th>mode</th><th>verdict</th>"
        "<th>change since previous</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        '<p class="note">p-value tests (KS, chi-square, Cramér–von Mises) drift when p is below '
        "the threshold, which the multiple-testing correction sets; calibrated thresholds were "
        "measured on the reference for windows of this size. "
        f"{escape(EFFECT_NOTE)} {escape(SEQUENTIAL_NOTE)}</p></section>"
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


# -- the page -------------------------------------------------------------------------------
