"""The reference profile: bins, counts and vocabularies, and the versioned file it lives in.

Expected values are computed here from the data with numpy, ``bisect`` and ``Counter``,
never read back from the profile code.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.profile import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    PROFILE_FORMAT,
    PROFILE_VERSION,
    Profile,
    ProfileError,
    build_profile,
    category_strings,
    load_profile,
    profile_numeric,
    read_frame,
)
from detectors.schema import Kind, Role, Schema, SchemaError

NUMERIC = ("normal", "lognormal", "uniform", "ties", "constant", "with_nan", "prediction")


def bisect_counts(edges: np.ndarray, values: np.ndarray) -> list[int]:
    """Right-closed bin counts by plain bisection: bin i holds edges[i-1] < v <= edges[i]."""
    edge_list = edges.tolist()
    counts = [0] * (len(edge_list) + 1)
    for v in values.tolist():
        counts[bisect.bisect_left(edge_list, v)] += 1
    return counts


def assert_no_empty_reference_bin(counts: np.ndarray) -> None:
    """Only the below-min and above-max bins may be (and must be) empty in the reference."""
    assert counts[0] == 0 and counts[-1] == 0, counts
    assert (counts[1:-1] > 0).all(), counts


# -- sources and schema ----------------------------------------------------------------


def write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    """One JSON object per row, floats in full (repr) precision, null where missing."""
    with path.open("w") as out:
        for row in frame.to_dict(orient="records"):
            clean = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
            out.write(json.dumps(clean) + "\n")


def test_same_profile_from_frame_parquet_csv_and_jsonl(
    tmp_path: Path, reference_frame: pd.DataFrame, explicit_schema: Schema
) -> None:
    parquet, csv, jsonl = tmp_path / "ref.parquet", tmp_path / "ref.csv", tmp_path / "ref.jsonl"
    reference_frame.to_parquet(parquet)
    reference_frame.to_csv(csv, index=False)
    write_jsonl(reference_frame, jsonl)
    for schema in (None, explicit_schema):
        from_frame = build_profile(reference_frame, schema)
        assert from_frame.numeric["normal"].min == reference_frame["normal"].min()
        for source in (parquet, csv, str(csv), jsonl):
            other = build_profile(source, schema)
            assert other.to_dict() == from_frame.to_dict(), source
            assert other.content_hash == from_frame.content_hash


def test_schema_is_inferred_and_the_inference_reported(reference_frame: pd.DataFrame) -> None:
    profile = build_profile(reference_frame)
    assert set(profile.inference) == set(reference_frame.columns)
    assert profile.schema.column("ties").kind is Kind.CATEGORICAL
    assert "integer with 5 distinct values" in profile.inference["ties"]
    assert profile.schema.column("normal").kind is Kind.NUMERIC
    assert profile.schema.column("city").kind is Kind.CATEGORICAL
    assert profile.schema.column("prediction").role is Role.PREDICTION
    assert "prediction" in profile.inference["prediction"]
    assert sorted(profile.categorical["ties"].vocabulary) == ["0", "1", "2", "3", "4"]
    assert set(profile.numeric) == {"normal", "lognormal", "uniform", "constant", "with_nan"} | {
        "prediction"
    }


def test_named_prediction_column_is_used_for_inference(reference_frame: pd.DataFrame) -> None:
    profile = build_profile(reference_frame, prediction=["lognormal"])
    assert [c.name for c in profile.schema.predictions()] == ["lognormal"]
    assert profile.schema.column("prediction").role is Role.FEATURE


def test_given_schema_is_honoured(reference_frame: pd.DataFrame, explicit_schema: Schema) -> None:
    profile = build_profile(reference_frame, explicit_schema)
    assert profile.schema == explicit_schema
    assert profile.inference == {}
    assert "ties" in profile.numeric and "ties" not in profile.categorical
    subset = Schema.build(numeric=["uniform"], categorical=["normal"])
    small = build_profile(reference_frame, subset)
    assert list(small.numeric) == ["uniform"] and list(small.categorical) == ["normal"]
    assert set(small.sample) == {"uniform", "normal"}


def test_schema_naming_absent_columns_is_an_error(reference_frame: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="nowhere"):
        build_profile(reference_frame, Schema.build(numeric=["normal", "nowhere"]))


def test_numeric_column_without_finite_values_is_an_error() -> None:
    frame = pd.DataFrame({"x": [np.nan, np.inf, np.nan], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(SchemaError, match="'x'"):
        build_profile(frame, Schema.build(numeric=["x", "y"]))


@pytest.mark.parametrize(("bins", "top_k"), [(0, 5), (5, 0)])
def test_bins_and_top_k_must_be_positive(
    reference_frame: pd.DataFrame, bins: int, top_k: int
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        build_profile(reference_frame, bins=bins, top_k=top_k)


@pytest.mark.parametrize("name", ["ref.txt", "ref.xlsx"])
def test_unknown_data_format_is_a_profile_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("x\n1\n")
    with pytest.raises(ProfileError, match="unknown data format"):
        read_frame(path)


def test_missing_data_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        build_profile(tmp_path / "absent.parquet")


# -- numeric bins ------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [DEFAULT_BINS, 10, 37])
@pytest.mark.parametrize("column", ["normal", "lognormal", "uniform", "prediction"])
def test_continuous_columns_get_edges_at_reference_quantiles(
    reference_frame: pd.DataFrame, explicit_schema: Schema, column: str, bins: int
) -> None:
    kwargs = {} if bins == DEFAULT_BINS else {"bins": bins}
    num = build_profile(reference_frame, explicit_schema, **kwargs).numeric[column]
    x = reference_frame[column].to_numpy()
    n = len(x)
    # ``bins`` interior bins plus the two out-of-range ones
    assert num.bins == bins + 2 and len(num.edges) == bins + 1
    assert num.edges[0] < x.min() and num.edges[-1] == x.max()
    for i, edge in enumerate(num.edges[1:], start=1):
        # Each edge is the value at quantile i/bins: the empirical CDF there is i/bins, up
        # to the data's granularity (the order statistic at or just after it).
        assert edge in x
        below = np.mean(x <= edge)
        assert i / bins - 1e-12 <= below <= i / bins + 2 / n, (i, below)


@pytest.mark.parametrize("bins", [1, 2, 5, 100, 1000])
@pytest.mark.parametrize("column", NUMERIC)
def test_no_reference_bin_is_empty_on_the_reference_shapes(
    reference_frame: pd.DataFrame, explicit_schema: Schema, column: str, bins: int
) -> None:
    num = build_profile(reference_frame, explicit_schema, bins=bins).numeric[column]
    assert_no_empty_reference_bin(num.counts)
    assert num.bins <= bins + 2
    assert num.counts.tolist() == bisect_counts(num.edges, reference_frame[column].dropna())
    assert num.counts.sum() == num.count


EXTRA_SHAPES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "mostly_zero": lambda r: np.where(r.random(3000) < 0.9, 0.0, r.exponential(size=3000)),
    "two_points": lambda r: r.choice([-1.0, 1.0], 3000, p=[0.999, 0.001]),
    "rare_integers": lambda r: r.choice(np.arange(50.0), 3000, p=np.r_[0.951, np.full(49, 1e-3)]),
    "adjacent_floats": lambda r: 1.0 + r.integers(0, 3, 3000) * np.spacing(1.0),
    "tiny_and_huge": lambda r: np.r_[r.normal(size=1500) * 1e-150, r.normal(size=1500) * 1e150],
    "one_value": lambda r: np.array([42.0]),
    "negative_zero": lambda r: np.r_[np.zeros(5), -np.zeros(5), r.normal(size=5)],
    "smallest_subnormal": lambda r: np.r_[np.full(10, 5e-324), np.ones(3)],
    "with_infinities": lambda r: np.r_[r.normal(size=500), [np.inf, -np.inf, np.nan] * 5],
    "rounded_prices": lambda r: np.round(r.lognormal(2.0, 1.0, 3000), 0),
}


@pytest.mark.parametrize("bins", [3, 100])
@pytest.mark.parametrize("shape", sorted(EXTRA_SHAPES))
def test_no_reference_bin_is_empty_on_tied_and_extreme_shapes(shape: str, bins: int) -> None:
    x = EXTRA_SHAPES[shape](np.random.default_rng(7))
    num = profile_numeric(shape, x, bins)
    finite = x[np.isfinite(x)]
    assert_no_empty_reference_bin(num.counts)
    assert np.all(np.diff(num.edges) > 0)
    assert num.bins <= bins + 2
    assert num.counts.tolist() == bisect_counts(num.edges, finite)
    assert num.count == len(finite)


def numpy_bin_means(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each right-closed bin's mean by bisection and ``np.mean``; NaN for an empty bin."""
    edge_list = edges.tolist()
    slot = np.array([bisect.bisect_left(edge_list, v) for v in values.tolist()], dtype=int)
    return np.array(
        [np.mean(values[slot == i]) if (slot == i).any() else np.nan for i in range(len(edges) + 1)]
    )


