"""The model detail dashboard: one model version against its reference profile (and, for a
canary, against the stable version).

The dashboard is a column of rows, :data:`ROWS`, top to bottom. Each row is a function
``(layout, runbook_base)`` that adds its row header and panels; the drift rows live in
:mod:`dashboards.model_drift`, the others below. A panel goes into the row of its topic;
a new topic is a new row function (in its own module when it is more than a few
panels), listed in :data:`ROWS` where it should appear.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import queries as q
from dashboards.frame import MODEL_UID, model_variable, new_board, runbook_links
from dashboards.model_attribution import attribution_row
from dashboards.model_drift import prediction_drift_row, reference_drift_row
from dashboards.model_multivariate import multivariate_row
from dashboards.model_performance import performance_row
from dashboards.model_sequential import sequential_row
from dashboards.panels import (
    DATASOURCE,
    FLAG_DRIFT,
    Layout,
    data_table,
    flags_over_time,
    single,
    table_target,
    target,
    thresholds,
    ts,
)
from dashboards.style import BLUE, COUNT, GREEN, ORANGE, RATIO, RED, SHARE_THRESHOLD
from monitor.outputs import metrics as m


def model_detail(runbook_base: str) -> dashboard.Dashboard:
    """One model version: drift, prediction drift, canary comparison, quality, rollbacks."""
    model, version = q.MODEL, q.VERSION
    board = (
        new_board(
            MODEL_UID,
            "driftline / Model detail",
            "One model version against its reference profile (and, for a canary, against the "
            "stable version): which features drifted and when, prediction drift, data "
            "quality and the rollback decisions of the policy.",
            runbook_base,
        )
        .with_variable(model_variable(multi=False))
        .with_variable(
            dashboard.QueryVariable("version")
            .label("Version")
            .description("Model versions of the model's closed windows.")
            .datasource(DATASOURCE)
            .query(q.label_values(m.WINDOW_ROWS, "model_version", model=model))
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
        )
        .with_variable(
            dashboard.QueryVariable("feature")
            .label("Feature")
            .description("Features of the version's drift tests (per-feature panels).")
            .datasource(DATASOURCE)
            .query(
                q.label_values(
                    m.FEATURE_DRIFT_STATISTIC,
                    "feature",
                    model=model,
                    model_version=version,
                    baseline=q.REFERENCE_BASELINE,
                )
            )
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .annotation(
            dashboard.AnnotationQuery()
            .name("Rollback decisions")
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color(RED)
            .expr(q.rollback_annotation(model))
        )
    )
    layout = Layout(board)
    for add_row in ROWS:
        add_row(layout, runbook_base)
    return board


def canary_row(layout: Layout, runbook_base: str) -> None:
    """Canary against stable: every version side by side, and each canary against the
    stable version."""
    model, version = q.MODEL, q.VERSION
    layout.row("Canary against stable")
    layout.add(
        ts(
            "Drift share of every version",
            "Each version of the model against the reference, side by side. A canary far "
            "above the stable version sees (or makes) different data. Needs segment_by_version "
            "(the default).",
            [target(q.versions_drift_share(model), "{{model_version}}")],
            unit=RATIO,
            steps=thresholds((None, GREEN), (SHARE_THRESHOLD, RED)),
            show_thresholds=True,
            maximum=1,
        )
    )
    layout.add(
        ts(
            "Canary against stable: drift share",
            "Each canary's window against the stable version's window of the same time "
            "(baseline version:<stable>). Near 0: the canary sees the same data as stable; "
            "high: the versions differ, investigate before promoting. Empty unless "
            "windows.stable_version is set.",
            [target(q.canary_drift_share(model), "{{model_version}} vs {{baseline}}")],
            unit=RATIO,
            steps=thresholds((None, GREEN), (SHARE_THRESHOLD, RED)),
            show_thresholds=True,
            maximum=1,
        )
    )
    layout.add(
        ts(
            "Canary against stable: statistic by feature",
            "The selected version's per-feature statistics against the stable version. The "
            "features that differ most between the versions are the ones to check. Empty "
            "for the stable version itself and unless windows.stable_version is set.",
            [
                target(
                    q.canary_feature_statistic(model, version),
                    "{{feature}} ({{detector}}) vs {{baseline}}",
                )
            ],
            unit=COUNT,
        )
    )
    layout.add(
        flags_over_time(
            "Canary against stable: drifted features",
            "Red where a feature of the selected version drifted against the stable "
            "version's window. Empty for the stable version itself and unless "
            "windows.stable_version is set.",
            q.canary_feature_drifted(model, version),
            "{{feature}} vs {{baseline}}",
            FLAG_DRIFT,
            span=12,
        )
    )


def quality_row(layout: Layout, runbook_base: str) -> None:
    """Data quality: breached checks and the quality ratios of the selected features."""
    model, version, feature = q.MODEL, q.VERSION, q.regex(q.FEATURE)
    layout.row("Data quality")
    layout.add(
        single(
            "Quality checks breached",
            "Checks (feature × problem) over the reference rate plus their threshold in the "
            "last window. Above 0: fix the data before trusting the drift verdicts.",
            q.quality_breached_count(model, version),
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, ORANGE)),
            span=6,
            height=8,
            links=runbook_links(runbook_base, "DriftlineMissingValues"),
        )
    )
    layout.add(
        ts(
            "Quality ratios",
            "Per selected feature, the share of values missing, out of range, unseen, "
            "mistyped or non-finite in each window. Compare with the reference rates in the "
            "profile: a jump is usually an upstream pipeline change.",
            [target(q.quality_ratio(model, version, feature), "{{feature}} {{check}}")],
            unit=RATIO,
            steps=thresholds((None, GREEN)),
            span=18,
            maximum=1,
            links=runbook_links(
                runbook_base,
                "DriftlineMissingValues",
                "DriftlineUnseenCategories",
                "DriftlineTypeErrors",
                "DriftlineOutOfRange",
                "DriftlineNonFiniteValues",
            ),
        )
    )


def policy_row(layout: Layout, runbook_base: str) -> None:
    """Policy: the rollback decisions taken in the time range."""
    model = q.MODEL
    layout.row("Policy")
    layout.add(
        data_table(
            "Rollback decisions",
            "Decisions the rollback policy took for the model in the selected time range, by "
            "version, action and outcome (also drawn as red annotations on the time "
            "series). Empty when the policy never acted, which is the normal case.",
            [table_target(q.rollback_decisions(model))],
            span=24,
            height=6,
        )
        .unit(COUNT)
        .decimals(0)
        .thresholds(thresholds((None, BLUE)))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": "Decisions"},
                    "indexByName": {},
                },
            )
        )
    )


ROWS: tuple[Callable[[Layout, str], None], ...] = (
    reference_drift_row,
    prediction_drift_row,
    sequential_row,
    attribution_row,
    multivariate_row,
    performance_row,
    canary_row,
    quality_row,
    policy_row,
)
