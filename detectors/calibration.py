"""Thresholds measured on the reference itself, for a chosen false-alarm rate.

A fixed threshold means a different false-alarm rate at every window size: the spread of
a statistic under no drift shrinks like 1/sqrt(rows), and heavy ties or skew change it
again. Calibration measures that spread instead of assuming it: draw ``draws`` random
chunks of ``window_rows`` rows from the reference, compare each chunk with the rest of the
reference exactly as a window is compared with the profile (same bins, same binned test
functions), and keep, per column and test, the conformal ``1 - false_alarm_rate``
quantile of the statistic: the order statistic of rank ``ceil((draws + 1)(1 - rate))``.
A window of unchanged data then exceeds it with probability at most ``false_alarm_rate``
(exactly that for a continuous statistic), whatever the column's shape.

The reference is binned once (one bin index per row and column); each chunk's counts are
one ``bincount`` over those indices, for all columns and a batch of draws at once, and its
per-bin sums (for the bin means the Wasserstein distance places mass at) one more, weighted
by the values.

>>> import numpy as np, pandas as pd
>>> from detectors.profile import build_profile
>>> ref = pd.DataFrame({"x": np.random.default_rng(0).exponential(size=20_000)})
>>> profile = build_profile(ref)
>>> cal = calibrate(profile, ref, window_rows=500, false_alarm_rate=0.05, tests=["ks"])
>>> profile = profile.with_calibration(cal)
>>> 0.0 < cal.thresholds["x"]["ks"] < 0.2
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from detectors.profile import Calibration, Profile, category_strings
from detectors.schema import Kind, as_float_array
from detectors.settings import DriftSettings
from detectors.sketch import WindowSketch
from detectors.stats import CategoricalBins, NumericBins
from detectors.tests_registry import TESTS

# Elements gathered per batch of draws (columns × draws × window rows): bounds memory.
_BATCH_ELEMENTS = 4_000_000


def calibrate(
    profile: Profile,
    reference: pd.DataFrame,
    window_rows: int,
    false_alarm_rate: float = 0.01,
    draws: int = 200,
    tests: Sequence[str] | None = None,
    seed: int = 0,
    *,
    epsilon: float = DriftSettings().psi_epsilon,
) -> Calibration:
    """Per column and test, the statistic that windows of ``window_rows`` rows of unchanged
    data exceed with probability ``false_alarm_rate``.

    ``reference`` is the data the profile was built from (or more of the same). ``tests``
    defaults to every test applicable to each column's kind. Store the result with
    ``profile.with_calibration(cal)``; ``evaluate_window`` then uses it for windows of
    about this size.
    """
    n = len(reference)
    if window_rows < 1:
        raise ValueError(f"window_rows must be at least 1, got {window_rows}")
    if window_rows > n / 2:
        raise ValueError(
            f"window_rows={window_rows} is more than half the reference ({n} rows): each "
            "chunk is compared with the rest of the reference, which must be at least as "
            "large; calibrate smaller windows or on a larger reference"
        )
    if not 0.0 < false_alarm_rate < 1.0:
        raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
    if draws * false_alarm_rate < 1.0:
        raise ValueError(
            f"draws={draws} cannot resolve a false-alarm rate of {false_alarm_rate}: use at "
            f"least {math.ceil(1 / false_alarm_rate)} draws"
        )
    chosen = list(TESTS) if tests is None else list(tests)
    unknown = [t for t in chosen if t not in TESTS]
    if unknown:
        raise ValueError(f"unknown tests {unknown}; known: {sorted(TESTS)}")
    absent = [c for c in profile.schema.names if c not in reference.columns]
    if absent:
        raise ValueError(f"reference lacks the profile's columns {absent}")

    rng = np.random.default_rng(seed)
    chunks = np.stack([rng.choice(n, size=window_rows, replace=False) for _ in range(draws)])
    stats: dict[str, dict[str, np.ndarray]] = {}  # column -> test -> (draws,) statistics
    num_tests = [t for t in chosen if Kind.NUMERIC in TESTS[t].kinds]
    cat_tests = [t for t in chosen if Kind.CATEGORICAL in TESTS[t].kinds]
    if profile.numeric_names and num_tests:
        binned = _NumericReference(profile, reference)
        _collect(stats, profile.numeric_names, num_tests, binned, chunks, epsilon)
    if profile.categorical_names and cat_tests:
        binned_c = _CategoricalReference(profile, reference)
        _collect(stats, profile.categorical_names, cat_tests, binned_c, chunks, epsilon)

    thresholds: dict[str, dict[str, float]] = {}
    for column, by_test in stats.items():
        for test, values in by_test.items():
            level = conformal_quantile(values, false_alarm_rate)
            if math.isfinite(level):
                thresholds.setdefault(column, {})[test] = level
    return Calibration(
        window_rows=window_rows,
        false_alarm_rate=false_alarm_rate,
        draws=draws,
        thresholds=thresholds,
    )


def conformal_quantile(values: np.ndarray, false_alarm_rate: float) -> float:
    """The order statistic of rank ``ceil((m + 1)(1 - rate))`` of the m finite values
    (capped at the largest): a new value from the same distribution exceeds it with
    probability at most ``rate``. NaN when there are no finite values."""
    finite = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    m = len(finite)
    if m == 0:
        return float("nan")
    rank = min(math.ceil((m + 1) * (1.0 - false_alarm_rate)), m)
    return float(finite[rank - 1])


def _chunk_counts(
    slots: np.ndarray,
    chunk_rows: np.ndarray,
    k: int,
    width: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """(draws, columns, bins) counts of each chunk: one bincount over offset slot indices.

    ``slots[j, r]`` is ``j * width + bin`` of row r in column j, or ``k * width`` (ignored)
    where the row has no value; ``chunk_rows`` is (draws, rows). With ``weights`` (one per
    column and row, like ``slots``) the sums of the weights instead of the counts.
    """
    b = len(chunk_rows)
    size = k * width + 1
    offsets = (np.arange(b) * size)[None, :, None]
    w = None if weights is None else weights[:, chunk_rows].ravel()
    counts = np.bincount((slots[:, chunk_rows] + offsets).ravel(), w, minlength=b * size)
    return counts.reshape(b, size)[:, :-1].reshape(b, k, width)


class _NumericReference:
    """The reference's numeric columns binned once: bin index per (column, row)."""

    def __init__(self, profile: Profile, reference: pd.DataFrame) -> None:
        names = profile.numeric_names
        self.names = tuple(names)
        self.width = profile.numeric_width
        self.template = NumericBins.from_profile(profile, WindowSketch(profile, reservoir_size=0))
        k, n = len(names), len(reference)
        self.sentinel = k * self.width  # the slot of values outside every histogram
        self.slots = np.full((k, n), self.sentinel, dtype=np.int32)
        # Centred values (NaN where not finite): their power sums give the rest's
        # standard deviation per chunk without cancellation.
        self.xc = np.full((k, n), np.nan)
        self.centre = np.zeros(k)
        self.ref_min, self.ref_max = np.full(k, np.inf), np.full(k, -np.inf)
        for j, name in enumerate(names):  # edges differ per column
            x = as_float_array(reference[name].to_numpy())
            finite = np.isfinite(x)
            if not finite.any():
                continue
            values = x[finite]
            edges = profile.numeric[name].edges
            self.slots[j, finite] = np.searchsorted(edges, values, side="left") + j * self.width
            self.centre[j] = values.mean()
            self.ref_min[j], self.ref_max[j] = values.min(), values.max()
            self.xc[j, finite] = values - self.centre[j]
        self.total = _chunk_counts(self.slots, np.arange(n)[None], k, self.width)[0]
        self.xc0 = np.nan_to_num(self.xc, nan=0.0)
        # per-bin sums of the centred values: the rest's bin means are total − chunk
        self.total_sums = _chunk_counts(self.slots, np.arange(n)[None], k, self.width, self.xc0)[0]
        self.count = (~np.isnan(self.xc)).sum(axis=1)
        self.sum = self.xc0.sum(axis=1)
        self.sumsq = np.einsum("ij,ij->i", self.xc0, self.xc0)

    def bins(self, chunk_rows: np.ndarray) -> NumericBins:
        """Chunk against rest for a batch of draws, stacked draw-major: row d*k + j."""
        b, k = len(chunk_rows), len(self.names)
        cur = _chunk_counts(self.slots, chunk_rows, k, self.width)
        ref = self.total[None] - cur
        cur_sums = _chunk_counts(self.slots, chunk_rows, k, self.width, self.xc0)
        ref_sums = self.total_sums[None] - cur_sums
        vals = self.xc[:, chunk_rows]  # (k, b, w), NaN where not finite
        present = ~np.isnan(vals)
        vals0 = np.where(present, vals, 0.0)
        n_rest = (self.count[:, None] - present.sum(axis=2)).T  # (b, k)
        s_rest = (self.sum[:, None] - vals0.sum(axis=2)).T
        q_rest = (self.sumsq[:, None] - (vals0**2).sum(axis=2)).T
        centre = self.centre[None, :, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            cur_means = np.where(cur > 0, cur_sums / cur + centre, np.nan)
            ref_means = np.where(ref > 0, ref_sums / ref + centre, np.nan)
            var = (q_rest - s_rest**2 / n_rest) / (n_rest - 1)
            cur_min = np.where(present, vals, np.inf).min(axis=2).T + self.centre
            cur_max = np.where(present, vals, -np.inf).max(axis=2).T + self.centre
        t = self.template
        return NumericBins(
            names=self.names * b,
            ref=ref.reshape(b * k, self.width),
            cur=cur.reshape(b * k, self.width),
            edges=np.tile(t.edges, (b, 1)),
            nbins=np.tile(t.nbins, b),
            ref_min=np.tile(self.ref_min, b),
            ref_max=np.tile(self.ref_max, b),
            ref_std=np.sqrt(np.maximum(var, 0.0)).reshape(b * k),
            cur_min=cur_min.reshape(b * k),
            cur_max=cur_max.reshape(b * k),
            ref_means=ref_means.reshape(b * k, self.width),
            cur_means=cur_means.reshape(b * k, self.width),
        )


class _CategoricalReference:
    """The reference's categorical columns as slots (vocabulary, other, unseen) per row."""

    def __init__(self, profile: Profile, reference: pd.DataFrame) -> None:
        names = profile.categorical_names
        self.names = tuple(names)
        self.width = profile.categorical_width
        k = len(names)
        self.sentinel = k * self.width
        slots = np.full((k, len(reference)), self.sentinel, dtype=np.int32)
        for j, name in enumerate(names):
            cp = profile.categorical[name]
            strings, miss = category_strings(reference[name].to_numpy())
            vocabulary = set(cp.vocabulary)
            rest = [c for c in cp.known if c not in vocabulary]
            idx = pd.Index([*cp.vocabulary, *rest], dtype=object).get_indexer(strings[~miss])
            top = len(cp.vocabulary)
            slot = np.where(idx < 0, self.width - 1, np.where(idx < top, idx, self.width - 2))
            slots[j, ~miss] = slot + j * self.width
        self.slots = slots
        self.total = _chunk_counts(slots, np.arange(slots.shape[1])[None], k, self.width)[0]

    def bins(self, chunk_rows: np.ndarray) -> CategoricalBins:
        b, k = len(chunk_rows), len(self.names)
        cur = _chunk_counts(self.slots, chunk_rows, k, self.width)
        ref = self.total[None] - cur
        return CategoricalBins(
            names=self.names * b,
            ref=ref.reshape(b * k, self.width),
            cur=cur.reshape(b * k, self.width),
        )


def _collect(
    out: dict[str, dict[str, np.ndarray]],
    names: Sequence[str],
    tests: Sequence[str],
    reference: _NumericReference | _CategoricalReference,
    chunks: np.ndarray,
    epsilon: float,
) -> None:
    """Every test's statistic for every column and draw, a batch of draws per call."""
    draws, rows = chunks.shape
    k = len(names)
    batch = max(1, _BATCH_ELEMENTS // max(1, k * rows))
    values = {t: np.empty((draws, k)) for t in tests}
    for start in range(0, draws, batch):
        part = chunks[start : start + batch]
        bins = reference.bins(part)
        empty = (bins.cur.sum(axis=1) == 0) | (bins.ref.sum(axis=1) == 0)
        for test in tests:
            with np.errstate(invalid="ignore", divide="ignore"):
                stat = np.asarray(TESTS[test].binned(bins, epsilon=epsilon).statistic, float)
            stat = np.where(empty, np.nan, stat)
            values[test][start : start + len(part)] = stat.reshape(len(part), k)
    for j, name in enumerate(names):
        out.setdefault(name, {}).update({t: values[t][:, j] for t in tests})
