"""The exporter's Prometheus families, read back through prometheus-client's parsers, and
its OpenTelemetry mirror, read back by a fake OTLP/HTTP collector on loopback."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from detectors.multivariate.result import MultivariateResult
from detectors.performance.results import (
    EstimatedMetric,
    KpiResult,
    PerformanceResult,
    RealizedMetric,
)
from detectors.results import (
    AttributionColumn,
    AttributionResult,
    DriftResult,
    Effect,
    ImpactItem,
    QualityCheck,
    QualityResult,
    Sequential,
    TestResult,
    WindowReport,
)
from monitor.outputs import metrics as m
from monitor.outputs.exporter import Exporter
from monitor.outputs.telemetry import Telemetry, headers_from_env, span_contexts

TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
SPAN_A = "00f067aa0ba902b7"
SPAN_B = "b7ad6b7169203331"
TP_A = f"00-{TRACE_A}-{SPAN_A}-01"
TP_B = f"00-{TRACE_B}-{SPAN_B}-01"


def make_report(
    model_version: str = "v1",
    *,
    income_statistic: float = 0.04,
    with_city: bool = True,
    baseline: str = "reference",
    trace_ids: tuple[str, ...] = (TRACE_A, TRACE_B),
) -> WindowReport:
    """A window where ``age`` drifted (KS), ``income`` did not (Wasserstein, no p-value) and
    ``city`` did not (chi-square); of the predictions, the score drifted (PSI) and the
    label did not (chi-square)."""
    columns = [
        TestResult("age", "ks", 0.31, 1.2e-6, 0.05, True, mode="exact"),
        TestResult(
            "income",
            "wasserstein",
            income_statistic,
            None,
            0.05,
            False,
            effect=Effect(income_statistic * 0.9, income_statistic * 0.5, income_statistic * 1.5),
        ),
    ]
    if with_city:
        columns.append(TestResult("city", "chi_square", 3.5, 0.62, 0.05, False))
    tested = sum(math.isfinite(c.statistic) for c in columns)
    drift = DriftResult(
        share=1 / tested,
        drifted_count=1,
        tested_count=tested,
        share_threshold=0.5,
        drifted=1 / tested >= 0.5,
        correction="none",
        columns=tuple(columns),
    )
    prediction = DriftResult(
        share=0.5,
        drifted_count=1,
        tested_count=2,
        share_threshold=0.5,
        drifted=True,
        correction="none",
        columns=(
            TestResult("score", "psi", 0.27, None, 0.0025, True, effect=Effect(0.26, 0.2, 0.35)),
            TestResult("label", "chi_square", 1.9, 0.17, 0.05, False),
        ),
    )
    quality = QualityResult(
        rows=480,
        checks=(
            QualityCheck("age", "missing", 0.125, 0.01, 0.05, True, count=60),
            QualityCheck("city", "unseen", 0.02, 0.0, 0.05, False, count=10),
            QualityCheck("income", "non_finite", 0.0, 0.0, 0.01, False),
        ),
    )
    return WindowReport(
        model="fraud",
        model_version=model_version,
        window_start=1_700_000_000.0,
        window_end=1_700_000_060.0,
        reference_hash="abcdef0123456789abcdef",
        rows=480,
        drift=drift,
        prediction_drift=prediction,
        quality=quality,
        baseline=baseline,
        late_records=3,
        duplicate_records=2,
        evaluated_at=1_700_000_075.5,
        exemplar_trace_ids=trace_ids,
    )


def samples(exporter: Exporter) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the classic text exposition, by sample name."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    text = generate_latest(exporter.registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(exporter: Exporter, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels`` (None when absent)."""
    found = [v for lb, v in samples(exporter).get(name, []) if labels.items() <= lb.items()]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


@pytest.fixture
def exporter() -> Exporter:
    return Exporter("fraud", "60s", "abcdef0123456789abcdef")


