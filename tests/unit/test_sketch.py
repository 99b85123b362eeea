"""The window sketch, checked against an independent row-by-row implementation.

``expected_state`` below recounts a window in plain Python (``bisect`` for the bins,
``math.fsum`` for the sums, dictionaries for the vocabulary) from the meaning of each
counter, so the vectorized sketch is compared with the definition and not with itself.
"""

from __future__ import annotations

import bisect
import io
import math
import sys
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.profile import Profile, build_profile
from detectors.schema import Schema
from detectors.sketch import MAX_EXTRA_COLUMNS, SketchMismatchError, WindowSketch


@pytest.fixture(scope="module")
def profile(reference_frame: pd.DataFrame, explicit_schema: Schema) -> Profile:
    # 20 bins and a 10-word vocabulary: "other" is busy with the long-tailed city column.
    return build_profile(reference_frame, explicit_schema, bins=20, top_k=10)


# -- the independent implementation ------------------------------------------------------


@dataclass
class Expected:
    """A window's counters, by column name, as the docs define them."""

    rows: int = 0
    bins: dict[str, list[int]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    type_error: dict[str, int] = field(default_factory=dict)
    non_finite: dict[str, int] = field(default_factory=dict)
    finite: dict[str, list[float]] = field(default_factory=dict)
    categories: dict[str, list[int]] = field(default_factory=dict)
    cat_missing: dict[str, int] = field(default_factory=dict)
    absent: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)


