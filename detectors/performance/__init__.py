"""Model performance: realized metrics from joined labels, label-free estimates (CBPE for
classifiers, DLE for regressors) and business KPIs, over bounded, mergeable window state."""

from detectors.performance.learn import learn_performance
from detectors.performance.reference import PerformanceError, PerformanceReference, Predictions
from detectors.performance.results import (
    EstimatedMetric,
    KpiResult,
    PerformanceResult,
    RealizedMetric,
)
from detectors.performance.state import PerformanceState, evaluate_performance, merge_all

__all__ = [
    "EstimatedMetric",
    "KpiResult",
    "PerformanceError",
    "PerformanceReference",
    "PerformanceResult",
    "PerformanceState",
    "Predictions",
    "RealizedMetric",
    "evaluate_performance",
    "learn_performance",
    "merge_all",
]
