"""The report's performance section (docs/performance.md): realized metrics with their
intervals, the label-free estimates beside them with band and threshold, label coverage,
and business KPIs by prediction decile."""

from __future__ import annotations

from html import escape

from detectors.performance.results import PerformanceResult
from detectors.profile import Profile
from detectors.results import WindowReport
from monitor.report.plots import fmt, pct


def section(report: WindowReport, profile: Profile) -> str:
    """The ``<section>``; empty when neither the window nor the profile has performance."""
    perf = report.performance
    if perf is None:
        if profile.performance is None:
            return ""
        return (
            '<section id="performance" class="card"><h2>Model performance</h2><p class="note">'
            "The reference learnt from labels, but this window has no performance block "
            "(a report written before the agent had it).</p></section>"
        )
    alert = any(e.alert for e in perf.estimated)
    badge = (
        '<span class="badge drift">estimate beyond threshold</span>'
        if alert
        else '<span class="badge ok">estimates within thresholds</span>'
    )
    revised = (
        " This block was revised: labels arrived after the window closed." if perf.revised else ""
    )
    head = (
        f'<section id="performance" class="card"><h2>Model performance {badge}</h2>'
        f"<p>{perf.labeled_rows:,} of {report.rows:,} predictions have a label "
        f"(coverage {pct(perf.coverage)}).{revised}</p>"
    )
    return "".join([head, _metrics(perf), _kpis(perf), "</section>"])


def _metrics(perf: PerformanceResult) -> str:
    realized = {r.metric: r for r in perf.realized}
    estimated = {e.metric: e for e in perf.estimated}
    names = list(dict.fromkeys([*estimated, *realized]))
    if not names:
        return '<p class="note">No prediction in this window had a usable score.</p>'
    rows = []
    for name in names:
        r, e = realized.get(name), estimated.get(name)
        real = f"{fmt(r.value, 4)} <small>[{fmt(r.low, 3)}, {fmt(r.high, 3)}]</small>" if r else "—"
        if e is not None:
            cls = ' class="drifted"' if e.alert else ""
            est = (
                f"<td{cls}>{fmt(e.value, 4)} <small>[{fmt(e.low, 3)}, {fmt(e.high, 3)}]</small>"
                f"</td><td>{escape(e.method)}</td><td>{fmt(e.threshold, 4)}</td>"
            )
        else:
            est = "<td>—</td><td></td><td></td>"
        rows.append(f"<tr><td>{escape(name)}</td><td>{real}</td>{est}</tr>")
    return (
        "<table><thead><tr><th>metric</th><th>realized [95 % interval]</th>"
        "<th>estimated [95 % band]</th><th>method</th><th>alert threshold</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">Realized metrics are measured on the labelled rows; estimates come '
        "from the predictions alone (CBPE for classifiers, DLE for regressors). An estimate "
        "that holds while the realized value falls is concept drift.</p>"
    )


def _kpis(perf: PerformanceResult) -> str:
    if not perf.kpis:
        return ""
    rows = []
    for k in perf.kpis:
        deciles = " ".join(fmt(v, 3) for v in k.by_decile) or "—"
        rows.append(
            f"<tr><td>{escape(k.name)}</td><td>{fmt(k.mean, 4)}</td>"
            f"<td>{fmt(k.correlation_with_prediction, 3)}</td><td>{k.rows:,}</td>"
            f"<td><small>{deciles}</small></td></tr>"
        )
    return (
        "<h3>Business KPIs</h3><table><thead><tr><th>KPI</th><th>mean</th>"
        "<th>correlation with the prediction</th><th>rows</th>"
        "<th>mean by prediction decile (1 to 10)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