@pytest.mark.parametrize("bins", [5, 100])
@pytest.mark.parametrize("column", NUMERIC)
def test_bin_means_equal_numpy_per_bin(
    reference_frame: pd.DataFrame, explicit_schema: Schema, column: str, bins: int
) -> None:
    num = build_profile(reference_frame, explicit_schema, bins=bins).numeric[column]
    finite = reference_frame[column].dropna().to_numpy(dtype=np.float64)
    expected = numpy_bin_means(num.edges, finite)
    assert np.isnan(num.bin_means[[0, -1]]).all()  # the out-of-range bins are empty
    assert np.isfinite(num.bin_means[1:-1]).all()  # and no other is
    np.testing.assert_allclose(num.bin_means, expected, rtol=1e-12, atol=0)
    # each mean lies inside its bin (up to rounding)
    inner, top = num.bin_means[1:-1], num.edges[1:]
    assert np.all(inner > num.edges[:-1])
    assert np.all(inner <= top + 4 * np.spacing(np.abs(top)))


@pytest.mark.parametrize("shape", sorted(EXTRA_SHAPES))
def test_bin_means_on_tied_and_extreme_shapes(shape: str) -> None:
    x = EXTRA_SHAPES[shape](np.random.default_rng(7))
    num = profile_numeric(shape, x, 100)
    finite = x[np.isfinite(x)]
    np.testing.assert_allclose(num.bin_means, numpy_bin_means(num.edges, finite), rtol=1e-12)


