"""The report's attribution section: the model's reasons on the window against the
reference (docs/explainability.md): importance bars, each feature's SHAP distribution
against the reference's, and the drifted features ranked by impact."""

from __future__ import annotations

from html import escape

import numpy as np

from detectors.profile import NumericProfile, Profile
from detectors.results import AttributionColumn, AttributionResult, WindowReport
from monitor.report.plots import WIDTH, _svg, _text, fmt

DECILES = np.linspace(0.0, 1.0, 11)
_ROW = 22  # pixels per bar pair / quantile strip


def reference_quantiles(dist: NumericProfile) -> np.ndarray:
    """The reference SHAP values at 0, 10, ..., 100 %, read from the binned distribution
    (its edges are reference quantiles; linear between them)."""
    cdf = np.concatenate(([0.0], np.cumsum(dist.counts[1:-1]) / max(dist.count, 1)))
    points = np.concatenate(([dist.min], dist.edges[1:]))
    return np.interp(DECILES, cdf[: len(points)], points)


def section(report: WindowReport, profile: Profile) -> str:
    """The ``<section>``; empty when neither the window nor the profile has attributions."""
    result = report.attribution
    if result is None:
        if profile.attribution is None:
            return ""
        return (
            '<section id="attribution" class="card"><h2>Attributions</h2><p class="note">'
            "The reference has the model's attributions, this window has none: the agent "
            "had no <code>explain.model</code> (nor <code>explain.source: record</code>), or "
            "skipped the window (budget, too few rows; "
            "<code>driftline_attribution_windows_skipped_total</code>).</p></section>"
        )
    verdict = "drift" if result.drifted else "ok"
    ranking = "drifted" if result.ndcg < result.ndcg_threshold else "holds"
    head = (
        f'<section id="attribution" class="card"><h2>Attributions <span class="badge '
        f'{verdict}">{"attribution drift" if result.drifted else "no attribution drift"}'
        f"</span></h2><p>nDCG of the feature ranking by mean |SHAP| {fmt(result.ndcg, 3)} "
        f"against a threshold of {fmt(result.ndcg_threshold, 3)}: the ranking {ranking}. "
        f"{result.rows:,} rows explained ({escape(result.method)}, {escape(result.device)}, "
        f"{result.seconds:.2f} s).</p>"
    )
    parts = [head, _impact(result), importance_svg(result.columns)]
    dists = profile.attribution.distributions if profile.attribution is not None else {}
    strips = [
        quantile_svg(c, reference_quantiles(dists[c.feature]))
        for c in result.columns
        if c.quantiles and c.feature in dists
    ]
    if strips:
        parts.append(
            "<h3>SHAP distributions, reference against window</h3>"
            '<p class="note">Each feature\'s SHAP values: the line spans 0–100 %, the bar '
            "10–90 %, the tick the median. Grey: reference; blue: this window.</p>"
            '<div class="plots">' + "".join(strips) + "</div>"
        )
    parts.append(_table(result))
    parts.append("</section>")
    return "".join(parts)


def _impact(result: AttributionResult) -> str:
    if not result.impact:
        return '<p class="note">No feature drifted in this window.</p>'
    rows = "".join(
        f"<tr><td>{escape(i.feature)}</td><td>{fmt(i.score, 3)}</td><td>{fmt(i.drift, 3)}</td>"
        f"<td>{i.importance * 100:.1f} %</td><td>{fmt(i.prediction_shift, 3)}</td></tr>"
        for i in result.impact
    )
    drivers = ", ".join(escape(f) for f in result.prediction_drivers) or "none"
    return (
        "<h3>Drifted features by impact</h3><table><thead><tr><th>feature</th><th>score</th>"
        "<th>drift (× threshold)</th><th>importance</th><th>share of the output's change</th>"
        f"</tr></thead><tbody>{rows}</tbody></table><p>Features whose attributions moved the "
        f"model's output: <b>{drivers}</b>.</p>"
    )


