"""How windows are judged: which test per column, its threshold, the dataset verdict, and
the data-quality limits. Plain values; the agent builds them from ``monitor.yaml``.

The defaults follow docs/architecture.md, decision 5: a p-value test where the window is small
(``small_window_rows`` or fewer rows) and an effect-size test above that, because on
large windows every p-value is tiny and a 1M-row window of unchanged data would be
flagged. Calibrated thresholds from the profile take precedence when present. A distance
with a configured threshold also needs to exceed its no-change noise (``noise_floor_alpha``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NUMERIC_TESTS = ("ks", "psi", "jensen_shannon", "wasserstein", "hellinger", "cramer_von_mises")
CATEGORICAL_TESTS = ("chi_square", "psi", "jensen_shannon", "linf", "hellinger")
# Tests whose threshold is a p-value (drifted when p < threshold); the others are
# distances (drifted when statistic >= threshold).
P_VALUE_TESTS = frozenset({"ks", "chi_square", "cramer_von_mises"})

DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chi_square": 0.05,
    "cramer_von_mises": 0.05,
    "psi": 0.2,
    "jensen_shannon": 0.1,
    "wasserstein": 0.1,
    "hellinger": 0.1,
    "linf": 0.1,
}

CORRECTIONS = ("none", "bonferroni", "benjamini_hochberg")
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
    correction: str = "none"
    use_calibration: bool = True
    # "auto": exact tests on raw rows when the window's reservoir holds every row and the
    # window has at most exact_max_rows rows; "never": always binned; "always": exact
    # whenever the reservoir is complete.
    exact: str = "auto"
    exact_max_rows: int = 5000
    # PSI and KL-type divergences need non-zero proportions: empty bins get this mass.
    psi_epsilon: float = 1e-4
    # A distance test flags a column only when its statistic also exceeds the 1 - alpha
    # quantile of its sampling noise under no change (detectors/noise_floor.py), so a
    # fixed effect-size threshold cannot flag unchanged windows that are small for their
    # number of bins. None: the configured thresholds alone.
    noise_floor_alpha: float | None = 0.001

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
        if not 0.0 < self.share_threshold <= 1.0:
            raise ValueError(f"share_threshold must be in (0, 1], got {self.share_threshold}")
        for test in self.thresholds:
            if test not in DEFAULT_THRESHOLDS:
                raise ValueError(f"thresholds: unknown test {test!r}")
        if self.noise_floor_alpha is not None and not 0.0 < self.noise_floor_alpha < 1.0:
            raise ValueError(
                f"noise_floor_alpha must be in (0, 1) or None, got {self.noise_floor_alpha}"
            )


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
