"""The HTML window report: what the page shows, built from real profiles, sketches and reports.

The data has three drifts built in on purpose: a mean shift of ``age`` (one standard
deviation, which moves the ``score`` prediction with it), a new category ``XX`` in a
quarter of ``country`` and 30% missing ``amount``; ``tenure`` and ``device`` stay as they
were. Reports come from the agent's own evaluator (``WindowEvaluator``) in binned mode, so
the plots and the statistics are computed on the same bins.

Pages are parsed with the standard library's HTML parser into a small tree; the checks
compare what the page shows with the report, the profile and the sketch it was drawn from.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.profile import Profile, build_profile, load_profile
from detectors.results import WindowReport
from detectors.schema import Schema
from detectors.settings import DriftSettings, QualitySettings
from detectors.sketch import WindowSketch
from monitor.cli import main
from monitor.report import (
    HtmlReportWriter,
    ReportInputError,
    ReportSelectionError,
    artifact_paths,
    latest_url,
    read_reports,
    render_report,
    select_report,
    write_artifacts,
)
from monitor.runtime.evaluation import EvaluatedWindow, WindowEvaluator
from monitor.runtime.windows import ClosedWindow

MODEL, VERSION = "fraud-scorer", "v2"
T0 = 1_736_935_200.0  # 2025-01-15 10:00:00 UTC
WINDOW_SECONDS = 300
REF_ROWS, WINDOW_ROWS = 6000, 800
NUMERIC = ("age", "amount", "tenure")
CATEGORICAL = ("country", "device")
PREDICTION = "score"
COUNTRIES = ("US", "DE", "FR", "GB", "IN", "BR")
# Binned tests (the plots show those very bins); a window drifts when 30% of features do.
DRIFT = DriftSettings(exact="never", share_threshold=0.3)


def frame(n: int, seed: int, *, drifted: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40.0 + (10.0 if drifted else 0.0), 10.0, n)
    amount = rng.lognormal(3.0, 1.0, n)
    country = rng.choice(COUNTRIES, n, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05]).astype(object)
    if drifted:
        amount[rng.random(n) < 0.3] = np.nan
        country[rng.random(n) < 0.25] = "XX"
    return pd.DataFrame(
        {
            "age": age,
            "amount": amount,
            "tenure": rng.integers(0, 6, n),
            "country": country,
            "device": rng.choice(["web", "ios", "android"], n, p=[0.5, 0.3, 0.2]),
            PREDICTION: 1.0 / (1.0 + np.exp(-(age - 40.0) / 10.0)),
        }
    )


@dataclass(frozen=True)
class Window:
    closed: ClosedWindow
    report: WindowReport

    @property
    def sketch(self) -> WindowSketch:
        return self.closed.sketch


def evaluate(profile: Profile, i: int, data: pd.DataFrame, version: str = VERSION) -> Window:
    sketch = WindowSketch(profile, seed=i)
    sketch.update(data)
    closed = ClosedWindow(
        model_version=version,
        start=T0 + WINDOW_SECONDS * i,
        end=T0 + WINDOW_SECONDS * (i + 1),
        sketch=sketch,
        rows=sketch.rows,
        late=0,
        duplicates=0,
        traceparents=[],
        kind="time",
    )
    evaluator = WindowEvaluator(profile, MODEL, DRIFT, QualitySettings())
    (result,) = evaluator.evaluate([closed])
    return Window(closed, result.report)


@pytest.fixture(scope="module")
def profile() -> Profile:
    schema = Schema.build(
        numeric=NUMERIC, categorical=CATEGORICAL, prediction_numeric=(PREDICTION,)
    )
    return build_profile(frame(REF_ROWS, 0), schema, bins=30)


@pytest.fixture(scope="module")
def windows(profile: Profile) -> list[Window]:
    """Two clean windows, then a drifted one (the data's drifts, by construction)."""
    out = [
        evaluate(profile, 0, frame(WINDOW_ROWS, 11)),
        evaluate(profile, 1, frame(WINDOW_ROWS, 12)),
        evaluate(profile, 2, frame(WINDOW_ROWS, 13, drifted=True)),
    ]
    clean, drifted = out[1].report, out[2].report
    assert not clean.drifted and not clean.quality.breached
    assert drifted.drifted and drifted.drift.drifted and drifted.quality.breached
    return out


# -- a small DOM ------------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag: str, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if n.tag == tag
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag}> class={cls} {attrs}"
        return found[0]

    def by_id(self, ident: str) -> Node:
        found = [n for n in self.iter() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"{len(found)} elements with id {ident!r}"
        return found[0]

    def all_text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(" ".join(n.text) for n in self.iter())).strip()