def as_number(value: Any) -> float | str | None:
    """A numeric cell: a float, None when missing, "type" when it is not a number."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return "type"
    value = float(value)
    return None if math.isnan(value) else value


def as_category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def expected_state(profile: Profile, batches: Sequence[Mapping[str, Any]]) -> Expected:
    out = Expected()
    for name in profile.numeric_names:
        out.bins[name] = [0] * profile.numeric[name].bins
        out.missing[name] = out.type_error[name] = out.non_finite[name] = 0
        out.finite[name] = []
    for name in profile.categorical_names:
        out.categories[name] = [0] * profile.categorical[name].bins
        out.cat_missing[name] = 0
    out.absent = dict.fromkeys(profile.schema.names, 0)
    for batch in batches:
        cells = {k: list(v.tolist() if hasattr(v, "tolist") else v) for k, v in batch.items()}
        n = len(next(iter(cells.values()))) if cells else 0
        if n == 0:
            continue
        out.rows += n
        for name in cells:
            if name not in profile.schema.names:
                out.extra[name] = out.extra.get(name, 0) + n
        for name in profile.schema.names:
            if name not in cells:
                out.absent[name] += n
        for name in profile.numeric_names:
            edges = profile.numeric[name].edges.tolist()
            for cell in cells.get(name, [None] * n):
                value = as_number(cell)
                if value is None:
                    out.missing[name] += 1
                elif value == "type":
                    out.type_error[name] += 1
                elif math.isinf(value):
                    out.non_finite[name] += 1
                else:
                    out.bins[name][bisect.bisect_left(edges, value)] += 1
                    out.finite[name].append(value)
        for name in profile.categorical_names:
            cp = profile.categorical[name]
            slots = {word: i for i, word in enumerate(cp.vocabulary)}
            known = set(cp.known)
            for cell in cells.get(name, [None] * n):
                text = as_category(cell)
                if text is None:
                    out.cat_missing[name] += 1
                elif text in slots:
                    out.categories[name][slots[text]] += 1
                elif text in known:
                    out.categories[name][-2] += 1
                else:
                    out.categories[name][-1] += 1
    return out


def assert_matches(sketch: WindowSketch, expected: Expected) -> None:
    prof = sketch.profile
    assert sketch.rows == expected.rows
    for j, name in enumerate(prof.numeric_names):
        bins = expected.bins[name]
        assert sketch.num_counts[j, : len(bins)].tolist() == bins, name
        assert not sketch.num_counts[j, len(bins) :].any()
        assert sketch.num_below[j] == bins[0] and sketch.num_above[j] == bins[-1]
        assert sketch.num_count[j] == sum(bins) == len(expected.finite[name])
        assert sketch.num_missing[j] == expected.missing[name], name
        assert sketch.num_type_error[j] == expected.type_error[name], name
        assert sketch.num_non_finite[j] == expected.non_finite[name], name
        values = expected.finite[name]
        assert sketch.num_min[j] == (min(values) if values else math.inf)
        assert sketch.num_max[j] == (max(values) if values else -math.inf)
        scale = math.fsum(abs(v) for v in values)
        assert abs(sketch.num_sum[j] - math.fsum(values)) <= 1e-12 * scale
        shift = sketch.num_shift[j]
        dev = [v - shift for v in values]
        dev_scale = math.fsum(abs(d) for d in dev)
        assert abs(sketch.num_dev_sum[j] - math.fsum(dev)) <= 1e-12 * max(dev_scale, scale)
        assert (
            abs(sketch.num_dev_sumsq[j] - math.fsum(d * d for d in dev))
            <= 1e-12 * max(dev_scale, scale) ** 2
        )
        # each bin's sum, and its mean (NaN where the bin is empty)
        edges = prof.numeric[name].edges.tolist()
        per_bin: list[list[float]] = [[] for _ in bins]
        for v in values:
            per_bin[bisect.bisect_left(edges, v)].append(v)
        for i, part in enumerate(per_bin):
            total = math.fsum(part)
            assert abs(sketch.num_bin_sums[j, i] - total) <= 1e-12 * scale, (name, i)
            mean = sketch.bin_means()[j, i]
            if part:
                assert mean == pytest.approx(total / len(part), rel=1e-12, abs=1e-12 * scale)
            else:
                assert math.isnan(mean) and sketch.num_bin_sums[j, i] == 0.0
        assert not sketch.num_bin_sums[j, len(bins) :].any()
        assert np.isnan(sketch.bin_means()[j, len(bins) :]).all()
    for j, name in enumerate(prof.categorical_names):
        slots = expected.categories[name]
        row = sketch.cat_counts[j]
        assert row[: len(slots) - 2].tolist() == slots[:-2], name
        assert row[-2:].tolist() == slots[-2:], name
        assert not row[len(slots) - 2 : -2].any()
        assert sketch.cat_unseen[j] == slots[-1]
        assert sketch.cat_missing[j] == expected.cat_missing[name]
    assert dict(zip(prof.schema.names, sketch.absent.tolist(), strict=True)) == expected.absent
    assert sketch.extra_columns == expected.extra


def mixed_batches(profile: Profile) -> list[dict[str, Any]]:
    """Hand-made batches with every kind of cell, and edges hit exactly and by one ulp."""
    edges = profile.numeric["normal"].edges
    at_edges = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
    n = len(at_edges)
    rng = np.random.default_rng(11)
    city = profile.categorical["city"]
    rare = next(c for c in city.known if c not in city.vocabulary)
    first = {
        "normal": at_edges,
        "lognormal": np.r_[[-1.0, 0.0, 1e9, np.inf, -np.inf, np.nan], rng.lognormal(size=n - 6)],
        "uniform": np.array(
            [None, "abc", "2.5", "", 0.25, "n/a", float("nan"), -np.inf, *([0.5] * (n - 8))],
            dtype=object,
        ),
        "ties": rng.integers(-1, 7, n),
        "constant": np.r_[[1.5, 1.5, np.nextafter(1.5, 0), np.nextafter(1.5, 2)], np.ones(n - 4)],
        "with_nan": np.full(n, np.nan),
        "city": np.array(
            [city.vocabulary[0], rare, "atlantis", None, *([city.vocabulary[3]] * (n - 4))],
            dtype=object,
        ),
        "device": rng.choice(["web", "ios", "kiosk", "smart-tv"], n),
        "request_id": np.arange(n),
    }
    # a batch without "prediction" and "device" and with another extra column
    second = {
        "normal": rng.normal(10.0, 5.0, 40),
        "lognormal": rng.lognormal(size=40),
        "uniform": rng.uniform(-2.0, 2.0, 40),
        "ties": rng.integers(0, 5, 40).astype(float),
        "constant": np.full(40, 1.5),
        "with_nan": np.where(rng.random(40) < 0.5, np.nan, rng.normal(size=40)),
        "city": rng.choice([*city.vocabulary, rare, "elsewhere"], 40),
        "debug": np.zeros(40),
    }
    first["prediction"] = rng.random(n)
    empty = {name: np.empty(0) for name in profile.schema.names}
    return [first, second, empty, {"prediction": np.array([0.5, 2.0])}]


# -- update ------------------------------------------------------------------------------


def test_update_matches_the_independent_count(profile: Profile) -> None:
    batches = mixed_batches(profile)
    sketch = WindowSketch(profile, reservoir_size=16, seed=0)
    for batch in batches:
        sketch.update(batch)
    expected = expected_state(profile, batches)
    assert_matches(sketch, expected)
    # the hand-made cells hit every counter at least once
    assert all(v > 0 for v in (sum(expected.type_error.values()), sum(expected.extra.values())))
    assert expected.non_finite["lognormal"] == 2 and expected.type_error["uniform"] == 3


def test_dataframe_and_dict_batches_give_the_same_state(profile: Profile) -> None:
    batches = [b for b in mixed_batches(profile) if len(next(iter(b.values())))]
    by_dict = WindowSketch(profile, reservoir_size=16, seed=5)
    by_frame = WindowSketch(profile, reservoir_size=16, seed=5)
    for batch in batches:
        by_dict.update(batch)
        by_frame.update(pd.DataFrame(batch))
    assert by_dict.rows > 0 and by_dict.state_equal(by_frame)


def test_histogram_equals_edge_comparison_on_a_larger_window(
    profile: Profile, reference_factory: Callable[[int, int], pd.DataFrame]
) -> None:
    frame = reference_factory(5000, 1)
    frame["normal"] = (frame["normal"] - 10.0) * 1.5 + 10.0  # wider: beyond both ends
    sketch = WindowSketch(profile, reservoir_size=0)
    for start in range(0, len(frame), 1200):
        sketch.update(frame.iloc[start : start + 1200])
    for j, name in enumerate(profile.numeric_names):
        x = frame[name].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        edges = profile.numeric[name].edges
        # bin index = number of edges strictly below the value (right-closed bins)
        index = (x[:, None] > edges[None, :]).sum(axis=1)
        expected = np.bincount(index, minlength=len(edges) + 1)
        assert sketch.num_counts[j, : len(expected)].tolist() == expected.tolist(), name
    normal = profile.numeric_names.index("normal")
    assert sketch.num_below[normal] > 0 and sketch.num_above[normal] > 0


def test_type_errors_are_not_missing(profile: Profile) -> None:
    sketch = WindowSketch(profile)
    sketch.update({"normal": np.array([1.0, "abc", None, np.nan, "12"], dtype=object)})
    j = profile.numeric_names.index("normal")
    assert (sketch.num_type_error[j], sketch.num_missing[j], sketch.num_count[j]) == (1, 2, 2)
    assert sketch.num_max[j] == 12.0


def test_infinities_stay_out_of_the_histogram_and_the_extremes(profile: Profile) -> None:
    sketch = WindowSketch(profile)
    sketch.update({"uniform": np.array([np.inf, -np.inf, 0.5, -0.25, np.inf])})
    j = profile.numeric_names.index("uniform")
    assert sketch.num_non_finite[j] == 3 and sketch.num_count[j] == 2
    assert (sketch.num_min[j], sketch.num_max[j]) == (-0.25, 0.5)
    shift = sketch.num_shift[j]
    assert sketch.num_sum[j] == 0.25
    assert sketch.num_dev_sumsq[j] == pytest.approx((0.5 - shift) ** 2 + (-0.25 - shift) ** 2)
    assert sketch.num_below[j] == 0 and sketch.num_above[j] == 0


def test_out_of_range_values_land_in_the_outer_bins(profile: Profile) -> None:
    num = profile.numeric["lognormal"]
    sketch = WindowSketch(profile)
    sketch.update({"lognormal": np.array([num.min, num.max, num.min / 2, num.max * 2, -1.0])})
    j = profile.numeric_names.index("lognormal")
    assert (sketch.num_below[j], sketch.num_above[j]) == (2, 1)
    assert sketch.num_counts[j, 1] == 1 and sketch.num_counts[j, num.bins - 2] == 1


def test_unseen_rare_and_missing_categories(profile: Profile) -> None:
    city = profile.categorical["city"]
    rare = [c for c in city.known if c not in city.vocabulary][:2]
    sketch = WindowSketch(profile)
    sketch.update({"city": np.array([*rare, "atlantis", "atlantis", None, city.vocabulary[2]])})
    j = profile.categorical_names.index("city")
    row = sketch.cat_counts[j]
    assert (row[-2], row[-1], sketch.cat_missing[j], row[2]) == (2, 2, 1, 1)
    assert sketch.cat_unseen[j] == 2 and sketch.cat_count[j] == 5


def test_absent_and_extra_columns(profile: Profile) -> None:
    sketch = WindowSketch(profile)
    sketch.update({"normal": np.ones(3), "surprise": np.zeros(3)})
    sketch.update({"normal": np.ones(2), "city": np.array(["x", "y"])})
    names = profile.schema.names
    absent = dict(zip(names, sketch.absent.tolist(), strict=True))
    assert absent["normal"] == 0 and absent["city"] == 3 and absent["uniform"] == 5
    assert sketch.num_missing[profile.numeric_names.index("uniform")] == 5
    assert sketch.cat_missing[profile.categorical_names.index("device")] == 5
    assert sketch.extra_columns == {"surprise": 3}


def test_extra_column_names_are_bounded(profile: Profile) -> None:
    sketch = WindowSketch(profile)
    for i in range(MAX_EXTRA_COLUMNS + 10):
        sketch.update({f"x{i}": np.zeros(1), "x0": np.zeros(1)})
    assert len(sketch.extra_columns) == MAX_EXTRA_COLUMNS
    assert sketch.extra_columns["x0"] == MAX_EXTRA_COLUMNS + 10


def test_summary_statistics_equal_numpy(profile: Profile) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, 3000)
    sketch = WindowSketch(profile)
    for part in np.array_split(x, 7):
        sketch.update({"normal": part})
    j = profile.numeric_names.index("normal")
    assert (sketch.num_min[j], sketch.num_max[j]) == (x.min(), x.max())
    np.testing.assert_allclose(sketch.num_sum[j], x.sum(), rtol=1e-12)
    d = x - sketch.num_shift[j]
    np.testing.assert_allclose(sketch.num_dev_sumsq[j], (d * d).sum(), rtol=1e-12)
    np.testing.assert_allclose(sketch.mean()[j], x.mean(), rtol=1e-12)
    np.testing.assert_allclose(sketch.std()[j], x.std(ddof=1), rtol=1e-9)


def test_empty_batch_changes_nothing(profile: Profile) -> None:
    sketch = WindowSketch(profile, reservoir_size=4, seed=1)
    before = WindowSketch.from_bytes(profile, sketch.to_bytes())
    assert sketch.update({}) == 0
    assert sketch.update(pd.DataFrame(columns=profile.schema.names)) == 0
    assert sketch.state_equal(before) and sketch.rows == 0


def test_malformed_batches_are_rejected(profile: Profile) -> None:
    sketch = WindowSketch(profile)
    with pytest.raises(ValueError, match="different lengths"):
        sketch.update({"normal": np.ones(3), "uniform": np.ones(2)})
    with pytest.raises(ValueError, match="row_keys"):
        sketch.update({"normal": np.ones(3)}, row_keys=np.arange(2, dtype=np.uint64))
    with pytest.raises(ValueError, match="reservoir_size"):
        WindowSketch(profile, reservoir_size=-1)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_generated_batches_match_the_independent_count(
    profile: Profile, data: st.DataObject
) -> None:
    city = profile.categorical["city"]
    numeric_cell = st.one_of(
        st.floats(-50.0, 50.0),
        st.sampled_from([*profile.numeric["normal"].edges.tolist(), 0.0, 1.5, 4.0]),
        st.sampled_from([None, math.nan, math.inf, -math.inf, "abc", "7.25", ""]),
    )
    category_cell = st.sampled_from([*city.known[:15], "unseen-1", "unseen-2", None, 3.0, 7])
    batches = []
    for _ in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.integers(0, 12))
        batch: dict[str, Any] = {}
        for name in data.draw(st.sets(st.sampled_from(["normal", "ties", "uniform"]))):
            cells = data.draw(st.lists(numeric_cell, min_size=n, max_size=n))
            batch[name] = np.array(cells, dtype=object)
        if data.draw(st.booleans()):
            cells = data.draw(st.lists(category_cell, min_size=n, max_size=n))
            batch["city"] = np.array(cells, dtype=object)
        if data.draw(st.booleans()):
            batch["extra"] = np.zeros(n)
        batches.append(batch)
    sketch = WindowSketch(profile, reservoir_size=5)
    for batch in batches:
        sketch.update(batch)
    assert_matches(sketch, expected_state(profile, batches))


# -- reservoir ---------------------------------------------------------------------------


def row_hash(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of the row ids: the uint64 keys a decoder would derive from request ids."""
    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def test_reservoir_holds_every_row_of_a_small_window(profile: Profile) -> None:
    sketch = WindowSketch(profile, reservoir_size=50, seed=2)
    ids = np.arange(30, dtype=float)
    sketch.update({"normal": ids[:10], "city": np.array(["a"] * 10)})
    sketch.update({"normal": ids[10:]})
    assert sketch.complete
    frame = sketch.reservoir_frame()
    assert list(frame.columns) == profile.schema.names
    assert sorted(frame["normal"]) == ids.tolist()
    assert frame["city"].notna().sum() == 10
    sketch.update({"normal": np.arange(30.0, 51.0)})
    assert not sketch.complete and len(sketch.reservoir_frame()) == 50