def test_integer_column_gets_one_bin_per_value(
    reference_frame: pd.DataFrame, explicit_schema: Schema
) -> None:
    num = build_profile(reference_frame, explicit_schema).numeric["ties"]
    assert num.edges[1:].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    expected = [int((reference_frame["ties"] == v).sum()) for v in range(5)]
    assert num.counts.tolist() == [0, *expected, 0]
    # each bin holds one value, which is its mean
    np.testing.assert_array_equal(num.bin_means, [np.nan, 0.0, 1.0, 2.0, 3.0, 4.0, np.nan])


def test_constant_column_gets_a_single_bin(
    reference_frame: pd.DataFrame, explicit_schema: Schema
) -> None:
    num = build_profile(reference_frame, explicit_schema).numeric["constant"]
    assert num.counts.tolist() == [0, len(reference_frame), 0]
    assert num.min == num.max == 1.5 and num.std == 0.0


@pytest.mark.parametrize("column", NUMERIC)
def test_numeric_summary_equals_numpy(
    reference_frame: pd.DataFrame, explicit_schema: Schema, column: str
) -> None:
    num = build_profile(reference_frame, explicit_schema).numeric[column]
    x = reference_frame[column].to_numpy(dtype=np.float64)
    finite = x[np.isfinite(x)]
    assert num.missing == int(np.isnan(x).sum())
    assert num.missing / num.rows == pytest.approx(np.isnan(x).mean(), abs=0)
    assert num.count == len(finite) and num.non_finite == 0 and num.rows == len(x)
    assert num.min == np.min(finite) and num.max == np.max(finite)
    np.testing.assert_allclose(num.mean, np.mean(finite), rtol=1e-12)
    np.testing.assert_allclose(num.std, np.std(finite, ddof=1), rtol=1e-12, atol=1e-15)
    assert num.counts.sum() == num.count


def test_missing_rate_of_the_nan_column(reference_frame: pd.DataFrame) -> None:
    num = build_profile(reference_frame).numeric["with_nan"]
    assert 0.05 < num.missing / num.rows < 0.15  # the generator blanks about 10%
    assert num.missing == reference_frame["with_nan"].isna().sum()