def test_observe_report_sets_every_window_family(exporter: Exporter) -> None:
    report = make_report()
    exporter.observe_report(report, evaluation_seconds=0.042)
    base = {"model": "fraud", "model_version": "v1", "window": "60s"}
    age = {**base, "feature": "age", "detector": "ks", "baseline": "reference"}
    assert value(exporter, m.FEATURE_DRIFT_STATISTIC.name, **age) == pytest.approx(0.31)
    assert value(exporter, m.FEATURE_DRIFT_P_VALUE.name, **age) == pytest.approx(1.2e-6)
    assert value(exporter, m.FEATURE_DRIFT_THRESHOLD.name, **age) == pytest.approx(0.05)
    assert value(exporter, m.FEATURE_DRIFTED.name, **age) == 1.0
    income = {**base, "feature": "income", "detector": "wasserstein"}
    assert value(exporter, m.FEATURE_DRIFT_STATISTIC.name, **income) == pytest.approx(0.04)
    assert value(exporter, m.FEATURE_DRIFTED.name, **income) == 0.0
    # Wasserstein defines no p-value: no series rather than a made-up one
    assert value(exporter, m.FEATURE_DRIFT_P_VALUE.name, **income) is None
    share = report.drift.share
    assert value(exporter, m.DATASET_DRIFT_SHARE.name, **base) == pytest.approx(share)
    assert value(exporter, m.DATASET_DRIFT_VERDICT.name, **base) == 0.0
    score = {**base, "feature": "score", "detector": "psi"}
    assert value(exporter, m.PREDICTION_DRIFT_STATISTIC.name, **score) == pytest.approx(0.27)
    assert value(exporter, m.PREDICTION_DRIFTED.name, **score) == 1.0
    assert value(exporter, m.PREDICTION_DRIFT_VERDICT.name, **base) == 1.0
    assert value(exporter, m.PREDICTION_DRIFT_SHARE.name, **base) == 0.5
    label = {**base, "feature": "label", "detector": "chi_square"}
    assert value(exporter, m.PREDICTION_DRIFT_P_VALUE.name, **label) == pytest.approx(0.17)
    assert value(exporter, m.PREDICTION_DRIFTED.name, **label) == 0.0
    assert value(exporter, m.PREDICTION_DRIFT_P_VALUE.name, **score) is None
    missing = {**base, "feature": "age", "check": "missing"}
    assert value(exporter, m.QUALITY_RATIO.name, **missing) == pytest.approx(0.125)
    assert value(exporter, m.QUALITY_BREACHED.name, **missing) == 1.0
    unseen = {**base, "feature": "city", "check": "unseen"}
    assert value(exporter, m.QUALITY_BREACHED.name, **unseen) == 0.0
    assert value(exporter, m.WINDOW_QUALITY_BREACHED.name, **base) == 1.0
    assert value(exporter, m.WINDOW_ROWS.name, **base) == 480.0
    assert value(exporter, m.LAST_WINDOW_CLOSE.name, **base) == report.evaluated_at
    assert value(exporter, m.LAST_WINDOW_END.name, **base) == report.window_end
    assert value(exporter, m.WINDOWS_CLOSED.name, **base) == 1.0
    hist = {"model": "fraud", "window": "60s"}
    assert value(exporter, m.WINDOW_EVALUATION_SECONDS.name + "_count", **hist) == 1.0
    assert value(exporter, m.WINDOW_EVALUATION_SECONDS.name + "_sum", **hist) == 0.042
    le_005 = value(exporter, m.WINDOW_EVALUATION_SECONDS.name + "_bucket", **hist, le="0.05")
    le_001 = value(exporter, m.WINDOW_EVALUATION_SECONDS.name + "_bucket", **hist, le="0.01")
    assert (le_001, le_005) == (0.0, 1.0)


def test_no_label_holds_a_record_value(exporter: Exporter) -> None:
    exporter.observe_report(make_report(), 0.01)
    for name, series in samples(exporter).items():
        if not name.startswith(m.PREFIX):
            continue
        for labels, _ in series:
            assert not set(labels) & m.FORBIDDEN_LABELS
            assert TRACE_A not in labels.values()


