"""Sequential change detection over a stream of windows: Page's CUSUM per column and for
the dataset, with thresholds set by the expected run time between false alarms.

A window judged alone must be strong evidence to flag a column, so a small change goes
unseen window after window; and thousands of windows judged alone each at a fixed level
raise false alarms at that rate forever. A CUSUM (Page 1954) accumulates the evidence of
consecutive windows instead: with ``z_t`` a window statistic standardised to mean 0 and
variance 1 under no change,

    S_t = max(0, S_{t-1} + z_t − k − margin_t),        alarm when S_t > h,

so unchanged windows keep ``S`` near 0, while a change of a fraction of a window's
standard error adds to ``S`` every window until it crosses ``h`` — long before one
window could show it. Among detectors with a given expected run length between false
alarms (ARL0) it has the smallest worst-case detection delay (Lorden 1971; Moustakides
1986). ``h`` is set per column and channel from the run-length curve measured on the
reference (``detectors/run_length.py``, ``detectors/sequential_calibration.py``).

What each window contributes, all from the window's histogram against the profile's:

- numeric columns: the mean **mid-rank** ``u = F_ref(x−) + p_ref(x)/2`` of the window's
  values (a Mann–Whitney statistic against the reference: 95% of the t-test's efficiency
  on a normal shift, robust to heavy tails, exact with ties) for ``location_up`` and
  ``location_down``, and the mean of ``(u − ½)²`` (Mood's squared-rank statistic, 1954)
  for ``scale_up`` and ``scale_down``. Both are sums of a bounded score per row, so their
  mean and variance under no change follow exactly from the reference shares, for any
  window size: ``z = (Σ score − n·mean) / sqrt(n·var)``.
- categorical columns: ``shape``, Pearson's X² of the window's seen categories against
  the reference shares, standardised by its exact multinomial mean ``K − 1`` and variance
  ``2(K − 1) + (Σ 1/p − K² − 2K + 2)/n`` (Haldane 1937); and ``unseen``, the count of rows
  in categories the reference never had, as a Poisson CUSUM (Lucas 1985) from the
  Good–Turing rate of new categories in unchanged data (Good 1953) to that rate plus
  ``new_category_share``, whose threshold ``log(ARL0 in rows)`` is Lorden's bound.
- the dataset: ``Q = (Σ_numeric (z_loc² − 1)/√2 + Σ_categorical z_shape) / scale``, the
  columns' evidence pooled (``scale`` from their correlation on the reference sample), so
  many small changes at once are found before any single column's.

``margin_t`` is the change too small to matter, in the window's standard errors: the
larger of ``min_effect·sqrt(n)`` (``min_effect`` per row, in score standard deviations;
Cohen's w for ``shape``) and ``3·sqrt(n/N_ref) − k/2``: a difference between the
reference sample and its population is the same in every window, about
``sqrt(n/N_ref)`` standard errors, and would otherwise accumulate in windows that are
not small against the reference; three of them may take at most half the allowance.
Both grow with ``sqrt(n)``, so very large windows accumulate only changes beyond them.
The thresholds are calibrated with the margins of ``pane_rows``-row windows; larger
windows have larger margins, so the false-alarm guarantee holds for them too.

After an alarm the channel's column restarts from 0 (Page's renewal), so a change that
persists fires again after about one detection delay.

>>> import numpy as np, pandas as pd
>>> from detectors.profile import build_profile
>>> from detectors.sequential_calibration import calibrate_sequential
>>> from detectors.sketch import WindowSketch
>>> rng = np.random.default_rng(0)
>>> profile = build_profile(pd.DataFrame({"x": rng.normal(size=20_000)}))
>>> cal = calibrate_sequential(profile, pane_rows=50, panes=4000)
>>> detector = SequentialDetector(profile, cal, SequentialSettings())
>>> state = detector.new_state()
>>> fired_at = None
>>> for t in range(200):  # 50-row windows; a 0.25-std shift from window 100
...     sketch = WindowSketch(profile)
...     _ = sketch.update({"x": rng.normal(0.25 if t >= 100 else 0.0, size=50)})
...     step = detector.update(state, sketch, at=float((t + 1) * 50))
...     if step.columns["x"].fired and fired_at is None:
...         fired_at = step.columns["x"].detected_at
>>> 5_000 < fired_at < 6_500
True

References: E. S. Page (1954), Continuous inspection schemes, Biometrika 41; G. Lorden
(1971), Procedures for reacting to a change in distribution, Ann. Math. Statist. 42;
D. Siegmund (1985), Sequential Analysis, Springer; J. M. Lucas (1985), Counted data
CUSUM's, Technometrics 27; A. M. Mood (1954), On the asymptotic efficiency of certain
nonparametric two-sample tests, Ann. Math. Statist. 25; I. J. Good (1953), The population
frequencies of species, Biometrika 40.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.profile import Profile
from detectors.results import Sequential
from detectors.run_length import RunLengthCurve, SequentialCalibration
from detectors.sketch import WindowSketch

# Each statistic feeds CUSUMs with the allowance k and with 0.4 k: one tuned to a change
# of 2k standard errors per window, one to changes 2.5 times smaller, which the first
# cannot accumulate (a multi-chart CUSUM: Han, Tsung, Hu and Wang 2007).
ALLOWANCE_BANK = (1.0, 0.4)
_NUMERIC_BASE = ("location_up", "location_down", "scale_up", "scale_down")
NUMERIC_CHANNELS = (*_NUMERIC_BASE, *(f"{c}_small" for c in _NUMERIC_BASE))
SHAPE_CHANNELS = ("shape", "shape_small")
CATEGORICAL_CHANNELS = (*SHAPE_CHANNELS, "unseen")
ROLES = ("features", "predictions")
DATASET_CHANNEL = "dataset"

DEFAULT_ALLOWANCE = 0.5
DEFAULT_MIN_EFFECT = 0.005
DEFAULT_NEW_CATEGORY_SHARE = 0.01
# 90 days of one-minute windows.
DEFAULT_EXPECTED_RUN_WINDOWS = 90 * 24 * 60.0


@dataclass(frozen=True)
class SequentialSettings:
    """How the sequential detectors run; ``monitor.yaml``'s ``drift.sequential``.

    ``expected_run_windows`` is the expected number of windows of unchanged data between
    two false alarms of one column (ARL0); the dataset detector gets the same.
    ``allowance`` is Page's ``k`` in standard errors of one window, ``min_effect`` the
    smallest change worth accumulating (per row, in score standard deviations).
    """

    enabled: bool = True
    expected_run_windows: float = DEFAULT_EXPECTED_RUN_WINDOWS
    allowance: float = DEFAULT_ALLOWANCE
    min_effect: float = DEFAULT_MIN_EFFECT
    new_category_share: float = DEFAULT_NEW_CATEGORY_SHARE

    def __post_init__(self) -> None:
        if not self.expected_run_windows > 1:
            raise ValueError(
                f"expected_run_windows must be more than 1, got {self.expected_run_windows}"
            )
        if not self.allowance > 0:
            raise ValueError(f"allowance must be positive, got {self.allowance}")
        if not self.min_effect >= 0:
            raise ValueError(f"min_effect must be >= 0, got {self.min_effect}")
        if not 0 < self.new_category_share < 1:
            raise ValueError(f"new_category_share must be in (0, 1), got {self.new_category_share}")


def siegmund_curve(allowance: float) -> RunLengthCurve:
    """The run-length curve of a CUSUM on N(0, 1) increments (Siegmund's approximation,
    ARL0 ≈ exp(2k(h + 1.166)) / (2k²)): the fallback for a channel with no simulation."""
    k = allowance
    return RunLengthCurve(intercept=math.log(2 * k * k) - 2 * k * 1.166, slope=2 * k)


@dataclass(frozen=True)
class Scores:
    """Standardised window statistics, per column (leading axes: any batch of windows)."""

    n_numeric: np.ndarray  # (..., m) finite values per numeric column
    location: np.ndarray  # (..., m)
    scale: np.ndarray  # (..., m)
    n_seen: np.ndarray  # (..., c) rows in categories the reference has
    shape: np.ndarray  # (..., c)
    shape_sd: np.ndarray  # (..., c) standard deviation of X² under no change
    unseen: np.ndarray  # (..., c) rows in categories the reference never had


class PaneScorer:
    """The no-change moments of every column's window statistics, from the profile."""

    def __init__(
        self,
        profile: Profile,
        unseen_rate: Mapping[str, float] | None = None,
        min_effect: float = DEFAULT_MIN_EFFECT,
    ) -> None:
        self.numeric_names = list(profile.numeric_names)
        self.categorical_names = list(profile.categorical_names)
        counts = profile.numeric_counts.astype(np.float64)
        n_ref = counts.sum(axis=1)
        p = counts / np.maximum(n_ref, 1.0)[:, None]
        self.numeric_shares = p
        mid = np.cumsum(p, axis=1) - p / 2  # mid-rank of each bin under the reference
        self.loc_score = mid - 0.5
        sq = self.loc_score**2
        sq_mean = (p * sq).sum(axis=1)
        self.scale_score = sq - sq_mean[:, None]
        # A constant reference column has no spread: floor the variances as if one of
        # N + 1 reference rows had been at an extreme.
        floor = 1.0 / (16.0 * (n_ref + 1.0))
        self.loc_sd = np.sqrt(np.maximum((p * self.loc_score**2).sum(axis=1), floor))
        self.scale_sd = np.sqrt(np.maximum((p * self.scale_score**2).sum(axis=1), floor / 4))
        self.min_effect = min_effect
        self.numeric_ref_rows = np.maximum(n_ref, 1.0)

        cat = profile.categorical_counts.astype(np.float64)
        c_ref = cat.sum(axis=1)
        self.seen = cat > 0
        self.categorical_shares = cat / np.maximum(c_ref, 1.0)[:, None]
        self.k_seen = self.seen.sum(axis=1).astype(np.float64)
        with np.errstate(divide="ignore"):
            inv = np.where(self.seen, 1.0 / np.where(self.seen, self.categorical_shares, 1.0), 0.0)
        self.inv_sum = inv.sum(axis=1)
        dof = np.maximum(self.k_seen - 1.0, 0.0)
        resolution = (dof + 3.0 * np.sqrt(2.0 * dof)) / np.maximum(c_ref, 1.0)
        self.shape_resolution = resolution
        rates = unseen_rate or {}
        kt = 0.5 / (c_ref + 1.0)  # Krichevsky–Trofimov: half a row never seen
        self.unseen_rate = np.array(
            [
                max(float(rates.get(n, 0.0)), float(kt[j]))
                for j, n in enumerate(self.categorical_names)
            ]
        )

    def scores(self, numeric_counts: np.ndarray, categorical_counts: np.ndarray) -> Scores:
        """Standardised statistics of windows with these counts (laid out like the
        profile's ``numeric_counts`` / ``categorical_counts``, any leading axes)."""
        num = np.asarray(numeric_counts, dtype=np.float64)
        n = num.sum(axis=-1)
        root = np.sqrt(np.maximum(n, 1.0))
        loc = (num * self.loc_score).sum(axis=-1) / (root * self.loc_sd)
        scl = (num * self.scale_score).sum(axis=-1) / (root * self.scale_sd)
        cat = np.asarray(categorical_counts, dtype=np.float64)
        seen_counts = np.where(self.seen, cat, 0.0)
        n_seen = seen_counts.sum(axis=-1)
        unseen = cat.sum(axis=-1) - n_seen
        ns = np.maximum(n_seen, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = ns[..., None] * self.categorical_shares
            x2 = np.where(self.seen, seen_counts**2 / np.where(self.seen, expected, 1.0), 0.0)
        x2 = x2.sum(axis=-1) - ns
        k = self.k_seen
        var = 2 * (k - 1) + (self.inv_sum - k * k - 2 * k + 2) / ns
        sd = np.sqrt(np.maximum(var, 0.0))
        ok = (n_seen > 0) & (k >= 2) & (sd > 1e-12)
        shape = np.where(ok, (x2 - (k - 1)) / np.where(ok, sd, 1.0), 0.0)
        return Scores(
            n_numeric=n,
            location=np.where(n > 0, loc, 0.0),
            scale=np.where(n > 1, scl, 0.0),
            n_seen=n_seen,
            shape=shape,
            shape_sd=np.where(ok, sd, 1.0),
            unseen=unseen,
        )

    def numeric_margin(self, s: Scores, allowance: float) -> np.ndarray:
        """(..., m) the margin of each numeric window, in standard errors: ``min_effect``,
        and three standard errors of the reference beyond half the allowance."""
        n = s.n_numeric
        reference = 3.0 * np.sqrt(n / self.numeric_ref_rows) - allowance / 2
        return np.maximum(self.min_effect * np.sqrt(n), reference)

    def shape_margin(self, s: Scores, allowance: float) -> np.ndarray:
        """(..., c) the same for ``shape``, in X² standard deviations (Cohen's w²·n)."""
        n = s.n_seen
        floor = n * self.min_effect**2 / s.shape_sd
        return np.maximum(floor, n * self.shape_resolution / s.shape_sd - allowance / 2)

    def numeric_increments(self, s: Scores, allowance: float, margin: bool) -> np.ndarray:
        """(..., m, 8) CUSUM increments of the numeric channels (``NUMERIC_CHANNELS``)."""
        z = np.stack([s.location, -s.location, s.scale, -s.scale], axis=-1)
        x = np.concatenate([z - allowance * b for b in ALLOWANCE_BANK], axis=-1)
        if margin:
            x = x - self.numeric_margin(s, allowance)[..., None]
        return x

    def shape_increments(self, s: Scores, allowance: float, margin: bool) -> np.ndarray:
        """(..., c, 2) CUSUM increments of the categorical ``SHAPE_CHANNELS``."""
        x = np.stack([s.shape - allowance * b for b in ALLOWANCE_BANK], axis=-1)
        if margin:
            x = x - self.shape_margin(s, allowance)[..., None]
        return x

    def unseen_increments(self, s: Scores, share: float) -> np.ndarray:
        """(..., c) Poisson log-likelihood ratios of the ``unseen`` channel."""
        lam0 = self.unseen_rate
        lam1 = lam0 + share
        rows = s.n_seen + s.unseen
        return s.unseen * np.log(lam1 / lam0) - rows * (lam1 - lam0)

    def dataset_statistic(
        self,
        s: Scores,
        numeric: np.ndarray,
        categorical: np.ndarray,
        scale: float,
        allowance: float,
    ) -> np.ndarray:
        """The pooled statistic ``Q`` of the columns selected by the two boolean masks,
        each column's statistic reduced by its margin."""
        cut = self.numeric_margin(s, allowance)
        loc = np.sign(s.location) * np.maximum(np.abs(s.location) - cut, 0.0)
        shape = s.shape - self.shape_margin(s, allowance)
        present = s.n_numeric > 0
        terms = np.where(present & numeric, (loc**2 - 1.0) / math.sqrt(2.0), 0.0).sum(axis=-1)
        terms = terms + np.where((s.n_seen > 0) & categorical, shape, 0.0).sum(axis=-1)
        return terms / scale


@dataclass
class SequentialState:
    """The CUSUMs of one stream (one model version): numeric (m × 4), categorical (c × 2)
    and one per role. JSON-serialisable through ``to_dict``."""

    numeric: np.ndarray
    categorical: np.ndarray
    dataset: np.ndarray
    windows: int = 0
    fired: dict[str, float] = field(default_factory=dict)  # column or role -> last alarm

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric.tolist(),
            "categorical": self.categorical.tolist(),
            "dataset": self.dataset.tolist(),
            "windows": self.windows,
            "fired": dict(self.fired),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], like: SequentialState) -> SequentialState:
        """A state from ``to_dict``; ``ValueError`` when its shape is not ``like``'s (the
        profile's columns changed)."""
        out = cls(
            numeric=np.asarray(d["numeric"], dtype=np.float64).reshape(-1, len(NUMERIC_CHANNELS)),
            categorical=np.asarray(d["categorical"], dtype=np.float64).reshape(
                -1, len(CATEGORICAL_CHANNELS)
            ),
            dataset=np.asarray(d["dataset"], dtype=np.float64),
            windows=int(d.get("windows", 0)),
            fired={str(k): float(v) for k, v in d.get("fired", {}).items()},
        )
        for name in ("numeric", "categorical", "dataset"):
            a, b = getattr(out, name), getattr(like, name)
            if a.shape != b.shape or not np.isfinite(a).all():
                raise ValueError(f"sequential state {name}: shape {a.shape}, expected {b.shape}")
        return out


