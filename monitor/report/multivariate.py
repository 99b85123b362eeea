"""The report's multivariate section: the row-level tests' verdict, each test's result,
the features that separate the window from the reference and, for the two strongest,
a scatter of the reference's sample rows against the window's reservoir rows — a
correlation change shows as a tilted cloud (docs/configuration.md, ``multivariate:``)."""

from __future__ import annotations

from html import escape

import numpy as np

from detectors.multivariate.result import MultivariateResult
from detectors.profile import Profile
from detectors.results import WindowReport
from detectors.sketch import WindowSketch
from monitor.report.plots import _svg, _text, fmt

POINTS = 400  # per side in the scatter
_SIZE = 320
_PAD = 36


def section(report: WindowReport, profile: Profile, sketch: WindowSketch | None) -> str:
    """The ``<section>``; a note when the tests were skipped, empty when they are off."""
    result = report.multivariate
    if result is None:
        if report.multivariate_skipped_reason is None:
            return ""
        return (
            '<section id="multivariate" class="card"><h2>Multivariate</h2><p class="note">'
            f"The row-level tests skipped this window: {escape(report.multivariate_skipped_reason)}"
            " (<code>driftline_multivariate_windows_skipped_total</code>).</p></section>"
        )
    verdict = "drift" if result.drifted else "ok"
    badge = "multivariate drift" if result.drifted else "no multivariate drift"
    parts = [
        f'<section id="multivariate" class="card"><h2>Multivariate <span class="badge '
        f'{verdict}">{badge}</span></h2>',
        _summary(result),
        _tests(result),
    ]
    if result.sequential is not None:
        s = result.sequential
        parts.append(
            "<p>The online MMD detector fired in this window at "
            f"{fmt(s.detected_at, 12)} (MMD² {fmt(s.statistic, 4)} over its threshold "
            f"{fmt(s.threshold, 4)}).</p>"
        )
    plot = _scatter(result, profile, sketch)
    if plot:
        parts.append(plot)
    parts.append("</section>")
    return "".join(parts)


def _summary(result: MultivariateResult) -> str:
    named = ", ".join(escape(f) for f in result.features)
    features = (
        f" The features that separate the window from the reference, strongest first: {named}."
        if named
        else ""
    )
    return (
        f"<p>{escape(result.test)}: p-value {fmt(result.p_value, 3)}, "
        f"{result.rows_window:,} window rows against {result.rows_reference:,} reference rows "
        f"on {escape(result.device)} in {result.seconds:.2f} s.{features}</p>"
    )


def _tests(result: MultivariateResult) -> str:
    tests = result.tests or ()
    if not tests:
        return ""
    rows = "".join(
        f"<tr><td>{escape(t.test)}</td><td>{fmt(t.statistic, 4)}</td><td>{fmt(t.p_value, 3)}"
        f"</td><td>{fmt(t.threshold, 4)}</td><td>{'yes' if t.drifted else 'no'}</td>"
        f"<td>{escape(', '.join(t.features)) or '–'}</td></tr>"
        for t in tests
    )
    return (
        "<table><thead><tr><th>test</th><th>statistic</th><th>p-value</th><th>threshold</th>"
        f"<th>flagged</th><th>features</th></tr></thead><tbody>{rows}</tbody></table>"
        '<p class="note">mmd: MMD² with its permutation p-value (threshold: the permutations\' '
        "quantile at the test's level); classifier: held-out AUC of boosted trees telling "
        "window rows from reference rows (threshold: the AUC that level needs).</p>"
    )


def _scatter(result: MultivariateResult, profile: Profile, sketch: WindowSketch | None) -> str:
    """Reference sample (grey) and window reservoir (blue) on the two strongest numeric
    features; empty without a sketch or two such features."""
    names = [f for f in result.features if f in profile.numeric_names][:2]
    if sketch is None or len(names) < 2 or not all(n in profile.sample for n in names):
        return ""
    ref = np.column_stack([profile.sample[n] for n in names])
    idx = [profile.numeric_names.index(n) for n in names]
    win = sketch.res_numeric[:, idx]
    ref, win = ref[np.isfinite(ref).all(1)][:POINTS], win[np.isfinite(win).all(1)][:POINTS]
    if not len(ref) or not len(win):
        return ""
    both = np.concatenate([ref, win])
    lo, hi = np.quantile(both, 0.005, axis=0), np.quantile(both, 0.995, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    inner = _SIZE - 2 * _PAD

    def dots(points: np.ndarray, style: str) -> str:
        xy = (np.clip((points - lo) / span, 0, 1)) * inner
        return "".join(
            f'<circle style="{style}" cx="{_PAD + x:.1f}" cy="{_SIZE - _PAD - y:.1f}" r="1.6"/>'
            for x, y in xy
        )

    body = [
        dots(ref, "fill:#9ca3af;fill-opacity:.5"),
        dots(win, "fill:var(--cur);fill-opacity:.6"),
        _text(_SIZE / 2, _SIZE - 8, names[0], anchor="middle"),
        f'<text x="12" y="{_SIZE / 2:.0f}" transform="rotate(-90 12 {_SIZE / 2:.0f})" '
        f'text-anchor="middle">{escape(names[1])}</text>',
    ]
    label = f"{names[0]} against {names[1]}: reference rows (grey) and window rows (blue)"
    return (
        f"<h3>{escape(names[0])} against {escape(names[1])}</h3>"
        '<p class="note">Reference sample rows in grey, the window\'s reservoir rows in blue '
        f"(up to {POINTS} each).</p>" + _svg(label, _SIZE, body, "scatter", width=_SIZE)
    )
