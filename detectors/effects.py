"""Confidence intervals for the distances: how large the change is, and how sure we are.

A distance test flags a column when the change is larger than negligible with the
configured confidence: when the lower end ``low`` of the distance's confidence interval
exceeds the test's margin (``DriftSettings.thresholds``). This module turns a plug-in
distance ``d̂`` and the law of its sampling noise into ``(estimate, low, high)``.

**The interval.** Each distance here is a metric built from the two empirical
distributions, and the noise of the empirical distributions enters it linearly: W1 is
the L1 norm of ``F̂ − Ĝ = (F − G) + ε``, Hellinger the L2 norm of ``√p̂ − √q̂``, L∞ the
max norm of ``p̂ − q̂``, Jensen–Shannon (a metric, locally a weighted L2 norm of the
share changes) to second order. By the triangle inequality

    |d̂ − d| ≤ ‖ε‖,

and ``ε = (F̂ − F) − (Ĝ − G)`` has, to first order, the law of ``d̂`` itself when nothing
changed: the no-change law computed from the sketch's reference side
(``detectors.noise_floor``: the χ² limits of the divergences, multinomial simulations
where bins are sparse, Brownian bridges for Wasserstein). With ``f`` its ``1 − alpha``
quantile, ``[max(d̂ − f, 0), d̂ + f]`` covers the true distance with probability at least
``1 − alpha`` whatever the true distance, and ``low = 0`` in all but ``alpha`` of the
windows where nothing changed. That is the plug-in distance's no-change bias accounted
for: the bias of ``d̂`` is the size of ``‖ε‖``, and ``low`` subtracts a high quantile of it.
The interval is conservative when the change is large (then ``d̂ − d`` is nearly a
projection of ε, smaller than its norm), which is where it matters least.

PSI is a squared scale (to second order the χ² divergence): the interval is built on
``sqrt(PSI)``, a local norm, and squared back.

**The estimate** removes the bias of the squared distance: for an L2-type norm
``E d̂² = d² + E‖ε‖²``, so ``estimate = sqrt(max(d̂² − E₀ d̂², 0))`` (for PSI, ``max(PSI −
E₀ PSI, 0)``), ``E₀`` under no change, clipped into ``[low, high]``. For W1 and L∞ the
same correction is approximate (exact for large changes, where their bias vanishes).

**KS.** The statistic D is the sup norm of ``F̂ − Ĝ``: the same argument with the
Kolmogorov distribution, ``f = K₁₋α / (sqrt(n_eff) + 0.12 + 0.11 / sqrt(n_eff))``
(Stephens' finite-sample form), and the binned statistic's error bound added on the upper
side (the exact D lies in ``[D_b, D_b + bound]``). Chi-square columns report their
Jensen–Shannon distance with its interval (``detectors.evaluate``).

>>> import numpy as np
>>> est, low, high = distance_interval("wasserstein", np.array([0.1, 0.004]),
...                                    np.array([0.012, 0.012]), np.array([4e-5, 4e-5]))
>>> [round(float(v), 4) for v in low], [round(float(v), 4) for v in high]
([0.088, 0.0], [0.112, 0.016])

References: Dvoretzky, A., Kiefer, J. and Wolfowitz, J. (1956); Massart, P. (1990). The
tight constant in the Dvoretzky–Kiefer–Wolfowitz inequality. Annals of Probability 18(3),
1269–1283 (sup-norm noise of an empirical CDF). Stephens, M. A. (1970). Use of the
Kolmogorov–Smirnov, Cramér–von Mises and related statistics without extensive tables.
JRSS B 32(1), 115–122. Wellek, S. (2010). Testing Statistical Hypotheses of Equivalence
and Noninferiority, 2nd ed., ch. 1 (testing that an effect exceeds a margin).
"""

from __future__ import annotations

import math

import numpy as np

from detectors.kolmogorov import kstwobign_isf

# Distances bounded by 1: their upper confidence bound is too.
BOUNDED = frozenset({"jensen_shannon", "hellinger", "linf"})
# Distances whose interval is built on the square root (a squared scale).
SQUARED = frozenset({"psi"})
# E[K²] of the Kolmogorov distribution (π² / 12): the no-change mean square of sqrt(n) D.
_KOLMOGOROV_MEAN_SQUARE = math.pi**2 / 12.0


def distance_interval(
    test: str, statistic: np.ndarray, half_width: np.ndarray, mean_square: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(estimate, low, high)`` per column of the plug-in distances ``statistic``, with
    ``half_width`` the ``1 − alpha`` no-change quantile of the statistic and
    ``mean_square`` its no-change mean square (module docstring). An infinite statistic (a
    constant reference column that moved) gives an infinite interval; NaN stays NaN."""
    d = np.asarray(statistic, dtype=np.float64)
    f = np.asarray(half_width, dtype=np.float64)
    bias = np.asarray(mean_square, dtype=np.float64)
    if test in SQUARED:
        root, reach = np.sqrt(np.maximum(d, 0.0)), np.sqrt(np.maximum(f, 0.0))
        low = np.maximum(root - reach, 0.0) ** 2
        high = (root + reach) ** 2
        estimate = np.maximum(d - bias, 0.0)
    else:
        low = np.maximum(d - f, 0.0)
        high = d + f
        with np.errstate(invalid="ignore"):
            estimate = np.sqrt(np.maximum(d * d - bias, 0.0))
    if test in BOUNDED:
        high = np.minimum(high, 1.0)
    infinite = np.isinf(d)
    low = np.where(infinite, np.inf, low)
    high = np.where(infinite, np.inf, high)
    estimate = np.where(infinite, np.inf, np.clip(estimate, low, high))
    return estimate, low, high


def ks_interval(
    statistic: np.ndarray,
    error_bound: np.ndarray | None,
    n_ref: np.ndarray,
    n_cur: np.ndarray,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(estimate, low, high)`` of the KS distance D between the two distributions, from
    the (binned or exact) statistic and, in binned mode, its error bound."""
    d = np.asarray(statistic, dtype=np.float64)
    m = np.asarray(n_ref, dtype=np.float64)
    n = np.asarray(n_cur, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        en = m * n / (m + n)
        root = np.sqrt(en)
        half = kstwobign_isf(alpha) / (root + 0.12 + 0.11 / root)
        bias = _KOLMOGOROV_MEAN_SQUARE / en
    bound = np.zeros_like(d) if error_bound is None else np.nan_to_num(error_bound, nan=0.0)
    low = np.maximum(d - half, 0.0)
    high = np.minimum(d + bound + half, 1.0)
    estimate = np.clip(np.sqrt(np.maximum(d * d - bias, 0.0)), low, high)
    return estimate, low, high
