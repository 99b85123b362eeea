"""The reference profile: what the training data looked like, in a form a window can be
tested against without the training data.

Numeric columns get bin edges at reference quantiles. Bins are right-closed,
``(e[i-1], e[i]]``, and every interior edge is a value that occurs in the reference, so no
reference bin is empty by construction, whatever the ties (an integer column with five
values gets five bins). Two extra bins hold values below the reference minimum and above
its maximum; their reference count is zero by definition. Categorical columns keep the
top-K categories by frequency, an "other" bucket for the reference's rarer categories and
an "unseen" bucket for categories the reference never had.

A profile is saved as one versioned JSON file (gzip when the name ends in ``.gz``) whose
content hash is checked on load and becomes the ``reference`` label of the metrics.

One column's profile and its builder live in ``detectors/column_profiles.py``, the file's
envelope, size limit and JSON forms in ``detectors/profile_file.py``, the category text
in ``detectors/categories.py`` and data files in ``detectors/frames.py``; this module
puts them together.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.categories import MISSING, category_strings
from detectors.column_profiles import (
    DEFAULT_BINS,
    DEFAULT_MAX_KNOWN_CATEGORIES,
    DEFAULT_TOP_K,
    CategoricalProfile,
    NumericProfile,
    numeric_edges,
    profile_categorical,
    profile_numeric,
)
from detectors.frames import read_frame
from detectors.null_laws import StoredLaw
from detectors.profile_file import (
    MAX_PROFILE_BYTES,
    PROFILE_FORMAT,
    PROFILE_VERSION,
    ProfileError,
    array_from_json,
    array_to_json,
    canonical_json,
    read_profile_file,
    write_profile_file,
)
from detectors.run_length import SequentialCalibration
from detectors.schema import Kind, Schema, SchemaError, as_float_array, infer_schema

if TYPE_CHECKING:
    import pandas as pd

    from detectors.performance.reference import PerformanceReference

# Names other modules import from here, where they are defined.
__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_MAX_KNOWN_CATEGORIES",
    "DEFAULT_SAMPLE_ROWS",
    "DEFAULT_TOP_K",
    "MAX_PROFILE_BYTES",
    "MISSING",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "AttributionProfile",
    "Calibration",
    "CategoricalProfile",
    "NumericProfile",
    "Profile",
    "ProfileError",
    "build_profile",
    "category_strings",
    "load_profile",
    "numeric_edges",
    "profile_categorical",
    "profile_numeric",
    "read_frame",
]

DEFAULT_SAMPLE_ROWS = 5000


@dataclass(frozen=True)
class Calibration:
    """Thresholds measured on the reference itself for windows of about ``window_rows``.

    ``thresholds[column][test]`` is the ``1 - false_alarm_rate`` quantile of the test's
    statistic over reference chunks of the window's size compared with the rest.
    """

    window_rows: int
    false_alarm_rate: float
    draws: int
    thresholds: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_rows": self.window_rows,
            "false_alarm_rate": self.false_alarm_rate,
            "draws": self.draws,
            "thresholds": self.thresholds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        return cls(
            window_rows=int(d["window_rows"]),
            false_alarm_rate=float(d["false_alarm_rate"]),
            draws=int(d["draws"]),
            thresholds={
                c: {t: float(v) for t, v in ts.items()} for c, ts in d["thresholds"].items()
            },
        )


@dataclass(frozen=True, eq=False)
class AttributionProfile:
    """The model's SHAP attributions on the reference sample (see detectors/attribution.py).

    ``mean_abs`` is each feature's global importance (mean |SHAP|, the quantity SageMaker
    Clarify ranks), ``abs_std`` the standard deviation of |SHAP| (the reference mean's
    sampling error in the window's bootstrap), ``mean`` the signed mean (a change in the
    mean prediction splits exactly into changes of these), and ``distributions`` each
    feature's SHAP values binned like a numeric column, for the same drift tests.
    ``model_sha256`` names the model file the attributions came from.
    """

    method: str
    library: str
    features: tuple[str, ...]
    mean_abs: np.ndarray
    abs_std: np.ndarray
    mean: np.ndarray
    expected_value: float
    rows: int
    distributions: dict[str, NumericProfile]
    model_sha256: str = ""
    output: int | None = None

    @property
    def ranking(self) -> tuple[str, ...]:
        """Features by decreasing importance (ties in schema order)."""
        order = np.argsort(-self.mean_abs, kind="stable")
        return tuple(self.features[i] for i in order)

    @property
    def importance(self) -> np.ndarray:
        """Each feature's share of the model's total mean |SHAP| (sums to 1)."""
        total = float(self.mean_abs.sum())
        return self.mean_abs / total if total > 0 else np.zeros_like(self.mean_abs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "library": self.library,
            "features": list(self.features),
            "mean_abs": self.mean_abs.tolist(),
            "abs_std": self.abs_std.tolist(),
            "mean": self.mean.tolist(),
            "expected_value": self.expected_value,
            "rows": self.rows,
            "distributions": [self.distributions[f].to_dict() for f in self.features],
            "model_sha256": self.model_sha256,
            "output": self.output,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttributionProfile:
        features = tuple(d["features"])
        dists = {p["name"]: NumericProfile.from_dict(p) for p in d["distributions"]}
        if set(dists) != set(features):
            raise ValueError("attribution distributions do not match the attribution features")
        arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("mean_abs", "abs_std", "mean")}
        for k, v in arrays.items():
            if v.shape != (len(features),):
                raise ValueError(f"attribution {k} has {v.size} values for {len(features)}")
        return cls(
            method=str(d["method"]),
            library=str(d["library"]),
            features=features,
            expected_value=float(d["expected_value"]),
            rows=int(d["rows"]),
            distributions=dists,
            model_sha256=str(d.get("model_sha256", "")),
            output=None if d.get("output") is None else int(d["output"]),
            **arrays,
        )


@dataclass(frozen=True, eq=False)
class Profile:
    """Everything the detectors need to know about the reference data."""

    schema: Schema
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    rows: int
    bins: int = DEFAULT_BINS
    top_k: int = DEFAULT_TOP_K
    # Row-aligned reference sample (same rows in every column) for exact-mode tests and,
    # later, multivariate tests: numeric as float64 with NaN, categorical as str or None.
    sample: dict[str, np.ndarray] = field(default_factory=dict)
    inference: dict[str, str] = field(default_factory=dict)
    calibrations: tuple[Calibration, ...] = ()
    # The model's attributions on ``sample`` (``reference build --model``); None without.
    attribution: AttributionProfile | None = None
    # What the performance estimators learnt from a labelled reference (``reference build
    # --labels``); None for a profile built without labels.
    performance: PerformanceReference | None = None
    # Run-length curves of the sequential detectors (detectors/sequential_calibration.py).
    sequential: SequentialCalibration | None = None
    # The Wasserstein floor's bridge law, simulated at ``reference build``
    # (detectors/reference_laws.py); None in a profile from before it, simulated at start-up.
    bridge_law: StoredLaw | None = None

    # -- stacked views for the vectorized tests ---------------------------------------

    @cached_property
    def numeric_names(self) -> list[str]:
        return [c.name for c in self.schema.numeric()]

    @cached_property
    def categorical_names(self) -> list[str]:
        return [c.name for c in self.schema.categorical()]

    @cached_property
    def numeric_width(self) -> int:
        """Columns of the stacked numeric count matrix: the most bins of any feature."""
        return max((p.bins for p in self.numeric.values()), default=1)

    @cached_property
    def categorical_width(self) -> int:
        """Columns of the stacked categorical count matrix (vocabulary, other, unseen)."""
        return max((p.bins for p in self.categorical.values()), default=2)

    @cached_property
    def numeric_counts(self) -> np.ndarray:
        """Reference counts, (numeric features × bins), zero-padded on the right.

        Padding after the last (above-range) bin changes no cumulative sum, so one
        ``cumsum(axis=1)`` gives every feature's CDF at once.
        """
        out = np.zeros((len(self.numeric_names), self.numeric_width), dtype=np.int64)
        for i, name in enumerate(self.numeric_names):
            c = self.numeric[name].counts
            out[i, : len(c)] = c
        return out

    @cached_property
    def numeric_bin_means(self) -> np.ndarray:
        """Reference bin means, (numeric features × bins), laid out like
        ``numeric_counts``; NaN for empty bins and the padding."""
        out = np.full((len(self.numeric_names), self.numeric_width), np.nan)
        for i, name in enumerate(self.numeric_names):
            m = self.numeric[name].bin_means
            out[i, : len(m)] = m
        return out

    @cached_property
    def categorical_counts(self) -> np.ndarray:
        """Reference counts, (categorical features × width): vocabulary, zero padding,
        then "other" and "unseen" in the last two columns."""
        out = np.zeros((len(self.categorical_names), self.categorical_width), dtype=np.int64)
        for i, name in enumerate(self.categorical_names):
            c = self.categorical[name].counts
            out[i, : len(c) - 2] = c[:-2]
            out[i, -2:] = c[-2:]
        return out

    # -- identity -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": self.schema.to_dict(),
            "rows": self.rows,
            "bins": self.bins,
            "top_k": self.top_k,
            "numeric": [self.numeric[n].to_dict() for n in self.numeric_names],
            "categorical": [self.categorical[n].to_dict() for n in self.categorical_names],
            "sample": {k: array_to_json(v) for k, v in self.sample.items()},
            "inference": self.inference,
            "calibrations": [c.to_dict() for c in self.calibrations],
        }
        # Each left out when absent, so a profile without it keeps its content hash.
        if self.attribution is not None:
            out["attribution"] = self.attribution.to_dict()
        if self.performance is not None:
            out["performance"] = self.performance.to_dict()
        if self.sequential is not None:
            out["sequential"] = self.sequential.to_dict()
        if self.bridge_law is not None:
            out["bridge_law"] = self.bridge_law.to_dict()
        return out

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical serialisation; what metrics label the reference with."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        schema = Schema.from_dict(d["schema"])
        numeric = {p["name"]: NumericProfile.from_dict(p) for p in d["numeric"]}
        categorical = {p["name"]: CategoricalProfile.from_dict(p) for p in d["categorical"]}
        kinds = {c.name: c.kind for c in schema.columns}
        for name in numeric:
            if kinds.get(name) is not Kind.NUMERIC:
                raise ValueError(f"numeric profile for {name!r}, which the schema does not list")
        for name in categorical:
            if kinds.get(name) is not Kind.CATEGORICAL:
                raise ValueError(f"categorical profile for {name!r} not in the schema")
        sample = {
            k: array_from_json(v, kinds.get(k, Kind.CATEGORICAL)) for k, v in d["sample"].items()
        }
        return cls(
            schema=schema,
            numeric=numeric,
            categorical=categorical,
            rows=int(d["rows"]),
            bins=int(d["bins"]),
            top_k=int(d["top_k"]),
            sample=sample,
            inference=dict(d.get("inference", {})),
            calibrations=tuple(Calibration.from_dict(c) for c in d.get("calibrations", [])),
            attribution=(
                AttributionProfile.from_dict(d["attribution"]) if d.get("attribution") else None
            ),
            performance=_performance_from_dict(d.get("performance")),
            sequential=(
                SequentialCalibration.from_dict(d["sequential"]) if d.get("sequential") else None
            ),
            bridge_law=StoredLaw.from_dict(d["bridge_law"]) if d.get("bridge_law") else None,
        )

    def with_sequential(self, calibration: SequentialCalibration) -> Profile:
        """A copy that holds the sequential detectors' run-length curves."""
        return replace(self, sequential=calibration)

    def with_bridge_law(self, law: StoredLaw) -> Profile:
        """A copy that holds the Wasserstein floor's simulated bridge law."""
        return replace(self, bridge_law=law)

    def with_calibration(self, calibration: Calibration) -> Profile:
        """A copy that also holds ``calibration`` (replacing one for the same window size)."""
        kept = tuple(c for c in self.calibrations if c.window_rows != calibration.window_rows)
        ordered = tuple(sorted((*kept, calibration), key=lambda c: c.window_rows))
        return replace(self, calibrations=ordered)

    def calibration_for(self, window_rows: int) -> Calibration | None:
        """The calibration nearest to ``window_rows`` on a log scale, if any."""
        if not self.calibrations or window_rows <= 0:
            return None
        return min(
            self.calibrations,
            key=lambda c: abs(math.log(c.window_rows) - math.log(window_rows)),
        )

    # -- file I/O -----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the versioned profile file; gzip when the name ends in ``.gz``."""
        return write_profile_file(path, self.to_dict(), self.content_hash)


