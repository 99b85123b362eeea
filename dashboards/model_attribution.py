"""The attribution row of the model detail dashboard (docs/explainability.md): does the
model still rely on its features as on the reference, and which drifted features matter."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge
from grafana_foundation_sdk.models import common as common_models

from dashboards import queries as q
from dashboards.frame import runbook_links
from dashboards.panels import (
    Layout,
    base_panel,
    last_value,
    single,
    target,
    thresholds,
    ts,
)
from dashboards.style import BLUE, COUNT, GREEN, ORANGE, RECORDS_PER_SECOND, RED, YELLOW
from monitor.outputs import metrics as m

# SageMaker Clarify's nDCG threshold, the default of explain.ndcg_threshold; the time
# series draws the agent's own threshold gauge.
NDCG_THRESHOLD = 0.9


def attribution_row(layout: Layout, runbook_base: str) -> None:
    """nDCG of the feature ranking, drifted features by impact, importance per feature."""
    model, version = q.MODEL, q.VERSION
    links = runbook_links(runbook_base, "DriftlineAttributionDrift")
    layout.row("Attributions (explain.model)")
    layout.add(
        single(
            "Attribution ranking nDCG",
            "nDCG of the features ranked by mean |SHAP| in the last window against the "
            "reference's ranking (1: same order). Below 0.9 the model relies on its features "
            "in another order. No data: the agent has no explain.model.",
            q.attribution_ndcg(model, version),
            unit="none",
            steps=thresholds((None, RED), (NDCG_THRESHOLD, GREEN)),
            span=4,
            height=8,
            links=links,
            decimals=3,
        )
    )
    layout.add(
        base_panel(
            bargauge.Panel(),
            "Drifted features by impact",
            "Features that drifted in the last window, ranked by drift (statistic over its "
            "threshold) × importance (share of the model's mean |SHAP|). A drifted feature "
            "the model ignores scores near 0: start with the top of this list.",
            [target(q.top_impact_features(model, version), "{{feature}}", instant=True)],
            span=10,
            height=8,
            links=links,
        )
        .unit("none")
        .min(0)
        .thresholds(thresholds((None, GREEN), (0.1, YELLOW), (0.5, RED)))
        .reduce_options(last_value())
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
    )
    layout.add(
        ts(
            "nDCG over windows",
            "The ranking's nDCG per window against the agent's threshold "
            "(explain.ndcg_threshold). A dip that lasts is attribution drift "
            "(DriftlineAttributionDrift); a single dip on a small window is noise.",
            [
                target(q.attribution_ndcg(model, version), "nDCG"),
                target(q.attribution_ndcg_threshold(model, version), "threshold"),
            ],
            unit="none",
            steps=thresholds((None, RED), (NDCG_THRESHOLD, GREEN)),
            span=10,
            height=8,
            links=links,
            maximum=1,
        )
    )
    layout.add(
        ts(
            "Mean |SHAP| per feature",
            "Each feature's mean |SHAP| over the window's explained rows (model output "
            "units): its importance to the model's decisions now. A line that rises or falls "
            "for good is a feature whose role changed; compare with the reference values.",
            [
                target(
                    q.attribution_family(m.FEATURE_ATTRIBUTION, model, version),
                    "{{feature}}",
                ),
                target(
                    q.attribution_family(m.FEATURE_ATTRIBUTION_REFERENCE, model, version),
                    "{{feature}} (reference)",
                ),
            ],
            unit="none",
            steps=thresholds((None, BLUE)),
            span=12,
            height=8,
            links=links,
        )
    )
    layout.add(
        ts(
            "Windows without attributions",
            "Windows the agent did not explain in the selected range, by reason: budget "
            "(explain.budget_seconds too short for the model), too_few_rows, error. Rising: "
            "raise the budget or lower explain.max_rows.",
            [target(q.attribution_skipped(model), "{{reason}}")],
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, ORANGE)),
            span=6,
            height=8,
            links=links,
        )
    )
    layout.add(
        ts(
            "Records with unreadable attributions",
            "Records whose logged attributions (explain.source: record) could not be read, "
            "per second, by reason: missing, bad_type, wrong_length, missing_feature, "
            "not_numeric. The records still count for feature drift; a rise means the model "
            "server changed what it logs. Empty with explain.source: model.",
            [target(q.attribution_invalid(model), "{{reason}}")],
            unit=RECORDS_PER_SECOND,
            steps=thresholds((None, GREEN), (0.01, ORANGE)),
            span=6,
            height=8,
            links=links,
        )
    )
