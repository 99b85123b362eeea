"""What the noise floors (detectors/noise_floor.py, detectors/bridge_floor.py) share:
the effective rows of two samples, the seed of their simulations, upper tail quantiles of
simulated draws at any level, and the cache of what was simulated for a reference, so
the next window of the same reference does not simulate again."""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Levels at which simulated quantiles are kept, and the draws needed beyond each.
TAIL_LEVELS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
_LEVEL_HITS = 20
DEFAULT_SEED = 20_240_611
# Floors and bridge quantiles already computed, for the next window of the same reference.
_CACHE_SIZE = 4096
_cache: dict[Hashable, object] = {}
_cache_lock = threading.Lock()


def effective_rows(
    n_ref: Sequence[float] | np.ndarray, n_cur: Sequence[float] | np.ndarray
) -> np.ndarray:
    """``m n / (m + n)``: the sample size that sets a two-sample statistic's noise."""
    m = np.asarray(n_ref, dtype=np.float64)
    n = np.asarray(n_cur, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((m > 0) & (n > 0), m * n / (m + n), np.nan)


@dataclass(frozen=True)
class TailQuantiles:
    """Per column, upper quantiles of simulated draws at the levels ``TAIL_LEVELS`` that the
    number of draws resolves (``_LEVEL_HITS`` draws beyond each), and any level from them.

    Between two levels the quantile is interpolated linearly in ln(alpha). Below the
    smallest level L it is extrapolated along the line through the quantiles at L and 10 L:
    an exponential tail. The statistics here are norms of Gaussian limits, whose tails are
    lighter than exponential far out (Borell–TIS), so the extrapolation errs on the safe
    side there; measured on Wasserstein bridges (normal, lognormal, t₃ and Poisson columns,
    200 000 draws), the extrapolation from 0.01 and 0.001 to 3.7e-4 and 1e-4 was within
    0.5% of the simulated quantiles.
    """

    levels: np.ndarray
    values: np.ndarray  # columns × levels

    @classmethod
    def of(cls, draws: np.ndarray) -> TailQuantiles:
        """From (draws × columns) simulated values."""
        count = len(draws)
        levels = np.array([a for a in TAIL_LEVELS if a * count >= _LEVEL_HITS])
        if len(levels) < 2:
            raise ValueError(f"{count} draws resolve too few tail levels; use more draws")
        values = np.quantile(draws, 1.0 - levels, axis=0).T
        return cls(levels, np.atleast_2d(values))

    def at(self, alpha: float) -> np.ndarray:
        """The ``1 − alpha`` quantile of every column."""
        check_alpha(alpha)
        levels, values = self.levels, self.values
        if alpha >= levels[0]:
            return values[:, 0].copy()
        if alpha >= levels[-1]:
            i = int(np.flatnonzero(levels >= alpha)[-1])
            if levels[i] == alpha:
                return values[:, i].copy()
            hi, lo = i, i + 1
        else:
            lo = len(levels) - 1
            hi = int(np.flatnonzero(levels >= 10.0 * levels[lo] * (1 - 1e-9))[-1])
        x0, x1 = math.log(levels[hi]), math.log(levels[lo])
        slope = np.maximum((values[:, lo] - values[:, hi]) / (x0 - x1), 0.0)
        return values[:, lo] + slope * (x1 - math.log(alpha))


@dataclass(frozen=True)
class StoredLaw:
    """A simulated no-change law of every numeric column of a reference, as a profile keeps
    it (``reference build`` simulates the Wasserstein bridges once, so no window has to):
    the tail quantiles, the mean square, the columns without values, and the simulation
    it came from (bridges and seed), which must match what a window would simulate."""

    simulations: int
    seed: int
    tail: TailQuantiles
    mean_square: np.ndarray
    empty: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "simulations": self.simulations,
            "seed": self.seed,
            "levels": self.tail.levels.tolist(),
            "values": [[_finite_or_none(v) for v in row] for row in self.tail.values.tolist()],
            "mean_square": [_finite_or_none(v) for v in self.mean_square.tolist()],
            "empty": [bool(v) for v in self.empty.tolist()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StoredLaw:
        levels = np.asarray(d["levels"], dtype=np.float64)
        values = np.array(
            [[math.nan if v is None else v for v in row] for row in d["values"]], dtype=np.float64
        ).reshape(-1, len(levels))
        mean_square = np.array(
            [math.nan if v is None else v for v in d["mean_square"]], dtype=np.float64
        )
        empty = np.asarray(d["empty"], dtype=bool)
        if not (len(values) == len(mean_square) == len(empty)):
            raise ValueError("stored null law: values, mean_square and empty differ in length")
        return cls(
            int(d["simulations"]), int(d["seed"]), TailQuantiles(levels, values), mean_square, empty
        )


def _finite_or_none(v: float) -> float | None:
    return None if math.isnan(v) else v


def clear_cache() -> None:
    """Forget every cached floor and bridge quantile."""
    with _cache_lock:
        _cache.clear()


def cache_get(key: Hashable) -> object:
    """What was cached under ``key``, or None."""
    with _cache_lock:
        return _cache.get(key)


def cache_put(key: Hashable, value: object) -> None:
    """Cache ``value`` under ``key``, forgetting the oldest entries beyond the cache size."""
    with _cache_lock:
        while len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = value


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
