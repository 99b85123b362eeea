"""The drift tests by name, with one calling convention for all of them.

``TESTS[name]`` says which column kinds a test applies to, whether it gives a p-value, and
how to run it on binned counts and, where it has one, on raw values:

- ``spec.binned(bins, *, epsilon=1e-4) -> Stats`` on ``NumericBins`` or
  ``CategoricalBins`` (whichever ``spec.kinds`` allows);
- ``spec.exact_numeric(ref, cur, *, epsilon=1e-4) -> Stats`` on (columns × rows) float
  arrays with NaN for missing values, or None where the test is defined on bins only
  (PSI, Jensen–Shannon and Hellinger on numeric columns);
- ``spec.exact_categorical(ref, cur, *, epsilon=1e-4) -> Stats`` on per-column 1-D
  object arrays of category strings (None for missing), counted over the union of each
  column's categories, or None.

Every callable takes ``epsilon`` (``DriftSettings.psi_epsilon``) so the caller passes it
uniformly; only PSI uses it. Each runs all the columns it is given in one vectorized call.

>>> from detectors.schema import Kind
>>> sorted(name for name, spec in TESTS.items() if Kind.CATEGORICAL in spec.kinds)
['chi_square', 'hellinger', 'jensen_shannon', 'linf', 'psi']
>>> TESTS["ks"].has_p_value, TESTS["wasserstein"].has_p_value
(True, False)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from detectors import (
    chi_square,
    cramer_von_mises,
    hellinger,
    jensen_shannon,
    ks,
    linf,
    psi,
    wasserstein,
)
from detectors.schema import Kind
from detectors.stats import CategoricalBins, Stats

DEFAULT_EPSILON = psi.DEFAULT_EPSILON

NUMERIC = frozenset({Kind.NUMERIC})
CATEGORICAL = frozenset({Kind.CATEGORICAL})
BOTH = NUMERIC | CATEGORICAL


@dataclass(frozen=True)
class TestSpec:
    """One drift test: where it applies and how to run it (see the module docstring)."""

    __test__ = False  # not a pytest test class

    name: str
    kinds: frozenset[Kind]
    has_p_value: bool
    binned: Callable[..., Stats]
    exact_numeric: Callable[..., Stats] | None = None
    exact_categorical: Callable[..., Stats] | None = None

    def applies_to(self, kind: Kind) -> bool:
        return kind in self.kinds


def _with_epsilon(fn: Callable[..., Stats], *, uses_it: bool) -> Callable[..., Stats]:
    """``fn`` under the registry's convention: every call may pass ``epsilon``."""

    @functools.wraps(fn)
    def call(*args: object, epsilon: float = DEFAULT_EPSILON) -> Stats:
        return fn(*args, epsilon=epsilon) if uses_it else fn(*args)

    return call


def _on_categories(binned: Callable[..., Stats], *, uses_epsilon: bool) -> Callable[..., Stats]:
    """A test on category shares, run on the exact counts of the raw categories."""

    def call(
        ref: Sequence[np.ndarray], cur: Sequence[np.ndarray], *, epsilon: float = DEFAULT_EPSILON
    ) -> Stats:
        ref_counts, cur_counts = chi_square.category_counts(ref, cur)
        names = tuple(str(i) for i in range(len(ref_counts)))
        bins = CategoricalBins(names, ref_counts, cur_counts)
        return binned(bins, epsilon=epsilon) if uses_epsilon else binned(bins)

    call.__name__ = call.__qualname__ = f"{binned.__module__}.exact_categorical"
    return call


TESTS: dict[str, TestSpec] = {
    spec.name: spec
    for spec in (
        TestSpec(
            name="ks",
            kinds=NUMERIC,
            has_p_value=True,
            binned=_with_epsilon(ks.binned, uses_it=False),
            exact_numeric=_with_epsilon(ks.exact, uses_it=False),
        ),
        TestSpec(
            name="cramer_von_mises",
            kinds=NUMERIC,
            has_p_value=True,
            binned=_with_epsilon(cramer_von_mises.binned, uses_it=False),
            exact_numeric=_with_epsilon(cramer_von_mises.exact, uses_it=False),
        ),
        TestSpec(
            name="wasserstein",
            kinds=NUMERIC,
            has_p_value=False,
            binned=_with_epsilon(wasserstein.binned, uses_it=False),
            exact_numeric=_with_epsilon(wasserstein.exact, uses_it=False),
        ),
        TestSpec(
            name="psi",
            kinds=BOTH,
            has_p_value=False,
            binned=_with_epsilon(psi.binned, uses_it=True),
            exact_categorical=_on_categories(psi.binned, uses_epsilon=True),
        ),
        TestSpec(
            name="jensen_shannon",
            kinds=BOTH,
            has_p_value=False,
            binned=_with_epsilon(jensen_shannon.binned, uses_it=False),
            exact_categorical=_on_categories(jensen_shannon.binned, uses_epsilon=False),
        ),
        TestSpec(
            name="hellinger",
            kinds=BOTH,
            has_p_value=False,
            binned=_with_epsilon(hellinger.binned, uses_it=False),
            exact_categorical=_on_categories(hellinger.binned, uses_epsilon=False),
        ),
        TestSpec(
            name="linf",
            kinds=CATEGORICAL,
            has_p_value=False,
            binned=_with_epsilon(linf.binned, uses_it=False),
            exact_categorical=_on_categories(linf.binned, uses_epsilon=False),
        ),
        TestSpec(
            name="chi_square",
            kinds=CATEGORICAL,
            has_p_value=True,
            binned=_with_epsilon(chi_square.binned, uses_it=False),
            exact_categorical=_with_epsilon(chi_square.exact, uses_it=False),
        ),
    )
}
