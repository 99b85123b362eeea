"""Rollback policies on model performance: ``performance_estimated_drop`` and
``performance_realized_drop`` in a policy's ``when``."""

from __future__ import annotations

from detectors.performance.results import EstimatedMetric, PerformanceResult, RealizedMetric
from detectors.results import DriftResult, QualityResult, WindowReport
from monitor.actions.history import Window, window_problems
from monitor.config.rollback import PolicyConfig

EMPTY = DriftResult(0.0, 0, 3, 0.5, False, "none")


def _report(perf: PerformanceResult | None) -> WindowReport:
    return WindowReport(
        "m", "v2", 0.0, 60.0, "h", 1000, EMPTY, EMPTY, QualityResult(1000), performance=perf
    )


def _perf(estimated: float, realized: float, labeled: int = 800) -> PerformanceResult:
    return PerformanceResult(
        labeled_rows=labeled,
        coverage=labeled / 1000,
        realized=(RealizedMetric("f1", realized, realized - 0.02, realized + 0.02),),
        estimated=(
            EstimatedMetric("f1", "cbpe", estimated, estimated - 0.02, estimated + 0.02, 0.7,
                            estimated < 0.7),
        ),
    )  # fmt: skip


def _problems(report: WindowReport, *conditions: str) -> list[str]:
    window = Window(0.0, 60.0, "time")
    window.reports["reference"] = report
    return window_problems(window, conditions, ["reference"])


def test_policy_accepts_the_performance_conditions() -> None:
    policy = PolicyConfig(
        name="p", when=["performance_realized_drop", "performance_estimated_drop"], actions=["a"]
    )
    assert policy.report_conditions == ("performance_realized_drop", "performance_estimated_drop")


def test_estimated_and_realized_drops_are_window_problems() -> None:
    both = ("performance_estimated_drop", "performance_realized_drop")
    assert _problems(_report(_perf(0.8, 0.8)), *both) == []
    estimated = _problems(_report(_perf(0.6, 0.8)), *both)
    assert len(estimated) == 1 and estimated[0].startswith("estimated performance")
    # concept drift: the estimate holds, the realized value falls
    realized = _problems(_report(_perf(0.8, 0.6)), *both)
    assert len(realized) == 1 and "f1 0.600 (threshold 0.700)" in realized[0]
    # too few labels to act on
    assert _problems(_report(_perf(0.8, 0.6, labeled=20)), *both) == []
    # not asked for, or no performance block: nothing
    assert _problems(_report(_perf(0.6, 0.6)), "dataset_drift") == []
    assert _problems(_report(None), *both) == []