def test_infinities_are_counted_apart_from_the_bins() -> None:
    x = np.array([1.0, 2.0, np.inf, -np.inf, np.nan, 3.0])
    num = profile_numeric("x", x, bins=2)
    assert (num.count, num.missing, num.non_finite, num.rows) == (3, 1, 2, 6)
    assert (num.min, num.max) == (1.0, 3.0)
    assert num.counts.sum() == 3


@st.composite
def tied_columns(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """A column with few distinct values (some adjacent floats), optional continuous part,
    optional NaN/inf, and a bin count."""
    support = draw(
        st.lists(
            st.floats(-1e9, 1e9, allow_nan=False, allow_subnormal=True),
            min_size=1,
            max_size=8,
            unique=True,
        )
    )
    if draw(st.booleans()):  # a cluster of neighbouring floats: base and the next two
        up = np.nextafter(support[0], np.inf)
        support += [float(up), float(np.nextafter(up, np.inf))]
    support_arr = np.unique(np.array(support))
    weights = np.array(
        draw(st.lists(st.integers(1, 1000), min_size=len(support_arr), max_size=len(support_arr))),
        dtype=float,
    )
    n = draw(st.integers(1, 600))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.choice(support_arr, n, p=weights / weights.sum())
    continuous = draw(st.floats(0.0, 0.5))
    x = np.where(rng.random(n) < continuous, rng.normal(0.0, 100.0, n), x)
    specials = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), max_size=5))
    return np.concatenate([x, np.array(specials, dtype=float)]), draw(st.integers(1, 120))


@settings(max_examples=150, deadline=None)
@given(tied_columns())
def test_no_reference_bin_is_empty_on_generated_tied_columns(case: tuple[np.ndarray, int]) -> None:
    x, bins = case
    num = profile_numeric("x", x, bins)
    finite = x[np.isfinite(x)]
    assert_no_empty_reference_bin(num.counts)
    assert np.all(np.diff(num.edges) > 0)
    assert num.edges[0] < finite.min() and num.edges[-1] == finite.max()
    assert num.bins <= bins + 2
    # every interior bin holds at least one distinct value of its own
    assert num.bins - 2 <= len(np.unique(finite))
    assert num.counts.tolist() == bisect_counts(num.edges, finite)
    assert num.count == len(finite) and num.missing == int(np.isnan(x).sum())


# -- categorical vocabulary --------------------------------------------------------------


def expected_vocabulary(values: pd.Series, top_k: int) -> tuple[list[str], list[int], int]:
    counter = Counter(v for v in values if v is not None and v == v)
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return (
        [k for k, _ in ranked[:top_k]],
        [c for _, c in ranked[:top_k]],
        sum(c for _, c in ranked[top_k:]),
    )


@pytest.mark.parametrize("top_k", [DEFAULT_TOP_K, 7, 1])
def test_long_tail_keeps_top_k_and_an_other_bucket(
    reference_frame: pd.DataFrame, top_k: int
) -> None:
    kwargs = {} if top_k == DEFAULT_TOP_K else {"top_k": top_k}
    cat = build_profile(reference_frame, **kwargs).categorical["city"]
    vocab, counts, other = expected_vocabulary(reference_frame["city"], top_k)
    assert reference_frame["city"].nunique() > top_k  # the tail is longer than the vocabulary
    assert list(cat.vocabulary) == vocab and len(vocab) == top_k
    assert cat.counts.tolist() == [*counts, other, 0]  # last: "unseen", zero in the reference
    assert cat.missing == reference_frame["city"].isna().sum()
    assert cat.count == reference_frame["city"].notna().sum() == cat.counts.sum()
    assert set(cat.known) == set(reference_frame["city"].dropna())
    frequencies = cat.counts / cat.count
    assert frequencies[0] == max(Counter(reference_frame["city"].dropna()).values()) / cat.count


def test_short_vocabulary_has_an_empty_other_bucket(reference_frame: pd.DataFrame) -> None:
    cat = build_profile(reference_frame).categorical["device"]
    vocab, counts, _ = expected_vocabulary(reference_frame["device"], DEFAULT_TOP_K)
    assert list(cat.vocabulary) == vocab == ["web", "ios", "android", "kiosk"]
    assert cat.counts.tolist() == [*counts, 0, 0]


