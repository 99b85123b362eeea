"""Categorical values as text: the one normalisation every path uses (the reference
build, the window sketch, labels, the performance estimators), so that 3 from JSON, 3.0
from a float column and "3" are one category."""

from __future__ import annotations

import numpy as np
import pandas as pd

# The missing category as a 0-d object array: ``np.where(missing, MISSING, strings)`` gives
# an object array with None where a value is missing.
MISSING = np.array(None, dtype=object)


def category_strings(values: object) -> tuple[np.ndarray, np.ndarray]:
    """Normalise categorical values to text: returns (object array of str, missing mask).

    Numbers become their text (integral floats without ``.0``, so a category read as 3 from
    JSON and as 3.0 from a float column is the same), booleans ``True``/``False``.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        strings = arr.astype(str).astype(object)
        return strings, np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind == "b":
        return arr.astype(str).astype(object), np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind in "iu":
        return arr.astype(str).astype(object), np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind == "f":
        miss = np.isnan(arr)
        # Integral floats outside int64 would wrap around in the cast (1e20 and 2e20 becoming
        # the same category); those few take the same text path as object columns.
        integral = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**63)
        strings = np.where(
            integral, np.where(integral, arr, 0).astype(np.int64).astype(str), arr.astype(str)
        ).astype(object)
        big = np.isfinite(arr) & ~integral & (arr == np.round(arr))
        if big.any():
            strings[big] = [str(int(v)) for v in arr[big].tolist()]
        return strings, miss
    if len(arr) <= _SMALL_OBJECT_BATCH:
        return _category_strings_small(arr)
    series = pd.Series(arr, dtype=object)
    miss = series.isna().to_numpy()
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "string":
        return series.where(~miss, "").to_numpy(dtype=object), miss

    def to_text(v: object) -> str:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    strings = series.where(~miss, "").map(to_text).to_numpy(dtype=object)
    return strings, miss


# Below this many values a plain loop beats building pandas objects (which costs ~1 ms).
_SMALL_OBJECT_BATCH = 2048


def _category_strings_small(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``category_strings`` for a short object array: the same results, without pandas."""
    strings = np.empty(len(arr), dtype=object)
    miss = np.zeros(len(arr), dtype=bool)
    for i, v in enumerate(arr.tolist()):
        if isinstance(v, str):
            strings[i] = v
        elif v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
            strings[i] = ""
            miss[i] = True
        elif isinstance(v, float) and v.is_integer():
            strings[i] = str(int(v))
        else:
            strings[i] = str(v)
    return strings, miss
