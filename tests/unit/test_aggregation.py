"""Aggregation of partial windows: the report's partial/coverage block, the partial
message format, windows kept per partition, and the aggregator's merge (exact,
idempotent, fenced, following hand-offs between owners)."""

from __future__ import annotations

import asyncio
import time
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
from monitor.runtime.partials import Partial, PartialError, PartitionProgress
from monitor.runtime.partitioned import PartitionedWindows
from monitor.runtime.publishing import PartialPublisher, agent_identity
from monitor.runtime.window_snapshot import SnapshotError
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


PARAMS: dict = {
    "size": 10.0,
    "allowed_lateness": 1.0,
    "idle_timeout": 30.0,
    "dedupe": True,
    "dedupe_max_ids": 100_000,
    "reservoir_size": 64,
    "segment_by_version": True,
}
FAR = BASE + 1e6  # a horizon past every window


def alone(profile: Profile, data: dict[str, np.ndarray], cut: int = 700) -> list[ClosedWindow]:
    """One agent reading every partition in arrival (event-time) order."""
    m = WindowManager(profile, **PARAMS)
    m.assign(set(range(PARTS)), now=0.0)
    closed: list[ClosedWindow] = []
    for a in range(0, len(data["t"]), cut):
        closed += m.add(batch(data, np.arange(a, min(a + cut, len(data["t"])))), now=0.0).closed
    return closed + m.flush()


def publisher(agent: str, epoch: int = 1) -> PartialPublisher:
    return PartialPublisher(
        model="m", topic="t", reference_hash="ref", agent_id=agent, epoch=epoch, send=_no_send
    )


def run_agent(
    profile: Profile,
    data: dict[str, np.ndarray],
    parts: set[int],
    agent: str,
    *,
    rows: slice = slice(None),
    origin: int = 0,
    epoch: int = 1,
    generation: int = 1,
    flush: bool = True,
) -> tuple[list[Partial], PartitionedWindows]:
    """An agent owning ``parts``: its windows per partition, its window partials and the
    progress that passes them."""
    w = PartitionedWindows(profile, **PARAMS)
    w.origin_of = lambda p: (origin, origin == 0)
    idx = np.flatnonzero(np.isin(data["partition"], sorted(parts)))[rows]
    closed: list[ClosedWindow] = []
    for a in range(0, len(idx), 700):
        closed += w.add(batch(data, idx[a : a + 700]), now=0.0).closed
    if flush:
        closed += w.flush()
    pub = publisher(agent, epoch)
    msgs = pub.window_partials(closed, generation, dict(w.origins))
    owned = {
        p: PartitionProgress(
            *w.origins.get(p, (origin, origin == 0)), FAR, False, w.first_time.get(p)
        )
        for p in parts
    }
    msgs.append(pub.progress(owned, generation))
    return msgs, w


async def _no_send(topic: str, key: bytes, value: bytes) -> None:
    return None


def evaluator(profile: Profile) -> WindowEvaluator:
    return WindowEvaluator(profile, "m", DriftSettings(), QualitySettings())


def state(partitions: int = PARTS, deadline: float = 30.0) -> MergeState:
    return MergeState("m", "ref", partitions, deadline, allowed_lateness=1.0)


def feed(merge: MergeState, msgs: list[Partial], now: float = 0.0) -> set[str]:
    return {merge.receive(p, now) for p in msgs}


def assert_same(profile: Profile, merge: MergeState, expected: list[ClosedWindow]) -> None:
    """Every window judged complete, equal to the lone agent's: rows, offsets, statistics."""
    due = merge.due(now=0.0)
    assert [d.bounds for d in due] == [(w.start, w.end) for w in expected]
    ev = evaluator(profile)
    for d, w in zip(due, expected, strict=True):
        assert d.complete and not d.overlap and d.coverage.reported == (0, 1, 2)
        (merged,) = merge_window(profile, d)
        assert merged.rows == w.rows and merged.offsets == w.offsets
        got = mark(ev.evaluate([merged])[0].report, d)
        want = ev.evaluate([w])[0].report
        assert not got.partial and got.rows == want.rows
        assert got.drift.share == want.drift.share
        for a, b in zip(got.drift.columns, want.drift.columns, strict=True):
            assert (a.feature, a.test, a.drifted) == (b.feature, b.test, b.drifted)
            assert a.statistic == pytest.approx(b.statistic, rel=1e-9, abs=1e-12)
        assert [(q.check, q.count) for q in got.quality.checks] == [
            (q.check, q.count) for q in want.quality.checks
        ]