# HTML's void elements; SVG shapes without content are written self-closing.
VOID = {"meta", "br", "input", "img", "link", "hr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def parse(page: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def number(text: str) -> float:
    """The first number in a text (``12.5%`` -> 12.5)."""
    m = re.search(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?", text)
    assert m, f"no number in {text!r}"
    return float(m.group(0).replace(",", ""))


def results_of(report: WindowReport):
    return (*report.drift.columns, *report.prediction_drift.columns)


# -- pages --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drifted_page(profile: Profile, windows: list[Window]) -> str:
    """The drifted window with everything: previous window, history and Evidently."""
    reports = [w.report for w in windows]
    return render_report(
        reports[2],
        profile,
        sketch=windows[2].sketch,
        previous=reports[1],
        history=reports,
        evidently=True,
    )


@pytest.fixture(scope="module")
def clean_page(profile: Profile, windows: list[Window]) -> str:
    first = windows[0]
    return render_report(
        first.report, profile, sketch=first.sketch, history=[first.report], evidently=False
    )


def test_verdict_names_the_drift_and_the_breaches(drifted_page: str, windows: list[Window]) -> None:
    doc = parse(drifted_page)
    header = doc.by_id("verdict")
    assert header.attrs["data-verdict"] == "drift"
    # the headline names what drifted, as the lines under it do
    title = "Feature drift, prediction drift and data-quality breach"
    assert header.find("h1").all_text() == title
    text = header.all_text()
    for name in ("age", "country", "score"):
        assert name in text
    assert "amount missing" in text and "country unseen" in text
    assert f"<title>{title}" in drifted_page


def test_the_headline_agrees_with_the_lines_under_it(
    profile: Profile, windows: list[Window]
) -> None:
    """Predictions drifted, features did not: the banner must not say the features did."""
    d = windows[0].report.to_dict()
    d["prediction_drift"]["drifted"] = True
    d["prediction_drift"]["columns"][0]["drifted"] = True
    d["prediction_drift"]["drifted_count"] = 1
    report = WindowReport.from_dict(d)
    assert not report.drift.drifted and report.prediction_drift.drifted
    page = render_report(report, profile, sketch=windows[0].sketch, evidently=False)
    header = parse(page).by_id("verdict")
    assert header.find("h1").all_text() == "Prediction drift"
    text = " ".join(header.all_text().split())
    assert "Features: no drift" in text
    assert "<li>Predictions: <strong>drifted</strong>" in page
    assert "Drift detected" not in page


def test_clean_window_says_no_drift(clean_page: str, windows: list[Window]) -> None:
    doc = parse(clean_page)
    assert doc.by_id("verdict").attrs["data-verdict"] == "ok"
    assert "No drift" in doc.by_id("verdict").find("h1").all_text()
    articles = doc.find_all("article", "feature")
    assert len(articles) == len(results_of(windows[0].report))
    assert not [a for a in articles if "drifted" in a.classes]
    assert not doc.by_id("quality").find_all("tr", "breached")
    # nothing earlier in the reports given
    assert doc.by_id("changes").find_all("p", "no-previous")


def test_every_column_has_a_section_with_its_statistic_and_threshold(
    drifted_page: str, windows: list[Window], profile: Profile
) -> None:
    doc = parse(drifted_page)
    report = windows[2].report
    articles = {a.attrs["data-feature"]: a for a in doc.find_all("article", "feature")}
    assert set(articles) == {r.feature for r in results_of(report)}
    for r in results_of(report):
        a = articles[r.feature]
        assert float(a.find("span", "stat").attrs["data-statistic"]) == pytest.approx(
            r.statistic, rel=1e-3
        )
        assert float(a.find("span", "thr").attrs["data-threshold"]) == pytest.approx(
            r.threshold, rel=1e-3
        )
        assert ("drifted" in a.classes) == r.drifted
        line = a.find("p", "test-line").all_text()
        if r.p_value is not None:
            assert number(line.split("p-value")[1]) == pytest.approx(r.p_value, rel=0.05)
        svgs = a.find_all("svg")
        kind = profile.schema.column(r.feature).kind.value
        assert a.attrs["data-kind"] == kind
        assert len(svgs) == (2 if kind == "numeric" else 1)
    # the summary table has one row per column, each linking to its section
    rows = doc.by_id("summary").find_all("tr", data_feature="age")
    assert rows and rows[0].find("a").attrs["href"] == "#" + articles["age"].attrs["id"]
    drifted = {r.feature for r in results_of(report) if r.drifted}
    assert drifted == {"age", "country", "score"}
    # predictions get their own section
    assert doc.by_id("predictions").find_all("article", data_feature=PREDICTION)


def test_numeric_plots_carry_the_binned_statistic(
    drifted_page: str, windows: list[Window], profile: Profile
) -> None:
    doc = parse(drifted_page)
    report, sketch = windows[2].report, windows[2].sketch
    for name in ("age", "tenure"):
        article = doc.find("article", data_feature=name)
        bins_svg, cdf = article.find_all("svg")
        # every reference bin is drawn (a bar with its tooltip), out-of-range bins included
        bars = [r for r in bins_svg.find("g", "bars").find_all("rect") if r.find_all("title")]
        assert len(bars) == profile.numeric[name].bins
        # the largest gap between the binned CDFs is the binned KS statistic
        result = report.drift.column(name)
        assert result.test == "ks" and result.mode == "binned"
        gap = [t for t in cdf.iter() if t.tag == "text" and "largest gap" in t.all_text()]
        assert len(gap) == 1
        assert number(gap[0].all_text().split("gap")[1]) == pytest.approx(
            result.statistic, abs=1e-3 * max(result.statistic, 1e-3) + 5e-4
        )
    # the current step line: one horizontal step per interior bin
    age = doc.find("article", data_feature="age").find_all("svg")[0]
    steps = age.find("polyline", "cur-line").attrs["points"].split()
    assert len(steps) == 2 * (profile.numeric["age"].bins - 2)
    # summary numbers come from the sketch: the missing spike of amount is shown
    amount = doc.find("article", data_feature="amount").find("table", "stats")
    row = next(r for r in amount.find_all("tr") if "current" in r.all_text())
    j = profile.numeric_names.index("amount")
    missing_share = sketch.num_missing[j] / sketch.rows
    assert 0.25 < missing_share < 0.35
    assert any(
        number(td.all_text()) == pytest.approx(missing_share * 100, abs=0.06)
        for td in row.find_all("td")
        if "%" in td.all_text()
    )


def test_category_plot_shows_other_and_unseen(
    drifted_page: str, windows: list[Window], profile: Profile
) -> None:
    doc = parse(drifted_page)
    sketch = windows[2].sketch
    svg = doc.find("article", data_feature="country").find("svg")
    titles = [n.all_text() for n in svg.iter() if n.tag == "title"]
    j = profile.categorical_names.index("country")
    unseen = sketch.cat_counts[j, -1] / sketch.cat_counts[j].sum()
    assert 0.2 < unseen < 0.3  # a quarter of the rows, by construction
    shown = [t for t in titles if t.startswith("unseen") and "current" in t]
    assert len(shown) == 1
    assert number(shown[0].split("current")[1]) == pytest.approx(unseen * 100, abs=0.06)
    assert any(t.startswith("other") for t in titles)
    for category in COUNTRIES:
        assert any(t.startswith(f"{category}: reference") for t in titles)
    # the new category is drawn apart from the others
    assert svg.find_all("rect", "new")


def test_quality_table_has_every_check(drifted_page: str, windows: list[Window]) -> None:
    doc = parse(drifted_page)
    report = windows[2].report
    rows = doc.by_id("quality").find_all("tr")
    keyed = {
        (r.attrs["data-feature"], r.attrs["data-check"]): r for r in rows if "data-check" in r.attrs
    }
    assert set(keyed) == {(c.feature, c.check) for c in report.quality.checks}
    breached = {k for k, r in keyed.items() if "breached" in r.classes}
    assert breached == {("amount", "missing"), ("country", "unseen")}
    for c in report.quality.checks:
        cells = keyed[(c.feature, c.check)].find_all("td")
        assert number(cells[2].all_text()) == pytest.approx(c.rate * 100, abs=0.06)
        assert number(cells[3].all_text()) == c.count


def test_since_previous_window(drifted_page: str, windows: list[Window]) -> None:
    doc = parse(drifted_page)
    changes = doc.by_id("changes")
    assert not changes.find_all("p", "no-previous")
    items = [li.all_text() for li in changes.find_all("li")]
    started = [i for i in items if i.startswith("Started drifting")]
    assert len(started) == 1
    assert {"age", "country", "score"} <= set(re.findall(r"\w+", started[0]))
    assert not [i for i in items if i.startswith("Stopped drifting")]
    breaches = [i for i in items if i.startswith("New quality breaches")]
    assert breaches and "amount missing" in breaches[0] and "country unseen" in breaches[0]
    # the previous window is named by its start time
    previous = windows[1].report
    start = datetime.fromtimestamp(previous.window_start, UTC).strftime("%H:%M:%S")
    assert any(start in i for i in items)
    # one row per column, with both statistics
    table_rows = changes.find("table").find_all("tr", data_feature="age")
    cells = table_rows[0].find_all("td")
    assert number(cells[2].all_text()) == pytest.approx(
        previous.drift.column("age").statistic, rel=1e-3
    )
    assert number(cells[3].all_text()) == pytest.approx(
        windows[2].report.drift.column("age").statistic, rel=1e-3
    )


def test_drift_share_chart_over_the_given_windows(drifted_page: str, windows: list[Window]) -> None:
    history = parse(drifted_page).by_id("history")
    points = history.find_all("circle", "pt")
    assert len(points) == len(windows)
    assert ["drift" in p.classes for p in points] == [w.report.drift.drifted for w in windows]
    assert len(history.find_all("circle", "selected")) == 1


EXTERNAL = ("http://", "https://", "//cdn")


def test_page_loads_nothing_from_the_network(drifted_page: str) -> None:
    doc = parse(drifted_page)
    frame = doc.find("iframe", id="evidently-frame")
    evidently_html = frame.attrs["srcdoc"]
    # our part: no URL at all
    ours = drifted_page.replace(re.search(r'srcdoc="[^"]*"', drifted_page).group(0), "")
    for marker in EXTERNAL:
        assert marker not in ours, marker
    # Evidently's part carries URLs inside its script's text (docs links, namespaces), but
    # no element loads anything: no src/href to a network address, no CSS import or url()
    ev = parse(evidently_html)
    for node in ev.iter():
        for attr in ("src", "href"):
            value = node.attrs.get(attr, "")
            assert not value.startswith(("http:", "https:", "//")), (node.tag, value)
    for style in ev.find_all("style"):
        css = style.all_text()
        assert "@import" not in css
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", css)
    # and the page forbids fetching anyway
    csp = doc.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp


def test_evidently_section_when_installed(drifted_page: str, windows: list[Window]) -> None:
    section = parse(drifted_page).by_id("evidently")
    assert section.find("p", "evidently-status").attrs["data-status"] == "ok"
    rows = section.find("table", "evidently-columns").find_all("tr")[1:]
    verdicts = {r.find_all("td")[0].all_text(): r.find_all("td")[4].all_text() for r in rows}
    assert set(verdicts) == {r.feature for r in results_of(windows[2].report)}
    # a one-standard-deviation shift and a new quarter of categories: Evidently sees them too
    assert verdicts["age"] == "drift" and verdicts["country"] == "drift"
    assert verdicts["device"] == "ok"
    srcdoc = section.find("iframe").attrs["srcdoc"]
    assert "drawDashboard" in srcdoc


def test_without_evidently_the_page_says_so_and_renders(
    profile: Profile, windows: list[Window], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "evidently", None)  # import evidently -> ImportError
    page = render_report(windows[2].report, profile, sketch=windows[2].sketch, evidently=True)
    doc = parse(page)
    status = doc.by_id("evidently").find("p", "evidently-status")
    assert status.attrs["data-status"] == "unavailable"
    assert "not installed" in status.all_text()
    assert not doc.find_all("iframe")
    assert len(doc.find_all("article", "feature")) == len(results_of(windows[2].report))


def test_without_sketch_the_reference_alone_is_drawn(
    profile: Profile, windows: list[Window]
) -> None:
    page = render_report(windows[2].report, profile, evidently=True)
    doc = parse(page)
    assert "No window sketch" in doc.by_id("verdict").all_text()
    assert doc.by_id("evidently").find("p", "evidently-status").attrs["data-status"] == "skipped"
    for article in doc.find_all("article", "feature"):
        for svg in article.find_all("svg"):
            assert not svg.find_all("polyline", "cur-line") and not svg.find_all("rect", "cur")


def test_inputs_must_belong_together(profile: Profile, windows: list[Window]) -> None:
    other = build_profile(frame(500, 99), profile.schema, bins=10)
    with pytest.raises(ReportInputError, match="reference"):
        render_report(windows[2].report, other, evidently=False)
    foreign = WindowSketch(other)
    with pytest.raises(ReportInputError, match="sketch"):
        render_report(windows[2].report, profile, sketch=foreign, evidently=False)


def test_a_sketch_of_another_size_is_flagged(profile: Profile, windows: list[Window]) -> None:
    half = WindowSketch(profile, seed=5)
    half.update(frame(WINDOW_ROWS // 2, 21))
    page = render_report(windows[2].report, profile, sketch=half, evidently=False)
    assert "may belong to another window" in parse(page).by_id("verdict").all_text()


def test_untested_and_absent_columns(profile: Profile) -> None:
    """A window without ``tenure`` at all and ``device`` always null: nothing to test."""
    data = frame(WINDOW_ROWS, 41).drop(columns=["tenure"])
    data["device"] = None
    window = evaluate(profile, 5, data)
    report = window.report
    assert math.isnan(report.drift.column("tenure").statistic)
    page = render_report(report, profile, sketch=window.sketch, evidently=False)
    doc = parse(page)
    for name in ("tenure", "device"):
        article = doc.find("article", data_feature=name)
        assert article.find_all("span", "untested")
        assert "not tested" in article.find("p", "test-line").all_text()
    assert "tenure" in doc.by_id("quality").find("p", "warning").all_text()
    summary = doc.by_id("summary").all_text().lower()
    assert "nan" not in summary.split() and "inf" not in summary.split()


def test_row_windows_canaries_and_hostile_names(profile: Profile, windows: list[Window]) -> None:
    d = windows[2].report.to_dict()
    d["model"] = '<img src=x onerror="alert(1)">'
    d["window"] = {"kind": "rows", "start": 1600.0, "end": 2399.0}
    d["baseline"] = "version:v1"
    report = WindowReport.from_dict(d)
    page = render_report(report, profile, sketch=windows[2].sketch, evidently=False)
    assert "<img" not in page  # names are text, never markup
    doc = parse(page)
    header = doc.by_id("verdict")
    assert '<img src=x onerror="alert(1)">' in header.all_text()
    assert "rows 1,600–2,399" in header.all_text()
    assert "version:v1" in header.find("p", "warning").all_text()


# -- picking a window out of a reports file ------------------------------------------------------


def test_select_report_previous_is_same_version_and_baseline(
    profile: Profile, windows: list[Window]
) -> None:
    a, b, c = (w.report for w in windows)
    other_version = evaluate(profile, 1, frame(WINDOW_ROWS, 31), version="v1").report
    canary = WindowReport.from_dict({**c.to_dict(), "baseline": "version:v1"})
    reports = [a, other_version, b, canary, c]
    sel = select_report(reports)  # the latest
    assert sel.report is c and sel.previous is b and sel.history == (a, b, c)
    sel = select_report(reports, index=1, model_version=VERSION)
    assert sel.report is b and sel.previous is a
    sel = select_report(reports, window_start=c.window_start)
    assert sel.report is c  # the reference comparison, not the canary one
    sel = select_report(reports, window_start=c.window_start, baseline="version:v1")
    assert sel.report is canary and sel.previous is None
    sel = select_report(reports, model_version="v1")
    assert sel.report is other_version and sel.previous is None
    with pytest.raises(ReportSelectionError, match="out of range"):
        select_report(reports, index=7)
    with pytest.raises(ReportSelectionError, match="versions"):
        select_report(reports, model_version="v9")
    with pytest.raises(ReportSelectionError, match="starts at"):
        select_report(reports, window_start=1.0)


def test_read_reports_names_the_bad_line(tmp_path: Path, windows: list[Window]) -> None:
    path = tmp_path / "reports.jsonl"
    path.write_bytes(windows[0].report.to_json() + b"\n\n{not json\n")
    with pytest.raises(ReportSelectionError, match=r"reports.jsonl:3"):
        read_reports(path)


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, profile: Profile, windows: list[Window]):
    d = tmp_path_factory.mktemp("cli")
    profile.save(d / "profile.json")
    (d / "reports.jsonl").write_bytes(b"".join(w.report.to_json() + b"\n" for w in windows))
    for i, w in enumerate(windows):
        (d / f"w{i}.sketch").write_bytes(w.sketch.to_bytes())
    return d


def test_cli_renders_the_latest_window(files: Path, windows: list[Window]) -> None:
    out = files / "latest.html"
    rc = main(
        [
            "report",
            "--reference", str(files / "profile.json"),
            "--reports", str(files / "reports.jsonl"),
            "--sketch", str(files / "w2.sketch"),
            "--latest",
            "-o", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    doc = parse(out.read_text(encoding="utf-8"))
    assert doc.by_id("verdict").attrs["data-verdict"] == "drift"
    assert len(doc.by_id("history").find_all("circle", "pt")) == 3
    assert not doc.by_id("changes").find_all("p", "no-previous")
    assert doc.by_id("evidently").find("p", "evidently-status").attrs["data-status"] == "ok"
    # the profile on disk and the sketch file give the same page numbers as in memory
    assert load_profile(files / "profile.json").content_hash == windows[2].report.reference_hash


def test_cli_selects_by_time_and_index(files: Path, windows: list[Window]) -> None:
    base = ["report", "--reference", str(files / "profile.json")]
    base += ["--reports", str(files / "reports.jsonl"), "--no-evidently"]
    iso = datetime.fromtimestamp(windows[1].report.window_start, UTC).isoformat()
    out = files / "by-time.html"
    assert (
        main([*base, "--window-start", iso, "--sketch", str(files / "w1.sketch"), "-o", str(out)])
        == 0
    )
    doc = parse(out.read_text(encoding="utf-8"))
    assert doc.by_id("verdict").attrs["data-verdict"] == "ok"
    assert "--no-evidently" in doc.by_id("evidently").all_text()
    first = files / "first.html"
    assert main([*base, "--index", "0", "-o", str(first)]) == 0
    assert parse(first.read_text(encoding="utf-8")).by_id("changes").find_all("p", "no-previous")


def test_cli_errors_exit_2(files: Path, profile: Profile) -> None:
    base = ["report", "--reference", str(files / "profile.json")]
    base += ["--reports", str(files / "reports.jsonl"), "--no-evidently", "-o"]
    assert main([*base, str(files / "x.html"), "--index", "9"]) == 2
    assert main([*base, str(files / "x.html"), "--window-start", "yesterday"]) == 2
    assert main([*base, str(files / "x.html"), "--sketch", str(files / "missing.sketch")]) == 2
    other = build_profile(frame(500, 99), profile.schema, bins=10)
    other.save(files / "other.json")
    rc = main(
        [
            "report",
            "--reference",
            str(files / "other.json"),
            "--reports",
            str(files / "reports.jsonl"),
            "--no-evidently",
            "-o",
            str(files / "x.html"),
        ]
    )
    assert rc == 2
    assert not (files / "x.html").exists()
    with pytest.raises(SystemExit):  # argparse: one way of choosing the window
        main([*base, str(files / "x.html"), "--index", "0", "--latest"])


# -- artifacts and the agent's writer --------------------------------------------------------------


def test_artifacts_layout_and_latest_copy(
    tmp_path: Path, profile: Profile, windows: list[Window]
) -> None:
    report = windows[2].report
    paths = write_artifacts(tmp_path, report, "<p>page</p>", windows[2].sketch)
    folder = tmp_path / MODEL / VERSION
    stem = f"{int(report.window_start)}"
    assert paths.html == folder / f"{stem}.html"
    assert paths.latest.read_bytes() == paths.html.read_bytes() == b"<p>page</p>"
    assert WindowReport.from_json(paths.json.read_bytes()) == report
    restored = WindowSketch.from_bytes(profile, paths.sketch.read_bytes())
    assert restored.state_equal(windows[2].sketch)
    assert not list(folder.glob(".*tmp"))  # no temporary files left behind
    canary = WindowReport.from_dict({**report.to_dict(), "baseline": "version:v1"})
    cp = artifact_paths(tmp_path, canary)
    assert cp.html.name == f"{stem}.vs-v1.html" and cp.latest.name == "latest.vs-v1.html"
    odd = WindowReport.from_dict({**report.to_dict(), "model": "a/b c", "model_version": ".."})
    op = artifact_paths(tmp_path, odd)
    assert op.html.parent.parent.name == "a_b_c" and op.html.parent.name not in (".", "..")
    assert op.html.resolve().is_relative_to(tmp_path.resolve())
    assert latest_url("https://r.example/d/", MODEL, VERSION) == (
        f"https://r.example/d/{MODEL}/{VERSION}/latest.html"
    )


def test_writer_pages_only_drift_and_breaches_with_links(
    tmp_path: Path, profile: Profile, windows: list[Window]
) -> None:
    writer = HtmlReportWriter(profile, tmp_path, "https://reports.example.com/driftline")
    for w in windows:
        (result,) = writer.attach([w.closed], [EvaluatedWindow(w.report, 0.01)])
        folder = tmp_path / MODEL / VERSION
        page = folder / f"{int(w.report.window_start)}.html"
        if w.report.drifted or w.report.quality.breached:
            assert page.exists()
            url = result.report.extra["html_url"]
            assert url == f"https://reports.example.com/driftline/{MODEL}/{VERSION}/{page.name}"
            assert result.report.extra["html_latest_url"].endswith(f"/{VERSION}/latest.html")
            assert result.report.extra["html_path"] == str(page)
            saved = WindowReport.from_json((folder / f"{page.stem}.json").read_bytes())
            assert saved.extra["html_url"] == url
            assert (folder / "latest.html").read_bytes() == page.read_bytes()
            doc = parse(page.read_text(encoding="utf-8"))
            # the writer remembered the clean windows before it
            assert not doc.by_id("changes").find_all("p", "no-previous")
            assert len(doc.by_id("history").find_all("circle", "pt")) == 3
            assert doc.by_id("evidently").find("p", "evidently-status").attrs["data-status"] == (
                "skipped"
            )
        else:
            assert not page.exists()
            assert result.report == w.report  # no link, unchanged
    assert sorted(p.name for p in (tmp_path / MODEL / VERSION).iterdir()) == sorted(
        [f"{int(windows[2].report.window_start)}.{ext}" for ext in ("html", "json", "sketch")]
        + ["latest.html"]
    )


def test_writer_failure_keeps_the_report(
    tmp_path: Path, profile: Profile, windows: list[Window]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    writer = HtmlReportWriter(profile, blocker, None)
    w = windows[2]
    (result,) = writer.attach([w.closed], [EvaluatedWindow(w.report, 0.01)])
    assert result.report == w.report


def test_agent_writes_pages_in_its_worker(
    tmp_path: Path, profile: Profile, windows: list[Window]
) -> None:
    from monitor.config.model import MonitorConfig
    from monitor.runtime.agent import Agent

    profile_path = tmp_path / "profile.json"
    profile.save(profile_path)
    config = MonitorConfig.model_validate(
        {
            "model": MODEL,
            "reference": str(profile_path),
            "source": {
                "kind": "kafka",
                "kafka": {
                    "bootstrap_servers": "127.0.0.1:9",
                    "topics": ["predictions"],
                    "group_id": "g",
                },
            },
            "drift": {"share_threshold": 0.3, "exact": "never"},
            "reports": {
                "log": False,
                "html_dir": str(tmp_path / "html"),
                "html_base_url": "https://reports.example.com/",
            },
            "state": {"dir": str(tmp_path / "state")},
        }
    )
    agent = Agent(config, profile=profile, sinks=[], serve_http=False)
    try:
        results = agent._evaluate_closed([w.closed for w in windows])
    finally:
        agent.executor.shutdown(wait=True)
    linked = [r.report.extra.get("html_url") for r in results]
    assert linked[:2] == [None, None]
    assert linked[2] == (
        f"https://reports.example.com/{MODEL}/{VERSION}/{int(windows[2].report.window_start)}.html"
    )
    assert (tmp_path / "html" / MODEL / VERSION / "latest.html").exists()


def test_config_html_keys(tmp_path: Path) -> None:
    from monitor.config.errors import ConfigError
    from monitor.config.loader import load_config

    base = (
        "model: m\nreference: p.json\nsource:\n  kind: kafka\n  kafka:\n"
        "    bootstrap_servers: 127.0.0.1:9\n    topics: [t]\n    group_id: g\n"
    )
    path = tmp_path / "monitor.yaml"
    path.write_text(base + "reports:\n  html_dir: pages\n  html_base_url: https://r.example/x\n")
    cfg = load_config(path)
    assert cfg.reports.html_dir == tmp_path / "pages"
    assert cfg.reports.html_base_url == "https://r.example/x"
    path.write_text(base + "reports:\n  html_base_url: https://r.example/x\n")
    with pytest.raises(ConfigError, match="html_dir"):
        load_config(path)
    path.write_text(base + "reports:\n  html_dir: pages\n  html_base_url: r.example\n")
    with pytest.raises(ConfigError, match="http"):
        load_config(path)


def test_effect_interval_and_what_it_means(drifted_page: str, windows: list[Window]) -> None:
    """Each distance column shows its effect with the interval, the verdict says how it
    follows from the interval's lower end, and one sentence says what the interval and the
    error bound mean."""
    from monitor.report.plots import fmt

    doc = parse(drifted_page)
    report = windows[2].report
    with_effect = [r for r in results_of(report) if r.effect is not None]
    assert with_effect
    for r in with_effect:
        assert r.effect is not None
        row = doc.by_id("summary").find_all("tr", data_feature=r.feature)[0].all_text()
        assert f"[{fmt(r.effect.low)}, {fmt(r.effect.high)}]" in row
        line = doc.find_all("article", data_feature=r.feature)[0].find("p", "test-line")
        if r.test not in ("ks", "chi_square", "cramer_von_mises"):
            assert f"lower confidence bound {fmt(r.effect.low)}" in line.all_text()
    note = doc.by_id("summary").find("p", "note").all_text()
    assert "lower end exceeds its threshold" in note and "does not enter the verdict" in note
