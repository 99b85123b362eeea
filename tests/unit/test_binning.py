"""EdgeIndex gives exactly ``searchsorted(edges, x, side="left")``, whatever the edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from detectors.binning import EdgeIndex, edge_index
from detectors.column_profiles import numeric_edges

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _probe(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The finite values among: the values, every edge, its two neighbours and the
    extremes of float64."""
    with np.errstate(over="ignore"):
        x = np.concatenate(
            [
                values,
                edges,
                np.nextafter(edges, np.inf),
                np.nextafter(edges, -np.inf),
                [-0.0, 0.0, 5e-324, -5e-324, 1e308, -1e308, np.finfo(float).max],
                [-np.finfo(float).max],
            ]
        )
    return x[np.isfinite(x)]


def _check(edges: np.ndarray, values: np.ndarray) -> EdgeIndex:
    index = EdgeIndex(edges)
    x = _probe(edges, values)
    np.testing.assert_array_equal(index.bins(x), np.searchsorted(edges, x, side="left"))
    assert index.width == len(edges) + 1
    return index


@settings(max_examples=300, deadline=None)
@given(
    edges=hnp.arrays(np.float64, st.integers(0, 60), elements=FINITE, unique=True),
    values=hnp.arrays(np.float64, st.integers(0, 100), elements=FINITE),
)
def test_any_edges_any_values(edges: np.ndarray, values: np.ndarray) -> None:
    _check(np.sort(edges), values)


@settings(max_examples=150, deadline=None)
@given(
    centre=st.floats(-1e12, 1e12),
    spread=st.floats(1e-12, 1e6),
    seed=st.integers(0, 2**32 - 1),
)
def test_quantile_edges_of_sampled_data(centre: float, spread: float, seed: int) -> None:
    """Edges as profiles build them (reference quantiles) around any centre and scale."""
    rng = np.random.default_rng(seed)
    ref = centre + spread * rng.standard_t(2, size=2_000)
    edges = numeric_edges(ref, 100)
    _check(edges, centre + spread * rng.standard_t(2, size=2_000))


@pytest.mark.parametrize(
    "sample",
    [
        lambda rng, n: rng.normal(size=n),
        lambda rng, n: rng.lognormal(0, 2, size=n),
        lambda rng, n: rng.pareto(0.5, size=n),  # quantiles crowded into a few cells
        lambda rng, n: rng.integers(0, 5, n).astype(float),  # ties: few edges
        lambda rng, n: np.where(rng.random(n) < 0.7, 0.0, rng.exponential(size=n)),
        lambda rng, n: np.concatenate([rng.normal(size=n // 2), rng.normal(1e9, 1, n // 2)]),
        lambda rng, n: rng.normal(size=n) * 1e-300,
        lambda rng, n: rng.normal(size=n) * 1e300,
    ],
)
def test_reference_shapes(sample) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    edges = numeric_edges(sample(rng, 20_000), 100)
    _check(edges, sample(rng, 50_000))


def test_crowded_cells_take_the_binary_search() -> None:
    """Two far-apart clusters of edges: one grid cannot separate them all, and the
    values in the crowded cells still get the exact answer."""
    rng = np.random.default_rng(3)
    ref = np.concatenate([rng.normal(size=5_000), rng.normal(1e9, 1, 5_000)])
    edges = numeric_edges(ref, 100)
    index = _check(edges, np.concatenate([rng.normal(size=5_000), rng.normal(1e9, 1, 5_000)]))
    assert index.cells and index.crowded is not None


@pytest.mark.parametrize("edges", [[], [1.0], [1.0, 2.0], [0.0, 1.0, 2.0]])
def test_few_edges(edges: list[float]) -> None:
    _check(np.array(edges, dtype=np.float64), np.linspace(-1, 3, 41))


def test_index_is_cached_per_key() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    first = edge_index(("profile-hash", "column"), edges)
    assert edge_index(("profile-hash", "column"), edges) is first
    assert edge_index(("profile-hash", "other"), edges) is not first