def test_partials_round_trip_and_bad_bytes_are_refused(profile: Profile) -> None:
    msgs, _ = run_agent(profile, traffic(900), {0, 1, 2}, "a")
    handoff = publisher("a").handoff(1, 77, (5, False), [(BASE, BASE + 10)], 3)
    judged = replace(msgs[0], kind="judged", sketch=b"")
    for p in [*msgs, handoff]:
        assert Partial.from_bytes(p.to_bytes()) == p
    assert Partial.from_bytes(judged.to_bytes()).window == msgs[0].window
    for bad in (None, b"", b"DLPT", b"XXXX" + msgs[0].to_bytes()[4:], msgs[0].to_bytes()[:20]):
        with pytest.raises(PartialError):
            Partial.from_bytes(bad)


def test_three_agents_merge_to_the_windows_of_one_agent(profile: Profile) -> None:
    data = traffic()
    merge = state()
    for agent, part in (("a", 0), ("b", 1), ("c", 2)):
        msgs, _ = run_agent(profile, data, {part}, agent)
        assert feed(merge, msgs) == {"accepted"}
    assert_same(profile, merge, alone(profile, data))
    ev = evaluator(profile)
    reports = [ev.evaluate(merge_window(profile, d))[0].report for d in merge.due(0.0)]
    x_drifted = [next(c.drifted for c in r.drift.columns if c.feature == "x") for r in reports]
    assert not x_drifted[0] and x_drifted[-1]  # x drifts after 30 s


def test_a_partition_handed_off_midstream_merges_exactly(profile: Profile) -> None:
    data = traffic()
    p0 = np.flatnonzero(data["partition"] == 0)
    cut = len(p0) // 2  # agent a reads half of partition 0, then b takes it over
    merge = state()
    first, wa = run_agent(profile, data, {0}, "a", rows=slice(0, cut), flush=False)
    open_windows, _, closed_to = wa.hand_off(0)
    pub = publisher("a")
    handoff = pub.window_partials(open_windows, 1, {0: (0, True)}, handoff=True)
    bounds = [(w.start, w.end) for w in open_windows]
    handoff.append(pub.handoff(0, cut, (0, True), bounds, 1, closed_to))
    second, _ = run_agent(profile, data, {0}, "b", rows=slice(cut, None), origin=cut, generation=2)
    for agent, part in (("c", 1), ("d", 2)):
        feed(merge, run_agent(profile, data, {part}, agent)[0])
    feed(merge, first[:-1])  # a's closed windows (its progress claims 0 in generation 1)
    feed(merge, second)  # b owns 0 from offset `cut` in generation 2 ...
    waiting = [d.bounds for d in merge.due(0.0)]
    assert len(waiting) < len(alone(profile, data))  # ... but a's hand-off is not in yet
    assert "hand-off at offset" in merge.waiting_for((open_windows[0].start, open_windows[0].end))
    feed(merge, handoff)
    assert_same(profile, merge, alone(profile, data))


def test_repeated_and_stale_partials_are_ignored(profile: Profile) -> None:
    data = traffic(3000)
    msgs, _ = run_agent(profile, data, {0, 1, 2}, "a", epoch=2)
    merge = state()
    feed(merge, msgs)
    before = {b: dict(h) for b, h in merge.windows.items()}
    windows = [p for p in msgs if p.is_window]
    # the same messages again (a restarted aggregator reading them twice)
    assert feed(merge, windows, 1.0) == {"repeated"}
    # a zombie of an older epoch of the same agent
    older, _ = run_agent(profile, data, {0, 1, 2}, "a", epoch=1)
    assert feed(merge, older, 2.0) == {"stale"}
    assert {b: dict(h) for b, h in merge.windows.items()} == before
    # a later epoch (the agent restarted from a checkpoint) replaces its pieces
    newer, _ = run_agent(profile, data, {0, 1, 2}, "a", epoch=3)
    assert merge.receive(newer[0], 3.0) == "accepted"
    assert newer[0].window is not None
    assert merge.windows[newer[0].window][("v1", 0, 0)].epoch == 3  # replaced, not added
    # a window judged already: its pieces are late; another model's are foreign
    merge.done(newer[0].window, 4.0)
    assert merge.receive(newer[0], 5.0) == "late"
    assert merge.receive(replace(newer[0], model="other"), 5.0) == "foreign"


