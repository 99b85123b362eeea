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
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from detectors.run_length import SequentialCalibration
from detectors.schema import Kind, Schema, SchemaError, as_float_array, infer_schema

if TYPE_CHECKING:
    from detectors.performance.reference import PerformanceReference

PROFILE_FORMAT = "driftline-profile"
PROFILE_VERSION = 1

DEFAULT_BINS = 100
DEFAULT_TOP_K = 100
DEFAULT_SAMPLE_ROWS = 5000
# Categories remembered to tell "rare but seen" from "never seen"; more distinct values
# than this and the rest of the tail counts as unseen.
DEFAULT_MAX_KNOWN_CATEGORIES = 10_000
# The most bytes a profile file may hold once decompressed. A profile of 1,000 columns with
# a 5,000-row sample is about 100 MB of JSON; a gzip "bomb" of 1 MB can expand to
# gigabytes, so decompression stops here instead of exhausting the agent's memory.
MAX_PROFILE_BYTES = 256 << 20


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """Reference distribution of one numeric column.

    ``edges`` are the right-closed bin edges passed to ``np.searchsorted(side="left")``:
    ``edges[0]`` is just below the reference minimum and ``edges[-1]`` is the maximum, so
    bin 0 holds values below the reference range and bin ``len(edges)`` values above it.

    ``bin_means`` is the mean of the reference values in each bin (NaN for an empty bin,
    so always for the two out-of-range bins): where each bin's mass sits, which lets the
    binned Wasserstein distance be exact on tied and integer columns. A profile file
    written before bin means existed loads with every mean NaN (see ``has_bin_means``).
    """

    name: str
    edges: np.ndarray
    counts: np.ndarray
    count: int
    missing: int
    non_finite: int
    min: float
    max: float
    mean: float
    std: float
    bin_means: np.ndarray

    @property
    def bins(self) -> int:
        return len(self.edges) + 1

    @property
    def has_bin_means(self) -> bool:
        """False for a profile loaded from a file that predates per-bin means (a built
        profile always has a non-empty bin, hence a finite mean)."""
        return bool(np.isfinite(self.bin_means).any())

    @property
    def rows(self) -> int:
        return self.count + self.missing + self.non_finite

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "count": self.count,
            "missing": self.missing,
            "non_finite": self.non_finite,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
        }
        # Left out when unknown, so an older file's body (and content hash) is unchanged.
        if self.has_bin_means:
            out["bin_means"] = _array_to_json(self.bin_means)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericProfile:
        return cls(
            name=d["name"],
            edges=np.asarray(d["edges"], dtype=np.float64),
            counts=np.asarray(d["counts"], dtype=np.int64),
            count=int(d["count"]),
            missing=int(d["missing"]),
            non_finite=int(d["non_finite"]),
            min=float(d["min"]),
            max=float(d["max"]),
            mean=float(d["mean"]),
            std=float(d["std"]),
            bin_means=_bin_means_from_json(d.get("bin_means"), len(d["edges"]) + 1),
        )


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """Reference distribution of one categorical column.

    ``counts`` has ``len(vocabulary) + 2`` entries: one per top-K category, then "other"
    (reference categories outside the top K) and "unseen" (zero in the reference).
    """

    name: str
    vocabulary: tuple[str, ...]
    counts: np.ndarray
    known: tuple[str, ...]
    count: int
    missing: int

    @property
    def bins(self) -> int:
        return len(self.vocabulary) + 2

    @property
    def rows(self) -> int:
        return self.count + self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocabulary": list(self.vocabulary),
            "counts": self.counts.tolist(),
            "known": list(self.known),
            "count": self.count,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalProfile:
        return cls(
            name=d["name"],
            vocabulary=tuple(d["vocabulary"]),
            counts=np.asarray(d["counts"], dtype=np.int64),
            known=tuple(d["known"]),
            count=int(d["count"]),
            missing=int(d["missing"]),
        )


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
            "sample": {k: _array_to_json(v) for k, v in self.sample.items()},
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
        return out

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical serialisation; what metrics label the reference with."""
        return hashlib.sha256(_canonical(self.to_dict())).hexdigest()

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
            k: _array_from_json(v, kinds.get(k, Kind.CATEGORICAL)) for k, v in d["sample"].items()
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
        )

    def with_sequential(self, calibration: SequentialCalibration) -> Profile:
        """A copy that holds the sequential detectors' run-length curves."""
        return replace(self, sequential=calibration)

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
        path = Path(path)
        body = self.to_dict()
        envelope = {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "sha256": self.content_hash,
            "profile": body,
        }
        data = orjson.dumps(envelope, option=orjson.OPT_SERIALIZE_NUMPY)
        if path.suffix == ".gz":
            data = gzip.compress(data, mtime=0)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path


