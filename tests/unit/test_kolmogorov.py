"""detectors/kolmogorov.py equals scipy.stats' Kolmogorov–Smirnov distributions exactly,
on every branch of Simard and L'Ecuyer's method (Ruben–Gambino, Durbin's matrix,
Pomeranz, Pelz–Good, Miller's 2·smirnov, the n·x² cutoffs) and at the supports' edges."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.kolmogorov import kstwo_sf, kstwobign_isf, kstwobign_sf

# n = 100 001 is past Durbin's matrix (n <= 100 000): Pelz-Good there.
NS = (1, 2, 3, 5, 10, 50, 139, 140, 141, 500, 2000, 10_000, 100_001)


def _grid(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    edges = [0.0, -0.1, 0.5 / n, np.nextafter(0.5 / n, 1), 1.0 / n, 0.5, 1.0, 1.5]
    # n·x² around every cutoff of the method: 0.754693, 4, 2.2, 18, 370
    cut = [np.sqrt(c / n) for c in (0.754693, 4.0, 2.2, 18.0, 370.0)]
    near = [v * f for v in cut for f in (0.999, 1.0, 1.001)]
    pelz = [(1.4 / n) ** (2 / 3) * f for f in (0.99, 1.01)]  # n·x^1.5 = 1.4
    return np.array(
        [*edges, *near, *pelz, *rng.uniform(0, 1, 40), *rng.uniform(0, 3 / np.sqrt(n), 40)]
    )


def test_kstwo_sf_equals_scipy_on_every_branch() -> None:
    for n in NS:
        x = _grid(n)
        want = stats.kstwo.sf(x, n)
        np.testing.assert_array_equal(kstwo_sf(x, n), want)
        np.testing.assert_array_equal(kstwo_sf(x, np.full(len(x), float(n))), want)


def test_kstwo_sf_of_scalars_and_bad_sizes() -> None:
    assert kstwo_sf(0.3, 20) == stats.kstwo.sf(0.3, 20)
    assert np.isnan(kstwo_sf(0.3, 0.0)) and np.isnan(stats.kstwo.sf(0.3, 0.0))
    assert np.isnan(kstwo_sf(0.3, 2.5)) and np.isnan(stats.kstwo.sf(0.3, 2.5))
    assert np.isnan(kstwo_sf(np.nan, 10)) and np.isnan(stats.kstwo.sf(np.nan, 10))
    x = np.array([0.01, 0.2, 0.2, 0.9])
    n = np.array([10.0, 0.0, 300.0, 4.0])
    np.testing.assert_array_equal(kstwo_sf(x, n), stats.kstwo.sf(x, n))


def test_kstwobign_equals_scipy() -> None:
    x = np.array(
        [-1.0, 0.0, 1e-3, 0.2, 0.5, 0.8275735551899077, 1.0, 1.36, 3.0, 10.0, np.inf, np.nan]
    )
    np.testing.assert_array_equal(kstwobign_sf(x), stats.kstwobign.sf(x))
    assert kstwobign_sf(1.1) == stats.kstwobign.sf(1.1)
    for q in (0.0, 1e-12, 0.001, 0.01, 0.05, 0.1, 0.5, 0.999, 1.0, 1.5, -0.1):
        got, want = kstwobign_isf(q), stats.kstwobign.isf(q)
        assert got == want or (np.isnan(got) and np.isnan(want)), q