def test_a_partition_not_reported_holds_the_window_until_the_deadline(profile: Profile) -> None:
    data = traffic(3000)
    merge = state(deadline=30.0)
    for agent, part in (("a", 0), ("b", 1)):  # nobody owns partition 2 yet
        feed(merge, run_agent(profile, data, {part}, agent)[0], now=100.0)
    assert merge.due(now=110.0) == []
    assert "2: no owner" in merge.waiting_for(next(iter(merge.windows)))
    due = merge.due(now=130.0)
    assert due and all(not d.complete for d in due)
    assert due[0].coverage.reported == (0, 1) and due[0].coverage.missing == (2,)
    r = mark(evaluator(profile).evaluate(merge_window(profile, due[0]))[0].report, due[0])
    assert r.partial and r.partial_reason == "coverage" and r.coverage == due[0].coverage


def test_a_pause_of_the_aggregator_does_not_run_down_a_deadline(profile: Profile) -> None:
    """Frozen for longer than the deadline, the aggregator reads the piece that arrived
    meanwhile before judging: the pause (monitor/runtime/loop_gap.py) moves the deadline
    clocks; a piece still missing a deadline of running time later is judged without."""
    data = traffic(3000)
    pieces = [run_agent(profile, data, {p}, agent)[0] for p, agent in enumerate("abc")]
    paused, plain = state(deadline=30.0), state(deadline=30.0)
    for merge in (paused, plain):
        for msgs in pieces[:2]:  # partition 2's piece is still on its way
            feed(merge, msgs, now=100.0)
    paused.shift(60.0)  # did not run from 105 to 165
    # without the shift the pause runs the deadline down: judged without partition 2
    assert plain.due(now=166.0) and not any(d.complete for d in plain.due(now=166.0))
    assert paused.due(now=166.0) == []  # 6 s of running time since the first pieces
    assert paused.due(now=189.0) == [] and paused.due(now=191.0)  # then the deadline holds
    feed(paused, pieces[2], now=166.0)  # read from the backlog on waking
    due = paused.due(now=166.0)
    assert due and all(d.complete and d.coverage.reported == (0, 1, 2) for d in due)


def test_an_empty_owned_partition_is_reported_by_progress(profile: Profile) -> None:
    data = traffic(3000)
    data["partition"] = np.where(data["partition"] == 2, 0, data["partition"])  # 2 is empty
    merge = state()
    feed(merge, run_agent(profile, data, {0, 1}, "a")[0])
    assert merge.due(0.0) == []  # partition 2: no owner has said anything
    idle = publisher("c").progress({2: PartitionProgress(0, True, None, True)}, 1)
    merge.receive(idle, 0.0)
    due = merge.due(0.0)
    assert due and all(d.complete for d in due)


def test_overlapping_pieces_are_flagged(profile: Profile) -> None:
    data = traffic(3000)
    merge = state()
    feed(merge, run_agent(profile, data, {0, 1, 2}, "a")[0])
    # b read partition 0 again from offset 5 (an older commit): the same offsets twice
    feed(merge, [p for p in run_agent(profile, data, {0}, "b", origin=5)[0] if p.is_window])
    due = merge.due(0.0)
    assert due and any(d.overlap for d in due)
    r = mark(evaluator(profile).evaluate(merge_window(profile, due[0]))[0].report, due[0])
    assert r.partial and "overlap" in str(r.partial_reason)


def test_merge_state_snapshot_restores_everything(profile: Profile) -> None:
    data = traffic(3000)
    msgs, _ = run_agent(profile, data, {0, 1}, "a")
    merge = state()
    feed(merge, msgs)
    feed(merge, [publisher("b").handoff(2, 9, (0, True), [], 1)])
    first = next(iter(merge.windows))
    merge.done(first, 0.0)
    again = state()
    again.restore(merge.snapshot(), now=50.0)
    assert again.windows == merge.windows
    assert again.handoffs == merge.handoffs
    assert again.evaluated.keys() == merge.evaluated.keys()
    assert again.owners().keys() == merge.owners().keys()
    assert again.counts == merge.counts
    with pytest.raises(ValueError):
        MergeState("other", "ref", 3, 30.0).restore(merge.snapshot(), now=0.0)


