"""Aggregation of partial windows: the report's partial/coverage block, the partial
message format, and the aggregator's merge (exact, idempotent, fenced)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.profile import Profile, build_profile
from detectors.results import Coverage, DriftResult, QualityResult, WindowReport
from detectors.settings import DriftSettings, QualitySettings
from monitor.ingest.batch import DecodedBatch
from monitor.runtime.aggregator import mark, merge_window
from monitor.runtime.evaluation import WindowEvaluator
from monitor.runtime.merging import MergeState
from monitor.runtime.partials import Partial, PartialError
from monitor.runtime.publishing import PartialPublisher, agent_identity
from monitor.runtime.windows import ClosedWindow, WindowManager


def bare_report(**kw: object) -> WindowReport:
    base = WindowReport(
        model="m",
        model_version="v1",
        window_start=0.0,
        window_end=10.0,
        reference_hash="abc",
        rows=5,
        drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
        prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
        quality=QualityResult(rows=5, checks=()),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_partial_report_round_trips_with_its_coverage() -> None:
    r = bare_report(partial=True, partial_reason="coverage", coverage=Coverage(4, (0, 2, 3), 2))
    d = r.to_dict()
    assert d["partial"] is True and d["coverage"]["missing"] == [1]
    back = WindowReport.from_json(r.to_json())
    assert back.partial and back.partial_reason == "coverage"
    assert back.coverage == Coverage(4, (0, 2, 3), 2)
    plain = WindowReport.from_json(bare_report().to_json())
    assert plain.partial is False and plain.coverage is None


# -- partials through the merge ----------------------------------------------------------

BASE = 1_700_000_000.0
PARTS = 3


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=2000),
            "color": rng.choice(["red", "green", "blue"], 2000),
            "score": rng.random(2000),
        }
    )
    return build_profile(frame, prediction=["score"], bins=20)


def traffic(n: int = 9000, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows spread over PARTS partitions, event times over 60 s, a drift after 30 s."""
    rng = np.random.default_rng(seed)
    t = BASE + np.sort(rng.uniform(0, 60, n))
    x = rng.normal(size=n) + (t > BASE + 30) * 0.8
    return {
        "t": t,
        "partition": rng.integers(0, PARTS, n),
        "key": rng.permutation(n).astype(np.uint64) + np.uint64(1),
        "x": x,
        "color": rng.choice(np.array(["red", "green", "blue", "pink"], dtype=object), n),
        "score": rng.random(n),
    }


def batch(data: dict[str, np.ndarray], idx: np.ndarray) -> DecodedBatch:
    n = len(idx)
    obj = np.array([None] * n, dtype=object)
    part = data["partition"][idx]
    # offsets: the row's position within its partition
    offsets = np.empty(n, dtype=np.int64)
    for p in range(PARTS):
        mine = np.flatnonzero(data["partition"] == p)
        pos = np.searchsorted(mine, idx[part == p])
        offsets[part == p] = pos
    return DecodedBatch(
        columns={k: data[k][idx] for k in ("x", "color", "score")},
        event_time=data["t"][idx],
        request_id=obj,
        row_key=data["key"][idx],
        model_version=np.array(["v1"] * n, dtype=object),
        traceparent=obj,
        partition=part.astype(np.int32),
        offset=offsets,
    )


def manager(profile: Profile) -> WindowManager:
    return WindowManager(
        profile,
        size=10.0,
        allowed_lateness=1.0,
        idle_timeout=30.0,
        dedupe=True,
        dedupe_max_ids=100_000,
        reservoir_size=64,
        segment_by_version=True,
    )


def windows_of(profile: Profile, data: dict[str, np.ndarray], parts: set[int]) -> WindowManager:
    m = manager(profile)
    m.assign(parts, now=0.0)
    return m


def run_agent(
    profile: Profile, data: dict[str, np.ndarray], parts: set[int], cut: int = 700
) -> tuple[list[ClosedWindow], WindowManager]:
    m = windows_of(profile, data, parts)
    idx = np.flatnonzero(np.isin(data["partition"], sorted(parts)))
    closed: list[ClosedWindow] = []
    for a in range(0, len(idx), cut):
        closed += m.add(batch(data, idx[a : a + cut]), now=0.0).closed
    return closed + m.flush(), m


