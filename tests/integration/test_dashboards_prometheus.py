"""Every query of the generated dashboards, run against a real Prometheus scraping an agent.

A module fixture builds a reference profile, starts the agent's HTTP server on loopback
and a Prometheus (Debian's, 2.42) that scrapes it every second, then feeds the agent's
exporter the way the agent would: ``monitor.runtime.replay.replay`` over JSON-lines files of
prediction records for a stable version (``v1``, like the reference) and a canary
(``v2``, drifting from the second segment on, with missing values), with the canary
compared with the stable version (``windows.stable_version``). The files also carry
duplicate request ids, a late record and an undecodable line, so the pipeline counts
those itself; consumer lag, checkpoints, the source state and rollback decisions go
through the exporter's methods. The segments are spread over about ten seconds so
``rate()`` sees several scrapes.

The blocks that need a model, labels or the row-level tests (attribution, performance and
KPIs, multivariate) are attached to each replayed report as the evaluator would, before
the exporter observes it (:class:`BlockExporter`), with values that follow the report's
own drift verdict; the label join, the online MMD, revisions and skipped windows go
through the exporter's methods once per segment.

Then each panel query of the checked-in JSON, with its template variables substituted,
is sent to ``/api/v1/query`` (instant panels) or ``/api/v1/query_range``: it must parse
and return data, except the queries :data:`EMPTY_WHEN_HEALTHY` lists (their panel
descriptions say so too), which must parse.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashboards.build import JSON_DIR
from detectors.multivariate.result import MultivariateResult, MultivariateTest
from detectors.performance.results import (
    EstimatedMetric,
    KpiResult,
    PerformanceResult,
    RealizedMetric,
)
from detectors.profile import Profile, build_profile
from detectors.results import AttributionColumn, AttributionResult, ImpactItem, WindowReport
from detectors.schema import Schema
from monitor.config.model import MonitorConfig
from monitor.outputs.exporter import Exporter, new_registry
from monitor.outputs.server import AgentServer
from monitor.runtime.pipeline import window_label
from monitor.runtime.replay import replay

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

MODEL = "fraud"
STABLE, CANARY = "v1", "v2"
DRIFTED = ("normal", "uniform", "lognormal", "device")
WINDOW_SECONDS = 5
SEGMENTS = 6
SEGMENT_EVENT_SECONDS = 20
ROWS_PER_VERSION = 600
T0 = 1_700_000_000.0
RATE_INTERVAL = "5s"

# Queries that return nothing while nothing is wrong: (dashboard uid, panel title).
# Their panel descriptions say so ("Empty when ..."); here they only have to parse.
EMPTY_WHEN_HEALTHY = {
    ("driftline-fleet", "Firing driftline alerts"),  # the table; the stat counts 0
    ("driftline-model", "Rollback decisions"),  # the table and the annotation
}


# -- the blocks a fully configured agent adds to a report ---------------------------------------


def _attribution(report: WindowReport) -> AttributionResult:
    """SHAP ranking against the reference's: the drifted features gain attribution."""
    drifted = {c.feature for c in report.drift.columns if c.drifted}
    columns = []
    for i, c in enumerate(report.drift.columns):
        ref = 0.1 * (i + 1)
        now = ref * (2.5 if c.feature in drifted else 1.0)
        columns.append(
            AttributionColumn(
                c.feature, ref, now, now - ref, now - ref - 0.01, now - ref + 0.01,
                "wasserstein", abs(now - ref), None, 0.05, ref, c.feature in drifted,
            )
        )  # fmt: skip
    impact = tuple(
        ImpactItem(c.feature, c.statistic / c.threshold, 0.2, 0.2 * c.statistic / c.threshold)
        for c in report.drift.columns
        if c.drifted
    )
    ndcg = 0.7 if drifted else 0.99
    return AttributionResult(
        "tree", ndcg, 0.9, ndcg < 0.9, report.rows, tuple(columns), impact, tuple(sorted(drifted))
    )


