"""How the report says things: test names, window bounds, and how a verdict follows from
its numbers."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from detectors.results import TestResult
from detectors.settings import P_VALUE_TESTS
from monitor.report.plots import (
    fmt,
)

TEST_NAMES = {
    "ks": "Kolmogorov–Smirnov",
    "chi_square": "chi-square",
    "cramer_von_mises": "Cramér–von Mises",
    "psi": "PSI",
    "jensen_shannon": "Jensen–Shannon distance",
    "wasserstein": "Wasserstein (normalised)",
    "hellinger": "Hellinger distance",
    "linf": "L∞ distance",
}


def when(t: float, kind: str = "time") -> str:
    """A window bound for people: UTC time, or a row offset for row-count windows."""
    if kind == "rows":
        return f"row {int(t):,}"
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return fmt(t)


def test_name(test: str) -> str:
    return TEST_NAMES.get(test, test)


def decision_text(r: TestResult) -> str:
    """How the verdict on a column follows from its numbers, in words."""
    if math.isnan(r.statistic):
        return "not tested: no values on one side"
    if r.mode == "calibrated":
        op = ">" if r.drifted else "≤"
        return f"statistic {fmt(r.statistic)} {op} calibrated threshold {fmt(r.threshold)}"
    if r.test in P_VALUE_TESTS:
        if r.p_value is None:
            return "not tested: no p-value"
        op = "<" if r.drifted else "≥"
        return f"p = {fmt(r.p_value, 3)} {op} {fmt(r.threshold, 3)}"
    op = "≥" if r.drifted else "<"
    return f"statistic {fmt(r.statistic)} {op} threshold {fmt(r.threshold)}"