def partials_of(
    agent: str, closed: list[ClosedWindow], parts: set[int], epoch: int = 1, generation: int = 1
) -> list[Partial]:
    pub = PartialPublisher(
        model="m",
        topic="t",
        reference_hash="ref",
        agent_id=agent,
        epoch=epoch,
        send=_no_send,
    )
    return pub.window_partials(closed, parts, generation, horizon=BASE + 1e6)


async def _no_send(topic: str, key: bytes, value: bytes) -> None:
    return None


def evaluator(profile: Profile) -> WindowEvaluator:
    return WindowEvaluator(profile, "m", DriftSettings(), QualitySettings())


def state(partitions: int = PARTS, deadline: float = 30.0) -> MergeState:
    return MergeState("m", "ref", partitions, deadline)


def test_partial_round_trips_and_bad_bytes_are_refused(profile: Profile) -> None:
    data = traffic(900)
    closed, _ = run_agent(profile, data, {0, 1, 2})
    p = partials_of("a", closed[:1], {0, 1, 2})[0]
    back = Partial.from_bytes(p.to_bytes())
    assert back == p and back.is_window and back.offsets == closed[0].offsets
    for bad in (None, b"", b"DLPT", b"XXXX" + p.to_bytes()[4:], p.to_bytes()[:20]):
        with pytest.raises(PartialError):
            Partial.from_bytes(bad)


def test_three_agents_merge_to_the_windows_of_one_agent(profile: Profile) -> None:
    data = traffic()
    alone, _ = run_agent(profile, data, {0, 1, 2})
    merge = state()
    for agent, parts in (("a", {0}), ("b", {1}), ("c", {2})):
        closed, _ = run_agent(profile, data, parts)
        for p in partials_of(agent, closed, parts):
            assert merge.receive(p, now=0.0) == "accepted"
    due = merge.due(now=0.0)
    assert [d.bounds for d in due] == [(w.start, w.end) for w in alone]
    ev = evaluator(profile)
    for d, w in zip(due, alone, strict=True):
        assert d.complete and not d.overlap and d.coverage.reported == (0, 1, 2)
        (merged,) = merge_window(profile, d)
        assert merged.rows == w.rows and merged.offsets == w.offsets
        got = mark(ev.evaluate([merged])[0].report, d)
        want = ev.evaluate([w])[0].report
        assert not got.partial and got.coverage is not None
        assert got.rows == want.rows
        for a, b in zip(got.drift.columns, want.drift.columns, strict=True):
            assert a.feature == b.feature and a.drifted == b.drifted
            assert a.statistic == pytest.approx(b.statistic, rel=1e-9, abs=1e-12)
        assert got.drift.share == want.drift.share
        assert [(q.check, q.count) for q in got.quality.checks] == [
            (q.check, q.count) for q in want.quality.checks
        ]
    assert any(
        c.drifted
        for r in due[3:]
        for c in ev.evaluate(merge_window(profile, r))[0].report.drift.columns
    )


def test_repeated_and_stale_partials_are_ignored(profile: Profile) -> None:
    data = traffic(3000)
    closed, _ = run_agent(profile, data, {0, 1, 2})
    first = partials_of("a", closed, {0, 1, 2}, epoch=2)
    merge = state()
    for p in first:
        merge.receive(p, 0.0)
    before = {b: dict(h) for b, h in merge.windows.items()}
    # the same messages again (a restarted aggregator reading them twice)
    assert {merge.receive(p, 1.0) for p in first if p.is_window} == {"repeated"}
    # a zombie of an older epoch of the same agent
    older = partials_of("a", closed[:2], {0, 1, 2}, epoch=1)
    assert {merge.receive(p, 2.0) for p in older} == {"stale"}
    assert {b: dict(h) for b, h in merge.windows.items()} == before
    # a later epoch (the agent restarted from a checkpoint) replaces its window
    newer = partials_of("a", closed[:1], {0, 1, 2}, epoch=3)
    assert merge.receive(newer[0], 3.0) == "accepted"
    assert len(merge.windows[(BASE, BASE + 10.0)]) == 1  # replaced, not added
    assert merge.counts["repeated"] == len(closed) and merge.counts["stale"] == 3
    # a window judged already: its partials are late
    bounds = newer[0].window
    assert bounds is not None
    merge.done(bounds, 4.0)
    assert merge.receive(newer[0], 5.0) == "late"
    assert merge.receive(replace(newer[0], model="other"), 5.0) == "foreign"