def _multivariate(report: WindowReport) -> MultivariateResult:
    """MMD and classifier tests that agree with the per-column verdict."""
    drifted = report.drift.drifted
    mmd = MultivariateTest(
        "mmd", 0.08 if drifted else 0.001, 0.002 if drifted else 0.6, 0.01, drifted
    )
    auc = MultivariateTest(
        "classifier", 0.9 if drifted else 0.51, 1e-4 if drifted else 0.4, 0.55, drifted
    )
    p = min(1.0, 2 * min(mmd.p_value or 1.0, auc.p_value or 1.0))
    return MultivariateResult(
        "both", auc.statistic, p, auc.threshold, drifted, "numpy", 0.05, report.rows, 4000,
        tests=(mmd, auc),
    )  # fmt: skip


def _performance(report: WindowReport, coverage: float) -> PerformanceResult:
    """F1 realized on the labelled share and estimated by CBPE; a revenue KPI."""
    f1 = 0.6 if report.drift.drifted else 0.85
    labeled = int(report.rows * coverage)
    return PerformanceResult(
        labeled_rows=labeled,
        coverage=coverage,
        realized=(RealizedMetric("f1", f1, f1 - 0.05, f1 + 0.05),),
        estimated=(
            EstimatedMetric("f1", "cbpe", f1 + 0.02, f1 - 0.03, f1 + 0.07, 0.75, f1 < 0.75),
        ),
        kpis=(KpiResult("revenue", 12.0 - 4.0 * (f1 < 0.75), 0.4, labeled, (10.0,) * 10),),
    )


