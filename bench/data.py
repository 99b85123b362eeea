"""Seeded synthetic model traffic for the benchmarks: a reference set and drifting windows.

Twenty numeric features of deliberately awkward shapes (heavy tails, bimodality, heavy
ties, zero inflation, point masses at clip bounds), five categorical features (from three
values to a 200-value Zipf tail) and a model score computed from two of the features.
Each scenario changes a documented subset of columns, so a benchmark can score which
columns a detector flags against which columns really changed.

Same seed, same rows: ``window(10_000, "shift_0.25", seed=3)`` is identical on every
machine with the same numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from detectors.profile import MISSING as _NONE
from detectors.schema import Schema

REFERENCE_ROWS = 100_000
REFERENCE_SEED = 0
PREDICTION = "prediction"

NUMERIC: tuple[str, ...] = (
    "num_normal",  # N(0, 1)
    "num_normal_wide",  # N(100, 15)
    "num_lognormal",  # lognormal(0, 1): heavy right tail
    "num_pareto",  # 1 + Pareto(3): heavier right tail
    "num_uniform",  # U(0, 1)
    "num_bimodal",  # 40% N(-2, 0.5), 60% N(2, 1)
    "num_exponential",  # Exp(scale 2)
    "num_student_t",  # Student t, 3 degrees of freedom
    "num_gamma",  # Gamma(2, 2)
    "num_beta",  # Beta(2, 5)
    "num_int_0_4",  # Binomial(4, 0.4): five values, heavy ties
    "num_zero_inflated",  # 70% zeros, else 1 + Poisson(3)
    "num_rounded",  # round(N(50, 10)): integers
    "num_rounded_1dp",  # lognormal(1, 0.5) rounded to one decimal
    "num_poisson",  # Poisson(10)
    "num_sparse",  # 95% zeros, else Exp(1)
    "num_laplace",  # Laplace(0, 1), 0.5% missing in every frame
    "num_weibull",  # Weibull(1.5)
    "num_chisq",  # chi-square, 2 degrees of freedom
    "num_clipped",  # N(0, 1) clipped to [-1, 1]: point masses at both bounds
)

CATEGORICAL: tuple[str, ...] = (
    "cat_few",  # 3 values, 60/30/10
    "cat_zipf",  # 200 values, Zipf(1.1) long tail
    "cat_bool",  # "true"/"false", 70/30
    "cat_medium",  # 20 values, near uniform
    "cat_country",  # 12 values, one at 55%; 0.5% missing in every frame
)

# The model score reads these two features, so drift in them shows in the predictions.
PREDICTION_INPUTS: tuple[str, ...] = ("num_normal", "num_exponential")

SHIFTED: tuple[str, ...] = (
    "num_normal",
    "num_normal_wide",
    "num_lognormal",
    "num_uniform",
    "num_bimodal",
    "num_exponential",
    "num_student_t",
    "num_int_0_4",
    "num_zero_inflated",
    "num_rounded",
)
VARIANCE_CHANGED: tuple[str, ...] = (
    "num_normal",
    "num_lognormal",
    "num_uniform",
    "num_gamma",
    "num_laplace",
    "num_rounded_1dp",
)
VARIANCE_FACTOR = 1.5
NEW_CATEGORY_COLUMNS: tuple[str, ...] = ("cat_few", "cat_zipf")
NEW_CATEGORY_SHARE = 0.2
NEW_CATEGORY = "new_value"
MISSING_COLUMNS: tuple[str, ...] = ("num_normal_wide", "num_gamma", "num_poisson", "cat_medium")
MISSING_SHARE = 0.3
BASE_MISSING_SHARE = 0.005

COLUMNS: tuple[str, ...] = (*NUMERIC, *CATEGORICAL, PREDICTION)


@dataclass(frozen=True)
class Scenario:
    """One way the current window differs from the reference.

    ``drift`` holds the columns whose distribution of present values changes (what a drift
    test should flag); ``quality`` the columns whose missing or unseen-category rate
    changes (what a quality check should flag).
    """

    name: str
    description: str
    drift: frozenset[str] = frozenset()
    quality: frozenset[str] = frozenset()


def _with_prediction(columns: tuple[str, ...]) -> frozenset[str]:
    touched = set(columns)
    if touched & set(PREDICTION_INPUTS):
        touched.add(PREDICTION)
    return frozenset(touched)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("no_drift", "a fresh sample from the reference distributions"),
        *(
            Scenario(
                f"shift_{k}",
                f"+{k} reference std added to {len(SHIFTED)} numeric columns",
                _with_prediction(SHIFTED),
            )
            for k in ("0.1", "0.25", "0.5")
        ),
        Scenario(
            "variance",
            f"spread around the reference mean ×{VARIANCE_FACTOR} in "
            f"{len(VARIANCE_CHANGED)} numeric columns",
            _with_prediction(VARIANCE_CHANGED),
        ),
        Scenario(
            "new_category",
            f"{NEW_CATEGORY_SHARE:.0%} of rows take a never-seen value in "
            f"{', '.join(NEW_CATEGORY_COLUMNS)}",
            frozenset(NEW_CATEGORY_COLUMNS),
            frozenset(NEW_CATEGORY_COLUMNS),
        ),
        Scenario(
            "missing_spike",
            f"{MISSING_SHARE:.0%} of values missing in {', '.join(MISSING_COLUMNS)}",
            frozenset(),
            frozenset(MISSING_COLUMNS),
        ),
    )
}


def schema() -> Schema:
    """The column kinds, given rather than inferred (the integer columns are measurements)."""
    return Schema.build(numeric=NUMERIC, categorical=CATEGORICAL, prediction_numeric=[PREDICTION])


def reference(rows: int = REFERENCE_ROWS, seed: int = REFERENCE_SEED) -> pd.DataFrame:
    """The reference (training) frame."""
    return window(rows, "no_drift", seed=seed)


def window(
    rows: int, scenario: str = "no_drift", seed: int = 1, reference_seed: int = REFERENCE_SEED
) -> pd.DataFrame:
    """A current window of ``rows`` rows under ``scenario`` (a key of ``SCENARIOS``).

    Shifts and scale changes are in units of the reference's own mean and standard
    deviation (the reference drawn with ``reference_seed``), so "0.25 std" means the same
    for a Student t as for a uniform.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {sorted(SCENARIOS)}")
    rng = np.random.default_rng(seed)
    num = _numeric(rng, rows)
    cat = _categorical(rng, rows)
    if scenario.startswith("shift_"):
        k = float(scenario.removeprefix("shift_"))
        std = _reference_moments(reference_seed)[1]
        for name in SHIFTED:
            num[name] = num[name] + k * std[name]
    elif scenario == "variance":
        mean, std = _reference_moments(reference_seed)
        for name in VARIANCE_CHANGED:
            num[name] = mean[name] + VARIANCE_FACTOR * (num[name] - mean[name])
    elif scenario == "new_category":
        for name in NEW_CATEGORY_COLUMNS:
            cat[name] = np.where(rng.random(rows) < NEW_CATEGORY_SHARE, NEW_CATEGORY, cat[name])
    pred = _predict(num, rng)
    if scenario == "missing_spike":
        for name in MISSING_COLUMNS:
            hole = rng.random(rows) < MISSING_SHARE
            if name in num:
                num[name] = np.where(hole, np.nan, num[name])
            else:
                cat[name] = np.where(hole, _NONE, cat[name])
    return pd.DataFrame({**num, **cat, PREDICTION: pred}, columns=list(COLUMNS))