def test_a_partition_not_reported_holds_the_window_until_the_deadline(profile: Profile) -> None:
    data = traffic(3000)
    merge = state(deadline=30.0)
    for agent, parts in (("a", {0}), ("b", {1})):  # nobody owns partition 2 yet
        closed, _ = run_agent(profile, data, parts)
        for p in partials_of(agent, closed, parts):
            merge.receive(p, now=100.0)
    assert merge.due(now=110.0) == []
    due = merge.due(now=130.0)
    assert due and all(not d.complete for d in due)
    assert due[0].coverage.reported == (0, 1) and due[0].coverage.missing == (2,)
    (w,) = merge_window(profile, due[0])
    r = mark(evaluator(profile).evaluate([w])[0].report, due[0])
    assert r.partial and r.partial_reason == "coverage" and r.coverage == due[0].coverage


def test_an_empty_owned_partition_is_reported_by_progress(profile: Profile) -> None:
    data = traffic(3000)
    data["partition"] = np.where(data["partition"] == 2, 0, data["partition"])  # 2 is empty
    merge = state()
    closed, _ = run_agent(profile, data, {0, 1})
    for p in partials_of("a", closed, {0, 1}):
        merge.receive(p, 0.0)
    assert merge.due(0.0) == []  # partition 2: no owner has said anything
    pub = PartialPublisher(
        model="m", topic="t", reference_hash="ref", agent_id="c", epoch=1, send=_no_send
    )
    merge.receive(pub.progress({2}, 1, horizon=None, drained=True), 0.0)
    due = merge.due(0.0)
    assert due and all(d.complete for d in due)


def test_ownership_follows_the_latest_generation_and_overlap_is_flagged(profile: Profile) -> None:
    data = traffic(3000)
    closed, _ = run_agent(profile, data, {0, 1, 2})
    merge = state()
    for p in partials_of("a", closed, {0, 1, 2}, generation=1):
        merge.receive(p, 0.0)
    # b claims partition 0 in a later generation, with no horizon yet: 0 is not covered
    pub = PartialPublisher(
        model="m", topic="t", reference_hash="ref", agent_id="b", epoch=1, send=_no_send
    )
    merge.receive(pub.progress({0}, 2, horizon=None, drained=False), 0.0)
    assert merge.owners()[0].agent_id == "b" and merge.due(0.0) == []
    # b's partials of the same offsets of partition 0: counted twice, so flagged
    dup = partials_of("b", closed, {0}, generation=2)
    for p in dup:
        merge.receive(p, 0.0)
    due = merge.due(0.0)
    assert due and all(d.overlap for d in due)


def test_merge_state_snapshot_restores_everything(profile: Profile) -> None:
    data = traffic(3000)
    closed, _ = run_agent(profile, data, {0, 1})
    merge = state()
    for p in partials_of("a", closed, {0, 1}):
        merge.receive(p, 0.0)
    merge.done((closed[0].start, closed[0].end), 0.0)
    again = state()
    again.restore(merge.snapshot(), now=50.0)
    assert again.windows.keys() == merge.windows.keys()
    assert again.evaluated.keys() == merge.evaluated.keys()
    assert again.owners().keys() == merge.owners().keys()
    assert again.counts == merge.counts
    with pytest.raises(ValueError):
        MergeState("other", "ref", 3, 30.0).restore(merge.snapshot(), now=0.0)


def test_agent_identity_is_kept_and_the_epoch_grows(tmp_path: Path) -> None:
    a1, e1 = agent_identity(tmp_path, None)
    a2, e2 = agent_identity(tmp_path, None)
    assert a1 == a2 and (e1, e2) == (1, 2)
    assert agent_identity(tmp_path, "pod-7")[0] == "pod-7"
    b, e = agent_identity(tmp_path / "fresh", None)
    assert b != a1 and e == 1


def test_publisher_sends_in_order_and_retries_until_acknowledged() -> None:
    sent: list[bytes] = []
    failures = [2]

    async def flaky(topic: str, key: bytes, value: bytes) -> None:
        if failures[0]:
            failures[0] -= 1
            raise OSError("broker away")
        sent.append(value)

    pub = PartialPublisher(
        model="m", topic="t", reference_hash="ref", agent_id="a", epoch=1, send=flaky
    )
    msgs = [pub.progress({0}, 1, horizon=float(h), drained=False) for h in range(5)]

    async def go() -> None:
        await asyncio.gather(pub.publish(msgs[:2]), pub.publish(msgs[2:]))

    asyncio.run(go())
    assert [Partial.from_bytes(v).horizon for v in sent] == [0.0, 1.0, 2.0, 3.0, 4.0]
