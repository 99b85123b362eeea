"""Which columns a model's traffic has, and what each one is.

A schema names the numeric and categorical features and the prediction column(s). It is
given by the user or inferred from a reference frame; inference says what it decided so
nobody has to guess why a column was treated as categorical.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class Kind(StrEnum):
    """How a column's values are compared: on quantile bins or on category counts."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class Role(StrEnum):
    """Whether a column is a model input or a model output."""

    FEATURE = "feature"
    PREDICTION = "prediction"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    role: Role = Role.FEATURE

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind.value, "role": self.role.value}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Column:
        return cls(name=data["name"], kind=Kind(data["kind"]), role=Role(data["role"]))


class SchemaError(ValueError):
    """A schema that cannot describe the data it is applied to."""


@dataclass(frozen=True)
class Schema:
    """The ordered columns a profile and its window sketches track."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"schema names these columns twice: {dupes}")
        if not self.columns:
            raise SchemaError("schema has no columns: name at least one feature")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def numeric(self) -> list[Column]:
        return [c for c in self.columns if c.kind is Kind.NUMERIC]

    def categorical(self) -> list[Column]:
        return [c for c in self.columns if c.kind is Kind.CATEGORICAL]

    def features(self) -> list[Column]:
        return [c for c in self.columns if c.role is Role.FEATURE]

    def predictions(self) -> list[Column]:
        return [c for c in self.columns if c.role is Role.PREDICTION]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @classmethod
    def build(
        cls,
        numeric: list[str] | tuple[str, ...] = (),
        categorical: list[str] | tuple[str, ...] = (),
        prediction_numeric: list[str] | tuple[str, ...] = (),
        prediction_categorical: list[str] | tuple[str, ...] = (),
    ) -> Schema:
        cols = [Column(n, Kind.NUMERIC) for n in numeric]
        cols += [Column(n, Kind.CATEGORICAL) for n in categorical]
        cols += [Column(n, Kind.NUMERIC, Role.PREDICTION) for n in prediction_numeric]
        cols += [Column(n, Kind.CATEGORICAL, Role.PREDICTION) for n in prediction_categorical]
        return cls(tuple(cols))

    def to_dict(self) -> dict[str, list[dict[str, str]]]:
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict) -> Schema:
        try:
            return cls(tuple(Column.from_dict(c) for c in data["columns"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"malformed schema: {exc!r}") from exc


# A numeric-typed column with at most this many distinct values and only integers is a code,
# not a measurement, when its name gives no other hint: treated as categorical.
CATEGORICAL_MAX_DISTINCT_INTEGERS = 10

# An object (text) column is numeric when at least this share of its non-missing values
# parse as numbers: one stray "n/a" in a column of numbers must not make it categorical
# (every later window would then alarm on unseen categories). The strays are reported in
# the inference reason and profiled as missing. See docs/detectors.md.
NUMERIC_PARSE_SHARE = 0.95
# How many stray values a reason quotes.
_STRAY_EXAMPLES = 3

PREDICTION_NAME_HINTS = ("prediction", "predicted", "pred", "score", "y_pred", "output")


@dataclass(frozen=True)
class Inference:
    """The schema inferred from a frame, with one human-readable reason per column."""

    schema: Schema
    reasons: dict[str, str]

    def describe(self) -> str:
        return "\n".join(f"{name}: {why}" for name, why in self.reasons.items())


# Columns of a table that describe the record, not the model's input: what replay reads as
# the request id, event time and model version (record.*_field defaults).
METADATA_COLUMNS = frozenset({"request_id", "timestamp", "model_version"})


def infer_schema(
    frame: pd.DataFrame,
    prediction: list[str] | tuple[str, ...] | None = None,
    ignore: list[str] | tuple[str, ...] = (),
) -> Inference:
    """Infer kinds and roles from a reference frame.

    Floats are numeric; strings, booleans and categoricals are categorical; integer columns
    with at most ``CATEGORICAL_MAX_DISTINCT_INTEGERS`` distinct values are categorical codes.
    Dates and times (an event time, most often) are left out, with the reason, and so are
    columns named as record metadata (:data:`METADATA_COLUMNS`: request id, event time,
    model version) unless they are named in ``prediction``. Prediction
    columns are the ones named in ``prediction``, or else those whose name is a common
    prediction name (``prediction``, ``score``...).
    """
    reasons: dict[str, str] = {}
    cols: list[Column] = []
    if prediction is not None:
        missing = [p for p in prediction if p not in frame.columns]
        if missing:
            raise SchemaError(f"prediction column(s) {missing} are not in the data")
    for name in frame.columns:
        name = str(name)
        if name in ignore:
            continue
        series = frame[name]
        if name in METADATA_COLUMNS and (prediction is None or name not in prediction):
            reasons[name] = "left out: record metadata (request id, event time, model version)"
            continue
        if _is_temporal(series):
            reasons[name] = "left out: dates or times are not compared as a feature"
            continue
        if prediction is not None:
            role = Role.PREDICTION if name in prediction else Role.FEATURE
            role_why = "named as prediction" if role is Role.PREDICTION else ""
        else:
            is_pred = name.lower() in PREDICTION_NAME_HINTS
            role = Role.PREDICTION if is_pred else Role.FEATURE
            role_why = "prediction by its name" if is_pred else ""
        kind, kind_why = _infer_kind(series)
        cols.append(Column(name, kind, role))
        reasons[name] = "; ".join(w for w in (kind_why, role_why) if w)
    return Inference(Schema(tuple(cols)), reasons)


def _infer_kind(series: pd.Series) -> tuple[Kind, str]:
    import pandas as pd  # reference building only: the agent's path stays without pandas

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return Kind.CATEGORICAL, "categorical: boolean"
    if isinstance(dtype, pd.CategoricalDtype):
        return Kind.CATEGORICAL, "categorical: pandas category dtype"
    if pd.api.types.is_integer_dtype(dtype):
        distinct = series.nunique(dropna=True)
        if distinct <= CATEGORICAL_MAX_DISTINCT_INTEGERS:
            return Kind.CATEGORICAL, f"categorical: integer with {distinct} distinct values"
        return Kind.NUMERIC, f"numeric: integer with {distinct} distinct values"
    if pd.api.types.is_float_dtype(dtype):
        return Kind.NUMERIC, "numeric: float"
    # Object columns: numeric when nearly every non-missing value parses as a number.
    values = series.dropna()
    if len(values) and pd.api.types.infer_dtype(values, skipna=True) == "boolean":
        # Booleans with missing values come as objects; to_numeric would take them as 0/1.
        return Kind.CATEGORICAL, "categorical: boolean"
    if not len(values):
        return Kind.CATEGORICAL, "categorical: text values"
    parsed = pd.to_numeric(values, errors="coerce")
    parses = parsed.notna().to_numpy()
    n, good = len(values), int(parses.sum())
    if good == n:
        return _parsed_kind(parsed, "numeric: object column whose values all parse as numbers")
    share = good / n
    if share >= NUMERIC_PARSE_SHARE:
        strays = values[~parses]
        examples = ", ".join(repr(str(v)) for v in strays.unique()[:_STRAY_EXAMPLES])
        more = ", ..." if strays.nunique() > _STRAY_EXAMPLES else ""
        why = (
            f"numeric: {good:,} of {n:,} values parse as numbers ({share:.2%}, at least "
            f"{NUMERIC_PARSE_SHARE:.0%}); {n - good:,} stray value(s) profiled as missing: "
            f"{examples}{more}"
        )
        return _parsed_kind(parsed, why)
    if good:
        return Kind.CATEGORICAL, (
            f"categorical: text values (only {share:.1%} parse as numbers; numeric needs "
            f"{NUMERIC_PARSE_SHARE:.0%})"
        )
    return Kind.CATEGORICAL, "categorical: text values"


def _parsed_kind(parsed: pd.Series, why: str) -> tuple[Kind, str]:
    """Numbers written as text follow the rule of numeric columns: a few distinct
    integers are codes (categorical), anything else is numeric."""
    numbers = parsed.dropna().to_numpy(dtype=np.float64)
    integral = bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))
    distinct = len(np.unique(numbers))
    if integral and distinct <= CATEGORICAL_MAX_DISTINCT_INTEGERS:
        return Kind.CATEGORICAL, f"categorical: text of integers with {distinct} distinct values"
    return Kind.NUMERIC, why


def _is_temporal(series: pd.Series) -> bool:
    """Datetime or timedelta values, by dtype or (object columns) by content."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return True
    if isinstance(dtype, pd.PeriodDtype):
        return True
    if pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(series, skipna=True)
        return kind in ("datetime", "datetime64", "date", "time", "timedelta", "period")
    return False


def as_float_array(values: object) -> np.ndarray:
    """Coerce a column to float64, with NaN where a value is missing or not a number."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)
    import pandas as pd  # text and mixed columns only (docs/architecture.md, footprint)

    return pd.to_numeric(pd.Series(arr, dtype=object), errors="coerce").to_numpy(np.float64)
