"""L-infinity distance between category shares, on every categorical column at once.

The largest change in any one category's share of rows:

    L∞ = max_i |p_cur,i − p_ref,i|,

read directly as "some category gained or lost this fraction of the traffic". Insensitive
to many small moves that Jensen–Shannon or PSI would add up; with the "unseen" bucket
included, a new category that takes 12% of the rows gives at least 0.12. No p-value; an
empty window (or an empty reference) gives NaN.

Parameters of ``binned``: ``bins`` (CategoricalBins).

>>> import numpy as np
>>> from detectors.stats import CategoricalBins
>>> bins = CategoricalBins(("plan",), np.array([[60, 40, 0, 0]]), np.array([[45, 40, 0, 15]]))
>>> binned(bins).statistic.tolist()
[0.15]

Reference: Breck, E., Polyzotis, N., Roy, S., Whang, S. E. and Zinkevich, M. (2019). Data
validation for machine learning. Proceedings of SysML 2019 (the L∞ distance between
categorical distributions, chosen there because its value reads directly as a share of
traffic; TensorFlow Data Validation's drift comparator for categorical features).
"""

from __future__ import annotations

import numpy as np

from detectors.stats import CategoricalBins, Stats


def binned(bins: CategoricalBins) -> Stats:
    """Largest absolute change of any category's share."""
    if not isinstance(bins, CategoricalBins):
        raise TypeError(f"the L∞ distance compares categorical bins, not {type(bins).__name__}")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = bins.ref / bins.ref.sum(axis=1, keepdims=True)
        q = bins.cur / bins.cur.sum(axis=1, keepdims=True)
    return Stats(statistic=np.max(np.abs(q - p), axis=1, initial=0.0))
