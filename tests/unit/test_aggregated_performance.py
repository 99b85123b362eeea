"""Performance across agents: each partition's performance state travels in its window
partial, and the aggregator's merge equals the state one agent reading every partition
would have had — sums to rounding, the bottom-k sample of labelled rows exactly — so
its reports carry the lone agent's ``performance`` block; late labels revise it through
revision partials as they revise a lone agent's report."""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import generate_latest

from detectors.performance import (
    PerformanceReference,
    PerformanceResult,
    PerformanceState,
    evaluate_performance,
    learn_performance,
)
from detectors.profile import Profile, build_profile
from detectors.results import DriftResult, QualityResult, WindowReport
from detectors.settings import DriftSettings, QualitySettings
from monitor.config.labels import KpiConfig, LabelsConfig
from monitor.config.model import MonitorConfig
from monitor.ingest.batch import DecodedBatch
from monitor.ingest.values import row_keys
from monitor.labels.decode import LabelBatch
from monitor.labels.tracker import PerformanceTracker
from monitor.runtime.aggregated_performance import RevisableWindows, performance_bytes
from monitor.runtime.aggregator import Aggregator, mark, merge_window
from monitor.runtime.evaluation import WindowEvaluator
from monitor.runtime.merging import MergeState
from monitor.runtime.partials import Partial, PartitionProgress
from monitor.runtime.partitioned import PartitionedWindows
from monitor.runtime.publishing import PartialPublisher
from monitor.runtime.windows import ClosedWindow, WindowManager
from tests.unit.test_aggregation import HandoffSource, Sent

BASE = 1_700_000_000.0
PARTS = 3
REL = 1e-12


