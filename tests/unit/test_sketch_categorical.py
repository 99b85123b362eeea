"""The sketch's categorical coding (distinct values hash-coded in C, then looked up once
each) counts exactly what coding every value on its own through ``category_strings``
counts: text, unseen text, missing values, and numbers or booleans that equal each other
as Python values (1, 1.0, True) but are different categories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.profile import build_profile, category_strings
from detectors.schema import Schema
from detectors.sketch import WindowSketch

VOCAB = ["a", "b", "c", "1", "True", "2.5"]
PROFILE = build_profile(
    pd.DataFrame({"cat": VOCAB * 20 + ["rare"] * 2, "x": np.arange(122.0)}),
    schema=Schema.build(numeric=["x"], categorical=["cat"]),
)
VALUES = st.sampled_from(
    [*VOCAB, "rare", "new", "", None, float("nan"), 1, 1.0, True, 2.5, 0, False]
)


def expected(values: list[Any]) -> tuple[np.ndarray, int]:
    """Counts per bin and missing count, coding each value on its own."""
    cp = PROFILE.categorical["cat"]
    width = PROFILE.categorical_width
    counts = np.zeros(width, dtype=np.int64)
    missing = 0
    for v in values:
        arr = np.empty(1, dtype=object)
        arr[0] = v
        strings, miss = category_strings(arr)
        if miss[0]:
            missing += 1
        elif strings[0] in cp.vocabulary:
            counts[cp.vocabulary.index(strings[0])] += 1
        elif strings[0] in cp.known:
            counts[width - 2] += 1
        else:
            counts[width - 1] += 1
    return counts, missing


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=300))
def test_vectorised_coding_counts_what_per_value_coding_counts(values: list[Any]) -> None:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    sketch = WindowSketch(PROFILE, seed=0)
    sketch.update({"cat": column, "x": np.zeros(len(values))})
    counts, missing = expected(values)
    np.testing.assert_array_equal(sketch.cat_counts[0], counts)
    assert int(sketch.cat_missing[0]) == missing


def test_unhashable_values_take_the_per_value_path() -> None:
    column = np.empty(3, dtype=object)
    column[:] = ["a", ["x"], None]
    sketch = WindowSketch(PROFILE, seed=0)
    sketch.update({"cat": column, "x": np.zeros(3)})
    assert int(sketch.cat_counts[0].sum()) + int(sketch.cat_missing[0]) == 3