def test_reservoir_with_row_keys_depends_only_on_the_set_of_rows(profile: Profile) -> None:
    ids = np.arange(400)
    keys = row_hash(ids)
    order = np.random.default_rng(3).permutation(400)
    forward = WindowSketch(profile, reservoir_size=25, seed=1)
    shuffled = WindowSketch(profile, reservoir_size=25, seed=2)
    for part in np.array_split(ids, 6):
        forward.update({"normal": part.astype(float)}, row_keys=keys[part])
    for part in np.array_split(order, 9):
        shuffled.update({"normal": part.astype(float)}, row_keys=keys[part])
    assert forward.state_equal(shuffled)
    smallest = np.sort(ids[np.argsort(keys >> np.uint64(11), kind="stable")[:25]]).tolist()
    assert sorted(forward.res_numeric[:, 0].tolist()) == smallest


def test_zero_size_reservoir_keeps_nothing(profile: Profile) -> None:
    sketch = WindowSketch(profile, reservoir_size=0)
    sketch.update({"normal": np.ones(10)})
    assert len(sketch.reservoir_frame()) == 0 and sketch.rows == 10


# -- merge -------------------------------------------------------------------------------


def test_merge_rejects_other_profiles_and_sizes(profile: Profile, reference_frame) -> None:
    other = build_profile(reference_frame, bins=5)
    with pytest.raises(SketchMismatchError, match="different profiles"):
        WindowSketch(profile).merge(WindowSketch(other))
    with pytest.raises(SketchMismatchError, match="size 8 and 9"):
        WindowSketch(profile, 8).merge(WindowSketch(profile, 9))


