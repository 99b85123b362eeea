"""Merging window sketches is exact: the properties sliding windows, checkpoints and
several agents on one model's traffic rely on.

``merge(sketch(A), sketch(B))`` must equal ``sketch(A ∪ B)`` and not depend on grouping or
order. With row keys the reservoir is the very same sample; with random keys it is a
uniform sample of the union, checked statistically at the end.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from detectors.profile import Profile, build_profile
from detectors.schema import Schema
from detectors.sketch import WindowSketch

RESERVOIR = 7
SUMS = ("num_sum", "num_dev_sum", "num_dev_sumsq", "num_bin_sums")


@cache
def small_profile() -> Profile:
    """Two numeric columns (continuous, tied) and one categorical with a rare tail."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "x": rng.normal(0.0, 1.0, n),
            "k": rng.integers(0, 5, n),
            "c": rng.choice(list("abcdefg"), n, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.03, 0.02]),
        }
    )
    return build_profile(
        frame, Schema.build(numeric=["x", "k"], categorical=["c"]), bins=6, top_k=3
    )


def row_hash(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of row ids: stands in for the hash of a request id."""
    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def assert_same_state(a: WindowSketch, b: WindowSketch) -> None:
    """Every array of the two sketches equal; sums to a tight relative tolerance.

    Counts, extremes and the reservoir must be identical. Sums, sums of squares and the
    per-bin sums are the same numbers added in a different order (per batch, then per
    sketch), and float addition is not associative, so those agree to rounding only.
    """
    assert a.rows == b.rows
    assert a.extra_columns == b.extra_columns
    arrays = {k for k, v in vars(a).items() if isinstance(v, np.ndarray)}
    assert arrays == {k for k, v in vars(b).items() if isinstance(v, np.ndarray)}
    assert set(SUMS) <= arrays and "res_categorical" in arrays
    for name in sorted(arrays):
        left, right = getattr(a, name), getattr(b, name)
        assert left.shape == right.shape, name
        if name in SUMS:
            np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-9, err_msg=name)
        elif left.dtype == object:
            assert left.tolist() == right.tolist(), name
        else:
            np.testing.assert_array_equal(left, right, err_msg=name)


# -- generated windows -------------------------------------------------------------------

numeric_cell = st.one_of(
    st.floats(-6.0, 6.0),
    st.sampled_from([None, math.nan, math.inf, -math.inf, "oops", 0.0, 4.0, -100.0, 100.0]),
)
category_cell = st.sampled_from(["a", "b", "c", "d", "f", "zzz", None])


@st.composite
def batches(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """One batch: 0 to 15 rows, any column may be absent, all-missing, or have extras."""
    n = draw(st.integers(0, 15))
    batch: dict[str, np.ndarray] = {}
    for name in ("x", "k"):
        mode = draw(st.sampled_from(["values", "values", "absent", "all_missing"]))
        if mode == "values":
            batch[name] = np.array(draw(st.lists(numeric_cell, min_size=n, max_size=n)), object)
        elif mode == "all_missing":
            batch[name] = np.full(n, np.nan)
    mode = draw(st.sampled_from(["values", "values", "absent", "all_missing"]))
    if mode == "values":
        batch["c"] = np.array(draw(st.lists(category_cell, min_size=n, max_size=n)), object)
    elif mode == "all_missing":
        batch["c"] = np.full(n, None, dtype=object)
    if draw(st.booleans()):
        batch[draw(st.sampled_from(["extra1", "extra2"]))] = np.zeros(n)
    if not batch:
        batch["x"] = np.full(n, np.nan)
    return batch


windows = st.lists(batches(), min_size=0, max_size=4)


def with_ids(parts: list[list[dict[str, np.ndarray]]]) -> list[list[tuple[dict, np.ndarray]]]:
    """Gives every row of every window a distinct id, hence a distinct row key."""
    out, next_id = [], 0
    for window in parts:
        keyed = []
        for batch in window:
            n = len(next(iter(batch.values())))
            keyed.append((batch, row_hash(np.arange(next_id, next_id + n))))
            next_id += n
        out.append(keyed)
    return out


def sketch_of(window: list[tuple[dict, np.ndarray]], keyed: bool, seed: int) -> WindowSketch:
    sketch = WindowSketch(small_profile(), reservoir_size=RESERVOIR, seed=seed)
    for batch, keys in window:
        sketch.update(batch, row_keys=keys if keyed else None)
    return sketch


@settings(max_examples=80, deadline=None)
@given(windows, windows, st.booleans())
def test_merge_equals_the_sketch_of_the_union(
    a: list[dict[str, Any]], b: list[dict[str, Any]], keyed: bool
) -> None:
    wa, wb = with_ids([a, b])
    merged = sketch_of(wa, keyed, seed=1).merge(sketch_of(wb, keyed, seed=2))
    union = sketch_of(wa + wb, keyed, seed=3)
    if keyed:
        # the reservoir too is a function of the set of rows: identical, not just similar
        assert_same_state(merged, union)
    else:
        for name in ("res_keys", "res_numeric", "res_categorical"):
            setattr(union, name, getattr(merged, name))
        assert_same_state(merged, union)
        assert len(merged.res_keys) == min(RESERVOIR, merged.rows)
        assert np.all(np.diff(merged.res_keys) > 0)  # sorted, distinct keys


@settings(max_examples=50, deadline=None)
@given(windows, windows, windows, st.booleans())
def test_merge_is_associative_and_commutative(
    a: list[dict[str, Any]], b: list[dict[str, Any]], c: list[dict[str, Any]], keyed: bool
) -> None:
    wa, wb, wc = with_ids([a, b, c])
    sa, sb, sc = (sketch_of(w, keyed, seed=i) for i, w in enumerate((wa, wb, wc)))
    # commutativity is exact, sums included: x + y == y + x in floating point
    ab, ba = sa.merge(sb), sb.merge(sa)
    assert ab.state_equal(ba)
    assert ab._rng.bit_generator.state == ba._rng.bit_generator.state
    # associativity holds to rounding in the sums, exactly elsewhere
    assert_same_state(ab.merge(sc), sa.merge(sb.merge(sc)))
    assert_same_state(sa.merge(sc).merge(sb), sa.merge(sb.merge(sc)))


@settings(max_examples=40, deadline=None)
@given(windows, st.booleans())
def test_merging_an_empty_sketch_changes_nothing(a: list[dict[str, Any]], keyed: bool) -> None:
    (wa,) = with_ids([a])
    sketch = sketch_of(wa, keyed, seed=1)
    empty = WindowSketch(small_profile(), reservoir_size=RESERVOIR, seed=9)
    assert sketch.merge(empty).state_equal(sketch)
    assert empty.merge(sketch).state_equal(sketch)


@settings(max_examples=40, deadline=None)
@given(windows, windows)
def test_checkpoint_round_trip_of_any_window(
    a: list[dict[str, Any]], b: list[dict[str, Any]]
) -> None:
    wa, wb = with_ids([a, b])
    sketch = sketch_of(wa, keyed=False, seed=4)
    restored = WindowSketch.from_bytes(small_profile(), sketch.to_bytes())
    assert restored.state_equal(sketch)
    for batch, _ in wb:  # random keys: equal only if the generator state came back too
        sketch.update(batch)
        restored.update(batch)
    assert restored.state_equal(sketch)


# -- uniformity of the merged reservoir --------------------------------------------------


def test_merged_reservoir_is_a_uniform_sample_of_the_union() -> None:
    """Rows 0..11 go to one sketch, rows 12..47 (in two batches) to another; the merged
    reservoir of 8 must hold each of the 48 rows with probability 8/48, whichever side it
    came from. 2000 trials with a fixed seed, so the outcome is deterministic."""
    profile = small_profile()
    n, k, small_side, trials = 48, 8, 12, 2000
    rows = {"x": np.arange(n, dtype=float)}  # x is the row's id
    part_a = {key: v[:small_side] for key, v in rows.items()}
    part_b1 = {key: v[small_side:30] for key, v in rows.items()}
    part_b2 = {key: v[30:] for key, v in rows.items()}
    seeds = np.random.SeedSequence(20240611).generate_state(2 * trials)
    hits = np.zeros(n, dtype=np.int64)
    for t in range(trials):
        a = WindowSketch(profile, reservoir_size=k, seed=int(seeds[2 * t]))
        b = WindowSketch(profile, reservoir_size=k, seed=int(seeds[2 * t + 1]))
        a.update(part_a)
        b.update(part_b1)
        b.update(part_b2)
        chosen = a.merge(b).res_numeric[:, 0].astype(int)
        assert len(set(chosen.tolist())) == k
        hits[chosen] += 1
    p = k / n
    # every row near k/n: within 5 binomial standard deviations
    assert np.all(np.abs(hits / trials - p) < 5 * math.sqrt(p * (1 - p) / trials)), hits
    # chi-square goodness of fit against equal inclusion (conservative: a trial's k picks
    # are without replacement, which only lowers the statistic's variance)
    assert stats.chisquare(hits).pvalue > 1e-3
    # the smaller side is not under-represented: its share is hypergeometric per trial
    share = hits[:small_side].sum() / (trials * k)
    sd = math.sqrt((small_side / n) * (1 - small_side / n) * (n - k) / (n - 1) / (k * trials))
    assert abs(share - small_side / n) < 4 * sd, share


@pytest.mark.parametrize("keyed", [True, False])
def test_reservoir_of_a_long_stream_keeps_early_and_late_rows(keyed: bool) -> None:
    """A single sketch over many batches: early batches are not crowded out by late ones."""
    profile = small_profile()
    n, k, trials = 400, 40, 200
    early = np.zeros(trials)
    for t in range(trials):
        sketch = WindowSketch(profile, reservoir_size=k, seed=t)
        for start in range(0, n, 50):
            ids = np.arange(start, start + 50) + t * n
            keys = row_hash(ids) if keyed else None
            sketch.update({"x": np.arange(start, start + 50, dtype=float)}, row_keys=keys)
        early[t] = np.mean(sketch.res_numeric[:, 0] < n / 2)
    # half the rows came in the first half of the stream
    assert abs(early.mean() - 0.5) < 4 * math.sqrt(0.25 * (n - k) / (n - 1) / (k * trials))
