"""Rows for the multivariate tests: the window's reservoir and the profile's row sample,
encoded the same way on both sides.

Numeric features are standardised by the reference sample's mean and standard deviation
(so no feature dominates a kernel distance by its unit); a missing or non-finite value
becomes the reference mean (0 after standardising) and, where the reference itself has
missing values, a 0/1 indicator column records it. Categorical features are one-hot over
their ``top_k`` most frequent reference categories plus one column for anything else
(rarer or unseen categories), scaled by 1/√2 so that two different categories are one
unit apart, like one standard deviation of a numeric feature; a missing category sets no
column. ``RowEncoder.groups`` maps each encoded column back to its feature, which is how
the tests name the features that separate the two samples (docs/architecture.md,
"Multivariate drift").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.profile import Profile
from detectors.schema import Role
from detectors.sketch import WindowSketch

DEFAULT_TOP_K = 10
# Standardised values are clipped here: far outliers would otherwise dominate every
# kernel distance (and square past float32's range).
CLIP = 1e3
_ONE_HOT = float(np.sqrt(0.5))


@dataclass(frozen=True)
class Rows:
    """Raw rows of one sample: numeric (n × p, NaN for missing) and categorical
    (n × q, str or None), columns in ``numeric_names`` / ``categorical_names`` order."""

    numeric_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    numeric: np.ndarray
    categorical: np.ndarray

    def __len__(self) -> int:
        return int(self.numeric.shape[0] if self.numeric_names else self.categorical.shape[0])

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(
            self.numeric_names, self.categorical_names, self.numeric[idx], self.categorical[idx]
        )


def _feature_names(profile: Profile) -> tuple[tuple[str, ...], tuple[str, ...]]:
    features = {c.name for c in profile.schema.columns if c.role is Role.FEATURE}
    return (
        tuple(n for n in profile.numeric_names if n in features),
        tuple(n for n in profile.categorical_names if n in features),
    )


def reference_rows(profile: Profile, limit: int | None = None, seed: int = 0) -> Rows:
    """The profile's row sample (aligned across columns), features only, at most ``limit``
    rows drawn uniformly without replacement."""
    num_names, cat_names = _feature_names(profile)
    n = len(next(iter(profile.sample.values()))) if profile.sample else 0
    lacking = [c for c in (*num_names, *cat_names) if len(profile.sample.get(c, ())) != n]
    if lacking:
        raise ValueError(f"profile has no row sample for {lacking}; rebuild the profile")
    numeric = (
        np.stack([profile.sample[c] for c in num_names], axis=1) if num_names else np.empty((n, 0))
    )
    categorical = np.empty((n, len(cat_names)), dtype=object)
    for j, c in enumerate(cat_names):
        categorical[:, j] = profile.sample[c]
    rows = Rows(num_names, cat_names, numeric.astype(np.float64), categorical)
    if limit is not None and n > limit:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
        rows = rows.take(idx)
    return rows


def window_rows(sketch: WindowSketch) -> Rows:
    """The window's reservoir (a uniform sample of its rows), features only."""
    profile = sketch.profile
    num_names, cat_names = _feature_names(profile)
    num_idx = [profile.numeric_names.index(c) for c in num_names]
    cat_idx = [profile.categorical_names.index(c) for c in cat_names]
    return Rows(
        num_names,
        cat_names,
        sketch.res_numeric[:, num_idx].astype(np.float64),
        sketch.res_categorical[:, cat_idx],
    )


@dataclass(frozen=True)
class RowEncoder:
    """Maps raw rows to float rows; fitted on the reference sample only."""

    numeric_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    indicators: tuple[bool, ...]
    vocabularies: tuple[tuple[str, ...], ...]
    columns: tuple[str, ...]
    groups: np.ndarray

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric_names, *self.categorical_names)

    @classmethod
    def fit(cls, reference: Rows, top_k: int = DEFAULT_TOP_K) -> RowEncoder:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        x = np.where(np.isfinite(reference.numeric), reference.numeric, np.nan)
        with np.errstate(all="ignore"):
            present = np.isfinite(x).any(axis=0)
            mean = np.where(present, np.nanmean(np.where(present, x, 0.0), axis=0), 0.0)
            std = np.nanstd(np.where(present, x, 0.0), axis=0)
        scale = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        missing_any = np.asarray(np.isnan(x).any(axis=0))
        indicators = tuple(bool(missing_any[j]) for j in range(x.shape[1]))
        vocabularies = []
        for j in range(len(reference.categorical_names)):
            col = reference.categorical[:, j]
            values, counts = np.unique(
                np.array([v for v in col if v is not None], dtype=str), return_counts=True
            )
            order = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=_by_count)
            vocabularies.append(tuple(v for v, _ in order[:top_k]))
        columns: list[str] = []
        groups: list[int] = []
        for j, name in enumerate(reference.numeric_names):
            columns.append(name)
            groups.append(j)
            if indicators[j]:
                columns.append(f"{name}=missing")
                groups.append(j)
        base = len(reference.numeric_names)
        for j, name in enumerate(reference.categorical_names):
            for v in (*vocabularies[j], "<other>"):
                columns.append(f"{name}={v}")
                groups.append(base + j)
        return cls(
            numeric_names=reference.numeric_names,
            categorical_names=reference.categorical_names,
            mean=mean,
            scale=scale,
            indicators=indicators,
            vocabularies=tuple(vocabularies),
            columns=tuple(columns),
            groups=np.asarray(groups, dtype=np.intp),
        )

    def transform(self, rows: Rows) -> np.ndarray:
        """(n × len(columns)) float64 rows."""
        if rows.numeric_names != self.numeric_names or (
            rows.categorical_names != self.categorical_names
        ):
            raise ValueError("rows have other columns than the encoder was fitted on")
        n = len(rows)
        out = np.zeros((n, len(self.columns)))
        c = 0
        with np.errstate(invalid="ignore"):
            z = (rows.numeric - self.mean) / self.scale
        for j in range(len(self.numeric_names)):
            v = z[:, j]
            bad = ~np.isfinite(v)
            out[:, c] = np.clip(np.where(bad, 0.0, v), -CLIP, CLIP)
            c += 1
            if self.indicators[j]:
                out[:, c] = bad
                c += 1
        for j, vocab in enumerate(self.vocabularies):
            slot = {v: i for i, v in enumerate(vocab)}
            other = len(vocab)
            col = rows.categorical[:, j]
            idx = np.fromiter(
                (-1 if v is None else slot.get(str(v), other) for v in col), np.int64, n
            )
            hit = idx >= 0
            out[np.flatnonzero(hit), c + idx[hit]] = _ONE_HOT
            c += other + 1
        return out

    def feature_scores(self, per_column: np.ndarray) -> np.ndarray:
        """Per-feature sums of per-encoded-column scores."""
        return np.bincount(self.groups, weights=per_column, minlength=len(self.features))


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def top_features(
    names: Sequence[str], scores: np.ndarray, share: float = 0.1, limit: int = 10
) -> list[str]:
    """Names with a positive score of at least ``share`` of the largest, strongest first."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(scores) or not np.isfinite(scores).any():
        return []
    best = float(np.nanmax(scores))
    if best <= 0:
        return []
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    return [names[i] for i in order[:limit] if scores[i] > 0 and scores[i] >= share * best]
