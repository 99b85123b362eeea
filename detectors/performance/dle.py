"""Direct Loss Estimation (DLE) for regressors: a model of each row's error, learnt on the
labelled reference from the features and the prediction, whose mean over a window
estimates the window's MAE, RMSE and MAPE before any label arrives. This module holds the
fitted models; ``fit_dle`` (detectors/performance/learn.py) fits them.

As in NannyML's DLE, one model per loss — absolute error, squared error and absolute
percentage error — so that e.g. the RMSE estimate is the root of the mean predicted
squared error (not the square of a mean absolute one). The models are the small boosted
trees of ``detectors.performance.gbdt`` on binned inputs: numeric features cut at
reference quantiles, categorical features over their most frequent categories, with a
bin for missing values and one for unseen categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.categories import category_strings
from detectors.performance.gbdt import BoostedTrees

BINS = 32  # codes: 0 missing, 1..30 values, 31 unseen / above
PREDICTION = "__prediction__"
LOSSES = ("mae", "rmse", "mape")
EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True, eq=False)
class _Encoder:
    name: str
    edges: np.ndarray | None  # numeric: interior quantile edges
    vocabulary: tuple[str, ...] = ()

    def codes(self, values: Any) -> np.ndarray:
        if self.edges is not None:
            x = _floats(values)
            code = np.searchsorted(self.edges, x, side="left") + 1
            return np.where(np.isnan(x), 0, np.minimum(code, BINS - 1))
        strings, miss = category_strings(values)
        lookup = {v: i + 1 for i, v in enumerate(self.vocabulary)}
        code = np.array([lookup.get(s, BINS - 1) for s in strings.tolist()], dtype=np.int64)
        return np.where(miss, 0, code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "edges": None if self.edges is None else self.edges.tolist(),
            "vocabulary": list(self.vocabulary),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Encoder:
        edges = None if d["edges"] is None else np.asarray(d["edges"], dtype=np.float64)
        return cls(d["name"], edges, tuple(d["vocabulary"]))


@dataclass(frozen=True, eq=False)
class DleModel:
    """Binned inputs and one boosted-tree model per loss."""

    encoders: tuple[_Encoder, ...]
    models: dict[str, BoostedTrees]

    def encode(self, columns: dict[str, Any], prediction: np.ndarray) -> np.ndarray:
        n = len(prediction)
        out = np.zeros((n, len(self.encoders)), dtype=np.int64)
        for j, enc in enumerate(self.encoders):
            if enc.name == PREDICTION:
                out[:, j] = enc.codes(prediction)
            elif enc.name in columns:
                out[:, j] = enc.codes(columns[enc.name])
        return out

    def predict(self, columns: dict[str, Any], prediction: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted per-row loss for each of ``LOSSES`` (clipped at zero)."""
        codes = self.encode(columns, prediction)
        return {k: np.maximum(m.predict(codes), 0.0) for k, m in self.models.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoders": [e.to_dict() for e in self.encoders],
            "models": {k: m.to_dict() for k, m in self.models.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DleModel:
        return cls(
            tuple(_Encoder.from_dict(e) for e in d["encoders"]),
            {k: BoostedTrees.from_dict(m) for k, m in d["models"].items()},
        )


def _floats(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    out = np.full(len(arr), np.nan)
    for i, v in enumerate(arr.tolist()):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = float(v)
    return out
