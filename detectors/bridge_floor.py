"""The Wasserstein floor: the no-change law of ``sqrt(n_eff) · W1`` of a binned column,
simulated as a Brownian bridge at the reference CDF of every bin edge and read the way
``wasserstein.binned`` reads the bins (detectors/noise_floor.py's docstring has the
limit and why the bins' means and spreads enter it). It depends on the reference alone,
so it is simulated once per profile and cached."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.null_laws import (
    DEFAULT_SEED,
    TAIL_LEVELS,
    TailQuantiles,
    cache_get,
    cache_put,
    check_alpha,
    effective_rows,
)
from detectors.stats import NumericBins

# Bridges simulated per reference for the Wasserstein floor (its tail quantiles): enough
# for the 0.001 quantile, from which smaller levels are extrapolated (``TailQuantiles``).
DEFAULT_SIMULATIONS = 20_000
# Bridges for a baseline that changes every window (canary against stable): not cached.
WINDOW_SIMULATIONS = 4000
# Bin values in the reference sample from which a bin's spread is measured, not guessed.
_MIN_SAMPLE_IN_BIN = 10
# Elements of one simulated (bridges × columns × bins) block: bounds memory.
_BLOCK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class BridgeLaw:
    """The no-change law of ``sqrt(n_eff) · W1`` (binned, column units) of every column of a
    reference: tail quantiles and the mean square (NaN for a column with no values)."""

    tail: TailQuantiles
    mean_square: np.ndarray
    empty: np.ndarray

    def quantile(self, alpha: float) -> np.ndarray:
        return np.where(self.empty, np.nan, self.tail.at(alpha))

    def take(self, idx: np.ndarray) -> BridgeLaw:
        return BridgeLaw(
            TailQuantiles(self.tail.levels, self.tail.values[idx]),
            self.mean_square[idx],
            self.empty[idx],
        )


def bridge_quantile(
    bins: NumericBins,
    alpha: float,
    *,
    sample: np.ndarray | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Per column, the ``1 − alpha`` quantile of the limit of ``sqrt(n_eff) · W1`` (binned,
    in the column's units, not normalised) between two samples of the distribution of
    ``bins``' reference side (its counts, edges, range and bin means).

    ``sample`` are raw reference values, (columns × rows) with NaN for missing (the
    profile's row sample): they give each bin's spread about its mean. Bridges are
    simulated at the reference CDF of every edge, all columns and a block of bridges at
    once; the functional read from them is the one for ``wasserstein.binned``'s layout of
    each bin's mass (module docstring). Levels below what the bridges resolve are
    extrapolated (``TailQuantiles``).
    """
    check_alpha(alpha)
    return bridge_law(bins, sample=sample, simulations=simulations, seed=seed).quantile(alpha)