def load_profile(path: str | Path, *, max_bytes: int = MAX_PROFILE_BYTES) -> Profile:
    """Read and verify a profile file; any problem raises ProfileError naming the file.

    Neither the file nor its decompressed content may exceed ``max_bytes``
    (:data:`MAX_PROFILE_BYTES`): decompression stops there, whatever the file claims.
    """
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            raise ProfileError(f"{path}: {_too_big(max_bytes)}")
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read reference profile: {exc.strerror}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gunzip(raw, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise ProfileError(f"{path}: truncated or corrupt gzip data: {exc}") from exc
        except ValueError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(
            f"{path}: not a driftline profile (truncated or corrupt JSON: {exc}); "
            "rebuild it with `driftline reference build`"
        ) from exc
    if not isinstance(envelope, dict) or envelope.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"{path}: not a driftline profile (no '{PROFILE_FORMAT}' header)")
    version = envelope.get("version")
    if version != PROFILE_VERSION:
        raise ProfileError(
            f"{path}: profile format version {version!r} is not supported by this driftline "
            f"(it reads version {PROFILE_VERSION}); rebuild it with `driftline reference build`"
        )
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


def _too_big(limit: int) -> str:
    return (
        f"decompresses to more than {limit >> 20} MiB, the most a reference profile may "
        "hold; this is not a profile written by `driftline reference build` (a compressed "
        "bomb?)"
    )


def _gunzip(data: bytes, limit: int) -> bytes:
    """gzip members decompressed, at most ``limit`` bytes (ValueError beyond it)."""
    out = bytearray()
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += member.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise ValueError(_too_big(limit))
        if not member.eof:
            raise EOFError("the gzip stream ends before its last member does")
        data = member.unused_data
    return bytes(out)


# -- building --------------------------------------------------------------------------


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a Parquet, CSV or JSON-lines file into a DataFrame, by its extension."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if not path.exists():
        raise ProfileError(f"{path}: no such file; check the path (relative to {Path.cwd()})")
    if path.is_dir():
        raise ProfileError(f"{path}: is a directory; name a .parquet, .csv or .jsonl file")
    if path.stat().st_size == 0:
        raise ProfileError(
            f"{path}: the file is empty; it needs a header (or JSON objects) and rows of data"
        )
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            return pd.read_parquet(path)
        # Both text readers default to a fast float parser that can be off in the last
        # digit; the profile of a CSV must equal the profile of the frame it was written from.
        if ".csv" in suffixes:
            return pd.read_csv(path, float_precision="round_trip")
        if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
            return pd.read_json(path, lines=True, precise_float=True)
    except pd.errors.EmptyDataError as exc:
        raise ProfileError(
            f"{path}: no columns in the file (blank lines only?); it needs a header line "
            "and rows of data"
        ) from exc
    except (ValueError, OSError) as exc:
        raise ProfileError(f"{path}: cannot read data: {exc}") from exc
    suffix = "".join(path.suffixes) or "no extension"
    raise ProfileError(
        f"{path}: unknown data format ({suffix}); use a .parquet, .csv or .jsonl file "
        "(rename it if it holds one of those)"
    )


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


def numeric_edges(finite: np.ndarray, bins: int) -> np.ndarray:
    """Right-closed edges at reference quantiles, each one a value the data takes.

    ``inverted_cdf`` quantiles are order statistics, so after ``unique`` every interior
    bin ``(e[i-1], e[i]]`` holds at least the value ``e[i]``: heavy ties merge bins
    instead of leaving empty ones.
    """
    lo, hi = float(finite.min()), float(finite.max())
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    inner = np.unique(np.quantile(finite, qs, method="inverted_cdf")) if len(qs) else np.array([])
    inner = inner[(inner >= lo) & (inner < hi)]
    edges = np.concatenate([[np.nextafter(lo, -np.inf)], inner, [hi]])
    return np.unique(edges)


