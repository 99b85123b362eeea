"""Categorical values as text: the one normalisation every path uses (the reference
build, the window sketch, labels, the performance estimators), so that 3 from JSON, 3.0
from a float column and "3" are one category."""

from __future__ import annotations

import numpy as np

from detectors.missing import isna_objects, pandas_singletons

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
    # Missing as pandas.isna decides; text kept as it is when every value present is text
    # (pandas' "string" inference), else each value through ``_to_text``.
    arr = arr.ravel()
    miss = isna_objects(arr)
    items = arr.tolist()
    types = set(map(type, items))
    strings = arr.copy()
    if types <= _TEXT_OR_NONE or all(isinstance(v, str) for v in _present(items, miss)):
        strings[miss] = ""
        return strings, miss
    strings[:] = [("" if m else _to_text(v)) for v, m in zip(items, miss.tolist(), strict=True)]
    return strings, miss


def _to_text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _present(items: list[object], miss: np.ndarray) -> list[object]:
    return [v for v, m in zip(items, miss.tolist(), strict=True) if not m]


_TEXT_OR_NONE = frozenset({str, type(None)})

# Below this many values a plain loop beats the batch path.
_SMALL_OBJECT_BATCH = 2048


def _category_strings_small(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``category_strings`` for a short object array: the same results, without pandas."""
    strings = np.empty(len(arr), dtype=object)
    miss = np.zeros(len(arr), dtype=bool)
    singletons = pandas_singletons()  # pandas.NA and NaT, if pandas is loaded
    for i, v in enumerate(arr.tolist()):
        if isinstance(v, str):
            strings[i] = v
        elif v is None or (isinstance(v, float) and v != v) or any(v is s for s in singletons):
            strings[i] = ""
            miss[i] = True
        elif isinstance(v, float) and v.is_integer():
            strings[i] = str(int(v))
        else:
            strings[i] = str(v)
    return strings, miss