def _rows(n: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(0, 1, n), r.normal(0, 1, n)
    logit = 1.5 * x1 - x2
    y = (r.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    score = 1 / (1 + np.exp(-(0.8 * logit + 0.3)))
    return pd.DataFrame({"x1": x1, "x2": x2, "score": score, "y": y})


@pytest.fixture(scope="module")
def profile() -> Profile:
    frame = _rows(5000, 0)
    base = build_profile(frame.drop(columns="y"), prediction=["score"], bins=20)
    return replace(base, performance=learn_performance(base, frame, "y"))


@pytest.fixture(scope="module")
def ref(profile: Profile) -> PerformanceReference:
    assert profile.performance is not None
    return profile.performance


# -- the state: merge and bytes ------------------------------------------------------------


def _state(ref: PerformanceReference, frame: pd.DataFrame, keys: np.ndarray, size: int):
    s = PerformanceState(ref, size)
    cols = {c: frame[c].to_numpy() for c in ("x1", "x2", "score")}
    p = ref.predictions(cols)
    s.add_predictions(p, cols)
    labelled = np.flatnonzero(keys % np.uint64(5) != 0)  # a fifth never gets a label
    y, _ = ref.encode_labels(frame["y"].to_numpy()[labelled])
    s.add_labels(keys[labelled], p.take(labelled), y)
    s.add_kpi("revenue", frame["x1"].to_numpy() * 3.0 + 10.0, p)
    return s


def assert_same_block(got: PerformanceResult, want: PerformanceResult) -> None:
    assert (got.labeled_rows, got.coverage, got.task) == (
        want.labeled_rows,
        want.coverage,
        want.task,
    )
    assert [r.metric for r in got.realized] == [r.metric for r in want.realized]
    assert got.realized, "no realized metric to compare"
    for a, b in zip(got.realized, want.realized, strict=True):
        for x, y in ((a.value, b.value), (a.low, b.low), (a.high, b.high)):
            assert x == pytest.approx(y, rel=REL, abs=REL), a.metric
    assert [(e.metric, e.alert) for e in got.estimated] == [
        (e.metric, e.alert) for e in want.estimated
    ]
    assert got.estimated
    for e, f in zip(got.estimated, want.estimated, strict=True):
        assert e.value == pytest.approx(f.value, rel=REL, abs=REL), e.metric
        assert e.low == pytest.approx(f.low, rel=REL, abs=REL)
        assert e.high == pytest.approx(f.high, rel=REL, abs=REL)
    for ka, kb in zip(got.kpis, want.kpis, strict=True):
        assert (ka.name, ka.rows) == (kb.name, kb.rows)
        assert ka.mean == pytest.approx(kb.mean, rel=REL)
        assert ka.correlation_with_prediction == pytest.approx(
            kb.correlation_with_prediction, rel=1e-9
        )
        np.testing.assert_allclose(ka.by_decile, kb.by_decile, rtol=REL, equal_nan=True)


@pytest.mark.parametrize("sample_size", [20_000, 500])
def test_merged_partition_states_equal_the_lone_state(
    ref: PerformanceReference, sample_size: int
) -> None:
    """3 partitions' states merged in any order == one state of all rows: integer sums
    exactly, float sums to rounding, and the same bottom-k sample (by row hash) even
    when the labelled rows outnumber it (500 of 3,200)."""
    frame = _rows(4000, 3)
    keys = row_keys([f"r{i}" for i in range(len(frame))])
    part = np.random.default_rng(4).integers(0, PARTS, len(frame))
    lone = _state(ref, frame, keys, sample_size)
    pieces = [
        _state(ref, frame.iloc[np.flatnonzero(part == p)], keys[part == p], sample_size)
        for p in range(PARTS)
    ]
    for order in ([0, 1, 2], [2, 0, 1]):
        merged = pieces[order[0]].merge(pieces[order[1]]).merge(pieces[order[2]])
        assert sorted(merged.sums) == sorted(lone.sums)
        for key, v in lone.sums.items():
            if key in ("rows", "r.n", "r.confusion"):
                np.testing.assert_array_equal(merged.sums[key], v)
            else:
                np.testing.assert_allclose(merged.sums[key], v, rtol=REL, atol=1e-9)
        assert len(lone.sample_keys) == min(sample_size, lone.labeled)
        a, b = np.argsort(merged.sample_keys), np.argsort(lone.sample_keys)
        np.testing.assert_array_equal(merged.sample_keys[a], lone.sample_keys[b])
        np.testing.assert_array_equal(merged.sample_scores[a], lone.sample_scores[b])
        np.testing.assert_array_equal(merged.sample_y[a], lone.sample_y[b])
        n = len(frame)
        assert_same_block(
            evaluate_performance(ref, merged, window_rows=n, kpis=["revenue"]),
            evaluate_performance(ref, lone, window_rows=n, kpis=["revenue"]),
        )


def test_state_bytes_round_trip_and_bad_bytes_are_refused(ref: PerformanceReference) -> None:
    frame = _rows(1500, 5)
    s = _state(ref, frame, row_keys([f"k{i}" for i in range(1500)]), 400)
    back = PerformanceState.from_bytes(ref, s.to_bytes())
    assert back.sample_size == 400 and sorted(back.sums) == sorted(s.sums)
    for key, v in s.sums.items():
        np.testing.assert_array_equal(back.sums[key], v)
    np.testing.assert_array_equal(back.sample_keys, s.sample_keys)
    np.testing.assert_array_equal(back.sample_scores, s.sample_scores)
    np.testing.assert_array_equal(back.sample_y, s.sample_y)
    empty = PerformanceState.from_bytes(ref, PerformanceState(ref).to_bytes())
    assert empty.rows == 0 and empty.labeled == 0 and len(empty.sample_keys) == 0
    data = s.to_bytes()
    for bad in (b"", b"DLPS", b"XXXX" + data[4:], data[:-8], data + b"\0" * 8):
        with pytest.raises(ValueError):
            PerformanceState.from_bytes(ref, bad)


def test_a_state_cut_to_fit_a_partial_merges_as_a_uniform_sample(
    ref: PerformanceReference,
) -> None:
    """A state too big for a partial keeps its sums and the bottom-k of its sample that
    fits; the merge of such pieces (k the smallest) is the lone state's bottom-k."""
    frame = _rows(3000, 8)
    keys = row_keys([f"c{i}" for i in range(len(frame))])
    part = np.random.default_rng(9).integers(0, PARTS, len(frame))
    lone = _state(ref, frame, keys, 2000)
    pieces = [
        _state(ref, frame.iloc[np.flatnonzero(part == p)], keys[part == p], 2000)
        for p in range(PARTS)
    ]
    whole = len(pieces[0].to_bytes())
    room = whole - 8 * 3 * 300  # 300 sampled rows (a binary model: 3 numbers each) too many
    cut = performance_bytes(pieces[0], room)
    assert len(cut) <= room
    small = PerformanceState.from_bytes(ref, cut)
    k = small.sample_size
    assert k == len(pieces[0].sample_keys) - 300 and len(small.sample_keys) == k
    for key, v in pieces[0].sums.items():
        np.testing.assert_array_equal(small.sums[key], v)
    assert performance_bytes(pieces[1], 10**9) == pieces[1].to_bytes()
    assert performance_bytes(None, 10**9) == b""
    merged = small.merge(pieces[1]).merge(pieces[2])
    assert merged.sample_size == k
    want = lone.with_sample_size(k)
    np.testing.assert_array_equal(np.sort(merged.sample_keys), np.sort(want.sample_keys))
    a, b = np.argsort(merged.sample_keys), np.argsort(want.sample_keys)
    np.testing.assert_array_equal(merged.sample_scores[a], want.sample_scores[b])
    n = len(frame)
    assert_same_block(
        evaluate_performance(ref, merged, window_rows=n, kpis=["revenue"]),
        evaluate_performance(ref, want, window_rows=n, kpis=["revenue"]),
    )


def test_partials_carry_the_state_and_old_partials_still_read(ref: PerformanceReference) -> None:
    s = _state(ref, _rows(300, 6), row_keys([f"q{i}" for i in range(300)]), 100)
    pub = PartialPublisher(
        model="m", topic="t", reference_hash="h", agent_id="a", epoch=2, send=_no_send
    )
    window = Partial(
        **pub._common("window", 4), partition=1, origin=7, window=(0.0, 10.0),
        model_version="v1", rows=300, offsets=(7, 306), sketch=b"SKETCH", performance=s.to_bytes(),
    )  # fmt: skip
    info = ["v1", 1, 0.0, 10.0, 300, 7, False]
    revision = pub.revision(info, s, 4)
    for p in (window, revision):
        raw = p.to_bytes()
        assert struct.unpack_from("<H", raw, 4)[0] == 2  # format 2: carries a state
        back = Partial.from_bytes(raw)
        assert back == p and back.sketch == p.sketch
        assert PerformanceState.from_bytes(ref, back.performance).labeled == s.labeled
    assert (revision.partition, revision.origin, revision.window) == (1, 7, (0.0, 10.0))
    # A window partial as the previous release wrote it: format 1, no "perf", the sketch.
    head = {
        "kind": "window", "model": "m", "agent": "a", "epoch": 2, "generation": 4,
        "reference": "h", "sent_at": 1.0, "partition": 1, "origin": 7, "fresh": False,
        "window": [0.0, 10.0], "model_version": "v1", "rows": 300, "late": 0, "duplicates": 0,
        "offsets": [7, 306], "traceparents": [], "closed_at": 0.0, "handoff": False,
    }  # fmt: skip
    raw = orjson.dumps(head)
    old = Partial.from_bytes(struct.pack("<4sHI", b"DLPT", 1, len(raw)) + raw + b"SKETCH")
    assert old.sketch == b"SKETCH" and old.performance == b"" and old.rows == 300
    assert struct.unpack_from("<H", replace(window, performance=b"").to_bytes(), 4)[0] == 1


# -- agents, partials and the aggregator against one agent ----------------------------------

PARAMS: dict = {
    "size": 10.0,
    "allowed_lateness": 1.0,
    "idle_timeout": 30.0,
    "dedupe": True,
    "dedupe_max_ids": 100_000,
    "reservoir_size": 64,
    "segment_by_version": True,
}
KPIS = [KpiConfig.model_validate({"name": "revenue", "from": "labels"})]
FAR = BASE + 1e6


def traffic(n: int = 6000, seed: int = 0) -> dict[str, np.ndarray]:
    """Predictions over 40 s on PARTS partitions; labels with a revenue KPI, of which a
    third arrive only after every window closed, and a tenth never."""
    rng = np.random.default_rng(seed)
    frame = _rows(n, seed + 100)
    ids = [f"req-{seed}-{i}" for i in range(n)]
    return {
        "t": BASE + np.sort(rng.uniform(0, 40, n)),
        "partition": rng.integers(0, PARTS, n),
        "key": row_keys(ids),
        "id": np.array(ids, dtype=object),
        "x1": frame["x1"].to_numpy(),
        "x2": frame["x2"].to_numpy(),
        "score": frame["score"].to_numpy(),
        "y": frame["y"].to_numpy(),
        "when": rng.choice(np.array(["early", "late", "never"]), n, p=[0.6, 0.3, 0.1]),
    }


def batch(data: dict[str, np.ndarray], idx: np.ndarray) -> DecodedBatch:
    n = len(idx)
    obj = np.array([None] * n, dtype=object)
    part = data["partition"][idx]
    offsets = np.empty(n, dtype=np.int64)
    for p in range(PARTS):
        mine = np.flatnonzero(data["partition"] == p)
        offsets[part == p] = np.searchsorted(mine, idx[part == p])
    return DecodedBatch(
        columns={k: data[k][idx] for k in ("x1", "x2", "score")},
        event_time=data["t"][idx],
        request_id=data["id"][idx],
        row_key=data["key"][idx],
        model_version=np.array(["v1"] * n, dtype=object),
        traceparent=obj,
        partition=part.astype(np.int32),
        offset=offsets,
    )


def labels(data: dict[str, np.ndarray], idx: np.ndarray) -> LabelBatch:
    """Labels of rows ``idx``, each from the labels topic partition of its prediction's."""
    batch = LabelBatch.from_columns(
        data["id"][idx].tolist(),
        data["y"][idx].tolist(),
        data["t"][idx] + 0.5,
        {"revenue": 10.0 * data["y"][idx] + data["x1"][idx]},
    )
    batch.partition = data["partition"][idx]
    return batch


def tracker(ref: PerformanceReference, slide: float | None = None) -> PerformanceTracker:
    return PerformanceTracker(
        ref, LabelsConfig(sample_size=300), KPIS, pane_length=slide or 10.0,
        panes_per_window=1 if slide is None else round(10.0 / slide), row_windows=False,
    )  # fmt: skip


def params(slide: float | None = None) -> dict:
    return PARAMS if slide is None else {**PARAMS, "slide": slide}


def evaluator(profile: Profile, tr: PerformanceTracker) -> WindowEvaluator:
    return WindowEvaluator(
        profile, "m", DriftSettings(), QualitySettings(), performance=tr.evaluate
    )


def feed(
    data: dict[str, np.ndarray], idx: np.ndarray, windows: WindowManager, tr: PerformanceTracker
) -> list[ClosedWindow]:
    """The predictions in chunks of 500, as the pipeline files them; the windows closed."""
    closed: list[ClosedWindow] = []
    for a in range(0, len(idx), 500):
        b = batch(data, idx[a : a + 500])
        r = windows.add(b, now=0.0)
        tr.observe(b.columns, b.row_key, b.event_time, r, 0.0)
        tr.on_closed(r.closed)
        closed += r.closed
    return closed


def read(
    data: dict[str, np.ndarray], idx: np.ndarray, windows: WindowManager, tr: PerformanceTracker
) -> list[ClosedWindow]:
    """Early labels first (they wait for their predictions), then the predictions; then
    every window closed."""
    tr.add_labels(labels(data, idx[data["when"][idx] == "early"]))
    closed = feed(data, idx, windows, tr)
    rest = windows.flush()
    tr.on_closed(rest)
    return closed + rest


def lone_reports(profile: Profile, data: dict[str, np.ndarray], slide: float | None = None):
    """One agent reading every partition: its reports, then its revised reports."""
    assert profile.performance is not None
    tr = tracker(profile.performance, slide)
    m = WindowManager(profile, **params(slide))
    m.assign(set(range(PARTS)), now=0.0)
    closed = read(data, np.arange(len(data["t"])), m, tr)
    reports = [r.report for r in evaluator(profile, tr).evaluate(closed)]
    for r in reports:
        tr.remember(r)
    tr.add_labels(labels(data, np.flatnonzero(data["when"] == "late")))
    return reports, list(tr.revisions())


def agent(
    profile: Profile,
    data: dict[str, np.ndarray],
    parts: set[int],
    name: str,
    slide: float | None = None,
):
    """An agent of ``parts``: its window partials, its progress, and a function giving
    its revision partials once the late labels of its partitions came."""
    assert profile.performance is not None
    tr = tracker(profile.performance, slide)
    w = PartitionedWindows(profile, **params(slide))
    w.origin_of = lambda p: (0, True)
    idx = np.flatnonzero(np.isin(data["partition"], sorted(parts)))
    closed = read(data, idx, w, tr)
    pub = PartialPublisher(
        model="m", topic="t", reference_hash=profile.content_hash, agent_id=name, epoch=1,
        send=_no_send,
    )  # fmt: skip
    msgs = pub.window_partials(closed, 1, dict(w.origins))
    for c in closed:
        assert c.partition is not None
        tr.note_partial(c, *w.origins[c.partition])
    owned = {p: PartitionProgress(0, True, FAR, False, w.first_time.get(p)) for p in parts}
    msgs.append(pub.progress(owned, 1))
    # restarted from its checkpoint: what it sent is remembered, so it can be revised
    restarted = tracker(profile.performance, slide)
    restarted.restore(orjson.loads(orjson.dumps(tr.snapshot())))
    assert restarted.sent == tr.sent and len(tr.sent) == len(closed)

    def revisions() -> list[Partial]:
        restarted.add_labels(labels(data, idx[data["when"][idx] == "late"]))
        return [pub.revision(i, state, 1) for i, state in restarted.partial_revisions()]

    return msgs, revisions


@pytest.mark.parametrize("slide", [None, 5.0], ids=["tumbling", "sliding"])
def test_aggregator_reports_carry_the_lone_agents_performance_and_its_revisions(
    profile: Profile, slide: float | None
) -> None:
    data = traffic()
    want, want_revised = lone_reports(profile, data, slide)
    assert len(want) == (4 if slide is None else 9)
    assert all(r.performance is not None for r in want)
    assert len(want_revised) == len(want)
    assert all(r.performance is not None and r.performance.revised for r in want_revised)
    merge = MergeState("m", profile.content_hash, PARTS, 30.0, allowed_lateness=1.0)
    agents = [agent(profile, data, {0, 1}, "a0", slide), agent(profile, data, {2}, "a2", slide)]
    for msgs, _ in agents:
        assert {merge.receive(m, 0.0) for m in msgs} == {"accepted"}
    assert profile.performance is not None
    agg = tracker(profile.performance, slide)  # the aggregator's own pipeline's evaluate
    ev = evaluator(profile, agg)
    revisable = RevisableWindows(agg.ref, agg.evaluate, max_windows=100, horizon=3600.0)
    got: list[WindowReport] = []
    for due in merge.due(0.0):
        assert due.complete and all(p.performance for p in due.partials)
        (report,) = [mark(r.report, due) for r in ev.evaluate(merge_window(profile, due))]
        revisable.keep(report, due.partials)
        merge.done(due.bounds, 0.0)
        got.append(report)
    assert [(r.window_start, r.rows) for r in got] == [(r.window_start, r.rows) for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.performance is not None and w.performance is not None
        assert not g.performance.revised
        assert 0 < g.performance.labeled_rows < g.rows
        assert_same_block(g.performance, w.performance)
    # late labels: each agent's revision partials; the aggregator re-evaluates
    revised: dict[float, WindowReport] = {}
    for _, revisions in agents:
        for p in revisions():
            assert merge.receive(p, 0.0) == "revise"
            outcome, new = revisable.revise(p)
            assert outcome == "accepted" and new is not None
            revised[new.window_start] = new
            assert revisable.revise(p) == ("repeated", None)  # read twice: nothing new
    assert sorted(revised) == [r.window_start for r in want_revised]
    for r in want_revised:
        g = revised[r.window_start]
        assert g.performance is not None and r.performance is not None
        assert g.performance.revised and g.coverage is not None
        assert_same_block(g.performance, r.performance)
    # the judged windows' states survive the aggregator's checkpoint
    again = RevisableWindows(agg.ref, agg.evaluate, max_windows=100, horizon=3600.0)
    again.restore(orjson.loads(orjson.dumps(revisable.snapshot())))
    assert set(again.windows) == set(revisable.windows)


def test_a_partition_moving_between_agents_takes_its_performance_state_along(
    profile: Profile,
) -> None:
    """Partition 0 is read half by agent A, then by agent B, which resumes A's windows and
    A's performance state (``partition_state``/``restore_partition``) — the path of a
    partition whose window state moves through the changelog. Labels of A's predictions
    that reach B join there; the aggregated blocks, first and revised, equal the lone
    agent's."""
    assert profile.performance is not None
    data = traffic(4500, seed=5)
    want, want_revised = lone_reports(profile, data)
    idx = np.flatnonzero(data["partition"] == 0)
    cut = len(idx) // 2
    early = data["when"] == "early"
    tr_a, w_a = tracker(profile.performance), PartitionedWindows(profile, **PARAMS)
    w_a.origin_of = lambda p: (0, True)
    # the early labels of A's rows in its last (open) window reach B, before the move
    open_start = math.floor(data["t"][idx[cut - 1]] / 10.0) * 10.0
    a_early = idx[:cut][early[idx[:cut]]]
    withheld = a_early[data["t"][a_early] >= open_start][:20]
    assert len(withheld) == 20
    tr_a.add_labels(labels(data, np.setdiff1d(a_early, withheld)))
    closed_a = feed(data, idx[:cut], w_a, tr_a)
    pub_a = PartialPublisher(
        model="m", topic="t", reference_hash=profile.content_hash, agent_id="A", epoch=3,
        send=_no_send,
    )  # fmt: skip
    msgs = pub_a.window_partials(closed_a, 1, dict(w_a.origins))
    for c in closed_a:
        tr_a.note_partial(c, 0, True)
    # the move: A's windows and performance state of partition 0 go to B
    moved = orjson.loads(orjson.dumps(tr_a.partition_state(0, remove=True)))
    assert not [k for k in tr_a.panes if k[0].endswith("\x1f0")]
    assert tr_a.join.pending_predictions == 0
    tr_b, w_b = tracker(profile.performance), PartitionedWindows(profile, **PARAMS)
    w_b.by_partition[0] = WindowManager.restore(profile, w_a.by_partition[0].snapshot(), **PARAMS)
    w_b.origins[0], w_b.first_time[0] = w_a.origins[0], w_a.first_time[0]
    tr_b.add_labels(labels(data, withheld))  # they wait for their predictions ...
    assert tr_b.join.pending_labels == 20
    tr_b.restore_partition(moved)  # ... which come with the partition's state
    assert tr_b.join.pending_labels == 0
    tr_b.add_labels(labels(data, idx[cut:][early[idx[cut:]]]))
    closed_b = feed(data, idx[cut:], w_b, tr_b)
    rest_b = w_b.flush()
    tr_b.on_closed(rest_b)
    closed_b += rest_b
    pub_b = PartialPublisher(
        model="m", topic="t", reference_hash=profile.content_hash, agent_id="B", epoch=1,
        send=_no_send,
    )  # fmt: skip
    msgs += pub_b.window_partials(closed_b, 2, dict(w_b.origins))
    for c in closed_b:
        tr_b.note_partial(c, 0, True)
    msgs.append(pub_b.progress({0: PartitionProgress(0, True, FAR, False, BASE)}, 2))
    merge = MergeState("m", profile.content_hash, PARTS, 30.0, allowed_lateness=1.0)
    others = [agent(profile, data, {p}, f"o{p}") for p in (1, 2)]
    for m in msgs + [m for o, _ in others for m in o]:
        assert merge.receive(m, 0.0) == "accepted"
    agg = tracker(profile.performance)
    ev = evaluator(profile, agg)
    revisable = RevisableWindows(agg.ref, agg.evaluate, max_windows=100, horizon=3600.0)
    got = []
    for due in merge.due(0.0):
        assert due.complete
        (report,) = [mark(r.report, due) for r in ev.evaluate(merge_window(profile, due))]
        revisable.keep(report, due.partials)
        got.append(report)
    assert [r.window_start for r in got] == [r.window_start for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.performance is not None and w.performance is not None
        assert_same_block(g.performance, w.performance)
    # the late labels, A's rows' too, reach B: B revises the windows A sent as well
    tr_b.add_labels(labels(data, idx[data["when"][idx] == "late"]))
    revisions = [pub_b.revision(i, st, 2) for i, st in tr_b.partial_revisions()]
    revisions += [p for _, rev in others for p in rev()]
    final = {}
    for p in revisions:
        outcome, new = revisable.revise(p)
        assert outcome == "accepted" and new is not None
        final[new.window_start] = new
    assert sorted(final) == [r.window_start for r in want_revised]
    for r in want_revised:
        g = final[r.window_start]
        assert g.performance is not None and r.performance is not None
        assert_same_block(g.performance, r.performance)


def test_a_revision_before_the_window_is_judged_replaces_its_piece(profile: Profile) -> None:
    """Revisions that arrive while the window waits for a partition are merged into the
    first report, which then equals the lone agent's revised block."""
    data = traffic(3000, seed=1)
    _, want_revised = lone_reports(profile, data)
    merge = MergeState("m", profile.content_hash, PARTS, 30.0, allowed_lateness=1.0)
    agents = [agent(profile, data, {p}, f"b{p}") for p in range(PARTS)]
    for msgs, revisions in agents[:2]:
        assert {merge.receive(m, 0.0) for m in msgs} == {"accepted"}
        assert {merge.receive(p, 0.0) for p in revisions()} == {"accepted"}
    assert merge.due(0.0) == []  # partition 2 not reported yet
    msgs, revisions = agents[2]
    assert {merge.receive(m, 0.0) for m in [*msgs, *revisions()]} == {"accepted"}
    assert profile.performance is not None
    agg = tracker(profile.performance)
    ev = evaluator(profile, agg)
    due = merge.due(0.0)
    assert len(due) == len(want_revised)
    for d, want in zip(due, want_revised, strict=True):
        (report,) = [r.report for r in ev.evaluate(merge_window(profile, d))]
        assert report.performance is not None and want.performance is not None
        assert_same_block(report.performance, replace(want.performance, revised=False))


def test_a_window_with_a_piece_lacking_performance_gets_no_block(profile: Profile) -> None:
    """A partial from an agent of an older release (no state) must not yield a block that
    covers part of the window as if it were all of it."""
    data = traffic(1500, seed=2)
    merge = MergeState("m", profile.content_hash, PARTS, 30.0, allowed_lateness=1.0)
    for p in range(PARTS):
        msgs, _ = agent(profile, data, {p}, f"c{p}")
        if p == 1:
            msgs = [replace(m, performance=b"") for m in msgs]
        for m in msgs:
            merge.receive(m, 0.0)
    due = merge.due(0.0)
    assert due
    for d in due:
        (w,) = merge_window(profile, d)
        assert w.performance is None
        # a corrupt state: the window is still judged, without the block
        broken = replace(d, partials=tuple(replace(p, performance=b"DLPS") for p in d.partials))
        (w,) = merge_window(profile, broken)
        assert w.performance is None and w.rows == sum(p.rows for p in d.partials)


def test_revisions_of_windows_past_the_horizon_are_dropped(profile: Profile) -> None:
    assert profile.performance is not None
    agg = tracker(profile.performance)
    revisable = RevisableWindows(agg.ref, agg.evaluate, max_windows=2, horizon=25.0)
    data = traffic(1500, seed=3)
    msgs, _ = agent(profile, data, {0}, "d")
    perf = evaluate_performance(agg.ref, PerformanceState(agg.ref), window_rows=1)
    for m in msgs:
        if m.kind == "window" and m.window is not None:
            report = replace(BARE, window_start=m.window[0], window_end=m.window[1])
            revisable.keep(replace(report, performance=perf), [m])
    ends = sorted(k[0][1] for k in revisable.windows)
    assert len(ends) == 2 and ends[-1] - ends[0] <= 25.0
    assert not any(math.isnan(e) for e in ends)
    oldest = next(m for m in msgs if m.kind == "window")
    assert revisable.revise(replace(oldest, kind="revision"))[0] == "late"


BARE = WindowReport(
    model="m",
    model_version="v1",
    window_start=0.0,
    window_end=10.0,
    reference_hash="ref",
    rows=1,
    drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
    prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
    quality=QualityResult(rows=1, checks=()),
)


async def _no_send(topic: str, key: bytes, value: bytes) -> None:
    return None


class _Sink:
    def __init__(self) -> None:
        self.reports: list[WindowReport] = []

    def write(self, report: WindowReport) -> None:
        self.reports.append(report)

    def close(self) -> None:
        return None


class _Producer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append(value)


class _Publisher:
    def __init__(self) -> None:
        self.producer = _Producer()


def aggregator(profile: Profile, state_dir: Path, sink: _Sink) -> Aggregator:
    config = MonitorConfig.model_validate(
        {
            "model": "m",
            "reference": str(state_dir / "unused.json"),
            "source": {
                "kind": "kafka",
                "kafka": {"bootstrap_servers": "k0:9092", "topics": ["preds"], "group_id": "g"},
            },
            "aggregation": {"role": "aggregator", "source_partitions": PARTS},
            "state": {"dir": str(state_dir)},
            "windows": {"size": "10s", "allowed_lateness": "1s", "idle_timeout": "30s"},
            "labels": {"sample_size": 300},
            "kpis": [{"name": "revenue", "from": "labels"}],
        }
    )
    agg = Aggregator(config, profile=profile, sinks=[sink], serve_http=False)
    agg.state = agg._new_state(PARTS)
    agg.publisher = _Publisher()  # type: ignore[assignment]
    return agg


def test_the_aggregator_publishes_the_block_its_revisions_and_metrics(
    profile: Profile, tmp_path: Path
) -> None:
    """The Aggregator itself: reports through its sinks with the lone agent's block, the
    model-level performance metrics, and revised reports — also after a restart from its
    checkpoint."""
    data = traffic(4000, seed=4)
    want, want_revised = lone_reports(profile, data)
    agents = [agent(profile, data, {p}, f"e{p}") for p in range(PARTS)]
    sink = _Sink()
    agg = aggregator(profile, tmp_path, sink)

    async def judge_then_checkpoint() -> None:
        for n, (msgs, _) in enumerate(agents):
            for i, m in enumerate(msgs):
                agg._receive(m.to_bytes(), ("partials", 0, 100 * n + i), 0.0)
        await agg._judge_due(0.0)
        await agg.checkpoint()

    asyncio.run(judge_then_checkpoint())
    assert [r.window_start for r in sink.reports] == [r.window_start for r in want]
    for g, w in zip(sink.reports, want, strict=True):
        assert g.performance is not None and w.performance is not None
        assert_same_block(g.performance, w.performance)
    text = generate_latest(agg.exporter.registry).decode()
    assert "driftline_performance_realized{" in text and "driftline_kpi_mean{" in text
    agg.executor.shutdown()
    # restarted from its checkpoint, it revises the windows it judged before
    sink2 = _Sink()
    again = aggregator(profile, tmp_path, sink2)
    again._restore()
    assert again._restored is not None  # taken up at its first metadata refresh:
    again.state = again._new_state(PARTS)
    again.state.restore(again._restored, 0.0)
    assert again.revisable is not None and len(again.revisable.windows) == len(want)
    for n, (_, revisions) in enumerate(agents):
        for i, p in enumerate(revisions()):
            again._receive(p.to_bytes(), ("partials", 0, 1000 + 10 * n + i), 0.0)
    final = {r.window_start: r for r in sink2.reports}
    assert sorted(final) == [r.window_start for r in want_revised]
    for r in want_revised:
        g = final[r.window_start]
        assert g.performance is not None and r.performance is not None
        assert g.performance.revised
        assert_same_block(g.performance, r.performance)
    text = generate_latest(again.exporter.registry).decode()
    assert "driftline_performance_revisions_total{" in text
    again.executor.shutdown()


def test_a_partition_restored_from_the_changelog_brings_its_performance_state(
    profile: Profile, tmp_path: Path
) -> None:
    """Partition 1 read half by A, then, through the per-partition changelog, by B: B's
    windows of it — and the revisions of the ones A sent — have the performance state
    of one agent reading partition 1 throughout; A forgets it once it is B's."""
    from tests.unit.test_partition_state import MemoryLog, checkpoint, offsets_after
    from tests.unit.test_partition_state import agent as changelog_agent

    assert profile.performance is not None
    data = traffic(3000, seed=6)
    one = np.flatnonzero(data["partition"] == 1)
    when = data["when"]

    def final(closed: list[ClosedWindow], revisions: list) -> dict[float, PerformanceState]:
        out = {w.start: w.performance for w in closed if w.partition == 1}
        out.update({info[2]: state for info, state in revisions if info[1] == 1})
        return out  # type: ignore[return-value]

    # one agent reading partition 1 throughout
    control, cw = tracker(profile.performance), PartitionedWindows(profile, **PARAMS)
    cw.origin_of = lambda p: (0, True)
    control.add_labels(labels(data, one[when[one] == "early"]))
    closed = feed(data, one, cw, control)
    rest = cw.flush()
    control.on_closed(rest)
    closed += rest
    for w in closed:
        control.note_partial(w, 0, True)
    control.add_labels(labels(data, one[when[one] == "late"]))
    want = final(closed, list(control.partial_revisions()))

    log, run = MemoryLog(), asyncio.run
    a, wa = changelog_agent(profile, log, tmp_path / "a")
    tr_a = tracker(profile.performance)
    a.performance = tr_a
    run(a.on_assign({("t", p): None for p in range(3)}))
    a.source.owned = {("t", p) for p in range(3)}
    half = np.arange(1500)
    tr_a.add_labels(labels(data, half[when[half] == "early"]))
    later = one[one >= 1500]
    # the labels of B's rows come early, to A: they wait there for their predictions
    tr_a.add_labels(labels(data, later[when[later] == "early"]))
    waiting = tr_a.join.pending_labels
    assert waiting >= int(np.sum(when[later] == "early")) > 0
    closed_a = feed(data, half, wa, tr_a)
    for w in closed_a:
        tr_a.note_partial(w, 0, True)
    at = offsets_after(data, 1500)
    run(a.save(checkpoint(at)))
    wa.release({1})  # revoked: written, set aside
    run(a.save(checkpoint(at)))
    a.source.owned.discard(("t", 1))
    b, wb = changelog_agent(profile, log, tmp_path / "b")
    tr_b = tracker(profile.performance)
    b.performance = tr_b
    assert run(b.on_assign({("t", 1): at[("t", 1)]})) == {("t", 1): at[("t", 1)]}
    assert tr_b.join.pending_predictions > 0  # A's predictions of partition 1, waiting
    assert tr_b.join.pending_labels == int(np.sum(when[later] == "early"))  # moved to B
    closed_b = feed(data, later, wb, tr_b)
    rest = wb.flush()
    tr_b.on_closed(rest)
    closed_b += rest
    for w in closed_b:
        tr_b.note_partial(w, 0, True)
    tr_b.add_labels(labels(data, one[when[one] == "late"]))  # A's rows' too: B has them
    got = final(closed_a + closed_b, list(tr_b.partial_revisions()))
    assert sorted(got) == sorted(want) and len(want) == 4
    for start, state in want.items():
        rows = next(w.rows for w in closed if w.start == start)
        assert_same_block(
            evaluate_performance(profile.performance, got[start], window_rows=rows),
            evaluate_performance(profile.performance, state, window_rows=rows),
        )
    # partition 1 is assigned elsewhere: A drops what it kept of it
    run(a.on_assign({("t", 0): at[("t", 0)], ("t", 2): at[("t", 2)]}))
    assert not [k for k in tr_a.panes if k[0].endswith("\x1f1")]
    assert tr_a.join.pending_labels == 0  # its held labels went with it


def test_a_hand_off_at_an_older_checkpoint_carries_that_checkpoints_performance(
    profile: Profile, tmp_path: Path
) -> None:
    """Changelog off, a commit that did not get through: partition 0 is handed off with
    the checkpoint file's windows that end at the committed offset, and with that file's
    performance state, not the one in memory (whose later rows the next owner reads
    again)."""
    from monitor.config.windows import WindowsConfig
    from monitor.runtime.checkpoint import Checkpoint, CheckpointStore
    from monitor.runtime.publishing import AgentPartials

    assert profile.performance is not None
    data = traffic(3000, seed=7)
    rows0 = np.flatnonzero(data["partition"] == 0)
    early = labels(data, rows0[data["when"][rows0] == "early"])
    tr, w = tracker(profile.performance), PartitionedWindows(profile, **PARAMS)
    w.origin_of = lambda p: (0, True)
    tr.add_labels(early)
    feed(data, rows0[:400], w, tr)
    CheckpointStore(tmp_path).save(
        Checkpoint(
            {("t", 0): 400},
            w.snapshot(),
            profile.content_hash,
            1.0,
            extra={"performance": orjson.loads(orjson.dumps(tr.snapshot()))},
        )
    )
    feed(data, rows0[400:700], w, tr)  # in memory, never committed
    control, cw = tracker(profile.performance), PartitionedWindows(profile, **PARAMS)
    cw.origin_of = lambda p: (0, True)
    control.add_labels(early)
    feed(data, rows0[:400], cw, control)
    want = cw.flush()
    control.on_closed(want)

    sent = Sent()
    agent_ = AgentPartials(
        PartialPublisher(
            model="m", topic="t", reference_hash="r", agent_id="a", epoch=1, send=sent
        ),
        WindowsConfig(size=10.0),
        tmp_path,
    )
    agent_.performance = tr
    w.release({0})
    asyncio.run(agent_.progress(HandoffSource(), w, {("t", 0): 700}, 0.0, {("t", 0): 700}))
    pieces = [m for m in map(Partial.from_bytes, sent.values) if m.kind == "window" and m.handoff]
    assert [p.window for p in pieces] == [(x.start, x.end) for x in want] and pieces
    for piece, x in zip(pieces, want, strict=True):
        got = PerformanceState.from_bytes(profile.performance, piece.performance)
        assert isinstance(x.performance, PerformanceState)
        assert (got.rows, got.labeled) == (x.performance.rows, x.performance.labeled)
        assert got.rows == x.rows
        assert_same_block(
            evaluate_performance(profile.performance, got, window_rows=x.rows),
            evaluate_performance(profile.performance, x.performance, window_rows=x.rows),
        )


def test_a_zombies_revision_of_a_judged_window_does_not_replace_the_owners(
    profile: Profile,
) -> None:
    """Partition 0's window was judged with the piece of its owner ``b`` (generation 2).
    The agent evicted from it while frozen (``z``, generation 1, part of the window's
    rows) wakes and revises it: refused, the report keeps the owner's block; the owner's
    revision applies, a restarted owner's (later epoch) too, and a checkpointed aggregator
    (or one restoring an older release's checkpoint) answers the same."""
    assert profile.performance is not None
    agg = tracker(profile.performance)
    revisable = RevisableWindows(agg.ref, agg.evaluate, max_windows=100, horizon=3600.0)
    msgs, revisions = agent(profile, traffic(1500, seed=3), {0}, "b")
    rev = next(iter(revisions()))
    piece = next(m for m in msgs if m.kind == "window" and m.window == rev.window)
    assert piece.window is not None and rev.performance != piece.performance
    perf = agg.evaluate(PerformanceState.from_bytes(agg.ref, piece.performance), piece.rows)
    report = replace(BARE, window_start=piece.window[0], window_end=piece.window[1])
    revisable.keep(replace(report, performance=perf), [replace(piece, generation=2)])

    def zombie(p: Partial) -> Partial:
        return replace(p, kind="revision", agent_id="z", generation=1, rows=piece.rows // 2)

    assert revisable.revise(zombie(rev)) == ("stale", None)
    held = revisable.windows[(piece.window, "v1")]
    assert held.report.performance == perf and held.pieces[(0, 0)].agent == "b"
    outcome, revised = revisable.revise(replace(rev, generation=2))
    assert outcome == "accepted" and revised is not None and revised.performance != perf
    assert revised.performance is not None and revised.performance.revised
    # the zombie's state again (other bytes): still refused, after a restart too
    assert revisable.revise(zombie(piece)) == ("stale", None)
    again = RevisableWindows(agg.ref, agg.evaluate, max_windows=100, horizon=3600.0)
    again.restore(orjson.loads(orjson.dumps(revisable.snapshot())))
    assert again.revise(zombie(piece)) == ("stale", None)
    restarted = replace(piece, kind="revision", epoch=2, generation=3)
    assert again.revise(restarted)[0] == "accepted"
    # an older release's checkpoint (no generation, no rows): another agent's applies
    old = [[r, [x[:5] for x in pieces]] for r, pieces in revisable.snapshot()]
    again.restore(old)
    assert again.revise(zombie(piece))[0] == "accepted"
