"""Our own plots, as inline SVG: the distributions the binned statistics actually compared.

Evidently plots rows of a reservoir sample; these plots are drawn from the window sketch's
counts on the reference profile's own bins, the very numbers the drift tests used, so
the engineer sees what the statistic saw:

- shares per reference bin: the quantile bins hold about equal reference mass, so a
  shift shows up as current bars leaving the flat reference line (what PSI,
  Jensen–Shannon and Hellinger compare), with the out-of-range bins at both ends;
- cumulative distributions on the value axis, exact at every bin edge: the largest gap
  is the KS statistic and the area between the curves the Wasserstein distance;
- category shares including the reference's rare "other" bucket and "unseen" categories;
- the dataset drift share over windows.

Plain SVG strings sized by ``viewBox``: no plotting library, nothing fetched at view time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH = 560
HEIGHT = 240
HISTORY_WIDTH = 1100
# Categories drawn one per row; the rest of the vocabulary is summed into one row.
MAX_CATEGORY_ROWS = 20
MAX_LABEL_CHARS = 22


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for people: ``–`` when undefined, scientific only when it must be."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10**digits * 10 or magnitude < 1e-3:
        return f"{value:.{max(digits - 2, 1)}e}"
    return f"{value:.{digits}g}"


def pct(share: float | None) -> str:
    """A share as a percentage with the precision small shares need."""
    if share is None or math.isnan(share):
        return "–"
    if share == 0:
        return "0%"
    p = share * 100
    if abs(p) < 0.1:
        return f"{p:.2g}%"
    return f"{p:.1f}%"


@dataclass(frozen=True)
class _Area:
    """The plot area inside an SVG of ``WIDTH`` × ``height`` and its linear scales."""

    x0: float
    x1: float
    y0: float
    y1: float
    xmin: float
    xmax: float
    ymin: float
    ymax: float

    def x(self, v: float) -> float:
        span = self.xmax - self.xmin or 1.0
        return self.x0 + (v - self.xmin) / span * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        span = self.ymax - self.ymin or 1.0
        return self.y1 - (v - self.ymin) / span * (self.y1 - self.y0)


def _svg(label: str, height: int, body: list[str], css_class: str, width: int = WIDTH) -> str:
    return (
        f'<svg class="plot {css_class}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, s: str, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(s)}</text>'


def _nice_max(v: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``v`` (axis top)."""
    if v <= 0 or not math.isfinite(v):
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * 10**exp >= v * (1 - 1e-12):
            return m * 10**exp
    return 10.0 ** (exp + 1)


