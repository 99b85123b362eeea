"""Hellinger distance, on every column at once (numeric bins or categories).

Measures the distance between the square roots of the binned shares:

    H = sqrt( Σ_i (√p_ref,i − √p_cur,i)² / 2 ) = sqrt(1 − Σ_i √(p_ref,i · p_cur,i)),

0 for identical shares, 1 for disjoint supports. Bounded and symmetric like Jensen–Shannon,
and like it needs no smoothing of empty bins; it is computed from the first form, which
does not lose precision to cancellation when the distributions are close. No p-value; an
empty window (or an empty reference) gives NaN.

Parameters of ``binned``: ``bins`` (NumericBins or CategoricalBins).

>>> import numpy as np
>>> from detectors.stats import CategoricalBins
>>> bins = CategoricalBins(("a", "b"), np.array([[1, 1], [1, 0]]), np.array([[1, 1], [0, 1]]))
>>> binned(bins).statistic.tolist()
[0.0, 1.0]

Reference: Hellinger, E. (1909). Neue Begründung der Theorie quadratischer Formen von
unendlichvielen Veränderlichen. Journal für die reine und angewandte Mathematik 136,
210–271. Le Cam, L. and Yang, G. L. (2000). Asymptotics in Statistics, ch. 3. Springer.
"""

from __future__ import annotations

import numpy as np

from detectors.stats import CategoricalBins, NumericBins, Stats


def binned(bins: NumericBins | CategoricalBins) -> Stats:
    """Hellinger distance between the reference and current bin shares."""
    if not isinstance(bins, (NumericBins, CategoricalBins)):
        raise TypeError(
            f"the Hellinger distance compares numeric or categorical bins, "
            f"not {type(bins).__name__}"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        p = bins.ref / bins.ref.sum(axis=1, keepdims=True)
        q = bins.cur / bins.cur.sum(axis=1, keepdims=True)
    h = np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum(axis=1) / 2)
    return Stats(statistic=np.minimum(h, 1.0))