def test_an_untestable_column_leaves_no_stale_series(exporter: Exporter) -> None:
    exporter.observe_report(make_report(), 0.01)
    city = {"feature": "city", "model_version": "v1"}
    assert value(exporter, m.FEATURE_DRIFT_STATISTIC.name, **city) == pytest.approx(3.5)
    # next window: income untestable (NaN statistic), city absent altogether
    exporter.observe_report(make_report(income_statistic=math.nan, with_city=False), 0.01)
    for defn in (m.FEATURE_DRIFT_STATISTIC, m.FEATURE_DRIFTED, m.FEATURE_DRIFT_THRESHOLD):
        assert value(exporter, defn.name, **city) is None
        assert value(exporter, defn.name, feature="income") is None
        assert value(exporter, defn.name, feature="age") is not None
    assert value(exporter, m.FEATURE_DRIFT_P_VALUE.name, **city) is None
    # share now over the one tested column
    assert value(exporter, m.DATASET_DRIFT_SHARE.name, model_version="v1") == 1.0
    assert value(exporter, m.DATASET_DRIFT_VERDICT.name, model_version="v1") == 1.0
    assert value(exporter, m.WINDOWS_CLOSED.name, model_version="v1") == 2.0


def test_a_set_with_nothing_tested_exports_no_verdict(exporter: Exporter) -> None:
    exporter.observe_report(make_report(), 0.01)
    report = make_report()
    empty = DriftResult(math.nan, 0, 0, 0.5, False, "none", ())
    exporter.observe_report(replace(report, prediction_drift=empty), 0.01)
    assert value(exporter, m.PREDICTION_DRIFT_VERDICT.name) is None
    assert value(exporter, m.PREDICTION_DRIFT_SHARE.name) is None
    assert value(exporter, m.PREDICTION_DRIFT_STATISTIC.name) is None
    assert value(exporter, m.DATASET_DRIFT_VERDICT.name) == 0.0


def test_versions_and_baselines_keep_their_own_series(exporter: Exporter) -> None:
    exporter.observe_report(make_report("v1"), 0.01)
    exporter.observe_report(make_report("v2", with_city=False), 0.01)
    canary = make_report("v2", income_statistic=0.5, baseline="version:v1")
    exporter.observe_report(canary, 0.01)
    stat = m.FEATURE_DRIFT_STATISTIC.name
    # v2's reference-baseline window did not remove v1's city series
    assert value(exporter, stat, model_version="v1", feature="city") == pytest.approx(3.5)
    v2_city = {"model_version": "v2", "feature": "city"}
    assert value(exporter, stat, **v2_city, baseline="reference") is None
    assert value(exporter, stat, **v2_city, baseline="version:v1") == pytest.approx(3.5)
    ref = {"model_version": "v2", "feature": "income", "baseline": "reference"}
    assert value(exporter, stat, **ref) == pytest.approx(0.04)
    ver = {"model_version": "v2", "feature": "income", "baseline": "version:v1"}
    assert value(exporter, stat, **ver) == pytest.approx(0.5)
    # the canary comparison is not a second window
    assert value(exporter, m.WINDOWS_CLOSED.name, model_version="v2") == 1.0
    assert value(exporter, m.WINDOW_ROWS.name, model_version="v2") == 480.0
    count = m.WINDOW_EVALUATION_SECONDS.name + "_count"
    assert value(exporter, count) == 3.0


def test_row_windows_export_no_event_time_end(exporter: Exporter) -> None:
    exporter.observe_report(replace(make_report(), window_kind="rows"), 0.01)
    assert value(exporter, m.LAST_WINDOW_END.name) is None
    assert value(exporter, m.WINDOW_ROWS.name) == 480.0


