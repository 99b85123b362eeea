"""The multivariate row of the model detail dashboard (docs/configuration.md,
``multivariate:``): do the window's rows, taken whole, still look like the reference's,
and has the online MMD seen a change before the windows closed."""

from __future__ import annotations

from dashboards import queries as q
from dashboards.frame import runbook_links
from dashboards.panels import FLAG_DRIFT, FLAG_THRESHOLDS, Layout, single, target, thresholds, ts
from dashboards.style import BLUE, COUNT, GREEN, ORANGE, RED
from monitor.outputs import metrics as m

# The default of multivariate.alpha: a p-value below it flags the window.
ALPHA = 0.05
_VERSION = ("model", "model_version")


def _latest(defn: m.MetricDef, *by: str, model: str, version: str) -> str:
    return f"max {q.by(defn, *by)} ({q.series(defn, model=model, model_version=version)})"


def multivariate_row(layout: Layout, runbook_base: str) -> None:
    """Verdict, p-value per test, the online detector against its threshold, skips."""
    model, version = q.MODEL, q.VERSION
    links = runbook_links(runbook_base, "DriftlineMultivariateDrift")
    layout.row("Multivariate (multivariate:)")
    layout.add(
        single(
            "Multivariate verdict",
            "The last window's row-level verdict: kernel MMD and/or the classifier test told "
            "its rows from the reference rows (a correlation or a joint shift, even with every "
            "feature unchanged alone). The report's multivariate.features names the features. "
            "No data: multivariate.enabled is off.",
            _latest(m.MULTIVARIATE_DRIFTED, *_VERSION, model=model, version=version),
            unit=COUNT,
            steps=FLAG_THRESHOLDS,
            mappings=FLAG_DRIFT,
            links=links,
            span=4,
            height=8,
        )
    )
    layout.add(
        ts(
            "Multivariate p-value per test",
            "p-value of each row-level test per window (log scale): below the dashed 0.05 "
            "line (multivariate.alpha by default) the window is flagged; several windows in a "
            "row fire DriftlineMultivariateDrift.",
            [
                target(
                    _latest(m.MULTIVARIATE_P_VALUE, "detector", model=model, version=version),
                    "{{detector}}",
                )
            ],
            unit="none",
            steps=thresholds((None, RED), (ALPHA, GREEN)),
            show_thresholds=True,
            span=10,
            height=8,
            links=links,
            minimum=None,
            log_scale=True,
        )
    )
    layout.add(
        ts(
            "Online MMD against its threshold",
            "The online detector's MMD² over the most recent rows and its calibrated "
            "threshold: crossing it is a detection (counted, and the next window's verdict), "
            "without waiting for the window to close. No data: multivariate.online is off.",
            [
                target(
                    _latest(
                        m.MULTIVARIATE_ONLINE_STATISTIC, *_VERSION, model=model, version=version
                    ),
                    "MMD²",
                ),
                target(
                    _latest(
                        m.MULTIVARIATE_ONLINE_THRESHOLD, *_VERSION, model=model, version=version
                    ),
                    "threshold",
                ),
            ],
            unit="none",
            steps=thresholds((None, BLUE)),
            span=10,
            height=8,
            links=links,
            minimum=None,
        )
    )
    skipped = m.MULTIVARIATE_SKIPPED
    layout.add(
        ts(
            "Windows without multivariate tests",
            "Windows the row-level tests skipped in the selected range, by reason: "
            "too_few_rows (reservoir below multivariate.min_rows), budget "
            "(multivariate.time_budget too short: raise it or use a GPU), error.",
            [
                target(
                    f"sum {q.by(skipped, 'reason')} "
                    f"(increase({q.series(skipped, model=model)}[{q.RANGE}]))",
                    "{{reason}}",
                )
            ],
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, ORANGE)),
            span=24,
            height=6,
            links=links,
        )
    )