@dataclass(frozen=True)
class SequentialStep:
    """One window's verdicts: per column and per role (``features``, ``predictions``)."""

    columns: dict[str, Sequential]
    dataset: dict[str, Sequential]


class SequentialDetector:
    """Page's CUSUMs of every column of a profile, thresholds fixed at construction."""

    def __init__(
        self,
        profile: Profile,
        calibration: SequentialCalibration,
        settings: SequentialSettings,
    ) -> None:
        self.profile = profile
        self.calibration = calibration
        self.settings = settings
        self.scorer = PaneScorer(profile, calibration.unseen_rate, settings.min_effect)
        arl = settings.expected_run_windows
        fallback = siegmund_curve(settings.allowance)
        curves = calibration.columns
        # Each column has several channels: each gets ARL0 × channels, so the column's
        # false alarms (the sum of its channels') come once per ARL0 (Bonferroni).
        nc = len(NUMERIC_CHANNELS)
        self.numeric_thresholds = np.array(
            [
                [curves.get(n, {}).get(ch, fallback).threshold(arl * nc) for ch in NUMERIC_CHANNELS]
                for n in self.scorer.numeric_names
            ]
        ).reshape(-1, nc)
        # unseen: Lorden's bound, in rows; windows of the calibrated size.
        ncat = len(CATEGORICAL_CHANNELS)
        lorden = math.log(arl * ncat * max(1, calibration.pane_rows))
        self.categorical_thresholds = np.array(
            [
                [
                    *(
                        curves.get(n, {}).get(ch, fallback).threshold(arl * ncat)
                        for ch in SHAPE_CHANNELS
                    ),
                    lorden,
                ]
                for n in self.scorer.categorical_names
            ]
        ).reshape(-1, ncat)
        schema = profile.schema
        roles = {"features": schema.features(), "predictions": schema.predictions()}
        self.role_numeric = {
            r: np.isin(self.scorer.numeric_names, [c.name for c in cols])
            for r, cols in roles.items()
        }
        self.role_categorical = {
            r: np.isin(self.scorer.categorical_names, [c.name for c in cols])
            for r, cols in roles.items()
        }
        self.dataset_scale = np.array(
            [max(calibration.dataset_scale.get(r, 1.0), 1e-9) for r in ROLES]
        )
        self.dataset_thresholds = np.array(
            [calibration.dataset.get(r, fallback).threshold(arl) for r in ROLES]
        )
        self.role_columns = {
            r: int(self.role_numeric[r].sum() + self.role_categorical[r].sum()) for r in ROLES
        }

    def new_state(self) -> SequentialState:
        return SequentialState(
            numeric=np.zeros((len(self.scorer.numeric_names), len(NUMERIC_CHANNELS))),
            categorical=np.zeros((len(self.scorer.categorical_names), len(CATEGORICAL_CHANNELS))),
            dataset=np.zeros(len(ROLES)),
        )

    def update(self, state: SequentialState, sketch: WindowSketch, at: float) -> SequentialStep:
        """Add one window to ``state`` (in place) and say who fired, at ``at``."""
        return self.update_counts(state, sketch.num_counts, sketch.cat_counts, at)

    def update_counts(
        self,
        state: SequentialState,
        numeric_counts: np.ndarray,
        categorical_counts: np.ndarray,
        at: float,
    ) -> SequentialStep:
        """``update`` from a window's stacked counts (the sketch's layout)."""
        sc = self.scorer
        k = self.settings.allowance
        s = sc.scores(numeric_counts, categorical_counts)
        x_num = sc.numeric_increments(s, k, margin=True)
        x_num = np.where((s.n_numeric > 0)[:, None], x_num, 0.0)  # no rows: no evidence
        x_cat = np.concatenate(
            [
                sc.shape_increments(s, k, margin=True),
                sc.unseen_increments(s, self.settings.new_category_share)[..., None],
            ],
            axis=-1,
        ).reshape(-1, len(CATEGORICAL_CHANNELS))
        rows_cat = s.n_seen + s.unseen
        x_cat = np.where((rows_cat > 0)[:, None], x_cat, 0.0)
        state.numeric = np.maximum(0.0, state.numeric + x_num)
        state.categorical = np.maximum(0.0, state.categorical + x_cat)
        for i, role in enumerate(ROLES):
            if not self.role_columns[role]:
                continue
            q = sc.dataset_statistic(
                s,
                self.role_numeric[role],
                self.role_categorical[role],
                float(self.dataset_scale[i]),
                k,
            )
            state.dataset[i] = max(0.0, state.dataset[i] + float(q) - k)
        state.windows += 1

        columns: dict[str, Sequential] = {}
        for names, stat, h, chans in (
            (sc.numeric_names, state.numeric, self.numeric_thresholds, NUMERIC_CHANNELS),
            (
                sc.categorical_names,
                state.categorical,
                self.categorical_thresholds,
                CATEGORICAL_CHANNELS,
            ),
        ):
            if not len(names):
                continue
            ratio = stat / np.maximum(h, 1e-12)
            lead = ratio.argmax(axis=1)
            fired: np.ndarray = np.asarray((stat > h).any(axis=1))
            rows = np.arange(len(names))
            for j, name in enumerate(names):
                c = int(lead[j])
                columns[name] = Sequential(
                    statistic=float(stat[j, c]),
                    threshold=float(h[j, c]),
                    detected_at=float(at) if fired[j] else None,
                    channel=chans[c],
                )
                if fired[j]:
                    state.fired[name] = float(at)
            stat[rows[fired]] = 0.0  # Page's renewal: the column starts over
        dataset: dict[str, Sequential] = {}
        for i, role in enumerate(ROLES):
            if not self.role_columns[role]:
                continue
            fired_ds = bool(state.dataset[i] > self.dataset_thresholds[i])
            dataset[role] = Sequential(
                statistic=float(state.dataset[i]),
                threshold=float(self.dataset_thresholds[i]),
                detected_at=float(at) if fired_ds else None,
                channel=DATASET_CHANNEL,
            )
            if fired_ds:
                state.fired[role] = float(at)
                state.dataset[i] = 0.0
        return SequentialStep(columns=columns, dataset=dataset)