def test_merge_leaves_both_inputs_unchanged(profile: Profile) -> None:
    rng = np.random.default_rng(0)
    a, b = WindowSketch(profile, 6, seed=1), WindowSketch(profile, 6, seed=2)
    a.update({"normal": rng.normal(size=20)})
    b.update({"normal": rng.normal(size=20)})
    a_copy = WindowSketch.from_bytes(profile, a.to_bytes())
    b_copy = WindowSketch.from_bytes(profile, b.to_bytes())
    merged = a.merge(b)
    assert merged.rows == 40
    # continuing with random keys shows the random streams did not move either
    more = {"normal": rng.normal(size=50)}
    for sketch in (a, b, a_copy, b_copy):
        sketch.update(more)
    assert a.state_equal(a_copy) and b.state_equal(b_copy)


# -- memory ------------------------------------------------------------------------------


def footprint(sketch: WindowSketch) -> int:
    """Bytes held in arrays (reservoir included) plus the bounded extra-column table."""
    arrays = sum(v.nbytes for v in vars(sketch).values() if isinstance(v, np.ndarray))
    return arrays + sys.getsizeof(sketch.extra_columns)


def as_batch(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def test_memory_does_not_grow_with_rows_seen(
    profile: Profile, reference_factory: Callable[[int, int], pd.DataFrame]
) -> None:
    batch = as_batch(reference_factory(50_000, 9))
    small = WindowSketch(profile, reservoir_size=512, seed=0)
    small.update({k: v[:10_000] for k, v in batch.items()})
    large = WindowSketch(profile, reservoir_size=512, seed=0)
    for _ in range(20):
        large.update(batch)
    assert (small.rows, large.rows) == (10_000, 1_000_000)
    assert footprint(small) == footprint(large)
    assert large.res_keys.shape == (512,) and large.res_categorical.shape == (512, 2)


def test_peak_memory_while_updating_stays_bounded(
    profile: Profile, reference_factory: Callable[[int, int], pd.DataFrame]
) -> None:
    batch = as_batch(reference_factory(10_000, 8))
    sketch = WindowSketch(profile, reservoir_size=512, seed=0)
    sketch.update(batch)  # warm caches (the vocabulary index) before measuring
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(4):
            sketch.update(batch)
        after_few, peak_few = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(36):
            sketch.update(batch)
        after_many, peak_many = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sketch.rows == 410_000
    # 9x the rows: the peak is one batch's working memory, and nothing accumulates
    assert peak_many - base <= 1.25 * (peak_few - base)
    assert after_many - after_few <= 64 * 1024


# -- checkpoints -------------------------------------------------------------------------


def filled(profile: Profile, seed: int, reservoir_size: int = 12) -> WindowSketch:
    sketch = WindowSketch(profile, reservoir_size=reservoir_size, seed=seed)
    for batch in mixed_batches(profile):
        sketch.update(batch)
    return sketch


def test_checkpoint_round_trip_is_exact_and_continues_the_random_stream(
    profile: Profile, reference_factory: Callable[[int, int], pd.DataFrame]
) -> None:
    sketch = filled(profile, seed=3)
    restored = WindowSketch.from_bytes(profile, sketch.to_bytes())
    assert restored.state_equal(sketch)
    assert restored.reservoir_size == sketch.reservoir_size
    assert restored.res_categorical.tolist() == sketch.res_categorical.tolist()
    assert restored._rng.bit_generator.state == sketch._rng.bit_generator.state
    more = as_batch(reference_factory(300, 5))
    sketch.update(more)
    restored.update(more)
    assert restored.state_equal(sketch)
    # and a sketch on another random stream does pick different rows
    other = WindowSketch.from_bytes(profile, filled(profile, seed=4).to_bytes())
    other.update(more)
    assert not np.array_equal(other.res_keys, sketch.res_keys)


@pytest.mark.parametrize(
    "schema",
    [Schema.build(numeric=["normal"]), Schema.build(categorical=["city"])],
    ids=["numeric-only", "categorical-only"],
)
def test_checkpoint_of_single_kind_profiles(reference_frame: pd.DataFrame, schema: Schema) -> None:
    profile = build_profile(reference_frame, schema)
    sketch = WindowSketch(profile, reservoir_size=5, seed=1)
    empty = WindowSketch.from_bytes(profile, sketch.to_bytes())
    assert empty.state_equal(sketch)
    sketch.update(reference_frame.iloc[:40])
    restored = WindowSketch.from_bytes(profile, sketch.to_bytes())
    assert restored.state_equal(sketch) and len(restored.res_keys) == 5


def test_corrupt_checkpoints_raise_a_clear_error(profile: Profile) -> None:
    sketch = filled(profile, seed=3)
    good = sketch.to_bytes()
    broken = [b"", b"not a sketch", np.random.default_rng(0).bytes(300)]
    broken += [good[:cut] for cut in (1, 10, len(good) // 4, len(good) // 2, len(good) - 1)]
    for data in broken:
        with pytest.raises(ValueError, match="corrupt window sketch"):
            WindowSketch.from_bytes(profile, data)
    # a changed byte anywhere either fails cleanly or (in unchecked zip metadata) changes nothing
    positions = np.random.default_rng(1).choice(len(good), 120, replace=False)
    failures = 0
    for at in positions:
        altered = bytearray(good)
        altered[at] ^= 0xA5
        try:
            restored = WindowSketch.from_bytes(profile, bytes(altered))
        except SketchMismatchError:
            failures += 1
        except ValueError as exc:
            assert "corrupt window sketch" in str(exc)
            failures += 1
        else:
            assert restored.state_equal(sketch), at
    assert failures > 60


def test_checkpoint_without_bin_sums_is_refused_clearly(profile: Profile) -> None:
    """A checkpoint written before per-bin sums existed cannot be resumed: the message says
    why instead of pointing at a missing array."""
    sketch = filled(profile, seed=2)
    with np.load(io.BytesIO(sketch.to_bytes()), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "num_bin_sums"}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ValueError, match=r"num_bin_sums.*older driftline"):
        WindowSketch.from_bytes(profile, buf.getvalue())


def test_bin_sums_of_a_checkpoint_are_validated(profile: Profile) -> None:
    sketch = filled(profile, seed=2)
    with np.load(io.BytesIO(sketch.to_bytes()), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for bad in (arrays["num_bin_sums"][:, :-1], arrays["num_bin_sums"].astype(np.float32)):
        buf = io.BytesIO()
        np.savez(buf, **{**arrays, "num_bin_sums": bad})
        with pytest.raises(ValueError, match=r"corrupt window sketch.*num_bin_sums"):
            WindowSketch.from_bytes(profile, buf.getvalue())


def test_bin_sums_merge_by_addition(
    profile: Profile, reference_factory: Callable[[int, int], pd.DataFrame]
) -> None:
    """Split a window anywhere: the parts' bin sums add up to the whole's, up to the order
    of float additions, and the bin means agree."""
    frame = reference_factory(3000, 5)
    whole = WindowSketch(profile, reservoir_size=0)
    whole.update(frame)
    for cut in (1, 700, 2999):
        a, b = WindowSketch(profile, reservoir_size=0), WindowSketch(profile, reservoir_size=0)
        a.update(frame.iloc[:cut])
        b.update(frame.iloc[cut:])
        merged = a.merge(b)
        np.testing.assert_array_equal(merged.num_bin_sums, a.num_bin_sums + b.num_bin_sums)
        np.testing.assert_allclose(merged.num_bin_sums, whole.num_bin_sums, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(merged.bin_means(), whole.bin_means(), rtol=1e-12)
        np.testing.assert_array_equal(merged.num_counts, whole.num_counts)


def test_checkpoint_of_another_profile_is_refused(
    profile: Profile, reference_frame: pd.DataFrame
) -> None:
    other = build_profile(reference_frame, bins=7)
    data = filled(profile, seed=1).to_bytes()
    with pytest.raises(SketchMismatchError) as info:
        WindowSketch.from_bytes(other, data)
    assert profile.short_hash in str(info.value) and other.short_hash in str(info.value)


def test_variance_keeps_its_precision_near_1e9() -> None:
    """Values near 1e9 (a timestamp in seconds) with a spread of 10: raw power sums cancel
    to nothing there, the shifted sums do not; merged sketches agree with one sketch."""
    from detectors.evaluate import compare_windows

    rng = np.random.default_rng(40)
    base = 1.7e9
    reference = pd.DataFrame({"ts": base + rng.normal(0.0, 10.0, 50_000)})
    profile = build_profile(reference, Schema.build(numeric=["ts"]))
    x = base + rng.normal(0.0, 10.0, 20_000)
    whole = WindowSketch(profile)
    whole.update({"ts": x})
    merged = WindowSketch(profile)
    for part in np.array_split(x, 5):
        piece = WindowSketch(profile)
        piece.update({"ts": part})
        merged = merged.merge(piece)
    for sketch in (whole, merged):
        np.testing.assert_allclose(sketch.std()[0], x.std(ddof=1), rtol=1e-9)
        np.testing.assert_allclose(sketch.mean()[0], x.mean(), rtol=1e-14)
    # what raw power sums give on the same values: no variance left at all
    raw = (np.sum(x * x) - np.sum(x) ** 2 / len(x)) / (len(x) - 1)
    assert abs(raw - x.var(ddof=1)) > 0.5 * x.var(ddof=1)
    # a canary moved by half a standard deviation is found against the stable window,
    # whose spread (from the sums) normalises the distance; an unmoved one is not
    stable = WindowSketch(profile)
    stable.update({"ts": base + rng.normal(0.0, 10.0, 20_000)})
    moved = WindowSketch(profile)
    moved.update({"ts": base + 5.0 + rng.normal(0.0, 10.0, 20_000)})
    same = WindowSketch(profile)
    same.update({"ts": base + rng.normal(0.0, 10.0, 20_000)})
    shifted = compare_windows(stable, moved)[0].column("ts")
    assert shifted.test == "wasserstein" and shifted.drifted
    assert shifted.statistic == pytest.approx(0.5, abs=0.05)
    assert shifted.effect is not None and shifted.effect.low > 0.4
    assert not compare_windows(stable, same)[0].column("ts").drifted
