"""Missing values and category text without pandas equal what pandas decides: the agent's
path does not import pandas (detectors/missing.py), so its own reading must not differ."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from detectors.categories import category_strings
from detectors.missing import isna_objects

POOL: list[object] = [
    "a",
    "b",
    "",
    np.str_("c"),
    None,
    float("nan"),
    np.float64("nan"),
    np.float32("nan"),
    complex(float("nan"), 0.0),
    1.0,
    3,
    2.5,
    -0.0,
    float("inf"),
    True,
    False,
    np.int64(7),
    np.float32(4.0),
    Decimal("NaN"),
    Decimal("1.5"),
    np.datetime64("NaT"),
    np.timedelta64("NaT", "s"),
    np.datetime64("2020-01-01"),
    pd.NA,
    pd.NaT,
    b"x",
    (1, 2),
]


def _batches(seed: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for size in sizes:
        for pool in (POOL, ["a", "b", None], ["a", "b"], ["x", None, float("nan"), 2.0]):
            arr = np.empty(size, dtype=object)
            arr[:] = [pool[i] for i in rng.integers(0, len(pool), size)]
            out.append(arr)
    return out


def _reference_strings(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """category_strings of an object array as pandas computed it before."""
    series = pd.Series(arr, dtype=object)
    miss = series.isna().to_numpy()
    if pd.api.types.infer_dtype(series, skipna=True) == "string":
        return series.where(~miss, "").to_numpy(dtype=object), miss

    def to_text(v: object) -> str:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return series.where(~miss, "").map(to_text).to_numpy(dtype=object), miss


@pytest.mark.parametrize("seed", range(4))
def test_isna_objects_equals_pandas_isna(seed: int) -> None:
    for arr in _batches(seed, (0, 1, 17, 3000)):
        got = isna_objects(arr)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, pd.isna(arr))


def test_isna_objects_of_typed_and_2d_arrays() -> None:
    floats = np.array([1.0, np.nan, np.inf])
    np.testing.assert_array_equal(isna_objects(floats), pd.isna(floats))
    times = np.array(["2020-01-01", "NaT"], dtype="datetime64[s]")
    np.testing.assert_array_equal(isna_objects(times), pd.isna(times))
    grid = np.array([["a", None], [float("nan"), 1]], dtype=object)
    np.testing.assert_array_equal(isna_objects(grid), pd.isna(grid))


@pytest.mark.parametrize("seed", range(4))
def test_category_strings_of_large_batches_equal_the_pandas_reading(seed: int) -> None:
    # above the small-batch cutoff, where the pandas reading was used before
    for arr in _batches(seed, (2049, 5000)):
        strings, miss = category_strings(arr)
        want_strings, want_miss = _reference_strings(arr)
        np.testing.assert_array_equal(miss, want_miss)
        assert strings.dtype == object
        assert strings.tolist() == want_strings.tolist()
        assert [type(s) for s in strings.tolist()] == [type(s) for s in want_strings.tolist()]


def _numeric_reference(arr: np.ndarray) -> tuple[np.ndarray, int]:
    series = pd.Series(arr, dtype=object)
    x = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    return x, int((np.isnan(x) & series.notna().to_numpy()).sum())


@pytest.mark.parametrize("seed", range(4))
def test_numeric_columns_of_objects_read_as_pandas_reads_them(seed: int) -> None:
    from detectors.sketch import _numeric_values

    rng = np.random.default_rng(seed)
    plain: list[object] = [1.5, -0.0, 3, 2**70, -(2**63) - 1, 2**53 + 1, None, float("nan")]
    mixed: list[object] = [*plain, "2.5", "x", True, np.float32(1.1)]
    for pool in (plain, mixed, [None], [1, 2]):
        arr = np.empty(500, dtype=object)
        arr[:] = [pool[i] for i in rng.integers(0, len(pool), 500)]
        x, errors = _numeric_values(arr)
        want_x, want_errors = _numeric_reference(arr)
        np.testing.assert_array_equal(x, want_x)
        assert errors == want_errors


@pytest.mark.parametrize("seed", range(4))
def test_text_slots_give_the_bins_pandas_factorize_gave(seed: int) -> None:
    from detectors.sketch import _text_slots

    rng = np.random.default_rng(seed)
    slots = {"a": 0, "b": 1, "c": 2, "rare": 3}
    pool: list[object] = [
        "a",
        "b",
        "c",
        "rare",
        "new",
        "",
        None,
        float("nan"),
        3,
        2.0,
        np.str_("a"),
    ]
    for size in (0, 1, 4000):
        arr = np.empty(size, dtype=object)
        arr[:] = [pool[i] for i in rng.integers(0, len(pool), size)]
        got = _text_slots(arr, slots, 5)
        codes, uniques = pd.factorize(arr)
        lookup = [slots.get(u, 5) if type(u) is str else -1 for u in uniques]
        want = np.append(np.array(lookup, dtype=np.int64), -1)[codes]
        # what the sketch makes of -1: category_strings, then the dict (unseen: 5)
        np.testing.assert_array_equal(_resolved(arr, got, slots), _resolved(arr, want, slots))
        assert (got >= 0).sum() >= (want >= 0).sum()  # text never waits for the slow path


def _resolved(arr: np.ndarray, slot: np.ndarray, slots: dict[str, int]) -> np.ndarray:
    out = slot.copy()
    unknown = np.flatnonzero(slot < 0)
    strings, miss = category_strings(arr[unknown])
    again = np.array([slots.get(s, 5) for s in strings.tolist()], dtype=np.int64)
    out[unknown] = np.where(miss, -1, again)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_model_versions_are_coded_as_pandas_factorize_codes_them(seed: int) -> None:
    from monitor.runtime.panes import UNKNOWN_VERSION, _factorize_versions

    rng = np.random.default_rng(seed)
    pool: list[object] = ["v1", "v2", None, float("nan"), 3, 3.0, True, "unknown", pd.NA]
    for size, choices in ((1, pool), (1000, pool), (1000, ["v1"]), (50, [None])):
        arr = np.empty(size, dtype=object)
        arr[:] = [choices[i] for i in rng.integers(0, len(choices), size)]
        names, codes = _factorize_versions(arr)
        want_codes, uniques = pd.factorize(arr, use_na_sentinel=True)
        want_names = [str(v) for v in uniques]
        if (want_codes < 0).any():
            if UNKNOWN_VERSION in want_names:
                want_codes = np.where(want_codes < 0, want_names.index(UNKNOWN_VERSION), want_codes)
            else:
                want_codes = np.where(want_codes < 0, len(want_names), want_codes)
                want_names.append(UNKNOWN_VERSION)
        assert names == want_names
        np.testing.assert_array_equal(codes, want_codes)
        assert codes.dtype == np.intp
