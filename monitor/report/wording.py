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
    """How the verdict on a column follows from its numbers, in words: on a stream, the
    sequential detector's, with the window's own test as evidence."""
    seq = r.sequential
    if seq is None:
        return _window_text(r, r.drifted)
    op = ">" if seq.fired else "≤"
    verdict = f"sequential CUSUM {fmt(seq.statistic)} {op} threshold {fmt(seq.threshold)}" + (
        f" ({seq.channel})" if seq.channel else ""
    )
    return f"{verdict}; this window alone: {_window_text(r, window_flag(r))}"


def window_flag(r: TestResult) -> bool:
    """The window's own test verdict, from its numbers (what ``drifted`` is without the
    sequential detectors)."""
    if math.isnan(r.statistic):
        return False
    if r.mode == "calibrated":
        return r.statistic > r.threshold
    if r.test in P_VALUE_TESTS:
        return r.p_value is not None and r.p_value < r.threshold
    if r.effect is not None:
        return r.effect.low > r.threshold
    return r.statistic >= r.threshold


def _window_text(r: TestResult, drifted: bool) -> str:
    if math.isnan(r.statistic):
        return "not tested: no values on one side"
    if r.mode == "calibrated":
        op = ">" if drifted else "≤"
        return f"statistic {fmt(r.statistic)} {op} calibrated threshold {fmt(r.threshold)}"
    if r.test in P_VALUE_TESTS:
        if r.p_value is None:
            return "not tested: no p-value"
        op = "<" if drifted else "≥"
        return f"p = {fmt(r.p_value, 3)} {op} {fmt(r.threshold, 3)}"
    effect = getattr(r, "effect", None)
    if effect is not None:
        op = ">" if drifted else "≤"
        return (
            f"lower confidence bound {fmt(effect.low)} {op} margin {fmt(r.threshold)} "
            f"(distance {fmt(effect.estimate)}, interval {fmt(effect.low)} … {fmt(effect.high)})"
        )
    op = "≥" if drifted else "<"
    return f"statistic {fmt(r.statistic)} {op} threshold {fmt(r.threshold)}"


def effect_text(r: TestResult) -> str:
    """A column's effect and its confidence interval, or a dash where it has none."""
    effect = getattr(r, "effect", None)
    if effect is None:
        return "–"
    return f"{fmt(effect.estimate)} [{fmt(effect.low)}, {fmt(effect.high)}]"


# How a column's verdict follows the stream, in one sentence.
SEQUENTIAL_NOTE = (
    "Sequential: on a stream a column drifts in the window where its sequential detector "
    "(a CUSUM that adds up the evidence of consecutive windows, calibrated to one false "
    "alarm per drift.sequential.expected_run_time) crosses its threshold, so small lasting "
    "changes are found and unchanged windows stay quiet; the window's own test is shown "
    "beside it as evidence."
)

# What the interval means for the verdict, and what the error bound is not.
EFFECT_NOTE = (
    "Effect: the distance between the window and the reference with its confidence "
    "interval, at the per-column level that keeps the window's chance of any false alarm "
    "at drift.window_false_alarm_rate; a distance drifts when the interval's lower end "
    "exceeds its threshold (the margin of a negligible change), so a flag means the change "
    "is larger than negligible with that confidence. The error bound is a worst-case bound "
    "on how far a binned statistic can be from its value on the raw rows, usually far looser "
    "than the actual difference, and does not enter the verdict."
)