class BlockExporter(Exporter):
    """The exporter of an agent with ``explain:``, ``labels:``, ``kpis:`` and
    ``multivariate:`` configured: each report gets those blocks before it is exported."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last: dict[str, WindowReport] = {}

    def observe_report(self, report: WindowReport, evaluation_seconds: float) -> None:
        report = replace(
            report,
            attribution=_attribution(report),
            multivariate=_multivariate(report),
            performance=_performance(report, 0.4),
        )
        if report.baseline == "reference":
            self.last[report.model_version] = report
        super().observe_report(report, evaluation_seconds)

    def late_labels(self) -> None:
        """Labels that arrived after the latest windows closed: each is sent again."""
        for report in self.last.values():
            perf = replace(_performance(report, 0.7), revised=True)
            self.observe_revision(replace(report, performance=perf))


# -- the fed Prometheus -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Fed:
    """A Prometheus that scraped the fed agent, and what the feed did when."""

    url: str
    start: float
    end: float = 0.0
    rollbacks: list[float] = field(default_factory=list)

    def api(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        try:
            return _get(f"{self.url}/api/v1/{path}?{query}")
        except urllib.error.HTTPError as exc:  # 400 with a JSON error body
            return json.loads(exc.read())

    def instant(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr, time=f"{self.end:.3f}")

    def range(self, expr: str) -> dict[str, Any]:
        return self.api(
            "query_range",
            query=expr,
            start=f"{self.start:.3f}",
            end=f"{self.end:.3f}",
            step="1",
        )


def _record(row: dict[str, Any], version: str, request_id: str) -> bytes:
    features = {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in row.items()
        if k not in ("prediction", "timestamp")
    }
    return json.dumps(
        {
            "features": features,
            "prediction": row["prediction"],
            "timestamp": row["timestamp"],
            "model_version": version,
            "request_id": request_id,
        }
    ).encode()


Frames = Callable[[int, int], pd.DataFrame]


def _segment(path: Path, seg: int, make_reference: Frames) -> Path:
    """Both versions' records of one segment, in event-time order, plus the awkward ones."""
    start = T0 + seg * SEGMENT_EVENT_SECONDS
    stamped: list[tuple[float, bytes]] = []
    for k, version in enumerate((STABLE, CANARY)):
        frame = make_reference(ROWS_PER_VERSION, 1000 + 10 * seg + k)
        if version == CANARY and seg >= 1:
            frame["normal"] += 6.0
            frame["uniform"] = frame["uniform"] * 3.0 + 2.0
            frame["lognormal"] *= 4.0
            frame["device"] = "kiosk"
            frame["prediction"] = np.clip(frame["prediction"] + 0.4, 0.0, 1.0)
            frame.loc[frame.index[: ROWS_PER_VERSION // 3], "with_nan"] = np.nan
        frame["timestamp"] = start + np.linspace(0.0, SEGMENT_EVENT_SECONDS - 0.01, len(frame))
        for i, row in enumerate(frame.to_dict("records")):
            stamped.append((row["timestamp"], _record(row, version, f"{version}-{seg}-{i}")))
    stamped.sort(key=lambda t: t[0])
    lines = [line for _, line in stamped]
    lines += [
        lines[3],  # a retried request: duplicate
        lines[-3],
        b'{"features": {"normal": 1.0',  # cut off: invalid_json
        # older than the allowed lateness (10s) once the segment's end has been seen: late
        _record(
            {"normal": 10.0, "prediction": 0.5, "timestamp": start},
            STABLE,
            f"late-{seg}",
        ),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("prometheus did not become ready in 30s")


def _wait_for(fed: Fed, expr: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = fed.api("query", query=expr)
        if body.get("status") == "success" and body["data"]["result"]:
            return
        time.sleep(0.25)
    raise AssertionError(f"no result for {expr} within {timeout}s")


@pytest.fixture(scope="module")
def fed(
    tmp_path_factory: pytest.TempPathFactory,
    reference_factory: Frames,
    explicit_schema: Schema,
) -> Iterator[Fed]:
    tmp = tmp_path_factory.mktemp("dashboards-prometheus")
    profile = build_profile(reference_factory(4000, 0), explicit_schema)
    profile_path = profile.save(tmp / "profile.json")
    config = MonitorConfig.model_validate(
        {
            "model": MODEL,
            "reference": str(profile_path),
            "source": {"kind": "file", "file": {"path": str(tmp / "segment-0.jsonl")}},
            "windows": {"size": f"{WINDOW_SECONDS}s", "stable_version": STABLE},
        },
        source="test",
    )
    exporter = BlockExporter(
        MODEL, window_label(config), profile.content_hash, registry=new_registry()
    )
    exporter.set_reference(profile.content_hash, profile.rows)
    with AgentServer("127.0.0.1", 0, registry=exporter.registry) as server:
        yield from _fed_prometheus(tmp, server.port, config, profile, exporter, reference_factory)


def _fed_prometheus(
    tmp: Path,
    agent_port: int,
    config: MonitorConfig,
    profile: Profile,
    exporter: BlockExporter,
    make_reference: Frames,
) -> Iterator[Fed]:
    """Start Prometheus scraping the agent on ``agent_port``, feed, hand over, stop it."""
    port = _free_port()
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: driftline\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{agent_port}']\n"
    )
    log = tmp / "prometheus.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    fed = Fed(url=f"http://127.0.0.1:{port}", start=time.time())
    try:
        _wait_ready(fed.url, proc, log)
        _wait_for(fed, 'up{job="driftline"} == 1')
        fed.start = time.time()
        exporter.set_source_up(True)
        for seg in range(SEGMENTS):
            for report in replay(
                config,
                profile,
                _segment(tmp / f"segment-{seg}.jsonl", seg, make_reference),
                exporter=exporter,
            ):
                assert report.model == MODEL
            for partition in range(2):
                exporter.set_lag("predictions", partition, 500 * (seg + 1) + 100 * partition)
            exporter.set_checkpoint(time.time())
            # the label join, the online MMD and the windows some blocks could not cover
            exporter.late_labels()
            exporter.count_labels("joined", ROWS_PER_VERSION)
            exporter.count_labels("expired", ROWS_PER_VERSION // 10)
            exporter.set_label_join(ROWS_PER_VERSION // 3, 5)
            exporter.set_online_mmd(STABLE, 0.001, 0.02, False)
            exporter.set_online_mmd(CANARY, 0.004 if seg == 0 else 0.05, 0.02, seg == 1)
            exporter.count_multivariate_skipped("too_few_rows")
            exporter.count_attribution_skipped("budget")
            exporter.count_attribution_invalid("wrong_length", 3 * (seg + 1))
            if seg in (1, SEGMENTS - 1):  # the policy acts on the drifting canary, twice
                exporter.count_rollback(CANARY, "rollback", "succeeded")
                fed.rollbacks.append(time.time())
            time.sleep(1.6)
        time.sleep(2.5)  # the last scrapes
        fed.end = time.time()
        yield fed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the dashboards' queries ------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    dashboard: str
    title: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.title}:{self.ref_id}"


def _dashboards() -> dict[str, dict[str, Any]]:
    return {
        board["uid"]: board
        for board in (json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json")))
    }


def _panel_queries() -> list[Query]:
    out = []
    for uid, board in _dashboards().items():
        for panel in board["panels"]:
            for t in panel.get("targets", []):
                out.append(
                    Query(uid, panel["title"], t["refId"], t["expr"], bool(t.get("instant")))
                )
    return out


# What a reader would pick: the drifting canary and the features that drift (the feature
# variable is multi-valued: Grafana joins the picks into a regex).
VARIABLES = {
    "$model": MODEL,
    "$version": CANARY,
    "$feature": "|".join(DRIFTED),
    "$__rate_interval": RATE_INTERVAL,
    "$__interval": "1s",
    "$__range": "60s",
}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable substitution for the variables driftline's queries use."""
    out = expr
    for name in sorted(values, key=len, reverse=True):  # longest first: no name inside another
        out = out.replace(name, values[name])
    left = re.findall(r"\$\{?\w+", out)
    assert not left, f"unsubstituted variables {left} in {expr}"
    return out


def _has_data(body: dict[str, Any]) -> bool:
    result = body["data"]["result"]
    if body["data"]["resultType"] == "matrix":
        return any(math.isfinite(float(v)) for s in result for _, v in s["values"])
    if body["data"]["resultType"] == "vector":
        return any(math.isfinite(float(s["value"][1])) for s in result)
    return bool(result)


QUERIES = _panel_queries()


def test_the_dashboards_have_queries() -> None:
    dashboards = {q.dashboard for q in QUERIES}
    assert dashboards == {"driftline-fleet", "driftline-model", "driftline-agent"}
    allowed = {(q.dashboard, q.title) for q in QUERIES}
    assert allowed >= EMPTY_WHEN_HEALTHY, "an allow-listed panel no longer exists"


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_panel_query_runs_and_returns_data(fed: Fed, query: Query) -> None:
    expr = substitute(query.expr, VARIABLES)
    body = fed.instant(expr) if query.instant else fed.range(expr)
    assert body.get("status") == "success", f"{query.id}: {body.get('error')}\n{expr}"
    if (query.dashboard, query.title) in EMPTY_WHEN_HEALTHY:
        return
    assert _has_data(body), f"{query.id} returned no data:\n{expr}"


def test_allow_listed_panels_say_they_can_be_empty() -> None:
    boards = _dashboards()
    for uid, title in EMPTY_WHEN_HEALTHY:
        panel = next(p for p in boards[uid]["panels"] if p["title"] == title)
        assert "Empty when" in panel["description"], (uid, title)


def test_variables_list_what_the_agent_exported(fed: Fed) -> None:
    boards = _dashboards()
    expected = {
        "model": {MODEL},
        "version": {STABLE, CANARY},
        "feature": set(DRIFTED),
    }
    seen = set()
    for uid, board in boards.items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
            assert match, var["query"]
            selector, label = substitute(match.group(1), VARIABLES), match.group(2)
            body = fed.api(
                f"label/{label}/values",
                **{"match[]": selector, "start": f"{fed.start:.3f}", "end": f"{fed.end:.3f}"},
            )
            assert body.get("status") == "success", body
            assert set(body["data"]) >= expected[var["name"]], (uid, var["name"], body["data"])
            seen.add(var["name"])
    assert seen == set(expected)


def test_rollback_annotation_marks_each_decision(fed: Fed) -> None:
    (annotation,) = _dashboards()["driftline-model"]["annotations"]["list"]
    expr = substitute(annotation["expr"], VARIABLES)
    body = fed.range(expr)
    assert body["status"] == "success", body
    marks = [
        float(t)
        for s in body["data"]["result"]
        if s["metric"].get("model_version") == CANARY and s["metric"].get("action") == "rollback"
        for t, _ in s["values"]
    ]
    first, second = fed.rollbacks
    assert second - first > 5.0, "decisions too close to tell their marks apart"
    # A mark after each decision, before the next one: the first decision created the
    # counter's series, which increase() alone cannot see.
    assert any(first - 1.0 <= t < min(first + 6.0, second) for t in marks), (first, marks)
    assert any(second - 1.0 <= t <= second + 6.0 for t in marks), (second, marks)
    assert not any(t < first - 1.0 for t in marks), "a mark before any decision"


def test_fleet_counts_only_the_drifting_canary(fed: Fed) -> None:
    (drifting,) = [q for q in QUERIES if q.title == "Versions drifting"]
    body = fed.instant(substitute(drifting.expr, VARIABLES))
    assert [float(s["value"][1]) for s in body["data"]["result"]] == [1.0]
    (table,) = [q for q in QUERIES if q.title == "Model versions" and q.ref_id == "A"]
    body = fed.instant(substitute(table.expr, VARIABLES))
    verdicts = {s["metric"]["model_version"]: float(s["value"][1]) for s in body["data"]["result"]}
    assert verdicts == {STABLE: 0.0, CANARY: 1.0}


def test_canary_panel_compares_the_canary_with_stable(fed: Fed) -> None:
    (canary,) = [q for q in QUERIES if q.title == "Canary against stable: drift share"]
    body = fed.instant(substitute(canary.expr, VARIABLES))
    series = {
        (s["metric"]["model_version"], s["metric"]["baseline"]) for s in body["data"]["result"]
    }
    assert series == {(CANARY, f"version:{STABLE}")}


def _instant_series(fed: Fed, title: str, label: str, ref_id: str = "A") -> dict[str, float]:
    (query,) = [q for q in QUERIES if q.title == title and q.ref_id == ref_id]
    body = fed.instant(substitute(query.expr, VARIABLES))
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in body["data"]["result"]}


def test_block_panels_split_by_what_the_blocks_hold(fed: Fed) -> None:
    # the drifting canary's last window: both row-level tests flagged it
    assert _instant_series(fed, "Multivariate verdict", "model_version") == {CANARY: 1.0}
    assert _instant_series(fed, "Multivariate p-value per test", "detector") == {
        "mmd": 0.002,
        "classifier": 1e-4,
    }
    # revised by late labels: the coverage of the revision, one series per metric and KPI
    assert _instant_series(fed, "Label coverage", "model_version") == {CANARY: 0.7}
    assert set(_instant_series(fed, "Estimated vs realized performance", "metric")) == {"f1"}
    assert set(_instant_series(fed, "Business KPIs", "kpi")) == {"revenue"}
    assert set(_instant_series(fed, "Labels by outcome", "outcome")) == {"joined", "expired"}
    impact = _instant_series(fed, "Drifted features by impact", "feature")
    assert set(impact) <= set(DRIFTED) and impact