def test_records_and_failures_agree(exporter: Exporter) -> None:
    exporter.count_records("decoded", 100, model_version="v1")
    exporter.count_records("decoded", 20, model_version="v1")
    exporter.count_records("late", 3, model_version="v1")
    exporter.count_records("duplicate", 2)
    exporter.count_failures("invalid_json", 4)
    exporter.count_failures("oversized", 1)
    rec = m.RECORDS.name
    assert value(exporter, rec, outcome="decoded", model_version="v1") == 120.0
    assert value(exporter, rec, outcome="late") == 3.0
    assert value(exporter, rec, outcome="duplicate", model_version="") == 2.0
    failed_by_reason = samples(exporter)[m.RECORDS_FAILED.name]
    assert {lb["reason"]: v for lb, v in failed_by_reason} == {"invalid_json": 4, "oversized": 1}
    assert value(exporter, rec, outcome="failed") == sum(v for _, v in failed_by_reason)
    with pytest.raises(ValueError, match="count_failures"):
        exporter.count_records("failed", 1)
    with pytest.raises(ValueError, match="outcome"):
        exporter.count_records("lost", 1)
    with pytest.raises(ValueError, match="only go up"):
        exporter.count_records("decoded", -1)


def test_source_lag_checkpoint_reference_and_rollback(exporter: Exporter) -> None:
    assert value(exporter, m.SOURCE_UP.name) == 0.0  # not consuming until told
    exporter.set_source_up(True)
    assert value(exporter, m.SOURCE_UP.name, model="fraud") == 1.0
    exporter.set_lag("preds", 0, 17)
    exporter.set_lag("preds", 1, 0)
    assert value(exporter, m.CONSUMER_LAG.name, topic="preds", partition="0") == 17.0
    exporter.set_lag("preds", 0, None)  # partition revoked
    assert value(exporter, m.CONSUMER_LAG.name, partition="0") is None
    assert value(exporter, m.CONSUMER_LAG.name, partition="1") == 0.0
    exporter.set_checkpoint(1_700_000_100.25)
    assert value(exporter, m.LAST_CHECKPOINT.name) == 1_700_000_100.25
    info = m.REFERENCE_INFO.name
    assert value(exporter, info, reference="abcdef012345") == 1.0
    exporter.set_reference("0123456789abcdef0123", 25_000)
    series = samples(exporter)[info]
    assert [lb["reference"] for lb, _ in series] == ["0123456789ab"]  # replaced, not added
    assert value(exporter, m.REFERENCE_ROWS.name, model="fraud") == 25_000
    exporter.count_rollback("v2", "kserve_canary_rollback", "executed")
    exporter.count_rollback("v2", "kserve_canary_rollback", "executed")
    roll = {"model_version": "v2", "action": "kserve_canary_rollback", "outcome": "executed"}
    assert value(exporter, m.ROLLBACK_DECISIONS.name, **roll) == 2.0
    build = samples(exporter)[m.BUILD_INFO.name]
    assert len(build) == 1 and build[0][0]["version"] and build[0][0]["python"]


def test_effects_are_exported_with_their_intervals(exporter: Exporter) -> None:
    """Each column's effect and interval, where its test has one (not KS here, not
    chi-square), with the column's bounded labels."""
    exporter.observe_report(make_report(income_statistic=0.04), 0.01)
    exposed = samples(exporter)
    income = {"feature": "income", "detector": "wasserstein"}

    def value(name: str, labels: dict[str, str]) -> list[float]:
        return [v for lab, v in exposed.get(name, []) if labels.items() <= lab.items()]

    assert value("driftline_feature_drift_effect", income) == [pytest.approx(0.036)]
    assert value("driftline_feature_drift_effect_low", income) == [pytest.approx(0.02)]
    assert value("driftline_feature_drift_effect_high", income) == [pytest.approx(0.06)]
    assert value("driftline_feature_drift_effect_low", {"feature": "city"}) == []
    score = {"feature": "score", "detector": "psi"}
    assert value("driftline_prediction_drift_effect_high", score) == [pytest.approx(0.35)]
    for labels, _ in exposed["driftline_feature_drift_effect_low"]:
        assert set(labels) == set(m.FEATURE_DRIFT_EFFECT_LOW.labels)


