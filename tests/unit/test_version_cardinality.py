"""A flood of model versions (any producer can send them) must not flood Prometheus: a
bounded number of versions get series, the rest count under model_version="other", and
versions that stop sending lose their series."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detectors.results import DriftResult, QualityCheck, QualityResult, TestResult, WindowReport
from monitor.outputs import metrics as m
from monitor.outputs.exporter import Exporter
from monitor.outputs.versions import OTHER_VERSION

VERSIONS = 3000


FEATURES = [f"f{i}" for i in range(20)]


def make_report(version: str) -> WindowReport:
    """A window of 20 features, each tested and quality-checked: the series one version
    costs."""
    columns = tuple(TestResult(f, "ks", 0.1, 0.2, 0.05, False) for f in FEATURES)
    drift = DriftResult(0.0, 0, len(columns), 0.5, False, "none", columns)
    prediction = DriftResult(
        0.0, 0, 1, 0.5, False, "none", (TestResult("score", "psi", 0.01, None, 0.2, False),)
    )
    checks = tuple(
        QualityCheck(f, check, 0.0, 0.0, 0.05, False)
        for f in FEATURES
        for check in ("missing", "out_of_range", "type_error")
    )
    return WindowReport(
        model="fraud",
        model_version=version,
        window_start=1_700_000_000.0,
        window_end=1_700_000_060.0,
        reference_hash="abc",
        rows=1000,
        drift=drift,
        prediction_drift=prediction,
        quality=QualityResult(rows=1000, checks=checks),
        evaluated_at=1_700_000_061.0,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def series(exporter: Exporter) -> list[tuple[str, dict[str, str], float]]:
    text = generate_latest(exporter.registry).decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("driftline_")
    ]


def flood(exporter: Exporter, versions: range) -> None:
    """What the pipeline does for each version: count its records, export its window,
    and (for a few) a rollback decision."""
    for i in versions:
        version = f"v{i}"
        exporter.count_records("decoded", 100, model_version=version)
        exporter.count_records("late", 1, model_version=version)
        exporter.observe_report(make_report(version), 0.01)
        if i % 100 == 0:
            exporter.count_rollback(version, "notify", "acted")


def test_three_thousand_versions_make_a_bounded_exposition() -> None:
    one = Exporter("fraud", "60s", "abc", max_model_versions=5)
    flood(one, range(1))
    size_one = len(generate_latest(one.registry))
    series_one = len(series(one))

    exporter = Exporter("fraud", "60s", "abc", max_model_versions=5)
    flood(exporter, range(VERSIONS))
    got = series(exporter)
    body = generate_latest(exporter.registry)
    versions = {lb["model_version"] for _, lb, _ in got if "model_version" in lb}
    assert versions == {"v0", "v1", "v2", "v3", "v4", OTHER_VERSION}
    # five tracked versions and one "other": about six times one version's series, not 3,000
    assert len(got) <= 6 * series_one
    assert len(body) <= 6 * size_one, (len(body), size_one)
    # nothing of the others is lost from the counts
    decoded = {
        lb["model_version"]: v
        for name, lb, v in got
        if name == m.RECORDS.name and lb["outcome"] == "decoded"
    }
    assert decoded[OTHER_VERSION] == 100 * (VERSIONS - 5)
    assert sum(decoded.values()) == 100 * VERSIONS
    closed = {lb["model_version"]: v for name, lb, v in got if name == m.WINDOWS_CLOSED.name}
    assert closed[OTHER_VERSION] == VERSIONS - 5
    untracked = [v for name, _, v in got if name == m.UNTRACKED_VERSION_WINDOWS.name]
    assert untracked == [VERSIONS - 5]
    tracked = [v for name, _, v in got if name == m.MODEL_VERSIONS_TRACKED.name]
    assert tracked == [5.0]
    # no drift gauge speaks for "other": several versions cannot share one statistic
    drift = [lb for name, lb, _ in got if name == m.FEATURE_DRIFT_STATISTIC.name]
    assert drift and all(lb["model_version"] != OTHER_VERSION for lb in drift)
    rollbacks = {lb["model_version"] for name, lb, _ in got if name == m.ROLLBACK_DECISIONS.name}
    assert rollbacks == {"v0", OTHER_VERSION}


def test_a_version_that_stops_sending_loses_its_series_and_frees_its_slot() -> None:
    clock = Clock()
    exporter = Exporter(
        "fraud", "60s", "abc", max_model_versions=2, model_version_idle=600.0, clock=clock
    )
    flood(exporter, range(2))  # v0 and v1 take both slots
    flood(exporter, range(2, 3))  # v2: no slot
    assert not any(lb.get("model_version") == "v2" for _, lb, _ in series(exporter))
    clock.now += 300.0
    exporter.count_records("decoded", 10, model_version="v1")  # v1 keeps sending
    clock.now += 301.0  # v0 idle for 601 s
    flood(exporter, range(2, 3))  # v2 again: v0 expired first, so v2 gets its slot
    got = series(exporter)
    versions = {lb["model_version"] for _, lb, _ in got if "model_version" in lb}
    assert "v0" not in versions  # every series of v0 is gone, gauges and counters
    assert {"v1", "v2"} <= versions
    assert [v for n, _, v in got if n == m.MODEL_VERSIONS_EXPIRED.name] == [1.0]
    assert [v for n, _, v in got if n == m.MODEL_VERSIONS_TRACKED.name] == [2.0]
    statistic = [lb for n, lb, _ in got if n == m.FEATURE_DRIFT_STATISTIC.name]
    assert {lb["model_version"] for lb in statistic} == {"v1", "v2"}


def test_unknown_versions_are_not_counted_against_the_limit() -> None:
    exporter = Exporter("fraud", "60s", "abc", max_model_versions=1)
    exporter.count_records("decoded", 5)  # records without a version: label ""
    exporter.count_records("decoded", 5, model_version="v1")
    got = series(exporter)
    decoded = {lb["model_version"]: v for n, lb, v in got if n == m.RECORDS.name}
    assert decoded == {"": 5.0, "v1": 5.0}
