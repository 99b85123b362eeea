"""Attributions logged in the prediction records: a model server that explains its own
predictions (a KServe explainer, SHAP values returned with each prediction) puts them in
the record, and the agent reads them there instead of running an explainer
(``explain.source: record``, docs/explainability.md, "Attributions in the records").

The field (``explain.record_field``, a dotted path into the record) holds, per prediction,
either an object ``{feature: value}`` or an array of values in the order of the reference
profile's attribution features. A record whose attributions cannot be read keeps its
features and prediction (it still counts for feature and prediction drift); only its
attributions are left out, and the reason is counted
(``driftline_attribution_records_invalid_total``):

- ``missing``: the field is absent or null;
- ``bad_type``: the field is neither an object nor an array;
- ``wrong_length``: an array with another number of values than attribution features;
- ``missing_feature``: an object without a value for one of the attribution features
  (keys for other names, a ``bias`` or ``base_value`` say, are ignored);
- ``not_numeric``: a value that is not a finite number (text, null, a boolean, NaN).

Values become one float64 matrix per batch (rows × features, NaN rows where unreadable)
and a reason code per row (:data:`OK` where readable), which travel with the batch's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType
from msgspec.structs import astuple

from monitor.ingest.values import at_path

if TYPE_CHECKING:
    import pandas as pd  # an annotation only: the agent's path stays without pandas

ATTRIBUTION_FAILURE_REASONS: tuple[str, ...] = (
    "missing",
    "bad_type",
    "wrong_length",
    "missing_feature",
    "not_numeric",
)
OK = -1
_MISSING, _BAD_TYPE, _WRONG_LENGTH, _MISSING_FEATURE, _NOT_NUMERIC = range(5)
_NUMBERS = (int, float)


@dataclass(frozen=True)
class AttributionField:
    """Where a record's attributions are (``path``, dotted) and of which features, in
    the order the reference profile's attribution block lists them."""

    path: str
    features: tuple[str, ...]

    @property
    def head(self) -> str:
        """The record's top-level key the path starts at."""
        return self.path.split(".")[0]

    @property
    def rest(self) -> tuple[str, ...]:
        """The path below :attr:`head`."""
        return tuple(self.path.split(".")[1:])

    def getter(self) -> Callable[[Any], Any]:
        """Reads the field from a decoded record; None where any step is missing or the
        record is not an object."""
        parts = tuple(self.path.split("."))
        return lambda record: at_path(record, parts)

    def below_head(self, value: Any) -> Any:
        """The field from the value under :attr:`head` (a struct decoder reads the head)."""
        return at_path(value, self.rest)

    @cached_property
    def typed(self) -> Any:
        """The msgspec type the columnar decoder reads the record's :attr:`head` as: an
        object of the features' numbers (other keys skipped), an array of numbers, or
        null. A value of another shape fails the typed decode, and the record goes to
        the general reader, which counts the reason. Any under a dotted path."""
        if self.rest:
            return Any
        names = {f"a{j}": f for j, f in enumerate(self.features)}
        struct = msgspec.defstruct(
            "LoggedAttributions",
            [(a, float | UnsetType, UNSET) for a in names],  # type: ignore[operator]
            rename=names,
            gc=False,
        )
        return struct | list[float] | None

    def convert_typed(self, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`convert` of the values decoded as :attr:`typed` (their numbers are
        floats, never booleans or text): one conversion in C when every row is whole."""
        if self.rest:
            return self.convert([self.below_head(v) for v in values])
        d = len(self.features)
        rows = [v if v is None or type(v) is list else astuple(v) for v in values]
        try:
            arr = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):  # a null, an absent feature, a ragged array
            arr = None
        if arr is not None and arr.shape == (len(rows), d):
            codes = np.full(len(rows), OK, dtype=np.int8)
            finite = np.isfinite(arr).all(axis=1)  # a number beyond float64 reads as inf
            arr[~finite] = np.nan
            codes[~finite] = _NOT_NUMERIC
            return arr, codes
        out = np.full((len(rows), d), np.nan)
        codes = np.full(len(rows), OK, dtype=np.int8)
        for i, v in enumerate(rows):
            if v is None:
                codes[i] = _MISSING
            elif type(v) is tuple and UNSET in v:
                codes[i] = _MISSING_FEATURE
            elif len(v) != d:
                codes[i] = _WRONG_LENGTH
            else:
                row = np.array(v, dtype=np.float64)
                if np.isfinite(row).all():
                    out[i] = row
                else:
                    codes[i] = _NOT_NUMERIC
        return out, codes

    def convert(self, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(rows × features) float64 attributions, NaN rows where unreadable, and a reason
        code per row (:data:`OK`, or an index into :data:`ATTRIBUTION_FAILURE_REASONS`)."""
        n, d = len(values), len(self.features)
        out = np.full((n, d), np.nan)
        codes = np.full(n, OK, dtype=np.int8)
        if n == 0:
            return out, codes
        # the common case: every record an array of d numbers, one conversion in C
        if all(type(v) is list and len(v) == d for v in values) and _fill_clean(values, out, codes):
            return out, codes
        features = self.features
        if all(type(v) is dict for v in values):  # objects: one conversion in C when clean
            rows = [list(map(v.get, features)) for v in values]
            if _fill_clean(rows, out, codes):  # a None (absent) or text is not clean
                return out, codes
        for i, v in enumerate(values):
            row, code = _one(v, features, d)
            if row is None:
                codes[i] = code
            else:
                out[i] = row
        return out, codes


def _fill_clean(rows: Sequence[Any], out: np.ndarray, codes: np.ndarray) -> bool:
    """Rows of numbers (no booleans) into ``out`` in one conversion, non-finite rows coded
    ``not_numeric``; False, and nothing written, when any value is not a number."""
    try:
        arr = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if _has_bool(rows):
        return False
    finite = np.isfinite(arr).all(axis=1)
    out[finite] = arr[finite]
    codes[~finite] = _NOT_NUMERIC
    return True


def _one(v: Any, features: tuple[str, ...], d: int) -> tuple[np.ndarray | None, int]:
    """One record's attributions, or None and the reason code."""
    if v is None or v is UNSET:
        return None, _MISSING
    if type(v) is dict:
        items = [v.get(f, UNSET) for f in features]
        if any(x is UNSET for x in items):
            return None, _MISSING_FEATURE
    elif type(v) is list:
        if len(v) != d:
            return None, _WRONG_LENGTH
        items = v
    else:
        return None, _BAD_TYPE
    if not all(type(x) in _NUMBERS for x in items):
        return None, _NOT_NUMERIC
    try:
        row = np.array(items, dtype=np.float64)
    except (OverflowError, ValueError):  # an integer beyond float64
        return None, _NOT_NUMERIC
    if not np.isfinite(row).all():
        return None, _NOT_NUMERIC
    return row, OK


def _has_bool(values: Sequence[list]) -> bool:
    """Whether any array holds a boolean (numpy would read True as 1.0)."""
    return any(bool in set(map(type, v)) for v in values)


def missing_rows(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The attributions and codes of ``n`` rows that logged none."""
    return np.full((n, d), np.nan), np.full(n, _MISSING, dtype=np.int8)


def reason_counts(codes: np.ndarray) -> dict[str, int]:
    """Rows per failure reason (readable rows are not counted)."""
    bad = codes[codes >= 0]
    if not len(bad):
        return {}
    counts = np.bincount(bad, minlength=len(ATTRIBUTION_FAILURE_REASONS))
    return {r: int(c) for r, c in zip(ATTRIBUTION_FAILURE_REASONS, counts, strict=True) if c}


def frame_attributions(
    frame: pd.DataFrame, spec: str, features: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Attributions from a table (training data, a replayed file): ``spec`` names one
    column holding an object or array per row (a dotted path reads into objects, as in
    JSON lines), or, ending in ``*``, a prefix of one flat column per feature
    (``shap_*`` reads ``shap_<feature>``). Returns the matrix, the reason codes and the
    table's columns that held attributions (they are not features)."""
    if spec.endswith("*"):
        prefix = spec[:-1]
        wanted = [prefix + f for f in features]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(
                f"no column {missing[0]!r} for the attributions of "
                f"{features[wanted.index(missing[0])]!r} ({spec!r} reads {prefix}<feature>)"
            )
        values = [
            [None if _isna(x) else x for x in row]
            for row in frame[wanted].itertuples(index=False, name=None)
        ]
        out, codes = AttributionField(spec, tuple(features)).convert(values)
        empty = np.array([all(x is None for x in row) for row in values], dtype=bool)
        codes[empty] = _MISSING  # no attribution in any of the row's columns
        return out, codes, wanted
    field = AttributionField(spec, tuple(features))
    if field.head not in frame.columns:
        raise ValueError(
            f"no column {field.head!r} of attributions (an object or array per row, or "
            "PREFIX* for one column per feature)"
        )
    raw = frame[field.head].tolist()
    values = [_plain(field.below_head(_plain(v))) for v in raw]
    out, codes = field.convert(values)
    return out, codes, [field.head]


def _isna(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def _plain(v: Any) -> Any:
    """A table cell as JSON would hold it: numpy arrays and Parquet lists as lists,
    missing values (NaN in a column of objects) as None."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, np.floating | np.integer):
        return v.item()
    return v


__all__ = [
    "ATTRIBUTION_FAILURE_REASONS",
    "OK",
    "AttributionField",
    "frame_attributions",
    "missing_rows",
    "reason_counts",
]