def _y_axis_shares(area: _Area, ticks: int = 4) -> list[str]:
    out = []
    for i in range(ticks + 1):
        v = area.ymin + (area.ymax - area.ymin) * i / ticks
        y = area.y(v)
        out.append(f'<line class="grid" x1="{area.x0}" x2="{area.x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(_text(area.x0 - 4, y + 3.5, pct(v), "tick", "end"))
    return out


def _legend(x: float, y: float, has_current: bool) -> list[str]:
    out = [
        f'<rect class="ref" x="{x}" y="{y - 8}" width="10" height="10"/>',
        _text(x + 14, y + 1, "reference", "legend"),
    ]
    if has_current:
        out += [
            f'<rect class="cur" x="{x + 86}" y="{y - 8}" width="10" height="10"/>',
            _text(x + 100, y + 1, "current window", "legend"),
        ]
    return out


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (zeros when there are none)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def bin_shares_svg(
    edges: np.ndarray,
    ref_counts: np.ndarray,
    cur_counts: np.ndarray | None,
    label: str,
) -> str:
    """Shares of the reference's quantile bins, reference bars against current steps.

    Bin 0 holds values below the reference minimum and the last bin values above its
    maximum; both are drawn apart, on a tinted background, because any mass there is
    new. The interior bins are equally wide (they hold about equal reference mass), and
    the axis names a few of their edges by value.
    """
    ref = shares(ref_counts)
    cur = shares(cur_counts) if cur_counts is not None else None
    k = len(ref)
    interior = max(k - 2, 1)
    top = max(float(ref.max(initial=0.0)), float(cur.max(initial=0.0)) if cur is not None else 0.0)
    area = _Area(52, WIDTH - 12, 26, HEIGHT - 40, 0.0, 1.0, 0.0, min(_nice_max(top * 1.08), 1.0))
    body = _y_axis_shares(area)
    oor_w, gap = 22.0, 12.0
    ix0, ix1 = area.x0 + oor_w + gap, area.x1 - oor_w - gap
    bw = (ix1 - ix0) / interior

    def span(i: int) -> tuple[float, float]:
        if i == 0:
            return area.x0, oor_w
        if i == k - 1:
            return area.x1 - oor_w, oor_w
        return ix0 + (i - 1) * bw, bw

    for i in (0, k - 1):
        x, w = span(i)
        body.append(
            f'<rect class="oor" x="{x:.1f}" y="{area.y0}" width="{w:.1f}" '
            f'height="{area.y1 - area.y0:.1f}"/>'
        )
    body.append('<g class="ref bars">')  # one bar per bin, its numbers in its tooltip
    for i in range(k):
        x, w = span(i)
        y = area.y(ref[i])
        tip = f"{_bin_name(edges, i)}: reference {pct(ref[i])}"
        if cur is not None:
            tip += f", current {pct(cur[i])}"
        pad = min(0.2, w / 4)
        body.append(
            f'<rect x="{x + pad:.1f}" y="{y:.1f}" width="{w - 2 * pad:.1f}" '
            f'height="{area.y1 - y:.1f}"><title>{escape(tip)}</title></rect>'
        )
    body.append("</g>")
    if cur is not None:
        points = []
        for i in range(1, k - 1):
            x, w = span(i)
            y = area.y(cur[i])
            points.append(f"{x:.1f},{y:.1f} {x + w:.1f},{y:.1f}")
        body.append(f'<polyline class="cur-line" points="{" ".join(points)}"/>')
        for i in (0, k - 1):
            if cur[i] <= 0:
                continue
            x, w = span(i)
            y = area.y(cur[i])
            body.append(
                f'<rect class="cur new" x="{x + 4:.1f}" y="{y:.1f}" width="{w - 8:.1f}" '
                f'height="{area.y1 - y:.1f}"><title>{escape(_bin_name(edges, i))}: current '
                f"{pct(cur[i])}</title></rect>"
            )
            body.append(_text(x + w / 2, y - 4, pct(cur[i]), "note", "middle"))
    body.append(_text(area.x0 + oor_w / 2, area.y1 + 14, "<min", "tick", "middle"))
    body.append(_text(area.x1 - oor_w / 2, area.y1 + 14, ">max", "tick", "middle"))
    # a few interior edges by value (edge j is the right end of bin j)
    if interior <= 6:
        ticks = list(range(interior + 1))
    else:
        ticks = sorted({round(f * interior) for f in (0.1, 0.3, 0.5, 0.7, 0.9)})
    named = ""
    for j in ticks:
        x = ix0 + j * bw
        # edges[0] sits just below the reference minimum: name the minimum itself
        value = float(np.nextafter(edges[0], np.inf)) if j == 0 else float(edges[j])
        if fmt(value, 3) == named:  # a bin holding one value: its edges read the same
            continue
        named = fmt(value, 3)
        body.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{area.y1}" y2="{area.y1 + 3}"/>'
        )
        body.append(_text(x, area.y1 + 14, fmt(value, 3), "tick", "middle"))
    body.append(f'<line class="axis" x1="{area.x0}" x2="{area.x1}" y1="{area.y1}" y2="{area.y1}"/>')
    body.append(
        _text(area.x0, HEIGHT - 8, "share per reference quantile bin (edges by value)", "cap")
    )
    body += _legend(area.x0 + 4, 14, cur is not None)
    return _svg(label, HEIGHT, body, "bins")


def _bin_name(edges: np.ndarray, i: int) -> str:
    if i == 0:
        return f"below the reference minimum ({fmt(float(np.nextafter(edges[0], np.inf)))})"
    if i >= len(edges):
        return f"above the reference maximum ({fmt(float(edges[-1]))})"
    return f"({fmt(float(edges[i - 1]))}, {fmt(float(edges[i]))}]"