def test_every_defined_family_is_exposed_once_used(exporter: Exporter) -> None:
    exporter.observe_report(make_report(), 0.01)
    exporter.count_records("decoded", 1, "v1")
    exporter.count_failures("invalid_json", 1)
    exporter.set_lag("preds", 0, 1)
    exporter.set_checkpoint(1.0)
    exporter.set_reference("abc", 10)
    exporter.count_rollback("v1", "noop", "skipped")
    exporter.count_failed_evaluations("retry", 1)
    exporter.count_state_lost(1)
    exporter.count_changelog_write("acknowledged")
    exporter.set_open_windows(1)
    block = MultivariateResult("mmd", 0.01, 0.002, 0.004, True, "numpy", 0.1, 500, 5000)
    # a window where every column's sequential detector and the dataset's fired
    fired = Sequential(15.0, 13.0, 60.0, "location_up")
    report = replace(make_report(), multivariate=block)
    columns = tuple(replace(c, sequential=fired) for c in report.drift.columns)
    report = replace(report, drift=replace(report.drift, columns=columns, sequential=fired))
    exporter.observe_report(report, 0.01)
    exporter.count_multivariate_skipped("budget")
    exporter.set_online_mmd("v1", 0.01, 0.02, True)
    perf = PerformanceResult(
        labeled_rows=500,
        coverage=0.5,
        realized=(RealizedMetric("f1", 0.8, 0.78, 0.82),),
        estimated=(EstimatedMetric("f1", "cbpe", 0.81, 0.79, 0.83, 0.7, False),),
        kpis=(KpiResult("revenue", 12.0, 0.4, 500, (1.0,) * 10),),
    )
    attribution = AttributionResult(
        method="tree",
        ndcg=0.8,
        ndcg_threshold=0.9,
        drifted=True,
        rows=500,
        columns=(
            AttributionColumn("x", 0.2, 0.4, 0.2, 0.1, 0.3, "ks", 0.3, 0.001, 0.01, 0.5, True),
        ),
        impact=(ImpactItem("x", 2.0, 0.5, 1.0),),
    )
    exporter.count_attribution_skipped("budget")
    exporter.count_attribution_invalid("wrong_length", 2)
    with_perf = replace(report, performance=perf, attribution=attribution)
    exporter.observe_report(with_perf, 0.01)
    exporter.observe_revision(replace(with_perf, performance=replace(perf, revised=True)))
    exporter.count_labels("joined", 3)
    exporter.set_label_join(10, 2)
    exporter.count_partials_published("window", 1)
    exporter.count_partials_received("accepted")
    exporter.observe_aggregation(0.5, 2 / 3, ["coverage"], 1)
    exposed = samples(exporter)
    for defn in m.ALL_METRICS:
        name = defn.name + ("_count" if defn.kind == "histogram" else "")
        assert name in exposed, f"{defn.name} is defined but never exported"


def _openmetrics_exemplars(exporter: Exporter) -> dict[str, list[dict[str, str]]]:
    text = generate_openmetrics(exporter.registry).decode()
    out: dict[str, list[dict[str, str]]] = {}
    for family in parse_openmetrics(text):
        for s in family.samples:
            if s.exemplar is not None:
                out.setdefault(s.name, []).append(s.exemplar.labels)
    return out


def test_openmetrics_exemplars_point_at_a_trace_of_the_window(exporter: Exporter) -> None:
    exporter.observe_report(make_report(trace_ids=("not-a-trace-id", TRACE_B)), 0.02)
    found = _openmetrics_exemplars(exporter)
    assert found[m.WINDOWS_CLOSED.name] == [{"trace_id": TRACE_B}]
    assert {"trace_id": TRACE_B} in found[m.WINDOW_EVALUATION_SECONDS.name + "_bucket"]
    # the classic text format has no exemplars
    assert TRACE_B not in generate_latest(exporter.registry).decode()


def test_exemplars_can_be_turned_off() -> None:
    quiet = Exporter("fraud", "60s", "abc", exemplars=False)
    quiet.observe_report(make_report(), 0.02)
    assert _openmetrics_exemplars(quiet) == {}


# -- OpenTelemetry ---------------------------------------------------------------------------


