"""End to end through the command line: ``reference build --labels``, ``replay --labels``;
concept drift (outcomes change, inputs do not) lowers realized performance while the
drift tests and the label-free estimate stay quiet. And the exported metric families."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import generate_latest

from detectors.profile import load_profile
from detectors.results import WindowReport
from monitor.cli import main
from monitor.outputs import metrics as m
from monitor.outputs.exporter import Exporter

T0 = 1_700_000_040.0  # a multiple of 60


def _rows(n: int, seed: int, flip: float = 0.0):
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(0, 1, n), r.normal(0, 1, n)
    logit = 1.5 * x1 - x2
    y = (r.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    if flip:  # concept drift: a share of outcomes flips, inputs and scores stay
        y = np.where(r.random(n) < flip, 1 - y, y)
    return x1, x2, 1 / (1 + np.exp(-(0.8 * logit + 0.3))), y


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    d = tmp_path_factory.mktemp("perf")
    x1, x2, s, y = _rows(20_000, 0)
    pd.DataFrame({"x1": x1, "x2": x2, "score": s, "label": y}).to_csv(d / "ref.csv", index=False)
    rc = main(
        ["reference", "build", "--data", str(d / "ref.csv"), "--prediction", "score",
         "--labels", "label", "-o", str(d / "ref.json")]
    )  # fmt: skip
    assert rc == 0
    preds, labels = [], []
    for w in range(6):
        x1, x2, s, y = _rows(2000, 10 + w, flip=0.3 if w >= 3 else 0.0)
        for i in range(2000):
            rid, t = f"r{w}-{i}", float(T0 + w * 60 + i * 0.03)
            preds.append({"request_id": rid, "timestamp": t, "x1": x1[i], "x2": x2[i],
                          "score": s[i]})  # fmt: skip
            # half of the labels come 90 s late (after their window closed)
            late = 90.0 if i % 2 else 0.0
            labels.append({"request_id": rid, "label": int(y[i]), "timestamp": t + late,
                           "revenue": float(10.0 * y[i])})  # fmt: skip
    labels.append({"request_id": "r0-4", "label": 0, "timestamp": T0 + 5})  # duplicate
    labels.append({"request_id": "nobody", "label": 1, "timestamp": T0 + 5})  # no prediction
    pd.DataFrame(preds).to_csv(d / "pred.csv", index=False)
    (d / "labels.jsonl").write_bytes(b"\n".join(orjson.dumps(x) for x in labels) + b"\n")
    (d / "monitor.yaml").write_text(
        "model: demo\nreference: ref.json\nsource: {kind: file, file: {path: pred.csv}}\n"
        "windows: {size: 60s, allowed_lateness: 0s}\nkpis: [{name: revenue}]\n"
    )
    return d


def test_replay_with_labels_end_to_end(replayed, capsysbinary) -> None:
    d = replayed
    rc = main(["replay", "-c", str(d / "monitor.yaml"), "--input", str(d / "pred.csv"),
               "--labels", str(d / "labels.jsonl")])  # fmt: skip
    assert rc == 0
    out = capsysbinary.readouterr().out.splitlines()
    reports = [WindowReport.from_json(line) for line in out]
    final: dict[float, WindowReport] = {}
    for r in reports:
        final[r.window_start] = r  # revisions come later and replace the first report
    assert len(final) == 6
    assert any(r.performance and r.performance.revised for r in reports)
    assert profile_has_performance(d)
    for start, r in final.items():
        perf = r.performance
        assert perf is not None and perf.labeled_rows == r.rows == 2000
        assert perf.coverage == 1.0
        assert not r.drifted, f"drift flagged at {start}"  # the inputs never changed
        w = round((start - T0) / 60)
        kpi = perf.kpis[0]
        assert kpi.name == "revenue" and kpi.rows == 2000 and kpi.correlation_with_prediction > 0.2
        accuracy = perf.realized_value("accuracy")
        estimated = perf.estimated_value("accuracy")
        assert accuracy is not None and estimated is not None
        if w < 3:
            assert abs(estimated - accuracy) < 0.04

    def f1(kind: str, windows: range) -> float:
        values = []
        for w in windows:
            perf = final[T0 + 60 * w].performance
            assert perf is not None
            value = perf.realized_value("f1") if kind == "realized" else perf.estimated_value("f1")
            assert value is not None
            values.append(value)
        return float(np.mean(values))

    before, after = f1("realized", range(3)), f1("realized", range(3, 6))
    assert before - after > 0.1  # realized performance fell with the concept drift...
    est_before, est_after = f1("estimated", range(3)), f1("estimated", range(3, 6))
    assert abs(est_before - est_after) < 0.02  # ...which no label-free estimate can see


def profile_has_performance(d) -> bool:
    perf = load_profile(d / "ref.json").performance
    return perf is not None and perf.task == "binary" and perf.label == "label"


def test_reference_build_with_an_unknown_label_column_fails_cleanly(replayed, capsys) -> None:
    rc = main(["reference", "build", "--data", str(replayed / "ref.csv"), "--prediction", "score",
               "--labels", "outcome", "-o", str(replayed / "x.json")])  # fmt: skip
    assert rc == 2
    assert "outcome" in capsys.readouterr().err


def test_performance_families_are_exported_and_revised(replayed) -> None:
    exporter = Exporter("demo", "60s", "abc")
    from monitor.config.loader import load_config
    from monitor.labels.files import read_labels
    from monitor.runtime.replay import replay

    cfg = load_config(replayed / "monitor.yaml")
    profile = load_profile(replayed / "ref.json")
    labels = read_labels(replayed / "labels.jsonl", cfg.labels, cfg.kpis)
    reports = list(replay(cfg, profile, replayed / "pred.csv", exporter=exporter, labels=labels))
    text = generate_latest(exporter.registry).decode()
    for defn in (
        m.PERFORMANCE_REALIZED, m.PERFORMANCE_ESTIMATED, m.PERFORMANCE_ESTIMATED_THRESHOLD,
        m.PERFORMANCE_ESTIMATED_ALERT, m.LABEL_COVERAGE, m.KPI_MEAN, m.KPI_CORRELATION,
        m.KPI_DECILE_MEAN, m.LABELS_TOTAL, m.LABEL_JOIN_PENDING, m.PERFORMANCE_REVISIONS,
    ):  # fmt: skip
        assert defn.name in text, defn.name
    value = exporter.registry.get_sample_value
    assert value(m.LABELS_TOTAL.name, {"model": "demo", "outcome": "joined"}) == 12_000
    assert value(m.LABELS_TOTAL.name, {"model": "demo", "outcome": "duplicate"}) == 1
    assert value(m.LABELS_TOTAL.name, {"model": "demo", "outcome": "no_prediction"}) == 1
    revisions = sum(1 for r in reports if r.performance and r.performance.revised)
    assert value(m.PERFORMANCE_REVISIONS.name, {"model": "demo", "model_version": "unknown"}) == (
        revisions
    )


def test_sliding_windows_merge_their_panes(tmp_path) -> None:
    """60 s windows sliding by 20 s: each window's realized metrics are those of exactly
    its rows (three panes merged), labels arriving late included."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    from monitor.config.loader import load_config
    from monitor.labels.decode import LabelBatch
    from monitor.runtime.replay import replay

    x1, x2, s, y = _rows(20_000, 0)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "score": s, "label": y})
    frame.to_csv(tmp_path / "ref.csv", index=False)
    assert main(["reference", "build", "--data", str(tmp_path / "ref.csv"), "--prediction",
                 "score", "--labels", "label", "-o", str(tmp_path / "ref.json")]) == 0  # fmt: skip
    n = 3000
    x1, x2, s, y = _rows(n, 7)
    t = T0 + np.arange(n) * 0.06  # 180 s of traffic
    ids = [f"s{i}" for i in range(n)]
    pd.DataFrame({"request_id": ids, "timestamp": t, "x1": x1, "x2": x2, "score": s}).to_csv(
        tmp_path / "pred.csv", index=False
    )
    (tmp_path / "monitor.yaml").write_text(
        "model: demo\nreference: ref.json\nsource: {kind: file, file: {path: pred.csv}}\n"
        "windows: {size: 60s, slide: 20s, allowed_lateness: 0s}\n"
    )
    cfg = load_config(tmp_path / "monitor.yaml")
    profile = load_profile(tmp_path / "ref.json")
    labels = LabelBatch.from_columns(ids, y.tolist(), t + 45.0)  # every label 45 s late
    final: dict[float, WindowReport] = {}
    revised = 0
    for report in replay(cfg, profile, tmp_path / "pred.csv", labels=labels):
        final[report.window_start] = report
        revised += bool(report.performance and report.performance.revised)
    assert revised >= 5  # the labels came after the windows closed
    full = [start for start in final if start >= T0 and start + 60 <= T0 + 180]
    assert len(full) >= 5
    for start in full:
        rows = (t >= start) & (t < start + 60)
        perf = final[start].performance
        assert perf is not None and perf.labeled_rows == rows.sum() == final[start].rows
        assert perf.realized_value("accuracy") == pytest.approx(
            accuracy_score(y[rows], s[rows] >= 0.5), abs=1e-12
        )
        assert perf.realized_value("roc_auc") == pytest.approx(
            roc_auc_score(y[rows], s[rows]), abs=1e-12
        )
