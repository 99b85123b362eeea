"""Schemas: what a column is, given or inferred, and why inference decided what it did."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.schema import (
    CATEGORICAL_MAX_DISTINCT_INTEGERS,
    Column,
    Kind,
    Role,
    Schema,
    SchemaError,
    as_float_array,
    infer_schema,
)


def test_build_orders_columns_and_assigns_kinds_and_roles() -> None:
    schema = Schema.build(
        numeric=["a", "b"],
        categorical=["c"],
        prediction_numeric=["score"],
        prediction_categorical=["label"],
    )
    assert schema.names == ["a", "b", "c", "score", "label"]
    assert [c.name for c in schema.numeric()] == ["a", "b", "score"]
    assert [c.name for c in schema.categorical()] == ["c", "label"]
    assert [c.name for c in schema.features()] == ["a", "b", "c"]
    assert [c.name for c in schema.predictions()] == ["score", "label"]
    assert schema.column("label") == Column("label", Kind.CATEGORICAL, Role.PREDICTION)


def test_unknown_column_lookup_raises_key_error() -> None:
    with pytest.raises(KeyError, match="nope"):
        Schema.build(numeric=["a"]).column("nope")


def test_duplicate_names_are_rejected_by_name() -> None:
    with pytest.raises(SchemaError, match=r"\['a'\]"):
        Schema.build(numeric=["a", "b"], categorical=["a"])


def test_empty_schema_is_rejected() -> None:
    with pytest.raises(SchemaError, match="no columns"):
        Schema(())


def test_dict_round_trip_keeps_every_column() -> None:
    schema = Schema.build(numeric=["x"], categorical=["c"], prediction_categorical=["y"])
    data = schema.to_dict()
    assert data["columns"][2] == {"name": "y", "kind": "categorical", "role": "prediction"}
    assert Schema.from_dict(data) == schema


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"columns": [{"name": "x", "kind": "text", "role": "feature"}]},
        {"columns": [{"name": "x", "kind": "numeric"}]},
        {"columns": "x"},
        {"columns": []},
    ],
)
def test_malformed_schema_dict_raises_schema_error(data: dict) -> None:
    with pytest.raises(SchemaError):
        Schema.from_dict(data)


def test_inference_by_dtype_with_a_reason_per_column() -> None:
    n = 40
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "height": rng.normal(size=n),
            "code": rng.integers(0, 4, n),
            "count": np.arange(n),
            "flag": rng.random(n) < 0.5,
            "colour": rng.choice(["red", "green"], n).astype(object),
            "grade": pd.Categorical(rng.choice(["a", "b"], n)),
            "as_text": [str(v) for v in rng.normal(size=n)],
            "nullable": pd.array([*range(n - 1), None], dtype="Int64"),
        }
    )
    inference = infer_schema(frame)
    kinds = {c.name: c.kind for c in inference.schema.columns}
    assert kinds == {
        "height": Kind.NUMERIC,
        "code": Kind.CATEGORICAL,
        "count": Kind.NUMERIC,
        "flag": Kind.CATEGORICAL,
        "colour": Kind.CATEGORICAL,
        "grade": Kind.CATEGORICAL,
        "as_text": Kind.NUMERIC,
        "nullable": Kind.NUMERIC,
    }
    assert set(inference.reasons) == set(frame.columns)
    assert "4 distinct" in inference.reasons["code"]
    assert "boolean" in inference.reasons["flag"]
    assert "parse as numbers" in inference.reasons["as_text"]
    assert all(c.role is Role.FEATURE for c in inference.schema.columns)
    assert inference.describe().splitlines()[0].startswith("height: numeric")


def test_integer_code_threshold_is_inclusive() -> None:
    k = CATEGORICAL_MAX_DISTINCT_INTEGERS
    frame = pd.DataFrame({"at": np.arange(3 * k) % k, "above": np.arange(3 * k) % (k + 1)})
    schema = infer_schema(frame).schema
    assert schema.column("at").kind is Kind.CATEGORICAL
    assert schema.column("above").kind is Kind.NUMERIC


def test_booleans_with_missing_values_are_categorical() -> None:
    # JSON booleans with nulls arrive as an object column; they are flags, not 0/1 numbers.
    frame = pd.DataFrame({"flag": [True, False, None, True]})
    assert frame["flag"].dtype == object
    inference = infer_schema(frame)
    assert inference.schema.column("flag").kind is Kind.CATEGORICAL
    assert "boolean" in inference.reasons["flag"]


def test_dates_and_times_are_left_out_with_a_reason() -> None:
    n = 10
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="h"),
            "ts_utc": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "wait": pd.to_timedelta(np.arange(n), unit="s"),
            "day": [pd.Timestamp("2024-01-01").date()] * n,
            "x": np.arange(n, dtype=float),
        }
    )
    inference = infer_schema(frame)
    assert inference.schema.names == ["x"]
    for name in ("ts", "ts_utc", "wait", "day"):
        assert "left out" in inference.reasons[name]


def test_prediction_recognised_by_name_case_insensitively() -> None:
    frame = pd.DataFrame({"Prediction": [0.1, 0.9], "score": [1.0, 2.0], "x": [1.0, 2.0]})
    inference = infer_schema(frame)
    roles = {c.name: c.role for c in inference.schema.columns}
    assert roles == {"Prediction": Role.PREDICTION, "score": Role.PREDICTION, "x": Role.FEATURE}
    assert "prediction by its name" in inference.reasons["score"]


def test_named_prediction_overrides_the_name_hints() -> None:
    frame = pd.DataFrame({"score": [1.0, 2.0], "out": [0.0, 1.0]})
    schema = infer_schema(frame, prediction=["out"]).schema
    assert schema.column("out").role is Role.PREDICTION
    assert schema.column("score").role is Role.FEATURE


def test_named_prediction_missing_from_data_is_an_error() -> None:
    with pytest.raises(SchemaError, match="yhat"):
        infer_schema(pd.DataFrame({"x": [1.0]}), prediction=["yhat"])


def test_ignored_columns_are_not_in_the_schema() -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.0, 2.0]})
    inference = infer_schema(frame, ignore=["id"])
    assert inference.schema.names == ["x"]
    assert "id" not in inference.reasons


def test_as_float_array_turns_non_numbers_into_nan() -> None:
    out = as_float_array(np.array([1, "2.5", None, "abc", float("inf")], dtype=object))
    np.testing.assert_array_equal(out, [1.0, 2.5, np.nan, np.nan, np.inf])
    assert as_float_array(np.array([True, False])).tolist() == [1.0, 0.0]
    assert as_float_array(np.arange(3)).dtype == np.float64
