"""The metric definitions follow Prometheus conventions, and docs/metrics.md matches them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor.outputs import metrics as m

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Suffixes prometheus-client and Prometheus add to family names when they expose samples.
SAMPLE_SUFFIXES = ("", "_total", "_created", "_bucket", "_sum", "_count", "_info")


def _exposed_names(defn: m.MetricDef) -> set[str]:
    if defn.kind == "counter":
        return {defn.name, defn.family + "_created"}
    if defn.kind == "histogram":
        return {defn.name + s for s in ("_bucket", "_sum", "_count", "_created")}
    return {defn.name}


def test_names_are_unique_including_the_series_prometheus_derives_from_them() -> None:
    names = [d.name for d in m.ALL_METRICS]
    assert len(names) == len(set(names))
    exposed: dict[str, str] = {}
    for d in m.ALL_METRICS:
        for sample in _exposed_names(d):
            assert sample not in exposed, f"{d.name} and {exposed.get(sample)} both expose {sample}"
            exposed[sample] = d.name


def test_every_module_level_definition_is_registered() -> None:
    constants = {v.name for v in vars(m).values() if isinstance(v, m.MetricDef)}
    assert constants == {d.name for d in m.ALL_METRICS}
    assert set(m.BY_NAME) == constants


@pytest.mark.parametrize("defn", m.ALL_METRICS, ids=lambda d: d.name)
def test_naming_conventions(defn: m.MetricDef) -> None:
    assert defn.name.startswith(m.PREFIX)
    assert NAME.match(defn.name), defn.name
    assert defn.kind in m.KINDS
    assert defn.help and defn.help.strip() == defn.help
    # _total exactly on counters, _info exactly on info metrics
    assert defn.name.endswith("_total") == (defn.kind == "counter")
    assert defn.name.endswith("_info") == (defn.kind == "info")
    assert "_total" not in defn.family
    # a unit is the family's last word, and a unit word at the end has its unit declared
    assert defn.unit in m.UNITS
    if defn.unit:
        assert defn.family.endswith("_" + defn.unit)
    for unit in ("seconds", "ratio"):
        if defn.family.endswith("_" + unit):
            assert defn.unit == unit
    # no non-base units
    for bad in ("_milliseconds", "_ms", "_percent", "_minutes", "_hours", "_bytes_kb"):
        assert bad not in defn.name
    if "timestamp" in defn.name:
        assert defn.name.endswith("_timestamp_seconds")


@pytest.mark.parametrize("defn", m.ALL_METRICS, ids=lambda d: d.name)
def test_labels_are_bounded(defn: m.MetricDef) -> None:
    assert len(defn.labels) == len(set(defn.labels))
    for label in defn.labels:
        assert label in m.LABELS, f"{defn.name}: label {label!r} is not in metrics.LABELS"
        assert label not in m.FORBIDDEN_LABELS
        assert NAME.match(label) and not label.startswith("__")
        assert label not in ("le", "quantile")
    if defn.kind != "info":
        assert "model" in defn.labels or defn.name == m.BUILD_INFO.name


def test_no_allowed_label_can_carry_a_per_record_value() -> None:
    assert not set(m.LABELS) & m.FORBIDDEN_LABELS


@pytest.mark.parametrize("defn", m.ALL_METRICS, ids=lambda d: d.name)
def test_buckets_only_on_histograms_and_increasing(defn: m.MetricDef) -> None:
    if defn.kind != "histogram":
        assert defn.buckets is None
        return
    assert defn.buckets, "a histogram needs its buckets defined here"
    assert list(defn.buckets) == sorted(set(defn.buckets))
    assert all(b > 0 for b in defn.buckets)


def test_otel_names_drop_only_the_counter_suffix() -> None:
    assert m.RECORDS.otel_name == "driftline_records"
    assert m.WINDOW_EVALUATION_SECONDS.otel_name == "driftline_window_evaluation_seconds"
    assert m.BUILD_INFO.otel_name == "driftline_build_info"
    assert m.WINDOW_EVALUATION_SECONDS.otel_unit == "s"
    assert m.DATASET_DRIFT_SHARE.otel_unit == "1"
    otel = [d.otel_name for d in m.ALL_METRICS]
    assert len(otel) == len(set(otel))


def test_the_families_the_design_asks_for_carry_their_labels() -> None:
    drift_labels = {"model", "model_version", "feature", "detector", "window"}
    for d in (m.FEATURE_DRIFT_STATISTIC, m.FEATURE_DRIFT_P_VALUE, m.FEATURE_DRIFTED):
        assert drift_labels <= set(d.labels)
    for d in (m.PREDICTION_DRIFT_STATISTIC, m.PREDICTION_DRIFTED):
        assert drift_labels <= set(d.labels)
    assert {"feature", "check"} <= set(m.QUALITY_RATIO.labels)
    assert set(m.RECORDS.labels) >= {"model", "outcome"}
    assert "reason" in m.RECORDS_FAILED.labels
    assert {"topic", "partition"} <= set(m.CONSUMER_LAG.labels)
    assert set(m.ROLLBACK_DECISIONS.labels) == {"model", "model_version", "action", "outcome"}
    assert m.WINDOW_EVALUATION_SECONDS.kind == "histogram"
    assert "reference" in m.REFERENCE_INFO.labels
    assert {"version", "python"} <= set(m.BUILD_INFO.labels)


def test_get_names_the_missing_metric() -> None:
    assert m.get("driftline_records_total") is m.RECORDS
    with pytest.raises(KeyError, match="driftline_nope"):
        m.get("driftline_nope")


def test_docs_list_exactly_the_defined_metrics() -> None:
    text = DOC.read_text()
    listed = set(re.findall(r"^\| `(driftline_[a-z0-9_]+)` \|", text, flags=re.M))
    defined = {d.name for d in m.ALL_METRICS}
    assert not defined - listed, f"docs/metrics.md misses {sorted(defined - listed)}"
    assert not listed - defined, f"docs/metrics.md lists removed {sorted(listed - defined)}"
    # and the whole table (types, units, labels) is current
    assert m.generated_block() in text, (
        "run: python -m monitor.outputs.metrics --write docs/metrics.md"
    )


def test_rewrite_doc_replaces_a_stale_table_and_keeps_the_prose() -> None:
    stale = f"intro\n{m.TABLE_BEGIN}\n| `driftline_gone_total` | counter |\n{m.TABLE_END}\nouttro\n"
    fresh = m.rewrite_doc(stale)
    assert fresh.startswith("intro\n") and fresh.endswith("\nouttro\n")
    assert "driftline_gone_total" not in fresh
    assert m.generated_block() in fresh
    with pytest.raises(ValueError, match="markers"):
        m.rewrite_doc("no markers here")


def test_main_prints_the_block_and_writes_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert m.main([]) == 0
    assert m.markdown_table() in capsys.readouterr().out
    doc = tmp_path / "metrics.md"
    doc.write_text(f"# t\n{m.TABLE_BEGIN}\n{m.TABLE_END}\n")
    assert m.main(["--write", str(doc)]) == 0
    assert m.FEATURE_DRIFT_STATISTIC.name in doc.read_text()
