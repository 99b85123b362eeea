"""The performance row of the model detail dashboard (docs/performance.md): each metric
estimated without labels beside the value realized on joined labels, how many labels
arrived, and the business KPIs."""

from __future__ import annotations

from dashboards import queries as q
from dashboards.frame import runbook_links
from dashboards.panels import Layout, single, target, thresholds, ts
from dashboards.style import BLUE, GREEN, ORANGE, RATIO, RED, YELLOW
from monitor.outputs import metrics as m


def performance_row(layout: Layout, runbook_base: str) -> None:
    """Estimated against realized, label coverage, labels by outcome, KPIs."""
    model, version = q.MODEL, q.VERSION
    links = runbook_links(
        runbook_base,
        "DriftlinePerformanceEstimatedDrop",
        "DriftlinePerformanceRealizedBelowThreshold",
        "DriftlineLabelCoverageLow",
    )
    layout.row("Model performance (labels)")
    layout.add(
        ts(
            "Estimated vs realized performance",
            "Each metric estimated from the predictions alone (CBPE for classifiers, DLE "
            "for regressors; with its alert threshold from the reference) beside the value "
            "realized on the labels joined so far. Both falling: the inputs moved where the "
            "model is weaker. Realized falling alone: concept drift, which no estimate sees. "
            "No data: the profile was built without --labels.",
            [
                target(
                    q.performance_family(m.PERFORMANCE_ESTIMATED, model, version),
                    "{{metric}} estimated",
                ),
                target(
                    q.performance_family(m.PERFORMANCE_REALIZED, model, version),
                    "{{metric}} realized",
                ),
                target(
                    q.performance_family(m.PERFORMANCE_ESTIMATED_THRESHOLD, model, version),
                    "{{metric}} threshold",
                ),
            ],
            unit="none",
            steps=thresholds((None, BLUE)),
            span=16,
            height=9,
            links=links,
        )
    )
    layout.add(
        single(
            "Label coverage",
            "Share of the last window's predictions with a joined label. Low right after a "
            "window closes when labels come late: revisions raise it as they arrive.",
            q.label_coverage(model, version),
            unit=RATIO,
            steps=thresholds((None, RED), (0.05, ORANGE), (0.3, GREEN)),
            span=8,
            height=9,
            links=links,
        )
    )
    layout.add(
        ts(
            "Labels by outcome",
            "Labels per second by what the join did: joined; duplicate; no_prediction (no "
            "prediction with that request id in time); expired and evicted (predictions "
            "that never got a label); invalid. Anything but joined rising needs a look at "
            "the label feed.",
            [target(q.labels_by_outcome(model), "{{outcome}}")],
            unit="ops",
            steps=thresholds((None, GREEN)),
            span=12,
            height=8,
            links=links,
        )
    )
    layout.add(
        ts(
            "Business KPIs",
            "Mean of each configured KPI (kpis: in monitor.yaml) over the last window, and "
            "its correlation with the prediction. A KPI that falls while the model's "
            "performance holds points outside the model.",
            [
                target(q.kpi_family(m.KPI_MEAN, model, version), "{{kpi}} mean"),
                target(
                    q.kpi_family(m.KPI_CORRELATION, model, version),
                    "{{kpi}} correlation with the prediction",
                ),
            ],
            unit="none",
            steps=thresholds((None, YELLOW), (0, BLUE)),
            span=12,
            height=8,
            links=links,
            minimum=None,
        )
    )
