"""Event-time windows: bounds, lateness, duplicates, idle timeout, versions, row windows,
and snapshot/restore giving exactly the windows of an uninterrupted run."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.profile import Profile, build_profile
from detectors.sketch import WindowSketch
from monitor.ingest.batch import DecodedBatch
from monitor.runtime.window_snapshot import SnapshotError
from monitor.runtime.windows import ClosedWindow, WindowManager, window_params

COLORS = np.array(["red", "green", "blue", "purple", None], dtype=object)


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=400),
            "color": rng.choice(["red", "green", "blue"], 400),
            "score": rng.random(400),
        }
    )
    return build_profile(frame, prediction=["score"], bins=10)


def params(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "size": 60.0,
        "slide": None,
        "rows": None,
        "allowed_lateness": 10.0,
        "idle_timeout": 30.0,
        "dedupe": True,
        "dedupe_max_ids": 100_000,
        "reservoir_size": 16,
        "segment_by_version": True,
    }
    base.update(overrides)
    return base


def make_data(
    rng: np.random.Generator,
    n: int,
    *,
    span: float = 600.0,
    jitter: float = 5.0,
    dup_rate: float = 0.0,
    versions: tuple[str, ...] = ("stable", "canary"),
) -> dict[str, np.ndarray]:
    """A stream of rows, out of order by up to ``jitter`` seconds, with replayed rows.

    Values are multiples of 1/4 so sums are exact whatever order they are added in, and
    sketches of the same rows compare equal with ``state_equal``.
    """
    t = np.sort(rng.uniform(0.0, span, n)) + rng.uniform(-jitter, jitter, n)
    keys = rng.permutation(n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    data = {
        "t": t,
        "key": keys,
        "x": rng.integers(-12, 12, n) / 4,
        "color": COLORS[rng.integers(0, len(COLORS), n)],
        "score": rng.integers(0, 8, n) / 8,
        "version": np.array(versions, dtype=object)[rng.integers(0, len(versions), n)],
        "trace": np.array(
            [f"{i:032x}" if rng.random() < 0.5 else None for i in range(n)], dtype=object
        ),
    }
    if dup_rate:
        # replay some rows a little later in the stream (same key, time and values)
        src = np.flatnonzero(rng.random(n) < dup_rate)
        dst = np.minimum(src + rng.integers(1, 30, len(src)), n - 1)
        for name in data:
            data[name][dst] = data[name][src]
    return data


def batch_of(data: dict[str, np.ndarray], idx: Any = slice(None)) -> DecodedBatch:
    t = np.asarray(data["t"][idx], dtype=np.float64)
    n = len(t)
    return DecodedBatch(
        columns={"x": data["x"][idx], "color": data["color"][idx], "score": data["score"][idx]},
        event_time=t,
        request_id=np.array([None] * n, dtype=object),
        row_key=np.asarray(data["key"][idx], dtype=np.uint64),
        model_version=np.asarray(data["version"][idx], dtype=object),
        traceparent=np.asarray(data["trace"][idx], dtype=object),
        partition=np.zeros(n, dtype=np.int32),
        offset=np.arange(n, dtype=np.int64),
    )


def rows_batch(times: list[float], *, version: str = "v1", first_key: int = 1) -> DecodedBatch:
    """A small batch of rows at the given event times with distinct keys."""
    n = len(times)
    data = {
        "t": np.array(times, dtype=np.float64),
        "key": np.arange(first_key, first_key + n, dtype=np.uint64),
        "x": np.arange(n) / 4,
        "color": np.array(["red"] * n, dtype=object),
        "score": np.full(n, 0.5),
        "version": np.array([version] * n, dtype=object),
        "trace": np.array([None] * n, dtype=object),
    }
    return batch_of(data)


def direct_sketch(profile: Profile, data: dict[str, np.ndarray], mask: np.ndarray) -> WindowSketch:
    sketch = WindowSketch(profile, 16)
    b = batch_of(data, mask)
    sketch.update(b.columns, row_keys=b.row_key)
    return sketch


def run(
    profile: Profile,
    data: dict[str, np.ndarray],
    cuts: list[int],
    p: dict[str, Any],
    *,
    restore_at: set[int] = frozenset(),  # type: ignore[assignment]
    nows: list[float] | None = None,
    flush: bool = True,
) -> tuple[list[ClosedWindow], WindowManager]:
    manager = WindowManager(profile, **p)
    closed: list[ClosedWindow] = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        if i in restore_at:
            manager = WindowManager.restore(profile, manager.snapshot(), **p)
        now = 1000.0 if nows is None else nows[i]
        closed.extend(manager.add(batch_of(data, slice(a, b)), now=now).closed)
    if flush:
        closed.extend(manager.flush())
    return closed, manager


def random_cuts(rng: np.random.Generator, n: int, pieces: int) -> list[int]:
    inner = np.sort(rng.choice(np.arange(1, n), size=pieces - 1, replace=False))
    return [0, *inner.tolist(), n]


def describe(cw: ClosedWindow) -> tuple[Any, ...]:
    return (
        cw.model_version,
        cw.start,
        cw.end,
        cw.rows,
        cw.late,
        cw.duplicates,
        tuple(cw.traceparents),
        cw.kind,
    )


def assert_same_windows(a: list[ClosedWindow], b: list[ClosedWindow]) -> None:
    assert [describe(w) for w in a] == [describe(w) for w in b]
    for wa, wb in zip(a, b, strict=True):
        assert wa.sketch.state_equal(wb.sketch), describe(wa)


# -- bounds ------------------------------------------------------------------------------


def test_tumbling_windows_close_when_the_watermark_passes_their_end(profile: Profile) -> None:
    m = WindowManager(profile, **params(allowed_lateness=10.0))
    first = m.add(rows_batch([5.0, 30.0, 65.0]), now=0.0)
    assert first.closed == [] and first.accepted == 3
    # watermark 70 - 10 = 60 reaches the end of [0, 60)
    second = m.add(rows_batch([70.0], first_key=10), now=1.0)
    assert [(w.start, w.end, w.rows, w.kind) for w in second.closed] == [(0.0, 60.0, 2, "time")]
    assert second.closed[0].sketch.rows == 2
    rest = m.flush()
    assert [(w.start, w.end, w.rows) for w in rest] == [(60.0, 120.0, 2)]
    assert m.open_panes == 0


def test_sliding_windows_cover_their_range_and_equal_a_direct_sketch(profile: Profile) -> None:
    rng = np.random.default_rng(1)
    data = make_data(rng, 1500, span=400.0, jitter=4.0, versions=("v1",))
    p = params(size=60.0, slide=20.0, allowed_lateness=30.0)
    closed, _ = run(profile, data, random_cuts(rng, 1500, 12), p)
    starts = [w.start for w in closed]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(w.end - w.start == 60.0 and w.start % 20.0 == 0.0 for w in closed)
    # every sliding window that holds a row is there, one per multiple of the slide
    t = data["t"]
    expected = {s for s in np.arange(-100.0, 500.0, 20.0) if ((t >= s) & (t < s + 60)).any()}
    assert set(starts) == expected
    for w in closed:
        mask = (t >= w.start) & (t < w.end)
        assert w.rows == int(mask.sum())
        assert w.sketch.state_equal(direct_sketch(profile, data, mask)), w.start


def test_sliding_windows_are_the_merge_of_their_panes(profile: Profile) -> None:
    rng = np.random.default_rng(2)
    data = make_data(rng, 1200, span=300.0, versions=("v1",))
    cuts = random_cuts(rng, 1200, 8)
    sliding, _ = run(profile, data, cuts, params(size=60.0, slide=15.0, allowed_lateness=20.0))
    panes, _ = run(profile, data, cuts, params(size=15.0, allowed_lateness=20.0))
    by_start = {w.start: w for w in panes}
    for w in sliding:
        parts = [by_start[s] for s in np.arange(w.start, w.end, 15.0) if s in by_start]
        merged = WindowSketch(profile, 16)
        for part in parts:
            merged = merged.merge(part.sketch)
        assert merged.state_equal(w.sketch)
        assert w.rows == sum(part.rows for part in parts)


def test_sliding_window_takes_a_row_while_any_window_holding_it_is_open(
    profile: Profile,
) -> None:
    m = WindowManager(profile, **params(size=60.0, slide=20.0, allowed_lateness=0.0))
    res = m.add(rows_batch([5.0, 25.0]), now=0.0)  # the watermark reaches 25
    assert [(w.start, w.end, w.rows) for w in res.closed] == [(-40.0, 20.0, 1)]
    res = m.add(rows_batch([70.0], first_key=10), now=0.0)  # closes up to [0, 60)
    assert [(w.start, w.end, w.rows) for w in res.closed] == [(-20.0, 40.0, 2), (0.0, 60.0, 2)]
    # t=26 is still inside the open [20, 80); t=10 only belongs to closed windows
    res = m.add(rows_batch([26.0, 10.0], first_key=20), now=0.0)
    assert res.accepted == 1 and res.late == {"v1": 1}
    by_start = {w.start: w.rows for w in m.flush()}
    assert by_start[20.0] == 3  # 25, 26 and 70


# -- lateness ----------------------------------------------------------------------------


def test_out_of_order_rows_within_lateness_land_in_their_window(profile: Profile) -> None:
    m = WindowManager(profile, **params(allowed_lateness=20.0))
    m.add(rows_batch([10.0, 70.0]), now=0.0)
    res = m.add(rows_batch([55.0, 65.0], first_key=10), now=0.0)  # watermark 50
    assert res.closed == [] and res.late == {}
    res = m.add(rows_batch([100.0], first_key=20), now=0.0)  # watermark 80
    assert [(w.start, w.rows) for w in res.closed] == [(0.0, 2)]


def test_late_rows_are_counted_not_dropped_silently(profile: Profile) -> None:
    m = WindowManager(profile, **params(allowed_lateness=5.0))
    # within one batch: after t=100 the watermark is 95, so [0, 60) is closed for t=20
    res = m.add(rows_batch([10.0, 100.0, 20.0], version="canary"), now=0.0)
    assert res.late == {"canary": 1} and res.accepted == 2
    assert [(w.start, w.rows, w.late) for w in res.closed] == [(0.0, 1, 0)]
    res = m.add(rows_batch([30.0, 40.0, 110.0], version="canary", first_key=10), now=0.0)
    assert res.late == {"canary": 2}
    assert m.late_total == {"canary": 3}
    # late rows are reported with the next window of their version that closes
    (window,) = m.flush()
    assert (window.start, window.rows, window.late) == (60.0, 2, 3)
    assert window.sketch.rows == 2


# -- duplicates --------------------------------------------------------------------------


def test_duplicates_are_counted_across_and_within_batches(profile: Profile) -> None:
    m = WindowManager(profile, **params())
    a = rows_batch([1.0, 2.0, 3.0], first_key=1)
    b = rows_batch([3.0, 4.0, 4.0, 5.0], first_key=3)  # keys 3, 4, 5, 6
    b.row_key[2] = 4  # a second copy of key 4 in the same batch
    res_a = m.add(a, now=0.0)
    res_b = m.add(b, now=0.0)
    assert res_a.duplicates == {}
    assert res_b.duplicates == {"v1": 2} and res_b.accepted == 2
    (window,) = m.flush()
    assert window.rows == 5 and window.duplicates == 2

    no_dedupe = WindowManager(profile, **params(dedupe=False))
    no_dedupe.add(a, now=0.0)
    assert no_dedupe.add(b, now=0.0).duplicates == {}
    assert no_dedupe.flush()[0].rows == 7


def test_replayed_rows_of_a_closed_window_count_as_duplicates(profile: Profile) -> None:
    m = WindowManager(profile, **params(allowed_lateness=0.0))
    first = rows_batch([10.0, 20.0], first_key=1)
    m.add(first, now=0.0)
    assert len(m.add(rows_batch([65.0], first_key=50), now=0.0).closed) == 1
    res = m.add(first, now=0.0)
    assert res.duplicates == {"v1": 2} and res.late == {}


# -- idle timeout ------------------------------------------------------------------------


def test_idle_timeout_closes_open_windows(profile: Profile) -> None:
    m = WindowManager(profile, **params(idle_timeout=30.0))
    m.add(rows_batch([10.0, 20.0]), now=100.0)
    assert m.tick(now=120.0) == []
    closed = m.tick(now=130.0)
    assert [(w.start, w.end, w.rows) for w in closed] == [(0.0, 60.0, 2)]
    assert m.tick(now=200.0) == [] and m.open_panes == 0
    # the closed window takes no more rows; a later one opens normally
    res = m.add(rows_batch([30.0, 70.0], first_key=10), now=201.0)
    assert res.late == {"v1": 1} and res.accepted == 1
    assert [(w.start, w.rows) for w in m.flush()] == [(60.0, 1)]


def test_add_after_a_long_pause_first_closes_the_idle_windows(profile: Profile) -> None:
    m = WindowManager(profile, **params(idle_timeout=30.0))
    m.add(rows_batch([10.0]), now=0.0)
    res = m.add(rows_batch([70.0], first_key=5), now=45.0)
    assert [(w.start, w.rows) for w in res.closed] == [(0.0, 1)]
    assert m.open_panes == 1


def test_restore_with_now_does_not_count_downtime_as_idle(profile: Profile) -> None:
    p = params(idle_timeout=30.0)
    m = WindowManager(profile, **p)
    m.add(rows_batch([10.0]), now=0.0)
    data = m.snapshot()
    assert WindowManager.restore(profile, data, **p).tick(now=100.0) != []
    assert WindowManager.restore(profile, data, now=100.0, **p).tick(now=110.0) == []


# -- model versions ----------------------------------------------------------------------


def test_versions_get_their_own_windows_and_sketches(profile: Profile) -> None:
    rng = np.random.default_rng(3)
    data = make_data(rng, 800, span=240.0, jitter=2.0)
    closed, _ = run(profile, data, random_cuts(rng, 800, 5), params(allowed_lateness=5.0))
    versions = {w.model_version for w in closed}
    assert versions == {"stable", "canary"}
    t = data["t"]
    for w in closed:
        mask = (t >= w.start) & (t < w.end) & (data["version"] == w.model_version)
        assert w.rows == int(mask.sum())
        assert w.sketch.state_equal(direct_sketch(profile, data, mask))
    # side by side: a stable and a canary window for each minute that has rows of each
    assert len(closed) == len({(w.start, w.model_version) for w in closed})
    assert {(w.start, w.model_version) for w in closed} == {
        (60.0 * np.floor(ti / 60.0), v) for ti, v in zip(t, data["version"], strict=True)
    }

    together, _ = run(profile, data, [0, 800], params(segment_by_version=False))
    assert {w.model_version for w in together} == {"all"}
    assert sum(w.rows for w in together) == 800


def test_late_and_duplicate_counts_are_per_version_without_segments(profile: Profile) -> None:
    m = WindowManager(profile, **params(allowed_lateness=0.0, segment_by_version=False))
    m.add(rows_batch([10.0, 70.0], version="stable"), now=0.0)
    res = m.add(rows_batch([20.0], version="canary", first_key=9), now=0.0)
    assert res.late == {"canary": 1}
    res = m.add(rows_batch([71.0], version="stable", first_key=2), now=0.0)  # key 2 again
    assert res.duplicates == {"stable": 1}


def test_missing_model_version_is_unknown(profile: Profile) -> None:
    m = WindowManager(profile, **params())
    b = rows_batch([1.0, 2.0])
    b.model_version[1] = None
    m.add(b, now=0.0)
    assert sorted(w.model_version for w in m.flush()) == ["unknown", "v1"]


# -- row windows -------------------------------------------------------------------------


def test_row_windows_hold_exactly_n_rows_in_arrival_order(profile: Profile) -> None:
    rng = np.random.default_rng(4)
    data = make_data(rng, 11, versions=("v1",))
    m = WindowManager(profile, **params(rows=4))
    assert m.add(batch_of(data, slice(0, 3)), now=0.0).closed == []
    closed = m.add(batch_of(data, slice(3, 9)), now=0.0).closed
    closed += m.add(batch_of(data, slice(9, 11)), now=0.0).closed
    assert [w.rows for w in closed] == [4, 4]
    tail = m.flush()
    assert [w.rows for w in tail] == [3]
    for w, (a, b) in zip([*closed, *tail], [(0, 4), (4, 8), (8, 11)], strict=True):
        mask = np.zeros(11, dtype=bool)
        mask[a:b] = True
        assert w.kind == "rows"
        assert w.sketch.state_equal(direct_sketch(profile, data, mask))
        assert (w.start, w.end) == (a, b)  # row offsets of the segment, [start, end)


def test_row_windows_per_version_and_duplicates(profile: Profile) -> None:
    m = WindowManager(profile, **params(rows=3))
    res = m.add(rows_batch([1.0, 2.0, 3.0, 4.0], version="a", first_key=1), now=0.0)
    assert [(w.model_version, w.rows) for w in res.closed] == [("a", 3)]
    res = m.add(rows_batch([5.0, 6.0], version="b", first_key=100), now=0.0)
    assert res.closed == []
    res = m.add(rows_batch([7.0, 8.0, 9.0], version="a", first_key=4), now=0.0)  # 4 again
    assert res.duplicates == {"a": 1}
    assert [(w.model_version, w.rows, w.duplicates) for w in res.closed] == [("a", 3, 1)]
    assert [(w.model_version, w.rows) for w in m.flush()] == [("b", 2)]


# -- exemplars and memory ----------------------------------------------------------------


def test_traceparents_are_a_bounded_sample_of_the_windows_rows(profile: Profile) -> None:
    rng = np.random.default_rng(5)
    data = make_data(rng, 200, span=50.0, jitter=0.0, versions=("v1",))
    closed, _ = run(profile, data, [0, 70, 200], params())
    (window,) = closed
    present = {t for t in data["trace"] if t is not None}
    assert len(window.traceparents) == 8 and len(set(window.traceparents)) == 8
    assert set(window.traceparents) <= present


def test_memory_holds_only_open_panes_and_a_bounded_dedupe(profile: Profile) -> None:
    rng = np.random.default_rng(6)
    data = make_data(rng, 3000, span=3000.0, jitter=5.0, versions=("v1",))
    m = WindowManager(profile, **params(size=60.0, slide=10.0, dedupe_max_ids=50))
    most = 0
    for a, b in itertools.pairwise(range(0, 3001, 100)):
        m.add(batch_of(data, slice(a, b)), now=0.0)
        most = max(most, m.open_panes)
        assert m.dedupe_size <= 50
    # six panes per window, plus the panes the lateness and one batch's span keep open
    assert most <= 6 + 20
    assert m.dedupe_evicted > 0


# -- snapshot / restore ------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"slide": 20.0, "allowed_lateness": 15.0},
        {"rows": 37},
        {"segment_by_version": False, "size": 30.0, "slide": 10.0},
    ],
    ids=["tumbling", "sliding", "rows", "sliding-unsegmented"],
)
def test_snapshot_restore_mid_stream_gives_identical_windows(
    profile: Profile, overrides: dict[str, Any]
) -> None:
    p = params(**overrides)
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        n = 1500
        data = make_data(rng, n, jitter=12.0, dup_rate=0.05)
        cuts = random_cuts(rng, n, 15)
        # processing time with one pause longer than the idle timeout
        nows = np.cumsum(rng.uniform(0.5, 2.0, len(cuts))).tolist()
        nows[7:] = [x + 60.0 for x in nows[7:]]
        expected, plain = run(profile, data, cuts, p, nows=nows)
        restore_at = set(rng.choice(np.arange(1, len(cuts) - 1), size=4, replace=False).tolist())
        got, resumed = run(profile, data, cuts, p, nows=nows, restore_at=restore_at)
        assert len(expected) > 5
        assert_same_windows(expected, got)
        assert resumed.late_total == plain.late_total
        assert resumed.duplicates_total == plain.duplicates_total
        assert resumed.accepted_total == plain.accepted_total
        assert sum(plain.duplicates_total.values()) > 0


@pytest.mark.parametrize("overrides", [{}, {"slide": 15.0}, {"rows": 50}])
def test_windows_do_not_depend_on_where_batches_are_cut(
    profile: Profile, overrides: dict[str, Any]
) -> None:
    p = params(allowed_lateness=5.0, **overrides)
    rng = np.random.default_rng(9)
    n = 700
    data = make_data(rng, n, jitter=15.0, dup_rate=0.05)
    reference, plain = run(profile, data, [0, n], p)
    assert sum(plain.duplicates_total.values()) > 0
    if not overrides:
        assert sum(plain.late_total.values()) > 0
    for _ in range(3):
        got, _ = run(profile, data, random_cuts(rng, n, int(rng.integers(2, 40))), p)
        assert_same_windows(reference, got)
    one_by_one, _ = run(profile, data, list(range(n + 1)), p)
    assert_same_windows(reference, one_by_one)


def test_restore_refuses_other_window_parameters_and_corrupt_state(profile: Profile) -> None:
    m = WindowManager(profile, **params())
    m.add(rows_batch([1.0, 2.0]), now=0.0)
    data = m.snapshot()
    with pytest.raises(SnapshotError, match="size"):
        WindowManager.restore(profile, data, **params(size=30.0))
    with pytest.raises(SnapshotError, match="truncated"):
        WindowManager.restore(profile, data[:-10], **params())
    with pytest.raises(SnapshotError, match="magic"):
        WindowManager.restore(profile, b"XXXX" + data[4:], **params())
    other = build_profile(pd.DataFrame({"y": np.arange(50.0)}))
    with pytest.raises(SnapshotError, match="reference"):
        WindowManager.restore(other, data, **params())
    # lateness and the idle timeout may change across a restart
    WindowManager.restore(profile, data, **params(allowed_lateness=3.0, idle_timeout=5.0))


# -- misc --------------------------------------------------------------------------------


def test_event_time_that_is_not_finite_takes_processing_time(profile: Profile) -> None:
    m = WindowManager(profile, **params())
    closed = m.add(rows_batch([10.0, float("nan")]), now=125.0).closed + m.flush()
    assert [(w.start, w.rows) for w in closed] == [(0.0, 1), (120.0, 1)]


def test_from_config_reads_the_windows_section(profile: Profile) -> None:
    cfg = SimpleNamespace(**params(size=120.0, slide=30.0), stable_version=None)
    m = WindowManager.from_config(profile, cfg)
    assert (m.size, m.slide, m.kind) == (120.0, 30.0, "time")
    assert window_params(cfg)["size"] == 120.0
    m.add(rows_batch([1.0, 2.0]), now=0.0)
    restored = WindowManager.restore(profile, m.snapshot(), config=cfg)
    assert [w.rows for w in restored.flush()] == [w.rows for w in m.flush()] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="divide"):
        WindowManager(profile, **params(size=60.0, slide=25.0))