def test_numbers_as_categories_have_one_text_per_value() -> None:
    strings, missing = category_strings(np.array([3.0, 3.5, np.nan, 1e20, 2e20, -0.0]))
    assert strings[~missing].tolist() == [
        "3",
        "3.5",
        "100000000000000000000",
        "200000000000000000000",
        "0",
    ]
    assert missing.tolist() == [False, False, True, False, False, False]
    as_objects, _ = category_strings(np.array([3, 3.0, 1e20, True, None], dtype=object))
    assert as_objects.tolist()[:4] == ["3", "3", "100000000000000000000", "True"]


# -- file and hash -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def profile(reference_factory: Callable[[int, int], pd.DataFrame]) -> Profile:
    return build_profile(reference_factory(500, 3), bins=20)


@pytest.mark.parametrize("name", ["ref.json", "ref.json.gz"])
def test_save_and_load_round_trip(tmp_path: Path, profile: Profile, name: str) -> None:
    path = profile.save(tmp_path / name)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    loaded = load_profile(path)
    assert loaded.to_dict() == profile.to_dict()
    assert loaded.content_hash == profile.content_hash
    assert loaded.schema == profile.schema and loaded.inference == profile.inference
    for name_ in profile.numeric:
        np.testing.assert_array_equal(loaded.numeric[name_].edges, profile.numeric[name_].edges)
        np.testing.assert_array_equal(
            loaded.numeric[name_].bin_means, profile.numeric[name_].bin_means
        )
    body = json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)
    assert (body["format"], body["version"]) == (PROFILE_FORMAT, PROFILE_VERSION)
    assert body["sha256"] == profile.content_hash
    assert profile.save(tmp_path / ("again-" + name)).read_bytes() == raw


def test_content_hash_is_stable_and_tracks_the_data(
    reference_factory: Callable[[int, int], pd.DataFrame],
) -> None:
    frame = reference_factory(500, 3)
    first = build_profile(frame, bins=20)
    assert build_profile(frame.copy(), bins=20).content_hash == first.content_hash
    assert len(first.content_hash) == 64 and first.short_hash == first.content_hash[:12]
    changed = frame.copy()
    changed.loc[17, "uniform"] += 1e-9
    others = [
        build_profile(changed, bins=20),
        build_profile(reference_factory(500, 4), bins=20),
        build_profile(frame, bins=21),
        build_profile(frame, bins=20, top_k=5),
    ]
    hashes = {first.content_hash, *(p.content_hash for p in others)}
    assert len(hashes) == 1 + len(others)


SUFFIXES = ["json", "json.gz"]


