"""The inputs and outputs shared by every test module.

A binned test sees all columns of one kind at once, as (columns × bins) count matrices, so
one numpy expression tests every feature (docs/architecture.md, decision 3). The same
containers serve a window against the reference profile and a canary window against the
stable version's window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.profile import Profile
from detectors.sketch import WindowSketch


@dataclass(frozen=True)
class Stats:
    """One value per column: the statistic, its p-value where the test defines one, and
    the bound on |binned − exact| where the statistic is a binned approximation."""

    statistic: np.ndarray
    p_value: np.ndarray | None = None
    error_bound: np.ndarray | None = None


@dataclass(frozen=True)
class NumericBins:
    """Baseline and current histograms of the numeric columns, on the baseline's edges.

    ``edges[i, :nbins[i] - 1]`` are column i's right-closed edges (``edges[i, 0]`` just
    below the baseline minimum, the last real edge its maximum); the rest is +inf padding,
    as are the padded bins' counts (zero). Bin 0 holds values below the baseline minimum,
    bin ``nbins[i] - 1`` values above its maximum.

    ``ref_means`` and ``cur_means`` are each bin's mean value on either side (NaN where
    the bin is empty), laid out like the counts. ``None``, or NaN in a bin with mass,
    means unknown (a profile file that predates bin means): the Wasserstein distance
    then places that mass by a stated rule and widens its error bound to match.
    """

    names: tuple[str, ...]
    ref: np.ndarray
    cur: np.ndarray
    edges: np.ndarray
    nbins: np.ndarray
    ref_min: np.ndarray
    ref_max: np.ndarray
    ref_std: np.ndarray
    cur_min: np.ndarray
    cur_max: np.ndarray
    ref_means: np.ndarray | None = None
    cur_means: np.ndarray | None = None

    @classmethod
    def from_profile(cls, profile: Profile, sketch: WindowSketch) -> NumericBins:
        names = tuple(profile.numeric_names)
        ps = [profile.numeric[n] for n in names]
        width = profile.numeric_width
        edges = np.full((len(names), max(width - 1, 0)), np.inf)
        for i, p in enumerate(ps):
            edges[i, : len(p.edges)] = p.edges
        return cls(
            names=names,
            ref=profile.numeric_counts,
            cur=sketch.num_counts,
            edges=edges,
            nbins=np.array([p.bins for p in ps], dtype=np.int64),
            ref_min=np.array([p.min for p in ps]),
            ref_max=np.array([p.max for p in ps]),
            ref_std=np.array([p.std for p in ps]),
            cur_min=sketch.num_min.copy(),
            cur_max=sketch.num_max.copy(),
            ref_means=profile.numeric_bin_means,
            cur_means=sketch.bin_means(),
        )

    @classmethod
    def from_sketches(cls, baseline: WindowSketch, current: WindowSketch) -> NumericBins:
        """Compare two windows (canary against stable). Both were binned on the same
        profile's edges, so the profile's edges serve; the baseline's range and spread
        come from the baseline window itself."""
        prof = baseline.profile
        base = cls.from_profile(prof, current)
        return cls(
            names=base.names,
            ref=baseline.num_counts,
            cur=current.num_counts,
            edges=base.edges,
            nbins=base.nbins,
            ref_min=baseline.num_min.copy(),
            ref_max=baseline.num_max.copy(),
            ref_std=baseline.std(),
            cur_min=current.num_min.copy(),
            cur_max=current.num_max.copy(),
            ref_means=baseline.bin_means(),
            cur_means=base.cur_means,
        )


@dataclass(frozen=True)
class CategoricalBins:
    """Baseline and current category counts: vocabulary, zero padding, other, unseen."""

    names: tuple[str, ...]
    ref: np.ndarray
    cur: np.ndarray

    @classmethod
    def from_profile(cls, profile: Profile, sketch: WindowSketch) -> CategoricalBins:
        return cls(tuple(profile.categorical_names), profile.categorical_counts, sketch.cat_counts)

    @classmethod
    def from_sketches(cls, baseline: WindowSketch, current: WindowSketch) -> CategoricalBins:
        return cls(
            tuple(baseline.profile.categorical_names), baseline.cat_counts, current.cat_counts
        )
