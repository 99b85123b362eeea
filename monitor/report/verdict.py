"""What a window found, in the words every summary uses (the HTML banner, replay's
summary line, the demo): which kinds of drift, and whether data quality was breached.

One definition, so a banner can never say "Drift detected" while the line under it says
"Features: no drift" because the drift was in the predictions.
"""

from __future__ import annotations

from detectors.results import WindowReport

__all__ = [
    "FEATURE_DRIFT",
    "MULTIVARIATE_DRIFT",
    "PREDICTION_DRIFT",
    "QUALITY_BREACH",
    "findings",
    "headline",
]

FEATURE_DRIFT = "feature drift"
PREDICTION_DRIFT = "prediction drift"
MULTIVARIATE_DRIFT = "multivariate drift"
QUALITY_BREACH = "data-quality breach"


def findings(report: WindowReport) -> list[str]:
    """The window's findings, in this order: feature, prediction and multivariate drift
    (each as the report's verdict for that set), then a quality breach."""
    out = []
    if report.drift.drifted:
        out.append(FEATURE_DRIFT)
    if report.prediction_drift.drifted:
        out.append(PREDICTION_DRIFT)
    if report.multivariate is not None and report.multivariate.drifted:
        out.append(MULTIVARIATE_DRIFT)
    if report.quality.breached:
        out.append(QUALITY_BREACH)
    return out


def headline(report: WindowReport) -> str:
    """ "Feature drift and data-quality breach", "Prediction drift", ... or "No drift"."""
    found = findings(report)
    if not found:
        return "No drift"
    text = found[0] if len(found) == 1 else ", ".join(found[:-1]) + " and " + found[-1]
    return text[0].upper() + text[1:]
