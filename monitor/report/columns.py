"""Per-column articles of the HTML report: the reference against the current distribution,
drawn from the binned statistics the tests used."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

from detectors.profile import CategoricalProfile, NumericProfile, Profile
from detectors.results import TestResult, WindowReport
from detectors.schema import Kind, Role
from detectors.sketch import WindowSketch
from monitor.report.page import _badge
from monitor.report.plots import (
    bin_shares_svg,
    category_rows,
    category_svg,
    cdf_svg,
    fmt,
    pct,
)
from monitor.report.wording import decision_text, effect_text, test_name


@dataclass(frozen=True)
class _Column:
    """One tested column and where its numbers live in the profile and the sketch."""

    result: TestResult
    kind: Kind
    role: Role
    index: int  # row in the sketch's numeric or categorical arrays
    anchor: str


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
    if r.effect is not None:
        p_value += f" · effect {effect_text(r)}"
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
