"""Which values of an object array are missing, decided as ``pandas.isna`` decides, without
importing pandas: the agent's path stays without pandas and pyarrow, about 80 MiB of a
sidecar's memory (docs/architecture.md, "Imports on the agent's path").

Missing: ``None``; a float or complex NaN (Python's or numpy's); a numpy datetime64 or
timedelta64 NaT; a ``Decimal`` NaN; and, where pandas has been imported (no other code
can make them), ``pandas.NA`` and ``pandas.NaT``.
"""

from __future__ import annotations

import sys
from decimal import Decimal

import numpy as np

# Types none of whose values is missing: a batch of only these needs no per-value test.
_NEVER_MISSING = frozenset({str, int, bool, bytes})
_NONE_OR_NEVER = _NEVER_MISSING | {type(None)}
_NAN_TYPES = (float, complex, np.floating, np.complexfloating)
_NAT_TYPES = (np.datetime64, np.timedelta64)


def pandas_singletons() -> tuple[object, ...]:
    """pandas' own missing singletons, if pandas is loaded (else none can exist)."""
    pd = sys.modules.get("pandas")
    if pd is None:
        return ()
    return tuple(x for x in (getattr(pd, "NA", None), getattr(pd, "NaT", None)) if x is not None)


def is_missing(value: object, singletons: tuple[object, ...] | None = None) -> bool:
    """One value: missing as ``pandas.isna`` decides for a scalar of an object array."""
    if value is None:
        return True
    if isinstance(value, _NAN_TYPES):
        return bool(value != value)
    if isinstance(value, _NAT_TYPES):
        return bool(np.isnat(value))
    if isinstance(value, Decimal):
        return bool(value != value)  # as pandas: a Decimal NaN is unequal to itself
    known = pandas_singletons() if singletons is None else singletons
    return any(value is s for s in known)


def isna_objects(values: np.ndarray) -> np.ndarray:
    """Missing mask of a 1-D array (of any dtype), equal to ``pandas.isna(values)``.

    A batch of text (with or without ``None``) is decided in C: only batches holding
    other kinds of values are tested one value at a time.
    """
    arr = np.asarray(values)
    if arr.dtype != object:
        if arr.dtype.kind in "fc":
            return np.isnan(arr)
        if arr.dtype.kind in "mM":
            return np.isnat(arr)
        return np.zeros(arr.shape, dtype=bool)
    if arr.ndim != 1:
        return isna_objects(arr.ravel()).reshape(arr.shape)
    items = arr.tolist()
    types = set(map(type, items))
    if types <= _NEVER_MISSING:
        return np.zeros(len(items), dtype=bool)
    if types <= _NONE_OR_NEVER:
        return np.equal(arr, np.array(None, dtype=object))  # None is missing, text is not
    singletons = pandas_singletons()
    return np.fromiter((is_missing(v, singletons) for v in items), dtype=bool, count=len(items))
