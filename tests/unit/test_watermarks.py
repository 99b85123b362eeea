"""Per-partition watermarks and the bound on future event times.

A backlog read partition after partition loses nothing to lateness once the agent knows
its partitions (where one global maximum made two thirds of it late); an owned partition
that sends nothing holds windows back only until it is idle; windows stay independent of
batch cuts; a snapshot keeps each partition's progress. A record dated far ahead of the
clock is set aside and leaves the windows as they were without it, in the pipeline and
in ``driftline replay``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from detectors.profile import Profile, build_profile
from monitor.config.model import MonitorConfig
from monitor.ingest.batch import DecodedBatch
from monitor.outputs.exporter import Exporter
from monitor.runtime.event_time import REASON, bound_event_time
from monitor.runtime.replay import replay
from monitor.runtime.watermarks import PartitionClock
from monitor.runtime.windows import ClosedWindow, WindowManager

BASE = 1_700_000_000.0
PARTITIONS = 3
PER_PARTITION = 10_000
SPAN = 100.0  # seconds of event time in every partition


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x": rng.normal(size=400), "score": rng.random(400)})
    return build_profile(frame, prediction=["score"], bins=10)


def manager(profile: Profile, **overrides: Any) -> WindowManager:
    params: dict[str, Any] = {
        "size": 10.0,
        "allowed_lateness": 2.0,
        "idle_timeout": 30.0,
        "dedupe": True,
        "dedupe_max_ids": 1_000_000,
        "reservoir_size": 0,
        "segment_by_version": False,
    }
    params.update(overrides)
    return WindowManager(profile, **params)


def stream(seed: int = 0) -> dict[str, np.ndarray]:
    """PARTITIONS partitions of PER_PARTITION rows each, in event-time order per partition."""
    rng = np.random.default_rng(seed)
    n = PARTITIONS * PER_PARTITION
    part = np.repeat(np.arange(PARTITIONS), PER_PARTITION)
    t = np.concatenate(
        [BASE + np.sort(rng.uniform(0, SPAN, PER_PARTITION)) for _ in range(PARTITIONS)]
    )
    offset = np.tile(np.arange(PER_PARTITION), PARTITIONS)
    return {
        "t": t,
        "partition": part,
        "offset": offset,
        "key": rng.permutation(n).astype(np.uint64) + np.uint64(1),
        "x": rng.integers(-12, 12, n) / 4,
        "score": rng.integers(0, 8, n) / 8,
    }


def batch(data: dict[str, np.ndarray], idx: np.ndarray) -> DecodedBatch:
    n = len(idx)
    obj = np.array([None] * n, dtype=object)
    return DecodedBatch(
        columns={"x": data["x"][idx], "score": data["score"][idx]},
        event_time=data["t"][idx],
        request_id=obj,
        row_key=data["key"][idx],
        model_version=np.array(["v1"] * n, dtype=object),
        traceparent=obj,
        partition=data["partition"][idx].astype(np.int32),
        offset=data["offset"][idx].astype(np.int64),
    )


def run(
    m: WindowManager, data: dict[str, np.ndarray], order: np.ndarray, cut: int
) -> list[ClosedWindow]:
    closed: list[ClosedWindow] = []
    for a in range(0, len(order), cut):
        closed += m.add(batch(data, order[a : a + cut]), now=0.0).closed
    return closed + m.flush()


def live_order(data: dict[str, np.ndarray]) -> np.ndarray:
    """Rows as they were produced: interleaved by event time."""
    return np.argsort(data["t"], kind="stable")


def backlog_order(data: dict[str, np.ndarray]) -> np.ndarray:
    """A backlog fetched partition by partition: all of partition 0, then 1, then 2."""
    return np.arange(len(data["t"]))


def summary(closed: list[ClosedWindow]) -> list[tuple[float, int, int]]:
    return [(w.start, w.rows, w.sketch.rows) for w in closed]


def test_backlog_read_partition_by_partition_loses_nothing_to_lateness(profile: Profile) -> None:
    data = stream()
    live = manager(profile)
    live.assign(set(range(PARTITIONS)), now=0.0)
    expected = run(live, data, live_order(data), cut=5000)
    assert sum(live.late_total.values()) == 0
    assert sum(w.rows for w in expected) == PARTITIONS * PER_PARTITION

    backlog = manager(profile)
    backlog.assign(set(range(PARTITIONS)), now=0.0)
    got = run(backlog, data, backlog_order(data), cut=5000)
    assert sum(backlog.late_total.values()) == 0
    assert summary(got) == summary(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.offsets == b.offsets

    # One maximum for every partition (all rows on one partition number) is what lost the
    # backlog before: everything of partitions 1 and 2 behind partition 0's end is late.
    merged = {**data, "partition": np.zeros_like(data["partition"])}
    single = manager(profile)
    run(single, merged, backlog_order(merged), cut=5000)
    late = sum(single.late_total.values())
    assert late > PER_PARTITION  # about two thirds of the backlog


def test_windows_do_not_depend_on_batch_cuts_with_several_partitions(profile: Profile) -> None:
    data = stream(seed=1)
    rng = np.random.default_rng(3)
    # partitions interleaved in runs (as fetches return them), jittered event times
    order = np.concatenate(
        [
            np.flatnonzero(data["partition"] == p)[a : a + 700]
            for a in range(0, 10_000, 700)
            for p in rng.permutation(PARTITIONS)
        ]
    )
    results = []
    for cut in (97, 1000, 4999):
        m = manager(profile)
        m.assign(set(range(PARTITIONS)), now=0.0)
        results.append((summary(run(m, data, order, cut)), dict(m.late_total)))
    assert results[0] == results[1] == results[2]


def test_an_owned_partition_without_traffic_holds_windows_until_it_is_idle(
    profile: Profile,
) -> None:
    data = stream(seed=2)
    m = manager(profile, idle_timeout=30.0)
    m.assign({0, 1, 2}, now=0.0)
    only01 = np.flatnonzero(data["partition"] < 2)
    only01 = only01[np.argsort(data["t"][only01], kind="stable")]
    first = m.add(batch(data, only01[:10_000]), now=1.0)
    assert first.closed == []  # partition 2 has said nothing and is not idle yet
    later = m.add(batch(data, only01[10_000:]), now=31.0)  # 30 s later: 2 is idle
    assert [w.start for w in later.closed][:1] == [BASE]
    assert m.partitions.idle(31.0) == {2}


def test_a_revoked_partition_stops_holding_windows(profile: Profile) -> None:
    data = stream(seed=4)
    m = manager(profile)
    m.assign({0, 1}, now=0.0)
    zero = np.flatnonzero(data["partition"] == 0)
    assert m.add(batch(data, zero), now=0.0).closed == []  # 1 holds them
    m.assign({0}, now=1.0)
    assert m.add(batch(data, zero[:0]), now=1.0).closed == []  # an empty batch closes nothing
    closed = m.add(batch(data, zero[-1:]), now=1.0).closed  # a duplicate, but it advances
    assert len(closed) >= 9


def test_snapshot_keeps_each_partitions_progress(profile: Profile) -> None:
    data = stream(seed=5)
    order = backlog_order(data)
    whole = manager(profile)
    whole.assign({0, 1, 2}, now=0.0)
    expected = run(whole, data, order, cut=4000)

    first = manager(profile)
    first.assign({0, 1, 2}, now=0.0)
    closed = []
    for a in range(0, 12_000, 4000):
        closed += first.add(batch(data, order[a : a + 4000]), now=0.0).closed
    restored = WindowManager.restore(
        profile,
        first.snapshot(),
        size=10.0,
        allowed_lateness=2.0,
        idle_timeout=30.0,
        dedupe=True,
        dedupe_max_ids=1_000_000,
        reservoir_size=0,
        segment_by_version=False,
        now=0.0,
    )
    assert restored.partitions.partitions() == first.partitions.partitions()
    rest = order[12_000:]
    for a in range(0, len(rest), 4000):
        closed += restored.add(batch(data, rest[a : a + 4000]), now=0.0).closed
    closed += restored.flush()
    assert summary(closed) == summary(expected)
    assert sum(restored.late_total.values()) == 0


def test_partition_clock_minimum_over_active_partitions() -> None:
    clock = PartitionClock(idle_timeout=10.0)
    t = np.array([5.0, 50.0, 7.0, 8.0])
    part = np.array([0, 0, 1, 1])
    # partition 1 counts from its first row on (row 2): before it, 0's progress alone
    assert clock.advance(t, part, now=0.0).tolist() == [5.0, 50.0, 7.0, 8.0]
    assert clock.progress(now=5.0) == 8.0
    assert clock.progress(now=10.5) == -np.inf  # both idle
    assert clock.partitions() == {0: 50.0, 1: 8.0}


# -- event times far ahead of the clock ---------------------------------------------------


def test_far_future_rows_are_set_aside_not_clamped(profile: Profile) -> None:
    data = stream(seed=6)
    idx = live_order(data)[:1000]
    b = batch(data, idx)
    b.event_time = b.event_time.copy()
    b.event_time[10] = BASE + 10 * 86_400  # ten days ahead
    kept, aside = bound_event_time(b, now=BASE + SPAN, max_skew=300.0)
    assert kept.rows == 999 and [f.reason for f in aside] == [REASON]
    assert aside[0].message.offset == int(b.offset[10])
    assert bound_event_time(b, now=BASE + SPAN, max_skew=None)[0].rows == 1000


def test_one_far_future_timestamp_does_not_move_the_watermark(profile: Profile) -> None:
    # one partition (a single-partition topic, a replay): the far-future row is its own
    # partition's progress, so nothing else holds the watermark back
    data = stream(seed=7)
    data["partition"] = np.zeros_like(data["partition"])
    order = live_order(data)
    clean = manager(profile)
    expected = run(clean, data, order, cut=2000)
    poisoned = {k: v.copy() for k, v in data.items()}
    poisoned["t"][order[100]] = BASE + 3600.0  # an hour ahead
    # without the bound: the windows close at once and the rest is late
    unbounded = manager(profile)
    run(unbounded, poisoned, order, cut=2000)
    assert sum(unbounded.late_total.values()) > 20_000
    # with it (as the pipeline does): the same windows, less the one row set aside
    bounded = manager(profile)
    closed: list[ClosedWindow] = []
    for a in range(0, len(order), 2000):
        kept, _ = bound_event_time(batch(poisoned, order[a : a + 2000]), BASE + SPAN, 300.0)
        closed += bounded.add(kept, now=0.0).closed
    closed += bounded.flush()
    assert sum(bounded.late_total.values()) == 0
    assert [w.start for w in closed] == [w.start for w in expected]
    assert sum(w.rows for w in closed) == sum(w.rows for w in expected) - 1


def test_replay_sets_a_far_future_record_aside_and_reports_the_same_windows(
    tmp_path: Path, profile: Profile
) -> None:
    now = time.time()
    start = now - 600.0
    rng = np.random.default_rng(8)
    records = [
        {
            "request_id": f"r{i}",
            "timestamp": start + i * 0.1,
            "model_version": "v1",
            "features": {"x": float(rng.normal())},
            "prediction": {"score": float(rng.random())},
        }
        for i in range(3000)
    ]
    ref = profile.save(tmp_path / "ref.json.gz")

    def reports(name: str, recs: list[dict[str, Any]]) -> tuple[list[Any], Exporter]:
        path = tmp_path / name
        path.write_bytes(b"\n".join(orjson.dumps(r) for r in recs) + b"\n")
        config = MonitorConfig.model_validate(
            {
                "model": "m",
                "reference": str(ref),
                "source": {"kind": "file", "file": {"path": str(path)}},
                "windows": {"size": "60s", "allowed_lateness": "2s"},
            }
        )
        exporter = Exporter(model="m", window_label="1m", reference_hash=profile.short_hash)
        return list(replay(config, profile, path, exporter=exporter)), exporter

    clean, _ = reports("clean.jsonl", records)
    bad = [dict(r) for r in records]
    bad.insert(500, {**records[500], "request_id": "future", "timestamp": now + 86_400.0})
    poisoned, exporter = reports("poisoned.jsonl", bad)
    key = [(r.window_start, r.rows, r.late_records) for r in clean]
    assert [(r.window_start, r.rows, r.late_records) for r in poisoned] == key
    assert len(clean) >= 5
    failed = exporter.registry.get_sample_value(
        "driftline_records_failed_total", {"model": "m", "reason": REASON}
    )
    assert failed == 1.0