class FakeCollector:
    """An OTLP/HTTP receiver on loopback that keeps every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with collector.lock:
                    collector.requests.append((self.path, headers, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def take(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            got = [(h, b) for p, h, b in self.requests if p == path]
            self.requests = [r for r in self.requests if r[0] != path]
        return got

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    c = FakeCollector()
    yield c
    c.close()


def _metric_points(bodies: list[bytes]) -> dict[str, list[tuple[dict[str, str], object]]]:
    """Data points by metric name, from the last export request in ``bodies``."""
    req = ExportMetricsServiceRequest()
    req.ParseFromString(bodies[-1])
    out: dict[str, list[tuple[dict[str, str], object]]] = {}
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = getattr(metric, kind).data_points
                for p in points:
                    attrs = {a.key: a.value.string_value for a in p.attributes}
                    out.setdefault(metric.name, []).append((attrs, p))
    return out


def test_otlp_export_mirrors_metrics_and_spans(
    collector: FakeCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_TEST_OTLP_HEADERS", "Authorization=Bearer%20s3cret,x-team=ml")
    config = SimpleNamespace(
        otlp_endpoint=collector.url,
        otlp_interval=60.0,
        otlp_headers_env="DRIFTLINE_TEST_OTLP_HEADERS",
    )
    exporter = Exporter("fraud", "60s", "abcdef0123456789")
    exporter.count_records("decoded", 480, "v1")  # before attaching: copied over
    telemetry = Telemetry.from_config(config, "fraud", exporter)  # type: ignore[arg-type]
    try:
        assert telemetry.enabled and exporter.telemetry is telemetry
        report = make_report()
        exporter.observe_report(report, 0.03)
        traceparents = [TP_A, "garbage", TP_B, TP_A, f"00-{'0' * 32}-x-01"]
        telemetry.window_evaluated(report, 0.03, traceparents)
        assert telemetry.force_flush()

        metric_requests = collector.take("/v1/metrics")
        assert metric_requests, "no OTLP metrics request arrived"
        assert all(h.get("authorization") == "Bearer s3cret" for h, _ in metric_requests)
        assert all(h.get("content-type") == "application/x-protobuf" for h, _ in metric_requests)
        points = _metric_points([b for _, b in metric_requests])
        for defn in (
            m.FEATURE_DRIFT_STATISTIC,
            m.DATASET_DRIFT_SHARE,
            m.QUALITY_RATIO,
            m.WINDOWS_CLOSED,
            m.RECORDS,
            m.WINDOW_EVALUATION_SECONDS,
            m.BUILD_INFO,
            m.SOURCE_UP,
        ):
            assert defn.otel_name in points, f"{defn.otel_name} did not arrive over OTLP"
        stats = {a["feature"]: p.as_double for a, p in points[m.FEATURE_DRIFT_STATISTIC.otel_name]}
        assert stats == pytest.approx({"age": 0.31, "income": 0.04, "city": 3.5})
        (records_attrs, records_point), *_ = points[m.RECORDS.otel_name]
        assert records_attrs["outcome"] == "decoded" and records_point.as_double == 480
        (_, hist), *_ = points[m.WINDOW_EVALUATION_SECONDS.otel_name]
        assert hist.count == 1 and hist.sum == pytest.approx(0.03)
        assert tuple(hist.explicit_bounds) == m.WINDOW_EVALUATION_SECONDS.buckets

        trace_requests = collector.take("/v1/traces")
        assert trace_requests, "no OTLP trace request arrived"
        req = ExportTraceServiceRequest()
        req.ParseFromString(trace_requests[-1][1])
        resource = req.resource_spans[0].resource
        assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == (
            "driftline"
        )
        (span,) = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert span.name == "driftline.window.evaluate"
        attrs = {a.key: a.value for a in span.attributes}
        assert attrs["driftline.model"].string_value == "fraud"
        assert attrs["driftline.model_version"].string_value == "v1"
        assert attrs["driftline.window.start"].double_value == 1_700_000_000.0
        assert attrs["driftline.window.end"].double_value == 1_700_000_060.0
        assert attrs["driftline.window.rows"].int_value == 480
        assert attrs["driftline.drifted"].bool_value is True
        assert attrs["driftline.drift.share"].double_value == pytest.approx(1 / 3)
        drifted = [
            v.string_value for v in attrs["driftline.drift.drifted_features"].array_value.values
        ]
        assert drifted == ["age"]
        assert (span.end_time_unix_nano - span.start_time_unix_nano) == pytest.approx(3e7, rel=0.01)
        links = [(ln.trace_id.hex(), ln.span_id.hex()) for ln in span.links]
        assert links == [(TRACE_A, SPAN_A), (TRACE_B, SPAN_B)]
        assert len(span.parent_span_id) == 0  # a root span

        # the next window cannot test income: its gauge stops being reported over OTLP too
        exporter.observe_report(make_report(income_statistic=math.nan), 0.01)
        assert telemetry.force_flush()
        points = _metric_points([b for _, b in collector.take("/v1/metrics")])
        features = {a["feature"] for a, _ in points[m.FEATURE_DRIFT_STATISTIC.otel_name]}
        assert features == {"age", "city"}
        (_, closed), *_ = points[m.WINDOWS_CLOSED.otel_name]
        assert closed.as_double == 2
    finally:
        telemetry.shutdown()


def test_span_contexts_keep_valid_distinct_traceparents() -> None:
    got = span_contexts([TP_B, "00-zz-yy-01", TP_B, TP_A, "", f"00-{TRACE_A}-{'0' * 16}-01"])
    assert [(f"{c.trace_id:032x}", f"{c.span_id:016x}") for c in got] == [
        (TRACE_B, SPAN_B),
        (TRACE_A, SPAN_A),
    ]
    assert all(c.is_remote for c in got)
    assert len(span_contexts([TP_A, TP_B], limit=1)) == 1


def test_otlp_headers_env_errors_never_show_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    assert headers_from_env(None) == {}
    monkeypatch.delenv("DRIFTLINE_TEST_MISSING", raising=False)
    with pytest.raises(ValueError, match="DRIFTLINE_TEST_MISSING is not set"):
        headers_from_env("DRIFTLINE_TEST_MISSING")
    monkeypatch.setenv("DRIFTLINE_TEST_BAD", "topsecretvalue")
    with pytest.raises(ValueError, match="DRIFTLINE_TEST_BAD") as info:
        headers_from_env("DRIFTLINE_TEST_BAD")
    assert "topsecretvalue" not in str(info.value)


def test_exporter_given_telemetry_mirrors_from_the_start(collector: FakeCollector) -> None:
    telemetry = Telemetry(collector.url, model="fraud", interval=60.0)
    try:
        exporter = Exporter("fraud", "60s", "abcdef0123456789", telemetry=telemetry)
        exporter.count_rollback("v2", "kserve_canary_rollback", "dry_run")
        assert telemetry.force_flush()
        points = _metric_points([b for _, b in collector.take("/v1/metrics")])
        ((info_attrs, _),) = points[m.REFERENCE_INFO.otel_name]
        assert info_attrs == {"model": "fraud", "reference": "abcdef012345"}
        ((roll_attrs, roll),) = points[m.ROLLBACK_DECISIONS.otel_name]
        assert roll_attrs["outcome"] == "dry_run" and roll.as_double == 1
        # nothing closed yet: no window families at all
        assert m.FEATURE_DRIFT_STATISTIC.otel_name not in points
    finally:
        telemetry.shutdown()


def test_no_endpoint_means_disabled_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    # the headers variable is not even read without an endpoint
    monkeypatch.delenv("DRIFTLINE_TEST_UNSET", raising=False)
    config = SimpleNamespace(
        otlp_endpoint=None, otlp_interval=15.0, otlp_headers_env="DRIFTLINE_TEST_UNSET"
    )
    exporter = Exporter("fraud", "60s", "abc")
    telemetry = Telemetry.from_config(config, "fraud", exporter)  # type: ignore[arg-type]
    assert not telemetry.enabled and exporter.telemetry is None
    telemetry.window_evaluated(make_report(), 0.01, [TP_A])  # no-ops, no errors
    exporter.observe_report(make_report(), 0.01)
    assert telemetry.force_flush()
    telemetry.shutdown()
