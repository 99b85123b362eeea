"""Request-id deduplication: duplicates within and across batches, forgetting old keys,
the hard cap, and a state that survives serialisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ingest.dedupe import Deduplicator


def keys(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def times(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_duplicates_within_one_batch_flag_every_copy_but_the_first() -> None:
    d = Deduplicator(100, 60.0)
    dup = d.check_and_add(keys(5, 7, 5, 9, 7, 5), times(1, 2, 3, 4, 5, 6))
    assert dup.tolist() == [False, False, True, False, True, True]
    assert len(d) == 3


def test_duplicates_across_batches() -> None:
    d = Deduplicator(100, 60.0)
    assert not d.check_and_add(keys(1, 2, 3), times(1, 2, 3)).any()
    assert d.check_and_add(keys(3, 4, 1), times(4, 5, 6)).tolist() == [True, False, True]


def test_keys_behind_the_horizon_are_forgotten() -> None:
    d = Deduplicator(100, 10.0)
    d.check_and_add(keys(1, 2), times(0.0, 50.0))
    d.advance(watermark=45.0)  # cutoff 35: key 1 (t=0) is forgotten, key 2 is not
    assert d.check_and_add(keys(1, 2), times(60.0, 60.0)).tolist() == [False, True]
    # key 1 was remembered afresh at t=60
    assert d.check_and_add(keys(1), times(61.0)).tolist() == [True]


def test_expired_keys_are_purged_from_memory() -> None:
    d = Deduplicator(1_000_000, 1.0)
    d.check_and_add(np.arange(5000, dtype=np.uint64), np.zeros(5000))
    d.advance(watermark=100.0)
    assert len(d) == 0


def test_the_cap_evicts_the_oldest_keys_and_counts_them() -> None:
    d = Deduplicator(64, 1e9)
    d.check_and_add(np.arange(64, dtype=np.uint64), np.arange(64.0))
    assert d.evicted == 0 and len(d) == 64
    d.check_and_add(np.arange(100, 110, dtype=np.uint64), np.arange(100.0, 110.0))
    assert len(d) <= 64 and d.evicted == 74 - len(d)
    # the newest keys are kept; the oldest ones are gone
    assert d.check_and_add(np.arange(100, 110, dtype=np.uint64), np.full(10, 200.0)).all()
    assert not d.check_and_add(keys(0, 1), times(300, 300)).any()


def test_serialisation_round_trip_keeps_every_answer() -> None:
    rng = np.random.default_rng(0)
    a = Deduplicator(5000, 30.0)
    for step in range(5):
        a.check_and_add(rng.integers(0, 3000, 1000).astype(np.uint64), np.full(1000, step * 10.0))
        a.advance(step * 10.0)
    b = Deduplicator.from_bytes(a.to_bytes())
    assert (b.max_ids, b.horizon_seconds, b.cutoff, b.evicted) == (
        a.max_ids,
        a.horizon_seconds,
        a.cutoff,
        a.evicted,
    )
    probe = rng.integers(0, 4000, 2000).astype(np.uint64)
    t = np.full(2000, 60.0)
    assert np.array_equal(a.check_and_add(probe, t), b.check_and_add(probe, t))
    with pytest.raises(ValueError, match="corrupt"):
        Deduplicator.from_bytes(b"not an npz")


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="max_ids"):
        Deduplicator(0, 1.0)
    with pytest.raises(ValueError, match="horizon"):
        Deduplicator(10, -1.0)
    with pytest.raises(ValueError, match="event times"):
        Deduplicator(10, 1.0).check_and_add(keys(1, 2), times(1))


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 40), st.integers(0, 100)), max_size=30),
        max_size=12,
    ),
    horizon=st.sampled_from([5.0, 20.0, 1000.0]),
)
def test_matches_a_plain_dictionary_model(
    batches: list[list[tuple[int, int]]], horizon: float
) -> None:
    """Without the cap in play, answers equal a dict of key -> event time.

    A key is a duplicate when it came earlier in the same batch, or in an earlier batch
    with an event time not behind the cutoff in force when this batch arrived.
    """
    d = Deduplicator(10_000, horizon)
    model: dict[int, float] = {}
    cutoff = -np.inf
    for batch in batches:
        expected = []
        in_batch: set[int] = set()
        for key, t in batch:
            hit = key in in_batch or (key in model and model[key] >= cutoff)
            expected.append(hit)
            if not hit:
                model[key] = float(t)
                in_batch.add(key)
        got = d.check_and_add(
            np.array([k for k, _ in batch], dtype=np.uint64),
            np.array([t for _, t in batch], dtype=np.float64),
        )
        assert got.tolist() == expected
        if batch:
            watermark = max(t for _, t in batch) - 3.0
            cutoff = max(cutoff, watermark - horizon)
            d.advance(watermark)
