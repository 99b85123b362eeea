"""Exact bins of a column's values among its reference edges, in constant time a value.

The window sketch counts each finite value into its column's right-closed bins
``(e[i-1], e[i]]``: the bin of ``x`` is the number of edges below it,
``searchsorted(edges, x, side="left")``. A binary search per value, or a sort of the
batch, costs 30–50 ns a value, most of a window's update (docs/architecture.md,
decision 3). :class:`EdgeIndex` answers in a few vectorised passes instead:

* a monotone map ``f`` sends each value to one of ``G`` equal cells over the edges'
  inner range, or to one of the margin cells beyond it (``(x − origin) · s``, clipped
  to ``[0, G + 3]``, truncated);
* a table gives, per cell, the number of edges whose cell is lower;
* one comparison (two where some cell holds two edges) with the edges in the value's
  own cell adds the rest.

The answer is exact, not approximate: floating subtraction, multiplication by a positive
number, clipping and truncation never reverse an order, so ``f`` is monotone, an edge in
a lower cell is below the value and an edge in a higher cell is above it; only the edges
sharing the value's cell need comparing, and those comparisons are exact. Values in the
rare cells holding more than two edges (quantiles of a very heavy tail crowded together)
take the binary search, so every input gets the searchsorted answer whatever the edges.
The tables take 16–24 KiB a column with 1,028 cells (enough for the benchmark data's
columns), at most about 1.6 MiB with 65,540 (quantiles crowded into a tiny part of the
range); each is built once per profile and column.
"""

from __future__ import annotations

import numpy as np

# Grid sizes tried, smallest first: small tables stay in the CPU's cache.
_CELLS = (1 << 10, 1 << 12, 1 << 14, 1 << 16)


class EdgeIndex:
    """Bins of finite values among sorted, strictly increasing ``edges``."""

    def __init__(self, edges: np.ndarray) -> None:
        e = np.ascontiguousarray(edges, dtype=np.float64)
        self.edges = e
        self.width = len(e) + 1
        self.cells = 0  # 0: no grid, every value takes the binary search
        self.origin = self.scale = 0.0
        self.below = self.first = np.empty(0, dtype=np.intp)
        self.second: np.ndarray | None = None
        self.crowded: np.ndarray | None = None
        if len(e) < 2 or not np.isfinite(e).all() or not (np.diff(e) > 0).all():
            return
        # The inner edges bound the grid: the outer ones are the reference's extremes,
        # often far from the bulk; values beyond the inner edges fall into two margin
        # cells at each end, where the outer edges usually sit alone.
        lo, hi = (float(e[1]), float(e[-2])) if len(e) >= 4 else (float(e[0]), float(e[-1]))
        if not hi > lo:
            return
        for per_cell in (1, 2):
            for cells in _CELLS:
                if self._build(lo, hi, cells, per_cell):
                    return
        self._build(lo, hi, _CELLS[-1], 2, crowded_ok=True)

    def _build(
        self, lo: float, hi: float, cells: int, per_cell: int, crowded_ok: bool = False
    ) -> bool:
        span = hi - lo  # +inf when the edges span more than float64 can
        if not (np.isfinite(span) and np.isfinite(cells / span) and cells / span > 0):
            return False
        scale = cells / span
        origin = lo - 1.5 / scale  # ``lo`` lands in the middle of cell 1
        if not np.isfinite(origin):
            return False
        self.origin, self.scale, self.cells = origin, scale, cells + 4
        cell_of_edge = self._cells(self.edges)
        grid = np.arange(self.cells)
        below = np.searchsorted(cell_of_edge, grid, side="left")
        inside = np.searchsorted(cell_of_edge, grid, side="right") - below
        if int(inside.max()) > per_cell and not crowded_ok:
            self.cells = 0
            return False
        padded = np.append(self.edges, [np.inf, np.inf])
        self.below = below.astype(np.intp)
        # the first and second edge inside each cell, +inf where there is none
        self.first = np.where(inside >= 1, padded[below], np.inf)
        self.second = np.where(inside >= 2, padded[below + 1], np.inf) if per_cell > 1 else None
        crowded = inside > 2
        self.crowded = crowded if crowded.any() else None
        return True

    def _cells(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # beyond float64: +-inf, clipped to an end cell
            c = np.subtract(x, self.origin)
            c *= self.scale
        np.clip(c, 0, self.cells - 1, out=c)
        return c.astype(np.intp)

    def bins(self, x: np.ndarray) -> np.ndarray:
        """``searchsorted(edges, x, side="left")`` for finite float64 ``x``."""
        if not self.cells:
            return np.searchsorted(self.edges, x, side="left")
        cell = self._cells(x)  # within the tables: take() need not check the indices
        out = np.take(self.below, cell, mode="clip")
        out += x > np.take(self.first, cell, mode="clip")
        if self.second is not None:
            out += x > np.take(self.second, cell, mode="clip")
        if self.crowded is not None:
            slow = np.flatnonzero(self.crowded[cell])
            if len(slow):
                out[slow] = np.searchsorted(self.edges, x[slow], side="left")
        return out


_CACHE: dict[tuple[str, str], EdgeIndex] = {}


def edge_index(key: tuple[str, str], edges: np.ndarray) -> EdgeIndex:
    """The index over ``edges``, built once per ``key`` (a profile's hash and a column)."""
    index = _CACHE.get(key)
    if index is None:
        index = EdgeIndex(edges)
        if len(_CACHE) > 4096:
            _CACHE.clear()
        _CACHE[key] = index
    return index