def load_profile(path: str | Path, *, max_bytes: int = MAX_PROFILE_BYTES) -> Profile:
    """Read and verify a profile file; any problem raises ProfileError naming the file.

    Neither the file nor its decompressed content may exceed ``max_bytes``
    (:data:`MAX_PROFILE_BYTES`): decompression stops there, whatever the file claims.
    """
    path = Path(path)
    envelope = read_profile_file(path, max_bytes)
    try:
        profile = Profile.from_dict(envelope["profile"])
    except (KeyError, TypeError, ValueError, SchemaError) as exc:
        raise ProfileError(f"{path}: profile content is incomplete or malformed: {exc!r}") from exc
    expected = envelope.get("sha256")
    if profile.content_hash != expected:
        raise ProfileError(
            f"{path}: content hash mismatch (file says {expected}, content is "
            f"{profile.content_hash}); the file was altered or corrupted"
        )
    return profile


# -- building --------------------------------------------------------------------------


def build_profile(
    data: pd.DataFrame | str | Path,
    schema: Schema | None = None,
    *,
    prediction: list[str] | None = None,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    max_known_categories: int = DEFAULT_MAX_KNOWN_CATEGORIES,
    seed: int = 0,
) -> Profile:
    """Profile a reference frame (or a Parquet/CSV/JSONL file).

    Without ``schema`` the kinds and roles are inferred (see ``infer_schema``) and the
    reasons are kept in ``Profile.inference``.
    """
    frame = read_frame(data) if isinstance(data, (str, Path)) else data
    if len(frame) == 0:
        what = f"only the columns {list(map(str, frame.columns))[:5]}" if len(frame.columns) else ""
        raise ProfileError(
            "the reference data has no rows"
            + (f" ({what}: a header and nothing else?)" if what else "")
            + "; a reference profile is built from rows of training or validation data"
        )
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    inference: dict[str, str] = {}
    if schema is None:
        inferred = infer_schema(frame, prediction=prediction)
        schema, inference = inferred.schema, inferred.reasons
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise SchemaError(f"schema columns {missing} are not in the reference data")
    numeric = {
        c.name: profile_numeric(c.name, frame[c.name].to_numpy(), bins) for c in schema.numeric()
    }
    categorical = {
        c.name: profile_categorical(c.name, frame[c.name].to_numpy(), top_k, max_known_categories)
        for c in schema.categorical()
    }
    rng = np.random.default_rng(seed)
    n = len(frame)
    take = np.sort(rng.choice(n, size=min(n, sample_rows), replace=False)) if n else np.arange(0)
    sample: dict[str, np.ndarray] = {}
    for c in schema.columns:
        col = frame[c.name].to_numpy()[take]
        if c.kind is Kind.NUMERIC:
            sample[c.name] = as_float_array(col)
        else:
            strings, miss = category_strings(col)
            sample[c.name] = np.where(miss, MISSING, strings).astype(object)
    return Profile(
        schema=schema,
        numeric=numeric,
        categorical=categorical,
        rows=n,
        bins=bins,
        top_k=top_k,
        sample=sample,
        inference=inference,
    )


def _performance_from_dict(d: Mapping[str, Any] | None) -> PerformanceReference | None:
    if d is None:
        return None
    from detectors.performance.reference import PerformanceReference

    return PerformanceReference.from_dict(dict(d))