def write_envelope(path: Path, envelope: object) -> None:
    data = json.dumps(envelope).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def read_envelope(path: Path) -> dict:
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def assert_profile_error(path: Path, *words: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_corrupt_file_is_a_profile_error(tmp_path: Path, profile: Profile, suffix: str) -> None:
    path = tmp_path / f"noise.{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(400))
    assert_profile_error(path, "not a driftline profile")
    good = profile.save(tmp_path / f"ref.{suffix}").read_bytes()
    for at in (len(good) // 3, len(good) // 2):
        flipped = bytearray(good)
        flipped[at] ^= 0x5A
        path.write_bytes(bytes(flipped))
        with pytest.raises(ProfileError, match=str(path)):
            load_profile(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_file_is_a_profile_error(tmp_path: Path, profile: Profile, suffix: str) -> None:
    good = profile.save(tmp_path / f"ref.{suffix}").read_bytes()
    path = tmp_path / f"cut.{suffix}"
    for cut in sorted({0, 1, 2, 10, len(good) // 3, len(good) // 2, len(good) - 1}):
        path.write_bytes(good[:cut])
        assert_profile_error(path, "truncated or corrupt")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    ("envelope", "words"),
    [
        ([1, 2, 3], ("not a driftline profile",)),
        ({"format": "other-tool", "version": 1}, ("not a driftline profile",)),
        ({"format": PROFILE_FORMAT, "version": 1, "profile": {}}, ("incomplete or malformed",)),
        ({"format": PROFILE_FORMAT, "version": 1}, ("incomplete or malformed",)),
        ({"format": PROFILE_FORMAT, "version": 1, "profile": "x"}, ("malformed",)),
    ],
)
def test_wrong_format_json_is_a_profile_error(
    tmp_path: Path, suffix: str, envelope: object, words: tuple[str, ...]
) -> None:
    path = tmp_path / f"wrong.{suffix}"
    write_envelope(path, envelope)
    assert_profile_error(path, *words)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_malformed_profile_body_is_a_profile_error(
    tmp_path: Path, profile: Profile, suffix: str
) -> None:
    path = profile.save(tmp_path / f"ref.{suffix}")
    envelope = read_envelope(path)
    envelope["profile"]["numeric"][0]["edges"] = "not numbers"
    write_envelope(path, envelope)
    assert_profile_error(path, "incomplete or malformed")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("version", [PROFILE_VERSION + 1, 0, "1", None])
def test_incompatible_version_is_a_profile_error(
    tmp_path: Path, profile: Profile, suffix: str, version: object
) -> None:
    path = profile.save(tmp_path / f"ref.{suffix}")
    envelope = read_envelope(path)
    envelope["version"] = version
    write_envelope(path, envelope)
    assert_profile_error(path, f"version {version!r}", "rebuild")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_edited_content_is_a_hash_mismatch(tmp_path: Path, profile: Profile, suffix: str) -> None:
    path = profile.save(tmp_path / f"ref.{suffix}")
    envelope = read_envelope(path)
    envelope["profile"]["numeric"][0]["counts"][1] += 1
    write_envelope(path, envelope)
    assert_profile_error(path, "hash mismatch", profile.content_hash)
    # and an untouched body re-encoded differently still loads: the hash is of the content
    path.unlink()
    write_envelope(path, read_envelope(profile.save(tmp_path / f"ok.{suffix}")))
    assert load_profile(path).content_hash == profile.content_hash


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_profile_file_without_bin_means_still_loads(
    tmp_path: Path, profile: Profile, suffix: str
) -> None:
    """A file written before bin means existed: same format version, no ``bin_means``, its
    hash taken over that body. It loads with every mean unknown (NaN) and keeps its hash."""
    path = profile.save(tmp_path / f"ref.{suffix}")
    envelope = read_envelope(path)
    body = envelope["profile"]
    for num in body["numeric"]:
        assert len(num.pop("bin_means")) == len(num["counts"])
    envelope["sha256"] = hashlib.sha256(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    ).hexdigest()
    write_envelope(path, envelope)
    old = load_profile(path)
    assert old.content_hash == envelope["sha256"] != profile.content_hash
    for name in old.numeric_names:
        num = old.numeric[name]
        assert not num.has_bin_means and profile.numeric[name].has_bin_means
        assert num.bin_means.shape == (num.bins,) and np.isnan(num.bin_means).all()
        assert "bin_means" not in num.to_dict()
        np.testing.assert_array_equal(num.counts, profile.numeric[name].counts)
    assert np.isnan(old.numeric_bin_means).all()


def test_missing_profile_file_is_a_profile_error(tmp_path: Path) -> None:
    assert_profile_error(tmp_path / "nowhere.json", "cannot read")


# -- stacked views -----------------------------------------------------------------------


def test_stacked_counts_pad_without_moving_bins(profile: Profile) -> None:
    matrix = profile.numeric_counts
    assert matrix.shape == (len(profile.numeric_names), profile.numeric_width)
    for i, name in enumerate(profile.numeric_names):
        counts = profile.numeric[name].counts
        assert matrix[i, : len(counts)].tolist() == counts.tolist()
        assert not matrix[i, len(counts) :].any()
    means = profile.numeric_bin_means
    assert means.shape == matrix.shape and means.dtype == np.float64
    for i, name in enumerate(profile.numeric_names):
        own = profile.numeric[name].bin_means
        np.testing.assert_array_equal(means[i, : len(own)], own)
        assert np.isnan(means[i, len(own) :]).all()
    cats = profile.categorical_counts
    for i, name in enumerate(profile.categorical_names):
        counts = profile.categorical[name].counts
        assert cats[i, : len(counts) - 2].tolist() == counts[:-2].tolist()
        assert cats[i, -2:].tolist() == counts[-2:].tolist()


def test_sample_is_row_aligned(reference_frame: pd.DataFrame) -> None:
    profile = build_profile(reference_frame, sample_rows=50, seed=3)
    rows = {tuple(r) for r in reference_frame[["normal", "lognormal"]].itertuples(index=False)}
    pairs = zip(profile.sample["normal"], profile.sample["lognormal"], strict=True)
    assert len(profile.sample["normal"]) == 50
    assert all(pair in rows for pair in pairs)