def bridge_law(
    bins: NumericBins,
    *,
    sample: np.ndarray | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int = DEFAULT_SEED,
) -> BridgeLaw:
    """The simulated law behind ``bridge_quantile``, for every level at once."""
    ref = np.asarray(bins.ref, dtype=np.float64)
    cols, width = ref.shape
    if cols == 0 or width == 0:
        zero = np.zeros((cols, 2))
        return BridgeLaw(TailQuantiles(np.array(TAIL_LEVELS[:2]), zero), zero[:, 0], zero[:, 0] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ref / ref.sum(axis=1, keepdims=True)
    empty = ~np.isfinite(p).all(axis=1)
    p = np.where(np.isfinite(p), p, 0.0)
    lo, hi = _bounds(bins)
    edge_weight, within = _at_means_weights(bins, p, lo, hi, sample)
    values = _simulate(p, edge_weight, within, simulations, seed)
    return BridgeLaw(TailQuantiles.of(values), np.mean(values**2, axis=0), empty)


def _simulate(
    p: np.ndarray, edge_weight: np.ndarray, within: np.ndarray, simulations: int, seed: int
) -> np.ndarray:
    """(simulations × columns) draws of ``Σ_b |B_b| e_b + Σ_b s_b |Z_b|``: B the bridge at
    each bin's right end, Z independent standard normals. float32: the quantile needs no
    more."""
    cols, width = p.shape
    sd = np.sqrt(p).astype(np.float32)
    t = np.cumsum(p, axis=1).astype(np.float32)
    ew = edge_weight.astype(np.float32)
    spread = within.astype(np.float32)
    rng = np.random.default_rng(seed)
    per_block = max(1, _BLOCK_ELEMENTS // (cols * width))
    values = np.empty((simulations, cols))
    for start in range(0, simulations, per_block):
        s = min(per_block, simulations - start)
        walk = rng.standard_normal((s, cols, width), dtype=np.float32)
        walk *= sd
        np.cumsum(walk, axis=2, out=walk)
        walk -= t * walk[:, :, -1:]  # the bridge; B = 0 before the first bin
        np.abs(walk, out=walk)
        total = np.einsum("scb,cb->sc", walk, ew)
        z = np.abs(rng.standard_normal((s, cols, width), dtype=np.float32))
        values[start : start + s] = total + np.einsum("scb,cb->sc", z, spread)
    return values


def _at_means_weights(
    bins: NumericBins, p: np.ndarray, lo: np.ndarray, hi: np.ndarray, sample: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The two weights of the functional when each bin's mass sits at its mean: the
    distance from each bin's mean to the next bin's with mass (the CDF gap B_b spans it),
    and ``sqrt(p_b) σ_b``, the noise of the difference of the two sides' means of bin b
    (σ_b the spread of the reference's values in the bin).

    Unknown reference means (``ref_means`` None or NaN: a profile file from before bin
    means) put the mass at the bin's midpoint with no spread term, as the statistic does
    when neither side knows its means. (Midpoints (w_b + w_{b+1}) / 2 apart also bound
    the same limit for mass spread uniformly over each bin from above.)"""
    means = getattr(bins, "ref_means", None)
    mid = (lo + hi) / 2.0
    known = np.isfinite(means) if means is not None else np.zeros(p.shape, dtype=bool)
    where = np.clip(np.where(known, means if means is not None else mid, mid), lo, hi)
    has = p > 0
    # Mean of the next bin with mass, read right to left.
    nxt = np.full(p.shape, np.nan)
    following = np.full(len(p), np.nan)
    for b in range(p.shape[1] - 1, -1, -1):
        nxt[:, b] = following
        following = np.where(has[:, b], where[:, b], following)
    edge_weight = np.where(has & np.isfinite(nxt), nxt - where, 0.0)
    # Unknown reference means: its mass sits where the window's does, no spread term.
    var = np.where(known & has, _within_variance(bins, lo, hi, where, sample), 0.0)
    return edge_weight, np.sqrt(p * var)


def _within_variance(
    bins: NumericBins, lo: np.ndarray, hi: np.ndarray, mean: np.ndarray, sample: np.ndarray | None
) -> np.ndarray:
    """Each bin's variance of reference values: from ``sample`` where it holds at least
    ``_MIN_SAMPLE_IN_BIN`` values of the bin, else ``(μ − a)(b − μ) / 3`` (w² / 12, the
    uniform's, for a mean mid-bin; a third of the largest a bin [a, b] with mean μ allows)."""
    guess = np.maximum((mean - lo) * (hi - mean), 0.0) / 3.0
    if sample is None or sample.size == 0:
        return guess
    cols, width = bins.ref.shape
    count = np.zeros((cols, width))
    total = np.zeros((cols, width))
    square = np.zeros((cols, width))
    for i in range(cols):  # edges differ per column
        x = sample[i][np.isfinite(sample[i])]
        edges = bins.edges[i, : bins.nbins[i] - 1]
        slot = np.searchsorted(edges, x, side="left")
        count[i] = np.bincount(slot, minlength=width)[:width]
        total[i] = np.bincount(slot, weights=x, minlength=width)[:width]
        square[i] = np.bincount(slot, weights=x * x, minlength=width)[:width]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (square - total**2 / count) / (count - 1)
    return np.where(count >= _MIN_SAMPLE_IN_BIN, np.maximum(var, 0.0), guess)


def _bounds(bins: NumericBins) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's extent [lo, hi] from the reference side alone: the edges, the outer bins
    down to its minimum and up to its maximum (zero wide in a profile), padding a point."""
    rows, width = bins.ref.shape
    edges = bins.edges
    if edges.shape[1] == 0:
        return np.zeros((rows, width)), np.zeros((rows, width))
    last = edges[np.arange(rows), bins.nbins - 2]
    low = np.fmin(bins.ref_min, edges[:, 0])
    high = np.fmax(bins.ref_max, last)
    bounds = np.concatenate([low[:, None], edges, high[:, None]], axis=1)
    padding = np.arange(width + 1)[None, :] >= bins.nbins[:, None]
    bounds = np.where(padding, high[:, None], bounds)
    return bounds[:, :-1], bounds[:, 1:]


def wasserstein_quantile(
    bins: NumericBins,
    alpha: float,
    *,
    sample: np.ndarray | None = None,
    sample_of: Callable[[], np.ndarray | None] | None = None,
    key: Hashable | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """``bridge_quantile`` of every column of ``bins``, from the law cached under ``key`` (a
    profile's content hash, say: the law depends on the reference alone) when one is given.
    ``sample_of`` gives ``sample`` when the law has to be simulated."""
    check_alpha(alpha)
    law = wasserstein_null(
        bins, sample=sample, sample_of=sample_of, key=key, simulations=simulations, seed=seed
    )
    return law.quantile(alpha)


def wasserstein_null(
    bins: NumericBins,
    *,
    sample: np.ndarray | None = None,
    sample_of: Callable[[], np.ndarray | None] | None = None,
    key: Hashable | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int = DEFAULT_SEED,
) -> BridgeLaw:
    """``bridge_law`` of every column of ``bins``, cached under ``key`` when one is given."""
    full_key = None if key is None else ("bridge", key, simulations, seed)
    if full_key is not None:
        hit = cache_get(full_key)
        if isinstance(hit, BridgeLaw) and len(hit.empty) == len(bins.names):
            return hit
    if sample is None and sample_of is not None:
        sample = sample_of()
    law = bridge_law(bins, sample=sample, simulations=simulations, seed=seed)
    if full_key is not None:
        cache_put(full_key, law)
    return law


def wasserstein_floor(
    quantile: np.ndarray,
    n_ref: Sequence[float] | np.ndarray,
    n_cur: Sequence[float] | np.ndarray,
    ref_std: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """The normalised Wasserstein floor ``quantile / sqrt(n_eff) / σ``; 0 for a constant
    reference (its bridge is 0: any move of a constant column is drift)."""
    std = np.asarray(ref_std, dtype=np.float64)
    q = np.asarray(quantile, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = q / np.sqrt(effective_rows(n_ref, n_cur)) / std
    return np.where(std > 0, floor, np.where(np.isnan(std), np.nan, 0.0))
