"""Shared data for the unit tests: a small reference set with the shapes that break binning.

``make_reference(n, seed)`` is the one generator; the fixtures hand it (and a schema that
reads the tie-heavy integer column as numeric) to the tests. Plain functions are handed
out through session-scoped fixtures so hypothesis tests can use them too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from detectors.schema import Schema

# Numeric features, one per shape that has broken quantile binning somewhere.
NUMERIC_COLUMNS = ("normal", "lognormal", "uniform", "ties", "constant", "with_nan")
CATEGORICAL_COLUMNS = ("city", "device")
PREDICTION_COLUMN = "prediction"
# Long tail of the "city" column: Zipf-like weights over this many names, so the default
# top-100 vocabulary leaves a non-empty "other" bucket.
CITY_NAMES = 300


def make_reference(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A reference frame of ``n`` rows, the same for the same ``seed``.

    - ``normal``, ``lognormal`` (skewed), ``uniform``: continuous floats;
    - ``ties``: integers 0..4 (int64), so most values are ties; inferred as a categorical
      code unless a schema says numeric (see ``reference_schema``);
    - ``constant``: 1.5 in every row;
    - ``with_nan``: normal floats with about 10% NaN;
    - ``city``: text with a long tail (``CITY_NAMES`` names, Zipf weights), about 2% missing;
    - ``device``: three common values and one rare one, no missing;
    - ``prediction``: a score in (0, 1) that depends on ``normal`` and ``ties``.
    """
    rng = np.random.default_rng(seed)
    normal = rng.normal(10.0, 2.0, n)
    ties = rng.integers(0, 5, n)
    with_nan = rng.normal(0.0, 1.0, n)
    with_nan[rng.random(n) < 0.1] = np.nan
    weights = 1.0 / np.arange(1, CITY_NAMES + 1)
    city = rng.choice([f"city_{i:03d}" for i in range(CITY_NAMES)], n, p=weights / weights.sum())
    city = np.where(rng.random(n) < 0.02, None, city).astype(object)
    device = rng.choice(["web", "ios", "android", "kiosk"], n, p=[0.5, 0.3, 0.19, 0.01])
    logit = 0.8 * (normal - 10.0) / 2.0 + 0.3 * (ties - 2)
    return pd.DataFrame(
        {
            "normal": normal,
            "lognormal": rng.lognormal(0.0, 1.0, n),
            "uniform": rng.uniform(-1.0, 1.0, n),
            "ties": ties,
            "constant": np.full(n, 1.5),
            "with_nan": with_nan,
            "city": city,
            "device": device.astype(object),
            PREDICTION_COLUMN: 1.0 / (1.0 + np.exp(-logit)),
        }
    )


def reference_schema() -> Schema:
    """The schema of ``make_reference`` with ``ties`` as numeric (inference calls it a code)."""
    return Schema.build(
        numeric=NUMERIC_COLUMNS,
        categorical=CATEGORICAL_COLUMNS,
        prediction_numeric=(PREDICTION_COLUMN,),
    )


@pytest.fixture(scope="session")
def reference_factory() -> Callable[[int, int], pd.DataFrame]:
    """``make_reference`` itself, for tests that need several sizes or seeds."""
    return make_reference


@pytest.fixture(scope="session")
def reference_frame() -> pd.DataFrame:
    """2000 rows of ``make_reference(seed=0)``; treat as read-only (shared by the session)."""
    return make_reference(2000, 0)


@pytest.fixture(scope="session")
def explicit_schema() -> Schema:
    """``reference_schema()``: the reference columns with ``ties`` numeric."""
    return reference_schema()
