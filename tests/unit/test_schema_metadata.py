"""Table columns named request_id, timestamp and model_version are record metadata, not
features, when the schema is inferred."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.profile import build_profile
from detectors.schema import Schema


def _frame() -> pd.DataFrame:
    n = 200
    r = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": 1.7e9 + np.arange(n, dtype=float),  # epoch seconds: numeric
            "model_version": ["v1"] * n,
            "x": r.normal(size=n),
            "score": r.random(n),
        }
    )


def test_metadata_columns_are_left_out_with_the_reason() -> None:
    profile = build_profile(_frame(), prediction=["score"])
    assert profile.schema.names == ["x", "score"]
    for name in ("request_id", "timestamp", "model_version"):
        assert profile.inference[name].startswith("left out: record metadata")


def test_a_schema_can_still_make_them_columns() -> None:
    schema = Schema.build(numeric=["x", "timestamp"], prediction_numeric=["score"])
    profile = build_profile(_frame(), schema)
    assert "timestamp" in profile.schema.names