def importance_svg(columns: tuple[AttributionColumn, ...]) -> str:
    """Mean |SHAP| per feature, reference and window side by side, most important first."""
    cols = sorted(columns, key=lambda c: -c.reference_mean_abs)
    top = max([c.reference_mean_abs for c in cols] + [c.window_mean_abs for c in cols] + [1e-12])
    left, right = 150, WIDTH - 70
    body = []
    for k, c in enumerate(cols):
        y = 24 + k * _ROW
        body.append(_text(left - 6, y + 12, c.feature, "cap", "end"))
        for j, (value, cls) in enumerate(
            ((c.reference_mean_abs, "ref"), (c.window_mean_abs, "cur"))
        ):
            w = max(0.0, value) / top * (right - left)
            body.append(
                f'<rect class="{cls}" x="{left}" y="{y + j * 8:.1f}" width="{w:.1f}" height="7"/>'
            )
        mark = " ▲" if c.drifted else ""
        body.append(_text(right + 4, y + 12, f"{fmt(c.change, 3)}{mark}", "value"))
    body.append(_text(left, 14, "mean |SHAP|: reference (grey), window (blue); change", "cap"))
    height = 30 + len(cols) * _ROW
    return _svg("mean |SHAP| per feature, reference and window", height, body, "importance")


def quantile_svg(column: AttributionColumn, reference: np.ndarray) -> str:
    """One feature's SHAP deciles on the reference and on the window."""
    window = np.asarray(column.quantiles, dtype=np.float64)
    both = np.concatenate([reference, window])
    lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
    span = (hi - lo) or 1.0
    left, right = 70, WIDTH - 20

    def x(v: float) -> float:
        return left + (v - lo) / span * (right - left)

    body = [_text(4, 14, column.feature + (" (drifted)" if column.drifted else ""), "cap")]
    for k, (q, cls, name) in enumerate(
        ((reference, "ref", "reference"), (window, "cur", "window"))
    ):
        y = 26 + k * _ROW
        body.append(_text(left - 6, y + 8, name, "tick", "end"))
        body.append(
            f'<line class="{cls}-line" x1="{x(q[0]):.1f}" x2="{x(q[-1]):.1f}" '
            f'y1="{y + 4}" y2="{y + 4}"/>'
        )
        body.append(
            f'<rect class="{cls}" x="{x(q[1]):.1f}" y="{y}" '
            f'width="{max(x(q[9]) - x(q[1]), 1.0):.1f}" height="9"/>'
        )
        body.append(
            f'<line class="gap" x1="{x(q[5]):.1f}" x2="{x(q[5]):.1f}" y1="{y - 2}" y2="{y + 11}"/>'
        )
    body.append(_text(left, 26 + 2 * _ROW + 4, fmt(lo, 3), "tick"))
    body.append(_text(right, 26 + 2 * _ROW + 4, fmt(hi, 3), "tick", "end"))
    return _svg(f"SHAP values of {column.feature}", 26 + 2 * _ROW + 10, body, "shap-quantiles")


def _table(result: AttributionResult) -> str:
    def row(c: AttributionColumn) -> str:
        klass = ' class="drifted"' if c.drifted else ""
        p = "—" if c.p_value is None else fmt(c.p_value, 3)
        return (
            f"<tr{klass}><td>{escape(c.feature)}</td><td>{fmt(c.reference_mean_abs, 3)}</td>"
            f"<td>{fmt(c.window_mean_abs, 3)}</td><td>{fmt(c.change, 3)} "
            f'<span class="bound">[{fmt(c.change_low, 3)}, {fmt(c.change_high, 3)}]</span></td>'
            f"<td>{fmt(c.mean_shift, 3)} "
            f'<span class="bound">[{fmt(c.mean_shift_low, 3)}, {fmt(c.mean_shift_high, 3)}]'
            f"</span></td><td>{escape(c.test)} {fmt(c.statistic, 3)} (p {p})</td>"
            f"<td>{c.share * 100:.1f} %</td><td>{'yes' if c.drifted else 'no'}</td></tr>"
        )

    return (
        "<h3>Per feature</h3><table><thead><tr><th>feature</th><th>reference mean |SHAP|</th>"
        "<th>window</th><th>change [95 %]</th><th>mean SHAP shift [95 %]</th>"
        "<th>distribution test</th><th>W1 share</th><th>drifted</th></tr></thead><tbody>"
        + "".join(row(c) for c in result.columns)
        + '</tbody></table><p class="note">A feature\'s attributions drifted when its SHAP '
        "distribution test flagged it and an interval lies beyond the material-change margin "
        "(explain.min_share of the total reference attribution).</p>"
    )
