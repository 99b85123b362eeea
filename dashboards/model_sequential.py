"""The sequential row of the model detail dashboard (docs/detectors.md): how close each
column's CUSUM over the stream of windows is to alarming, and how large each feature's
change is, with its interval, rather than only whether a window crossed a threshold."""

from __future__ import annotations

from dashboards import queries as q
from dashboards.frame import runbook_links
from dashboards.panels import Layout, single, target, thresholds, ts
from dashboards.style import BLUE, COUNT, GREEN, ORANGE, RED, YELLOW
from monitor.outputs import metrics as m

# A CUSUM at its threshold alarms: the evidence panels draw statistic / threshold.
ALARM_RATIO = 1.0


def sequential_row(layout: Layout, runbook_base: str) -> None:
    """Active sequential alarms, each column's evidence against its threshold, the pooled
    (dataset) detector, and the effect sizes of the selected features."""
    model, version, feature = q.MODEL, q.VERSION, q.regex(q.FEATURE)
    links = runbook_links(
        runbook_base, "DriftlineSequentialDrift", "DriftlineSequentialDatasetDrift"
    )
    layout.row("Drift over the stream: sequential detectors and effect sizes")
    layout.add(
        single(
            "Sequential alarms held",
            "Columns whose sequential detector fired and is not yet acknowledged, plus the "
            "dataset detector. Above 0: a small change persisted long enough to matter; "
            "check the column below, then acknowledge with POST /v1/sequential/reset.",
            q.sequential_alarms_held(model, version),
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, RED)),
            span=4,
            height=8,
            links=links,
        )
    )
    layout.add(
        ts(
            "Sequential evidence per column",
            "Each column's CUSUM divided by its calibrated threshold, per window. It "
            "hovers near 0 while nothing changes; a line climbing steadily towards 1 is a "
            "small, persistent shift that single windows miss; at 1 the detector fires.",
            [target(q.sequential_evidence(model, version, feature), "{{feature}}")],
            unit="none",
            steps=thresholds((None, GREEN), (0.5, YELLOW), (ALARM_RATIO, RED)),
            show_thresholds=True,
            span=10,
            height=8,
            links=links,
        )
    )
    layout.add(
        ts(
            "Dataset sequential evidence",
            "The features' pooled evidence (dataset detector) against its threshold. It "
            "rises when many features move a little together, which no single feature's "
            "detector may show.",
            [
                target(
                    q.dataset_sequential(m.DATASET_SEQUENTIAL_STATISTIC, model, version), "CUSUM"
                ),
                target(
                    q.dataset_sequential(m.DATASET_SEQUENTIAL_THRESHOLD, model, version),
                    "threshold",
                ),
            ],
            unit="none",
            steps=thresholds((None, BLUE)),
            span=10,
            height=8,
            links=runbook_links(runbook_base, "DriftlineSequentialDatasetDrift"),
        )
    )
    layout.add(
        ts(
            "Drift effect with interval",
            "Each selected feature's distance to the reference corrected for its no-change "
            "bias, with its interval (low, high). An interval that excludes 0 is a change "
            "beyond noise; its size says how large the change is, whatever the window's "
            "row count.",
            [
                target(
                    q.feature_family(m.FEATURE_DRIFT_EFFECT, model, version, feature), "{{feature}}"
                ),
                target(
                    q.feature_family(m.FEATURE_DRIFT_EFFECT_LOW, model, version, feature),
                    "{{feature}} low",
                ),
                target(
                    q.feature_family(m.FEATURE_DRIFT_EFFECT_HIGH, model, version, feature),
                    "{{feature}} high",
                ),
            ],
            unit="none",
            steps=thresholds((None, ORANGE)),
            span=24,
            height=8,
            minimum=None,
            links=runbook_links(runbook_base, "DriftlineFeatureDrift"),
        )
    )