def _numeric(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    bimodal_low = rng.random(n) < 0.4
    zero_inflated = np.where(rng.random(n) < 0.7, 0.0, 1.0 + rng.poisson(3.0, n))
    sparse = np.where(rng.random(n) < 0.95, 0.0, rng.exponential(1.0, n))
    laplace = rng.laplace(0.0, 1.0, n)
    laplace[rng.random(n) < BASE_MISSING_SHARE] = np.nan
    cols = {
        "num_normal": rng.normal(0.0, 1.0, n),
        "num_normal_wide": rng.normal(100.0, 15.0, n),
        "num_lognormal": rng.lognormal(0.0, 1.0, n),
        "num_pareto": 1.0 + rng.pareto(3.0, n),
        "num_uniform": rng.random(n),
        "num_bimodal": np.where(bimodal_low, rng.normal(-2.0, 0.5, n), rng.normal(2.0, 1.0, n)),
        "num_exponential": rng.exponential(2.0, n),
        "num_student_t": rng.standard_t(3.0, n),
        "num_gamma": rng.gamma(2.0, 2.0, n),
        "num_beta": rng.beta(2.0, 5.0, n),
        "num_int_0_4": rng.binomial(4, 0.4, n).astype(np.float64),
        "num_zero_inflated": zero_inflated,
        "num_rounded": np.round(rng.normal(50.0, 10.0, n)),
        "num_rounded_1dp": np.round(rng.lognormal(1.0, 0.5, n), 1),
        "num_poisson": rng.poisson(10.0, n).astype(np.float64),
        "num_sparse": sparse,
        "num_laplace": laplace,
        "num_weibull": rng.weibull(1.5, n),
        "num_chisq": rng.chisquare(2.0, n),
        "num_clipped": np.clip(rng.normal(0.0, 1.0, n), -1.0, 1.0),
    }
    return {name: cols[name] for name in NUMERIC}


def _labels(prefix: str, k: int) -> np.ndarray:
    return np.array([f"{prefix}{i:03d}" for i in range(k)], dtype=object)


def _choice(rng: np.random.Generator, labels: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    # Index draws then a take: rng.choice on object arrays is slow for millions of rows.
    idx = np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right")
    return labels[np.minimum(idx, len(labels) - 1)]


def _categorical(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    zipf_p = 1.0 / np.arange(1, 201) ** 1.1
    country = _choice(
        rng, _labels("cc", 12), np.array([55, 10, 8, 6, 5, 4, 3, 3, 2, 2, 1, 1], float), n
    )
    country[rng.random(n) < BASE_MISSING_SHARE] = None
    return {
        "cat_few": _choice(rng, np.array(["a", "b", "c"], dtype=object), np.array([6, 3, 1.0]), n),
        "cat_zipf": _choice(rng, _labels("z", 200), zipf_p, n),
        "cat_bool": _choice(rng, np.array(["true", "false"], dtype=object), np.array([7, 3.0]), n),
        "cat_medium": _choice(rng, _labels("m", 20), np.linspace(1.0, 1.5, 20), n),
        "cat_country": country,
    }


def _predict(num: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A model score in (0, 1) from two features and noise."""
    n = len(num["num_normal"])
    logit = 1.2 * num["num_normal"] + 0.3 * (num["num_exponential"] - 2.0) + rng.normal(0, 0.5, n)
    return 1.0 / (1.0 + np.exp(-logit))


@lru_cache(maxsize=4)
def _reference_moments(seed: int) -> tuple[dict[str, float], dict[str, float]]:
    ref = _numeric(np.random.default_rng(seed), REFERENCE_ROWS)
    mean = {k: float(np.nanmean(v)) for k, v in ref.items()}
    std = {k: float(np.nanstd(v, ddof=1)) for k, v in ref.items()}
    return mean, std