def test_partitioned_windows_snapshot_and_hand_off(profile: Profile) -> None:
    data = traffic(3000)
    w = PartitionedWindows(profile, **PARAMS)
    w.origin_of = lambda p: (0, True)
    w.add(batch(data, np.arange(1500)), now=0.0)
    back = PartitionedWindows.restore(profile, w.snapshot(), now=0.0, **PARAMS)
    assert back.origins == w.origins and back.first_time == w.first_time
    assert back.open_panes == w.open_panes > 0
    rest = np.arange(1500, 3000)
    a = w.add(batch(data, rest), now=0.0).closed + w.flush()
    b = back.add(batch(data, rest), now=0.0).closed + back.flush()
    assert [(x.start, x.partition, x.rows) for x in a] == [
        (x.start, x.partition, x.rows) for x in b
    ]
    w2 = PartitionedWindows(profile, **PARAMS)
    w2.add(batch(data, np.arange(1500)), now=0.0)
    w2.assign({0, 1}, now=0.0)
    assert w2.to_hand_off(joined=False) == set() and w2.to_hand_off(joined=True) == {2}
    closed, _, _ = w2.hand_off(2)
    assert closed and all(x.partition == 2 for x in closed) and 2 not in w2.by_partition
    with pytest.raises(SnapshotError):
        PartitionedWindows.restore(profile, WindowManager(profile, **PARAMS).snapshot(), **PARAMS)


def test_agent_identity_is_kept_and_the_epoch_grows(tmp_path: Path) -> None:
    a1, e1 = agent_identity(tmp_path, None)
    a2, e2 = agent_identity(tmp_path, None)
    assert a1 == a2 and (e1, e2) == (1, 2)
    assert agent_identity(tmp_path, "pod-7")[0] == "pod-7"
    b, e = agent_identity(tmp_path / "fresh", None)
    assert b != a1 and e == 1
    # a configured name whose directory is gone: above what its last process counted to
    before = time.time()
    name, epoch = agent_identity(tmp_path / "no-disk", "pod-7")
    assert name == "pod-7" and epoch >= int(before) > 1_000_000
    assert agent_identity(tmp_path / "no-disk", "pod-7")[1] == epoch + 1


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
    msgs = [pub.progress({0: PartitionProgress(0, True, float(h), False)}, 1) for h in range(5)]

    async def go() -> None:
        await asyncio.gather(pub.publish(msgs[:2]), pub.publish(msgs[2:]))

    asyncio.run(go())
    assert [Partial.from_bytes(v).owned[0].horizon for v in sent] == [0.0, 1.0, 2.0, 3.0, 4.0]


class _CommittedAt400:
    async def committed(self, tp: object) -> int:
        return 400


class HandoffSource:
    """The source of an agent handing partition 0 off: the group committed it at offset
    400 (the agent's checkpoint), and the agent keeps partition 1."""

    consumer = _CommittedAt400()

    def assigned(self) -> set[tuple[str, int]]:
        return {("t", 1)}


class Sent:
    """A partials send function that keeps what it was given, in order."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        self.values.append(value)


def test_a_hand_off_follows_the_committed_offset(profile: Profile, tmp_path: Path) -> None:
    """A commit that did not get through: the partition is handed off at the committed
    offset with the checkpoint file's state that ends there, and the agent's offsets go
    back to it (so the next owner's reading again is no double count)."""
    from monitor.config.windows import WindowsConfig
    from monitor.runtime.checkpoint import Checkpoint, CheckpointStore
    from monitor.runtime.publishing import AgentPartials

    data = traffic(3000)
    rows0 = np.flatnonzero(data["partition"] == 0)
    w = PartitionedWindows(profile, **PARAMS)
    w.origin_of = lambda p: (0, True)
    w.add(batch(data, rows0[:400]), now=0.0)
    CheckpointStore(tmp_path).save(
        Checkpoint({("t", 0): 400}, w.snapshot(), profile.content_hash, 1.0)
    )
    saved = w.snapshot()
    w.add(batch(data, rows0[400:700]), now=0.0)  # in memory, never committed
    in_memory = sum(
        x.rows for x in PartitionedWindows.restore(profile, w.snapshot(), **PARAMS).flush()
    )
    at_commit = sum(x.rows for x in PartitionedWindows.restore(profile, saved, **PARAMS).flush())
    assert in_memory != at_commit

    sent = Sent()
    agent = AgentPartials(publisher("a"), WindowsConfig(size=10.0), tmp_path)
    agent.publisher._send = sent
    w.release({0})
    positions = {("t", 0): 700}
    asyncio.run(agent.progress(HandoffSource(), w, {("t", 0): 700}, 0.0, positions))
    msgs = [Partial.from_bytes(v) for v in sent.values]
    (handoff,) = [m for m in msgs if m.kind == "handoff"]
    assert handoff.at == 400 and positions == {("t", 0): 400}
    pieces = [m for m in msgs if m.kind == "window" and m.handoff]
    assert sum(m.rows for m in pieces) == at_commit  # the file's state, not the one in memory
    assert 0 not in w.by_partition
