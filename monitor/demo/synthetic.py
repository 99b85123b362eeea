"""A synthetic credit-scoring model whose traffic drifts on a schedule.

Used by ``driftline demo`` and by the agent's benchmarks and tests: it makes a reference
set, then prediction records whose features change at known times — a mean shift, a new
category and a missing-value spike — so that what the agent finds can be checked against
what was injected.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

NUMERIC = ("age", "income", "tenure_months", "balance", "num_products", "credit_score")
CATEGORICAL = ("country", "channel")
COUNTRIES = ("DE", "FR", "ES", "IT", "NL")
COUNTRY_P = (0.35, 0.25, 0.15, 0.15, 0.10)
CHANNELS = ("web", "app", "branch")
CHANNEL_P = (0.5, 0.35, 0.15)


@dataclass(frozen=True)
class Drift:
    """One injected change: from ``at`` seconds into the run, on ``feature``."""

    at: float
    kind: str  # "mean_shift" | "new_category" | "missing_spike"
    feature: str
    description: str


DEFAULT_SCHEDULE = (
    Drift(20.0, "mean_shift", "income", "income mean +0.8 std (and the score with it)"),
    Drift(40.0, "new_category", "country", "new country 'PL' in 30% of requests"),
    Drift(60.0, "missing_spike", "balance", "balance missing in 40% of requests"),
)


def features(n: int, rng: np.random.Generator, active: tuple[Drift, ...] = ()) -> pd.DataFrame:
    """``n`` rows of model inputs with the active drifts applied."""
    kinds = {d.kind for d in active}
    income = rng.lognormal(mean=10.6, sigma=0.45, size=n)
    if "mean_shift" in kinds:
        income = income + 0.8 * 20_000.0
    country = rng.choice(COUNTRIES, size=n, p=COUNTRY_P).astype(object)
    if "new_category" in kinds:
        country[rng.random(n) < 0.3] = "PL"
    balance = rng.gamma(shape=2.0, scale=1500.0, size=n)
    if "missing_spike" in kinds:
        balance[rng.random(n) < 0.4] = np.nan
    return pd.DataFrame(
        {
            "age": np.clip(rng.normal(41, 12, n), 18, 95).round(),
            "income": income.round(2),
            "tenure_months": rng.poisson(24, n).astype(float),
            "balance": balance.round(2),
            "num_products": rng.integers(1, 5, n).astype(float),
            "credit_score": np.clip(rng.normal(650, 80, n), 300, 850).round(),
            "country": country,
            "channel": rng.choice(CHANNELS, size=n, p=CHANNEL_P).astype(object),
        }
    )


def predict(frame: pd.DataFrame) -> np.ndarray:
    """The 'model': a fixed logistic score of default risk."""
    z = (
        -2.0
        - 0.025 * (frame["age"] - 41)
        - 0.00004 * (frame["income"] - 42_000)
        + 0.004 * (650 - frame["credit_score"])
        + 0.1 * frame["num_products"]
    )
    return (1.0 / (1.0 + np.exp(-z.to_numpy()))).round(4)


def reference_frame(n: int = 50_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = features(n, rng)
    frame["prediction"] = predict(frame.fillna({"balance": 0.0}))
    return frame


def records(
    frame: pd.DataFrame,
    event_time: np.ndarray,
    model: str,
    version: str,
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """driftline-format prediction records for ``frame``'s rows."""
    preds = predict(frame.fillna({"balance": 0.0}))
    rows = frame.to_dict(orient="records")
    out: list[dict[str, object]] = []
    for row, t, p in zip(rows, event_time, preds, strict=True):
        feats = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        out.append(
            {
                "request_id": uuid.UUID(
                    int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63))
                ).hex,
                "timestamp": float(t),
                "model": model,
                "model_version": version,
                "features": feats,
                "prediction": float(p),
            }
        )
    return out


def active_drifts(schedule: tuple[Drift, ...], elapsed: float) -> tuple[Drift, ...]:
    return tuple(d for d in schedule if elapsed >= d.at)
