"""The label join: late, duplicate, missing and expired labels, bounded state, counts by
reason, and a checkpoint restored mid-stream that loses and double-counts nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.performance import learn_performance
from detectors.profile import build_profile
from monitor.config.labels import KpiConfig, LabelsConfig
from monitor.ingest.batch import RawMessage
from monitor.ingest.values import row_keys
from monitor.labels.decode import LabelBatch, LabelDecoder
from monitor.labels.join import LabelJoin
from monitor.labels.tracker import PerformanceTracker
from monitor.runtime.panes import AddResult, ClosedWindow


def _keys(*ids: str) -> np.ndarray:
    return row_keys(list(ids))


def _join(**kw) -> LabelJoin:
    args = {"horizon": 100.0, "wait": 10.0, "max_pending": 1000, "max_labels": 1000} | kw
    return LabelJoin(1, **args)


def _preds(join: LabelJoin, ids: list[str], t: list[float], pane: int = 0):
    return join.add_predictions(
        _keys(*ids),
        np.array(["v1"] * len(ids), dtype=object),
        np.full(len(ids), pane),
        np.array(t, dtype=float),
        np.full((len(ids), 1), 0.7),
    )


def _labels(join: LabelJoin, ids: list[str], t: float = np.nan):
    n = len(ids)
    return join.add_labels(_keys(*ids), np.ones(n, dtype=object), np.full(n, t), np.zeros((n, 0)))


def test_label_after_prediction_joins_once_and_duplicates_are_counted() -> None:
    join = _join()
    _preds(join, ["a", "b", "c"], [1.0, 2.0, 3.0])
    got = _labels(join, ["a", "b", "a"])  # "a" twice in one batch
    assert sorted(got.keys.tolist()) == sorted(_keys("a", "b").tolist())
    again = _labels(join, ["b"])  # and again later
    assert again.rows == 0
    assert join.counts["joined"] == 2 and join.counts["duplicate"] == 2
    assert join.pending_predictions == 1  # "c" still waits


def test_label_before_prediction_waits_then_joins() -> None:
    join = _join()
    assert _labels(join, ["x"], t=5.0).rows == 0
    assert join.pending_labels == 1
    got = _preds(join, ["x", "y"], [4.0, 4.5])
    assert got.rows == 1 and got.held_labels == [1]
    assert join.pending_labels == 0 and join.pending_predictions == 1
    assert join.counts["joined"] == 1


def test_missing_prediction_and_expired_prediction_are_counted() -> None:
    join = _join(horizon=100.0, wait=10.0)
    _labels(join, ["ghost"], t=0.0)  # its prediction never comes
    _preds(join, ["old"], [0.0])
    _preds(join, ["new"], [150.0])  # moves the watermark 150 s on
    join.expire()
    assert join.counts["no_prediction"] == 1  # label waited more than 10 s
    assert join.counts["expired"] == 1  # "old" waited more than 100 s
    assert join.pending_predictions == 1
    assert _labels(join, ["old"]).rows == 0  # too late: held, never joins
    join.finish()
    assert join.counts["no_prediction"] == 2


def test_pending_predictions_are_bounded() -> None:
    join = _join(max_pending=50)
    for start in range(0, 200, 20):
        ids = [f"r{i}" for i in range(start, start + 20)]
        _preds(join, ids, list(range(start, start + 20)))
    assert join.pending_predictions == 50
    assert join.counts["evicted"] == 150
    got = _labels(join, ["r199", "r0"])  # the newest still joins, the evicted one not
    assert got.keys.tolist() == _keys("r199").tolist()


def test_join_snapshot_restores_the_same_state() -> None:
    join = _join()
    _preds(join, [f"p{i}" for i in range(30)], list(range(30)))
    _labels(join, ["p1", "q9"], t=3.0)
    meta, arrays = join.snapshot()
    other = _join()
    other.restore(meta, arrays)
    assert other.counts == join.counts
    assert other.pending_predictions == join.pending_predictions == 29
    assert other.pending_labels == join.pending_labels == 1
    assert _labels(other, ["p2"]).rows == 1 and _labels(other, ["p1"]).rows == 0
    assert _preds(other, ["q9"], [31.0]).rows == 1


def test_decoder_reads_paths_and_sets_bad_records_aside() -> None:
    cfg = LabelsConfig(request_id_field="meta.id", label_field="y")
    dec = LabelDecoder(cfg, [KpiConfig(name="revenue", field="biz.revenue")])
    msgs = [
        RawMessage(b'{"meta": {"id": "a"}, "y": 1, "timestamp": 5, "biz": {"revenue": 2.5}}'),
        RawMessage(b'[{"meta": {"id": "b"}, "y": "0"}]'),
        RawMessage(b"not json"),
        RawMessage(b'{"y": 1}'),
        RawMessage(b'{"meta": {"id": "c"}, "y": 1, "timestamp": "yesterday"}'),
    ]
    batch = dec.decode(msgs)
    assert batch.request_id.tolist() == ["a", "b"]
    assert batch.label.tolist() == [1, "0"]
    assert batch.event_time[0] == 5.0 and np.isnan(batch.event_time[1])
    assert batch.kpis["revenue"][0] == 2.5 and np.isnan(batch.kpis["revenue"][1])
    assert [f.reason for f in batch.failures] == ["invalid_json", "missing_field", "bad_timestamp"]


# -- the tracker: windows, revisions and a checkpoint mid-stream --------------------------


@pytest.fixture(scope="module")
def reference():
    r = np.random.default_rng(0)
    n = 4000
    x = r.normal(0, 1, n)
    y = (r.random(n) < 1 / (1 + np.exp(-2 * x))).astype(int)
    frame = pd.DataFrame({"x": x, "score": 1 / (1 + np.exp(-2 * x)), "y": y})
    profile = build_profile(frame.drop(columns="y"), prediction=["score"])
    return learn_performance(profile, frame, "y")


def _stream(seed: int, windows: int, rows: int):
    r = np.random.default_rng(seed)
    out = []
    for w in range(windows):
        x = r.normal(0, 1, rows)
        y = (r.random(rows) < 1 / (1 + np.exp(-2 * x))).astype(int)
        ids = [f"w{w}-{i}" for i in range(rows)]
        out.append((w, ids, 1 / (1 + np.exp(-2 * x)), y))
    return out


def _tracker(ref) -> PerformanceTracker:
    return PerformanceTracker(
        ref,
        LabelsConfig(source="file", file="x", join_horizon=1e9),
        pane_length=60.0,
        panes_per_window=1,
        row_windows=False,
    )


def _run(ref, stream, restore_at: int | None = None):
    """Windows of 60 s: window w's predictions, then its close, then the labels of
    window w-1 (one window late: every label revises a closed window). With
    ``restore_at``, the tracker is snapshotted and rebuilt from the snapshot there."""
    from detectors.results import DriftResult, QualityResult, WindowReport

    tracker = _tracker(ref)
    final: dict[float, WindowReport] = {}
    for step, (w, ids, score, _y) in enumerate(stream):
        if restore_at == step:
            snap = tracker.snapshot()
            tracker = _tracker(ref)
            tracker.restore(snap)
        n = len(ids)
        result = AddResult(pane=np.full(n, w), segment=np.array(["v1"] * n, dtype=object))
        tracker.observe({"score": score}, row_keys(ids), np.full(n, w * 60.0 + 1), result, 0.0)
        closed = ClosedWindow("v1", w * 60.0, w * 60.0 + 60, None, n, 0, 0, [], "time")  # type: ignore[arg-type]
        tracker.on_closed([closed])
        empty = DriftResult(0.0, 0, 0, 0.5, False, "none")
        report = WindowReport(
            "m",
            "v1",
            w * 60.0,
            w * 60.0 + 60,
            "h",
            n,
            empty,
            empty,
            QualityResult(n),
            performance=tracker.evaluate(closed.performance, n),  # type: ignore[arg-type]
        )
        tracker.remember(report)
        final[report.window_start] = report
        if w > 0:
            _, prev_ids, _, prev_y = stream[step - 1]
            tracker.add_labels(LabelBatch.from_columns(prev_ids, prev_y.tolist()))
            for revised in tracker.revisions():
                assert revised.performance is not None and revised.performance.revised
                final[revised.window_start] = revised
    return tracker, final


def test_late_labels_revise_closed_windows_and_match_direct_metrics(reference) -> None:
    from sklearn.metrics import roc_auc_score

    stream = _stream(1, 4, 500)
    tracker, final = _run(reference, stream)
    assert tracker.join.counts["joined"] == 3 * 500
    for w, _ids, score, y in stream[:3]:
        perf = final[w * 60.0].performance
        assert perf is not None and perf.revised and perf.labeled_rows == 500
        assert perf.coverage == 1.0
        auc = perf.realized_value("roc_auc")
        assert auc == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    last = final[3 * 60.0].performance
    assert last is not None and last.labeled_rows == 0 and not last.revised
    assert {e.metric for e in last.estimated} >= {"accuracy", "roc_auc"}


@pytest.mark.parametrize("restore_at", [1, 2, 3])
def test_checkpoint_mid_stream_loses_and_double_counts_nothing(reference, restore_at) -> None:
    stream = _stream(2, 4, 400)
    t1, want = _run(reference, stream)
    t2, got = _run(reference, stream, restore_at=restore_at)
    assert t2.join.counts == t1.join.counts
    for start, report in want.items():
        a, b = report.performance, got[start].performance
        assert a is not None and b is not None
        assert a.labeled_rows == b.labeled_rows
        assert [(r.metric, r.value) for r in a.realized] == [
            (r.metric, r.value) for r in b.realized
        ]


def test_memory_of_joined_requests_is_bounded() -> None:
    join = _join(max_pending=5)
    ids = [f"j{i}" for i in range(12)]
    _preds(join, ids[:4], [1.0] * 4)
    _labels(join, ids[:4])
    _preds(join, ids[4:8], [2.0] * 4)
    _labels(join, ids[4:8])
    assert join.counts["joined"] == 8
    assert len(join._joined) == 5  # the three oldest joined ids are forgotten
    assert _labels(join, ["j7"]).rows == 0 and join.counts["duplicate"] == 1


def test_regressor_window_with_a_kpi_from_the_predictions() -> None:
    """DLE estimates from the features, realized MAE from joined values (equal to
    scikit-learn), and a KPI read from the prediction records."""
    from sklearn.metrics import mean_absolute_error

    r = np.random.default_rng(3)

    def frame(n: int) -> pd.DataFrame:
        x1, x2 = r.normal(0, 1, n), r.choice(["u", "v"], n)
        y = 5 + x1 + r.normal(0, 0.5 + np.abs(x1), n)
        return pd.DataFrame({"x1": x1, "x2": x2, "pred": 5 + x1, "amount": 2 * x1, "y": y})

    train = frame(5000)
    profile = build_profile(train.drop(columns=["y", "amount"]), prediction=["pred"])
    ref = learn_performance(profile, train, "y")
    tracker = PerformanceTracker(
        ref,
        LabelsConfig(source="file", file="x", join_horizon=1e9),
        [KpiConfig(name="amount", **{"from": "predictions"})],
        pane_length=60.0,
        panes_per_window=1,
        row_windows=False,
    )
    window = frame(2000)
    ids = [f"q{i}" for i in range(2000)]
    result = AddResult(pane=np.zeros(2000, dtype=np.int64), segment=np.full(2000, "v1", object))
    cols = {c: window[c].to_numpy() for c in ("x1", "x2", "pred", "amount")}
    tracker.observe(cols, row_keys(ids), np.ones(2000), result, 0.0)
    tracker.add_labels(LabelBatch.from_columns(ids[:1500], window["y"][:1500].tolist()))
    closed = ClosedWindow("v1", 0.0, 60.0, None, 2000, 0, 0, [], "time")  # type: ignore[arg-type]
    tracker.on_closed([closed])
    perf = tracker.evaluate(closed.performance, 2000)  # type: ignore[arg-type]
    assert perf.task == "regression" and perf.labeled_rows == 1500 and perf.coverage == 0.75
    mae = mean_absolute_error(window["y"][:1500], window["pred"][:1500])
    assert perf.realized_value("mae") == pytest.approx(mae, rel=1e-12)
    est = perf.estimated_value("mae")
    assert est is not None and abs(est - mae) / mae < 0.1
    kpi = perf.kpis[0]
    assert kpi.name == "amount" and kpi.rows == 2000
    assert kpi.mean == pytest.approx(window["amount"].mean(), rel=1e-12)
    assert kpi.correlation_with_prediction == pytest.approx(1.0, abs=1e-9)  # amount = 2·x1
