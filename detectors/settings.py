"""How windows are judged: which test per column, its threshold, the dataset verdict, and
the data-quality limits. Plain values; the agent builds them from ``monitor.yaml``.

The defaults follow decision 5 of the design: a p-value test where the window is small
(``small_window_rows`` or fewer rows) and an effect-size test above that, because on
large windows every p-value is tiny and a 1M-row window of unchanged data would be
flagged. A window of unchanged data flags any column with probability at most
``window_false_alarm_rate``: the p-value tests are corrected as a family (Holm by default)
and each distance flags its column only when the lower end of its confidence interval,
at the matching per-column level, exceeds the test's margin (``thresholds``; see
docs/detectors.md, "False alarms over time").
"""

from __future__ import annotations

from dataclasses import dataclass, field

NUMERIC_TESTS = ("ks", "psi", "jensen_shannon", "wasserstein", "hellinger", "cramer_von_mises")
CATEGORICAL_TESTS = ("chi_square", "psi", "jensen_shannon", "linf", "hellinger")
# Tests whose threshold is a p-value (drifted when p < threshold); the others are
# distances, whose threshold is a margin: drifted when the lower confidence bound of the
# distance exceeds it.
P_VALUE_TESTS = frozenset({"ks", "chi_square", "cramer_von_mises"})

# p-value tests: the per-column level under ``correction: none``. Distances: the margin, the
# largest change still negligible. A mean shift of δ standard deviations of a normal column
# (binned on 100 quantile bins) is a normalised Wasserstein distance δ, a Jensen–Shannon
# distance of about δ / sqrt(8 ln 2) = 0.42 δ, a Hellinger distance of about δ / sqrt(8) =
# 0.35 δ and a PSI of about δ²: every margin below is a shift of about 0.05 standard
# deviations (Jensen–Shannon 0.02 is also one category's share moving by 2.6 points around
# 50%; L∞ 0.02 is 2 points). See docs/detectors.md for the power this gives.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chi_square": 0.05,
    "cramer_von_mises": 0.05,
    "psi": 0.0025,
    "jensen_shannon": 0.02,
    "wasserstein": 0.05,
    "hellinger": 0.018,
    "linf": 0.02,
}

CORRECTIONS = ("none", "holm", "bonferroni", "benjamini_hochberg")
EXACT_MODES = ("auto", "never", "always")
QUALITY_CHECKS = ("missing", "out_of_range", "non_finite", "type_error", "unseen")

DEFAULT_QUALITY_THRESHOLDS: dict[str, float] = {
    # a breach is rate > reference rate + threshold
    "missing": 0.05,
    "out_of_range": 0.05,
    "non_finite": 0.01,
    "type_error": 0.01,
    "unseen": 0.05,
}


@dataclass(frozen=True)
class ColumnTest:
    """A per-column override: the test to run and/or its threshold."""

    test: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class DriftSettings:
    small_window_rows: int = 1000
    numeric_small: str = "ks"
    numeric_large: str = "wasserstein"
    categorical_small: str = "chi_square"
    categorical_large: str = "jensen_shannon"
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    columns: dict[str, ColumnTest] = field(default_factory=dict)
    share_threshold: float = 0.5
    # Multiple-testing correction over the p-value tests of a window. "holm" (default),
    # "bonferroni": family-wise error; "benjamini_hochberg": false discovery rate; "none":
    # each p-value test at its own ``thresholds`` level.
    correction: str = "holm"
    # The chance that a window of unchanged data flags any column (features and predictions
    # together): each of the window's m tested columns gets the level rate / m.
    window_false_alarm_rate: float = 0.01
    use_calibration: bool = True
    # "auto": exact tests on raw rows when the window's reservoir holds every row and the
    # window has at most exact_max_rows rows; "never": always binned; "always": exact
    # whenever the reservoir is complete.
    exact: str = "auto"
    exact_max_rows: int = 5000
    # PSI and KL-type divergences need non-zero proportions: empty bins get this mass.
    psi_epsilon: float = 1e-4

    def __post_init__(self) -> None:
        for attr in ("numeric_small", "numeric_large"):
            if getattr(self, attr) not in NUMERIC_TESTS:
                raise ValueError(f"{attr}: {getattr(self, attr)!r} is not one of {NUMERIC_TESTS}")
        for attr in ("categorical_small", "categorical_large"):
            if getattr(self, attr) not in CATEGORICAL_TESTS:
                raise ValueError(
                    f"{attr}: {getattr(self, attr)!r} is not one of {CATEGORICAL_TESTS}"
                )
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction: {self.correction!r} is not one of {CORRECTIONS}")
        if self.exact not in EXACT_MODES:
            raise ValueError(f"exact: {self.exact!r} is not one of {EXACT_MODES}")
        if not 0.0 < self.window_false_alarm_rate < 1.0:
            raise ValueError(
                f"window_false_alarm_rate must be in (0, 1), got {self.window_false_alarm_rate}"
            )
        if not 0.0 < self.share_threshold <= 1.0:
            raise ValueError(f"share_threshold must be in (0, 1], got {self.share_threshold}")
        for test in self.thresholds:
            if test not in DEFAULT_THRESHOLDS:
                raise ValueError(f"thresholds: unknown test {test!r}")


@dataclass(frozen=True)
class QualitySettings:
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_QUALITY_THRESHOLDS))
    # per column, per check overrides of the threshold
    columns: dict[str, dict[str, float]] = field(default_factory=dict)
    # Windows with fewer rows than this report rates but never breach: two bad rows out
    # of three say little.
    min_rows: int = 20

    def threshold(self, column: str, check: str) -> float:
        return self.columns.get(column, {}).get(check, self.thresholds[check])
