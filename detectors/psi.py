"""Population stability index, on every column at once (numeric bins or categories).

Measures how much the share of rows in each bin moved, weighting each move by its log
ratio, the credit-scoring industry's drift score:

    PSI = Σ_i (p_cur,i − p_ref,i) · ln(p_cur,i / p_ref,i).

It is the symmetrised Kullback–Leibler divergence of the two binned distributions. An empty
bin on either side would make it infinite, so an empty share is replaced by ``epsilon``
(default 1e-4, ``DriftSettings.psi_epsilon``) before the sum. Bins empty on both sides add
nothing, so padding bins never change the result. Customary reading: below 0.1 stable, 0.1
to 0.25 a moderate shift, above 0.25 a major one. No p-value; an empty window (or an empty
reference) gives NaN.

Parameters of ``binned``: ``bins`` (NumericBins or CategoricalBins), ``epsilon``.

>>> import numpy as np
>>> from detectors.stats import CategoricalBins
>>> bins = CategoricalBins(("plan",), np.array([[50, 50]]), np.array([[25, 75]]))
>>> round(float(binned(bins).statistic[0]), 6)  # 0.25·ln 2 + 0.25·ln 1.5
0.274653

References: Yurdakul, B. (2018). Statistical properties of population stability index.
Dissertation, Western Michigan University. Siddiqi, N. (2006). Credit Risk Scorecards,
ch. 8. Wiley.
"""

from __future__ import annotations

import numpy as np

from detectors.stats import CategoricalBins, NumericBins, Stats

DEFAULT_EPSILON = 1e-4


def binned(bins: NumericBins | CategoricalBins, *, epsilon: float = DEFAULT_EPSILON) -> Stats:
    """PSI between the reference and current shares of every bin."""
    if not isinstance(bins, (NumericBins, CategoricalBins)):
        raise TypeError(f"PSI compares numeric or categorical bins, not {type(bins).__name__}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    p_ref = _shares(bins.ref, epsilon)
    p_cur = _shares(bins.cur, epsilon)
    return Stats(statistic=((p_cur - p_ref) * np.log(p_cur / p_ref)).sum(axis=1))


def _shares(counts: np.ndarray, epsilon: float) -> np.ndarray:
    counts = counts.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts / counts.sum(axis=1, keepdims=True)
    return np.where(share == 0, epsilon, share)
