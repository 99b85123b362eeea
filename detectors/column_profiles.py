"""One column's reference distribution: a numeric column's bins at reference quantiles
(right-closed, every interior edge a value the reference takes, two out-of-range bins)
and a categorical column's top-K vocabulary with "other" and "unseen", and the functions
that profile one column. ``detectors/profile.py`` explains the bins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.categories import category_strings
from detectors.profile_file import array_to_json, bin_means_from_json
from detectors.schema import SchemaError, as_float_array

DEFAULT_BINS = 100
DEFAULT_TOP_K = 100
# Categories remembered to tell "rare but seen" from "never seen"; more distinct values
# than this and the rest of the tail counts as unseen.
DEFAULT_MAX_KNOWN_CATEGORIES = 10_000


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
            out["bin_means"] = array_to_json(self.bin_means)
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
            bin_means=bin_means_from_json(d.get("bin_means"), len(d["edges"]) + 1),
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
    import pandas as pd  # reference building only: the agent's path stays without pandas

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
