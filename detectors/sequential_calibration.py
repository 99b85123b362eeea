"""The sequential detectors' false-alarm curves, measured by simulation on the reference.

For every column and channel of ``detectors/sequential.py`` this draws ``panes`` windows
of ``pane_rows`` rows of unchanged data — multinomial draws from the profile's own bin
and category shares, which is what the window statistics are computed against — turns
them into CUSUM increments exactly as the detector does (same code), and measures:

1. ``slope``: the root ``θ > 0`` of ``mean(exp(θ x)) = 1`` over the simulated increments
   ``x`` (the Cramér–Lundberg exponent: one excursion of the CUSUM reaches ``h`` with
   probability ``~ C·exp(−θ h)``; Siegmund 1985, ch. X);
2. ``intercept``: from the false alarms of the simulated CUSUM restarted after each alarm
   at thresholds ``g/θ``, ``g = 1, 2, …``: at the highest threshold that still has at
   least ``MIN_ALARMS`` alarms, ``log(alarms / panes) + θ h``.

The pair is a ``RunLengthCurve`` per channel, stored in the profile; thresholds for any
expected run time come from it (``detectors/run_length.py``). Fitting where alarms are
still frequent and extrapolating along the exponent errs on the safe side: at small
thresholds run lengths are shorter than the exponential law says (Siegmund's
``2(e^b − b − 1)`` against ``2e^b``), so the fitted rate is too high, and the thresholds
too. ``tests/unit/test_sequential.py`` checks the extrapolation against directly
simulated run lengths.

The dataset statistic needs the columns' joint law: its numeric part is simulated as
Gaussian window scores with the correlation of the columns' per-row scores on the
profile's row sample (independent where there is no sample), its categorical part from
the same multinomial draws.

>>> import numpy as np, pandas as pd
>>> from detectors.profile import build_profile
>>> ref = pd.DataFrame({"x": np.random.default_rng(0).normal(size=20_000)})
>>> cal = calibrate_sequential(build_profile(ref), pane_rows=100, panes=5000)
>>> curve = cal.columns["x"]["location_up"]
>>> 0.8 < curve.slope < 1.2  # Siegmund: 2k = 1 for standard normal increments, k = 1/2
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from detectors.profile import Profile, category_strings
from detectors.run_length import RunLengthCurve, SequentialCalibration
from detectors.schema import as_float_array
from detectors.sequential import (
    DEFAULT_ALLOWANCE,
    DEFAULT_MIN_EFFECT,
    NUMERIC_CHANNELS,
    ROLES,
    SHAPE_CHANNELS,
    PaneScorer,
    siegmund_curve,
)

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_PANE_ROWS = 100
DEFAULT_PANES = 20_000
MIN_ALARMS = 25
_GRID = 16  # thresholds g/θ, g = 1..GRID
_BATCH_ELEMENTS = 4_000_000  # counts held at once: windows × columns × bins


def good_turing_unseen_rates(profile: Profile, reference: pd.DataFrame) -> dict[str, float]:
    """Per categorical column, the rate at which unchanged data shows categories the
    profile does not know: Good–Turing's share of reference rows in categories seen once,
    and at least the share of reference rows outside the profile's known categories."""
    import pandas as pd  # reference building only: the agent's path stays without pandas

    out: dict[str, float] = {}
    for name in profile.categorical_names:
        if name not in reference.columns:
            continue
        strings, miss = category_strings(reference[name].to_numpy())
        freq = pd.Series(strings[~miss]).value_counts()
        rate = unseen_rate_of_counts(freq.to_dict(), profile.categorical[name].known)
        if rate is not None:
            out[name] = rate
    return out


def unseen_rate_of_counts(freq: Mapping[str, int], known: Iterable[str]) -> float | None:
    """:func:`good_turing_unseen_rates` of one column from its category counts (what a
    distributed build merges); None for a column with no present value."""
    present = sum(int(v) for v in freq.values())
    if present == 0:
        return None
    singletons = sum(1 for v in freq.values() if int(v) == 1)
    known_set = set(known)
    outside = sum(int(v) for k, v in freq.items() if k not in known_set)
    return max(singletons, outside) / present


