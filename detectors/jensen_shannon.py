"""Jensen–Shannon distance, on every column at once (numeric bins or categories).

Measures how distinguishable the binned reference and current distributions are: with
M = (P_ref + P_cur) / 2,

    JS = sqrt( (KL(P_ref ‖ M) + KL(P_cur ‖ M)) / 2 ),    logarithms in base 2,

so 0 means identical shares and 1 disjoint supports. Unlike PSI it needs no smoothing (M is
never zero where P is not), it is symmetric and a metric. It equals
``scipy.spatial.distance.jensenshannon(p, q, base=2)`` on the bin shares. No p-value; an
empty window (or an empty reference) gives NaN.

Parameters of ``binned``: ``bins`` (NumericBins or CategoricalBins).

>>> import numpy as np
>>> from detectors.stats import CategoricalBins
>>> bins = CategoricalBins(("a", "b"), np.array([[5, 5, 0], [1, 0, 0]]),
...                        np.array([[5, 5, 0], [0, 0, 3]]))
>>> binned(bins).statistic.tolist()
[0.0, 1.0]

References: Lin, J. (1991). Divergence measures based on the Shannon entropy. IEEE
Transactions on Information Theory 37(1), 145–151. Endres, D. M. and Schindelin, J. E.
(2003). A new metric for probability distributions. IEEE Transactions on Information
Theory 49(7), 1858–1860.
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

from detectors.stats import CategoricalBins, NumericBins, Stats


def binned(bins: NumericBins | CategoricalBins) -> Stats:
    """JS distance (base 2) between the reference and current bin shares."""
    if not isinstance(bins, (NumericBins, CategoricalBins)):
        raise TypeError(
            f"the Jensen–Shannon distance compares numeric or categorical bins, "
            f"not {type(bins).__name__}"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        p = bins.ref / bins.ref.sum(axis=1, keepdims=True)
        q = bins.cur / bins.cur.sum(axis=1, keepdims=True)
    mid = (p + q) / 2.0
    js = rel_entr(p, mid).sum(axis=1) + rel_entr(q, mid).sum(axis=1)
    return Stats(statistic=np.sqrt(np.maximum(js / np.log(2.0), 0.0) / 2.0))