@dataclass(frozen=True)
class CdfGap:
    """Where the two cumulative distributions are furthest apart, on the bin edges."""

    at: float
    gap: float


def cdf_points(
    edges: np.ndarray, counts: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative distribution at the bin edges, from ``lo`` (0) to ``hi`` (1).

    Exact at every edge: ``F(e_i)`` is the share of values at or below ``e_i``, which is
    the sum of the bins up to ``i``. Between edges the curve is drawn straight.
    """
    cum = np.cumsum(shares(counts))
    xs = np.concatenate([[lo], edges, [hi]])
    ys = np.concatenate([[0.0], cum[: len(edges)], [1.0]])
    return xs, ys


def largest_gap(edges: np.ndarray, ref_counts: np.ndarray, cur_counts: np.ndarray) -> CdfGap:
    """The edge with the largest difference between the two cumulative distributions."""
    fr = np.cumsum(shares(ref_counts))[: len(edges)]
    fc = np.cumsum(shares(cur_counts))[: len(edges)]
    diff = np.abs(fr - fc)
    if not len(diff):
        return CdfGap(at=0.0, gap=0.0)
    i = int(np.argmax(diff))
    return CdfGap(at=float(edges[i]), gap=float(diff[i]))


def cdf_svg(
    edges: np.ndarray,
    ref_counts: np.ndarray,
    cur_counts: np.ndarray | None,
    ref_range: tuple[float, float],
    cur_range: tuple[float, float] | None,
    label: str,
) -> str:
    """Reference and current cumulative distributions on the value axis.

    The shaded area between the curves is what the Wasserstein distance measures (before
    normalising by the reference standard deviation); the marked vertical gap is the KS
    statistic on the bins. Current values outside the reference range stretch the axis
    by at most a quarter of the reference range on each side; further outliers are
    named in a note instead of squashing the plot.
    """
    rmin, rmax = ref_range
    span = (rmax - rmin) or max(abs(rmax), 1.0)
    lo, hi = rmin, rmax
    notes: list[str] = []
    if cur_range is not None and cur_counts is not None:
        cmin, cmax = cur_range
        if math.isfinite(cmin) and cmin < rmin:
            lo = max(cmin, rmin - span / 4)
            if cmin < lo:
                notes.append(f"current minimum {fmt(cmin)} is off the axis")
        if math.isfinite(cmax) and cmax > rmax:
            hi = min(cmax, rmax + span / 4)
            if cmax > hi:
                notes.append(f"current maximum {fmt(cmax)} is off the axis")
    if hi <= lo:
        lo, hi = lo - 0.5 * span, hi + 0.5 * span
    area = _Area(52, WIDTH - 12, 26, HEIGHT - 40, lo, hi, 0.0, 1.0)
    body = _y_axis_shares(area)
    rx, ry = cdf_points(edges, ref_counts, min(lo, float(edges[0])), rmax)
    ref_path = _clip_path(area, rx, ry)
    if cur_counts is not None:
        cx, cy = cdf_points(edges, cur_counts, lo, hi)
        cur_path = _clip_path(area, cx, cy)
        body.append(f'<polygon class="between" points="{ref_path} {_reverse(cur_path)}"/>')
    body.append(f'<polyline class="ref-line" points="{ref_path}"/>')
    if cur_counts is not None:
        body.append(f'<polyline class="cur-line" points="{cur_path}"/>')
        g = largest_gap(edges, ref_counts, cur_counts)
        if g.gap > 0 and lo <= g.at <= hi:
            fr = float(np.cumsum(shares(ref_counts))[int(np.searchsorted(edges, g.at))])
            fc = float(np.cumsum(shares(cur_counts))[int(np.searchsorted(edges, g.at))])
            x = area.x(g.at)
            body.append(
                f'<line class="gap" x1="{x:.1f}" x2="{x:.1f}" y1="{area.y(fr):.1f}" '
                f'y2="{area.y(fc):.1f}"/>'
            )
            anchor = "start" if x < (area.x0 + area.x1) / 2 else "end"
            dx = 5 if anchor == "start" else -5
            body.append(
                _text(
                    x + dx,
                    (area.y(fr) + area.y(fc)) / 2 + 4,
                    f"largest gap {fmt(g.gap, 3)} at {fmt(g.at, 3)}",
                    "note",
                    anchor,
                )
            )
    for t in range(5):
        v = lo + (hi - lo) * t / 4
        x = area.x(v)
        body.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{area.y1}" y2="{area.y1 + 3}"/>'
        )
        body.append(_text(x, area.y1 + 14, fmt(v, 3), "tick", "middle"))
    body.append(f'<line class="axis" x1="{area.x0}" x2="{area.x1}" y1="{area.y1}" y2="{area.y1}"/>')
    caption = "cumulative share by value (exact at bin edges)"
    if notes:
        caption += "; " + "; ".join(notes)
    body.append(_text(area.x0, HEIGHT - 8, caption, "cap"))
    body += _legend(area.x0 + 4, 14, cur_counts is not None)
    return _svg(label, HEIGHT, body, "cdf")


def _clip_path(area: _Area, xs: np.ndarray, ys: np.ndarray) -> str:
    """Points of a monotone curve, clamped to the plot's x range."""
    pts = []
    for x, y in zip(np.clip(xs, area.xmin, area.xmax), ys, strict=True):
        pts.append(f"{area.x(float(x)):.1f},{area.y(float(y)):.1f}")
    return " ".join(pts)


def _reverse(path: str) -> str:
    return " ".join(reversed(path.split(" ")))


@dataclass(frozen=True)
class CategoryRow:
    """One bar pair of the category plot."""

    label: str
    reference: float
    current: float | None
    kind: str = "category"  # "category", "rest", "other" or "unseen"


def category_rows(
    vocabulary: Sequence[str],
    ref_counts: np.ndarray,
    cur_counts: np.ndarray | None,
    max_rows: int = MAX_CATEGORY_ROWS,
) -> list[CategoryRow]:
    """Rows for the category plot: the categories that matter most on either side, the
    rest of the vocabulary summed, then "other" and "unseen" (always shown).

    ``ref_counts`` is the profile's layout (vocabulary, other, unseen); ``cur_counts`` the
    sketch's (vocabulary, padding, other, unseen).
    """
    n = len(vocabulary)
    ref = shares(ref_counts)
    cur = shares(cur_counts) if cur_counts is not None else None
    ref_vocab, ref_other, ref_unseen = ref[:n], float(ref[-2]), float(ref[-1])
    if cur is not None:
        cur_vocab, cur_other, cur_unseen = cur[:n], float(cur[-2]), float(cur[-1])
    else:
        cur_vocab, cur_other, cur_unseen = None, None, None
    weight = np.maximum(ref_vocab, cur_vocab) if cur_vocab is not None else ref_vocab
    shown = sorted(np.argsort(-weight, kind="stable")[:max_rows].tolist())
    rows = [
        CategoryRow(
            str(vocabulary[i]),
            float(ref_vocab[i]),
            float(cur_vocab[i]) if cur_vocab is not None else None,
        )
        for i in shown
    ]
    hidden = sorted(set(range(n)) - set(shown))
    if hidden:
        rows.append(
            CategoryRow(
                f"{len(hidden)} more categories",
                float(ref_vocab[hidden].sum()),
                float(cur_vocab[hidden].sum()) if cur_vocab is not None else None,
                "rest",
            )
        )
    rows.append(CategoryRow("other (rare)", ref_other, cur_other, "other"))
    rows.append(CategoryRow("unseen (new)", ref_unseen, cur_unseen, "unseen"))
    return rows


def category_svg(rows: Sequence[CategoryRow], label: str) -> str:
    """Horizontal bars: reference and current share of each category row."""
    has_current = any(r.current is not None for r in rows)
    row_h = 22 if has_current else 16
    height = 40 + row_h * len(rows) + 24
    top = max((max(r.reference, r.current or 0.0) for r in rows), default=0.0)
    area = _Area(170, WIDTH - 56, 30, height - 24, 0.0, min(_nice_max(top * 1.05), 1.0), 0.0, 1.0)
    body: list[str] = []
    for t in range(5):
        v = area.xmax * t / 4
        x = area.x(v)
        body.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{area.y0}" y2="{area.y1}"/>')
        body.append(_text(x, area.y1 + 14, pct(v), "tick", "middle"))
    bar = (row_h - 6) / (2 if has_current else 1)
    for i, r in enumerate(rows):
        y = area.y0 + i * row_h + 3
        name = r.label if len(r.label) <= MAX_LABEL_CHARS else r.label[: MAX_LABEL_CHARS - 1] + "…"
        cls = "cat-label" + (f" {r.kind}" if r.kind != "category" else "")
        body.append(
            f'<text x="{area.x0 - 6}" y="{y + (row_h - 6) / 2 + 4:.1f}" text-anchor="end" '
            f'class="{cls}"><title>{escape(r.label)}</title>{escape(name)}</text>'
        )
        w = area.x(r.reference) - area.x0
        body.append(
            f'<rect class="ref" x="{area.x0}" y="{y:.1f}" width="{w:.1f}" height="{bar:.1f}">'
            f"<title>{escape(r.label)}: reference {pct(r.reference)}</title></rect>"
        )
        text = pct(r.reference)
        if r.current is not None:
            wc = area.x(r.current) - area.x0
            klass = "cur new" if r.kind == "unseen" and r.current > 0 else "cur"
            body.append(
                f'<rect class="{klass}" x="{area.x0}" y="{y + bar:.1f}" width="{wc:.1f}" '
                f'height="{bar:.1f}"><title>{escape(r.label)}: current {pct(r.current)}</title>'
                "</rect>"
            )
            text = f"{pct(r.reference)} → {pct(r.current)}"
        right = area.x(max(r.reference, r.current or 0.0))
        body.append(_text(right + 4, y + (row_h - 6) / 2 + 4, text, "value"))
    body += _legend(area.x0, 16, has_current)
    return _svg(label, height, body, "categories")


@dataclass(frozen=True)
class SharePoint:
    """One window on the drift-share chart."""

    label: str
    share: float
    drifted: bool
    selected: bool = False
    breached: bool = False


def drift_share_svg(points: Sequence[SharePoint], threshold: float, label: str) -> str:
    """Dataset drift share per window, the verdict threshold dashed, this window ringed."""
    width, height = HISTORY_WIDTH, 220
    n = len(points)
    area = _Area(52, width - 16, 20, height - 44, -0.5, max(n - 0.5, 0.5), 0.0, 1.0)
    body = _y_axis_shares(area)
    yt = area.y(threshold)
    body.append(
        f'<line class="threshold" x1="{area.x0}" x2="{area.x1}" y1="{yt:.1f}" y2="{yt:.1f}"/>'
    )
    body.append(_text(area.x1, yt - 4, f"verdict threshold {pct(threshold)}", "note", "end"))
    line = " ".join(f"{area.x(i):.1f},{area.y(p.share):.1f}" for i, p in enumerate(points))
    body.append(f'<polyline class="share-line" points="{line}"/>')
    for i, p in enumerate(points):
        x, y = area.x(i), area.y(p.share)
        cls = "pt drift" if p.drifted else ("pt breach" if p.breached else "pt ok")
        status = "drift" if p.drifted else ("quality breach" if p.breached else "no drift")
        body.append(
            f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
            f"<title>{escape(p.label)}: share {pct(p.share)}, {status}</title></circle>"
        )
        if p.selected:
            body.append(f'<circle class="selected" cx="{x:.1f}" cy="{y:.1f}" r="7.5"/>')
    step = max(1, math.ceil(n / 12))
    for i in range(0, n, step):
        body.append(_text(area.x(i), area.y1 + 14, points[i].label, "tick", "middle"))
    body.append(f'<line class="axis" x1="{area.x0}" x2="{area.x1}" y1="{area.y1}" y2="{area.y1}"/>')
    body.append(_text(area.x0, height - 8, "share of drifted features per window", "cap"))
    return _svg(label, height, body, "history", width)