def profile_numeric(name: str, values: np.ndarray, bins: int = DEFAULT_BINS) -> NumericProfile:
    x = as_float_array(values)
    missing = int(np.isnan(x).sum())
    finite_mask = np.isfinite(x)
    non_finite = int((~finite_mask).sum()) - missing
    finite = x[finite_mask]
    if len(finite) == 0:
        raise SchemaError(f"numeric column {name!r} has no finite values in the reference")
    edges = numeric_edges(finite, bins)
    slot = np.searchsorted(edges, finite, side="left")
    counts = np.bincount(slot, minlength=len(edges) + 1)
    sums = np.bincount(slot, weights=finite, minlength=len(edges) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_means = np.where(counts > 0, sums / counts, np.nan)
    return NumericProfile(
        name=name,
        edges=edges,
        counts=counts.astype(np.int64),
        count=len(finite),
        missing=missing,
        non_finite=non_finite,
        min=float(finite.min()),
        max=float(finite.max()),
        mean=float(finite.mean()),
        std=float(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
        bin_means=bin_means,
    )


def profile_categorical(
    name: str,
    values: np.ndarray,
    top_k: int = DEFAULT_TOP_K,
    max_known: int = DEFAULT_MAX_KNOWN_CATEGORIES,
) -> CategoricalProfile:
    strings, miss = category_strings(values)
    present = pd.Series(strings[~miss])
    freq = present.value_counts(sort=False)
    # Most frequent first; ties broken by the category text so the profile is deterministic.
    order = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = tuple(str(k) for k, _ in order[:top_k])
    known = tuple(str(k) for k, _ in order[:max_known])
    vocab_counts = [int(v) for _, v in order[:top_k]]
    other = int(sum(v for _, v in order[top_k:]))
    counts = np.array([*vocab_counts, other, 0], dtype=np.int64)
    return CategoricalProfile(
        name=name,
        vocabulary=vocab,
        counts=counts,
        known=known,
        count=int((~miss).sum()),
        missing=int(miss.sum()),
    )


# The missing category as a 0-d object array: ``np.where(missing, MISSING, strings)`` gives
# an object array with None where a value is missing.
MISSING = np.array(None, dtype=object)


def category_strings(values: object) -> tuple[np.ndarray, np.ndarray]:
    """Normalise categorical values to text: returns (object array of str, missing mask).

    Numbers become their text (integral floats without ``.0``, so a category read as 3 from
    JSON and as 3.0 from a float column is the same), booleans ``True``/``False``.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        strings = arr.astype(str).astype(object)
        return strings, np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind == "b":
        return arr.astype(str).astype(object), np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind in "iu":
        return arr.astype(str).astype(object), np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind == "f":
        miss = np.isnan(arr)
        # Integral floats outside int64 would wrap around in the cast (1e20 and 2e20 becoming
        # the same category); those few take the same text path as object columns.
        integral = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**63)
        strings = np.where(
            integral, np.where(integral, arr, 0).astype(np.int64).astype(str), arr.astype(str)
        ).astype(object)
        big = np.isfinite(arr) & ~integral & (arr == np.round(arr))
        if big.any():
            strings[big] = [str(int(v)) for v in arr[big].tolist()]
        return strings, miss
    if len(arr) <= _SMALL_OBJECT_BATCH:
        return _category_strings_small(arr)
    series = pd.Series(arr, dtype=object)
    miss = series.isna().to_numpy()
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "string":
        return series.where(~miss, "").to_numpy(dtype=object), miss

    def to_text(v: object) -> str:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    strings = series.where(~miss, "").map(to_text).to_numpy(dtype=object)
    return strings, miss


# Below this many values a plain loop beats building pandas objects (which costs ~1 ms).
_SMALL_OBJECT_BATCH = 2048


def _category_strings_small(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``category_strings`` for a short object array: the same results, without pandas."""
    strings = np.empty(len(arr), dtype=object)
    miss = np.zeros(len(arr), dtype=bool)
    for i, v in enumerate(arr.tolist()):
        if isinstance(v, str):
            strings[i] = v
        elif v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
            strings[i] = ""
            miss[i] = True
        elif isinstance(v, float) and v.is_integer():
            strings[i] = str(int(v))
        else:
            strings[i] = str(v)
    return strings, miss


def _performance_from_dict(d: Mapping[str, Any] | None) -> PerformanceReference | None:
    if d is None:
        return None
    from detectors.performance.reference import PerformanceReference

    return PerformanceReference.from_dict(dict(d))


def _canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _array_to_json(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in arr.tolist()]
    return [None if v is None else str(v) for v in arr.tolist()]


def _bin_means_from_json(values: list[Any] | None, bins: int) -> np.ndarray:
    """Bin means from a file (null for an empty bin); all NaN when the file predates them."""
    if values is None:
        return np.full(bins, np.nan)
    means = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if means.shape != (bins,):
        raise ValueError(f"{len(means)} bin means for {bins} bins")
    return means


def _array_from_json(values: list[Any], kind: Kind) -> np.ndarray:
    if kind is Kind.NUMERIC:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=object)