def calibrate_sequential(
    profile: Profile,
    reference: pd.DataFrame | None = None,
    *,
    pane_rows: int = DEFAULT_PANE_ROWS,
    panes: int = DEFAULT_PANES,
    allowance: float = DEFAULT_ALLOWANCE,
    min_effect: float = DEFAULT_MIN_EFFECT,
    seed: int = 0,
    unseen_rate: Mapping[str, float] | None = None,
) -> SequentialCalibration:
    """Run-length curves of every sequential channel of ``profile``'s columns.

    ``reference`` (the data the profile was built from) gives the Good–Turing rates of
    new categories; without it (a profile loaded from an older file) they are taken from
    ``unseen_rate`` or default to half a row in the reference (Krichevsky–Trofimov).
    The increments include the margins of windows of ``pane_rows`` rows: larger windows
    have larger margins, so the curves hold, conservatively, for every window at least
    that large.
    """
    if pane_rows < 1:
        raise ValueError(f"pane_rows must be at least 1, got {pane_rows}")
    if panes < 1000:
        raise ValueError(f"panes={panes} is too few to measure run lengths; use at least 1000")
    rates = dict(unseen_rate or {})
    if reference is not None:
        rates.update(good_turing_unseen_rates(profile, reference))
    scorer = PaneScorer(profile, rates, min_effect)
    rng = np.random.default_rng(seed)
    m, c = len(scorer.numeric_names), len(scorer.categorical_names)
    x_num = np.empty((panes, m, len(NUMERIC_CHANNELS)))
    x_shape = np.empty((panes, c, len(SHAPE_CHANNELS)))
    width = max(profile.numeric_width, profile.categorical_width, 1)
    batch = max(1, _BATCH_ELEMENTS // max(1, (m + c) * width))
    for start in range(0, panes, batch):
        size = min(batch, panes - start)
        num = _draw(rng, scorer.numeric_shares, pane_rows, size)
        cat = _draw(rng, scorer.categorical_shares, pane_rows, size)
        s = scorer.scores(num, cat)
        x_num[start : start + size] = scorer.numeric_increments(s, allowance, margin=True)
        x_shape[start : start + size] = scorer.shape_increments(s, allowance, margin=True)
    z_shape = x_shape[..., 0] + allowance  # the margin-reduced statistic the dataset pools

    columns: dict[str, dict[str, RunLengthCurve]] = {}
    flat = [x_num.reshape(panes, -1), x_shape.reshape(panes, -1)]
    dataset_x, dataset_scale = _dataset_increments(
        profile, scorer, z_shape, rng, allowance, pane_rows
    )
    increments = np.concatenate([*flat, dataset_x], axis=1)
    curves = _fit_curves(increments, allowance)
    it = iter(curves)
    for name in scorer.numeric_names:
        columns[name] = {ch: next(it) for ch in NUMERIC_CHANNELS}
    for name in scorer.categorical_names:
        columns[name] = {ch: next(it) for ch in SHAPE_CHANNELS}
    dataset = {role: next(it) for role in ROLES}
    return SequentialCalibration(
        pane_rows=pane_rows,
        panes=panes,
        allowance=allowance,
        min_effect=min_effect,
        seed=seed,
        columns=columns,
        dataset=dataset,
        dataset_scale=dataset_scale,
        unseen_rate={
            n: float(r) for n, r in zip(scorer.categorical_names, scorer.unseen_rate, strict=True)
        },
    )


def _draw(rng: np.random.Generator, shares: np.ndarray, rows: int, size: int) -> np.ndarray:
    """(size, columns, bins) multinomial counts of ``rows`` rows per window and column."""
    k, w = shares.shape
    out = np.zeros((size, k, w), dtype=np.int64)
    for j in range(k):
        p = shares[j]
        total = p.sum()
        if total <= 0:
            continue
        out[:, j, :] = rng.multinomial(rows, p / total, size=size)
    return out


def _score_correlation(profile: Profile, scorer: PaneScorer, names: list[str]) -> np.ndarray:
    """Correlation of the numeric columns' per-row location scores on the row sample."""
    k = len(names)
    if k < 2 or not all(len(profile.sample.get(n, ())) > 1 for n in names):
        return np.eye(k)
    rows = []
    for name in names:
        j = scorer.numeric_names.index(name)
        x = as_float_array(profile.sample[name])
        finite = np.isfinite(x)
        slot = np.searchsorted(profile.numeric[name].edges, np.where(finite, x, 0.0), side="left")
        rows.append(np.where(finite, scorer.loc_score[j, slot], 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(np.stack(rows))
    r = np.where(np.isfinite(r), r, 0.0)
    np.fill_diagonal(r, 1.0)
    return r


def _dataset_increments(
    profile: Profile,
    scorer: PaneScorer,
    z_shape: np.ndarray,
    rng: np.random.Generator,
    allowance: float,
    pane_rows: int,
) -> tuple[np.ndarray, dict[str, float]]:
    """Simulated increments of each role's dataset CUSUM, and each role's scale."""
    panes = len(z_shape)
    schema = profile.schema
    out = np.zeros((panes, len(ROLES)))
    scales: dict[str, float] = {}
    for i, role in enumerate(ROLES):
        cols = schema.features() if role == "features" else schema.predictions()
        wanted = {col.name for col in cols}
        num = [n for n in scorer.numeric_names if n in wanted]
        cat_idx = [j for j, n in enumerate(scorer.categorical_names) if n in wanted]
        r = _score_correlation(profile, scorer, num)
        scale = math.sqrt(float((r**2).sum()) + len(cat_idx)) if num or cat_idx else 1.0
        scales[role] = scale
        q = np.zeros(panes)
        if num:
            w, v = np.linalg.eigh(r)
            root = v * np.sqrt(np.maximum(w, 0.0))
            z = rng.standard_normal((panes, len(num))) @ root.T
            idx = [scorer.numeric_names.index(n) for n in num]
            reference = 3.0 * np.sqrt(pane_rows / scorer.numeric_ref_rows[idx]) - allowance / 2
            cut = np.maximum(scorer.min_effect * math.sqrt(pane_rows), reference)
            z = np.sign(z) * np.maximum(np.abs(z) - cut, 0.0)
            q += ((z**2 - 1.0) / math.sqrt(2.0)).sum(axis=1)
        if cat_idx:
            q += z_shape[:, cat_idx].sum(axis=1)
        out[:, i] = q / scale - allowance
    return out, scales


def lundberg_exponent(x: np.ndarray) -> np.ndarray:
    """Per column of ``x`` (windows × channels), the root θ > 0 of log mean exp(θ x) = 0;
    +inf for a channel whose increments are never positive."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]

    def f(theta: np.ndarray) -> np.ndarray:
        t = theta[None, :] * x
        top = t.max(axis=0)
        return top + np.log(np.exp(t - top).sum(axis=0)) - math.log(n)

    never = (x <= 0).all(axis=0)
    lo = np.zeros(x.shape[1])
    hi = np.ones(x.shape[1])
    for _ in range(12):  # grow until the root is bracketed (theta up to 4096)
        grow = (f(hi) <= 0) & ~never
        if not grow.any():
            break
        lo = np.where(grow, hi, lo)
        hi = np.where(grow, hi * 2, hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        neg = f(mid) <= 0
        lo = np.where(neg, mid, lo)
        hi = np.where(neg, hi, mid)
    return np.where(never, np.inf, hi)


def _fit_curves(x: np.ndarray, allowance: float) -> list[RunLengthCurve]:
    """One run-length curve per channel (column of ``x``) from simulated increments."""
    panes, channels = x.shape
    theta = lundberg_exponent(x)
    finite = np.isfinite(theta) & (theta > 0)
    safe = np.where(finite, theta, 1.0)
    grid = np.arange(1, _GRID + 1, dtype=np.float64)[:, None]
    h = grid / safe[None, :]
    s = np.zeros((_GRID, channels))
    alarms = np.zeros((_GRID, channels), dtype=np.int64)
    for t in range(panes):
        s += x[t]
        np.maximum(s, 0.0, out=s)
        hit = s > h
        alarms += hit
        s[hit] = 0.0
    curves: list[RunLengthCurve] = []
    for j in range(channels):
        if not finite[j]:
            # Increments never positive: the CUSUM stays at 0 and never alarms.
            curves.append(RunLengthCurve(intercept=-1000.0, slope=1.0))
            continue
        counts = alarms[:, j]
        good = np.flatnonzero(counts >= MIN_ALARMS)
        if len(good) == 0:
            g, count = 1, MIN_ALARMS  # rarer than measurable: bound the rate from above
        else:
            g, count = int(good[-1]) + 1, int(counts[good[-1]])
        intercept = math.log(count / panes) + g
        curve = RunLengthCurve(intercept=intercept, slope=float(theta[j]))
        # Never less conservative than a standard normal channel would be.
        normal = siegmund_curve(allowance)
        if curve.slope > normal.slope * 4:
            curve = RunLengthCurve(intercept=intercept, slope=normal.slope * 4)
        curves.append(curve)
    return curves
