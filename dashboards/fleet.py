"""The fleet overview dashboard: every model and version at a glance (verdicts, quality,
traffic, lag, firing alerts), with links into the model dashboard."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import queries as q
from dashboards.frame import (
    FLEET_UID,
    ROW_TO_MODEL,
    SERIES_TO_MODEL,
    model_variable,
    new_board,
    runbook_links,
)
from dashboards.panels import (
    FLAG_DRIFT,
    Layout,
    colored_cells,
    data_table,
    merge_and_name,
    override,
    single,
    table_target,
    target,
    thresholds,
    ts,
)
from dashboards.style import (
    BLUE,
    COUNT,
    GREEN,
    LAG_ALERT,
    LAG_WARN,
    ORANGE,
    RATIO,
    RECORDS,
    RECORDS_PER_SECOND,
    RED,
    SECONDS,
    SHARE_THRESHOLD,
    WINDOW_AGE_ALERT,
    WINDOW_AGE_WARN,
    YELLOW,
)


def fleet(runbook_base: str) -> dashboard.Dashboard:
    """Every model and version at a glance, with links into the model dashboard."""
    model = q.regex(q.MODEL)
    board = new_board(
        FLEET_UID,
        "driftline / Fleet overview",
        "Every monitored model and version: drift verdict, drift share, data quality, "
        "traffic, consumer lag and firing driftline alerts.",
        runbook_base,
    ).with_variable(model_variable(multi=True))
    layout = Layout(board)

    layout.row("Fleet now")
    layout.add(
        single(
            "Models reporting",
            "Models whose agents Prometheus scrapes. Fewer than you deploy means an agent is "
            "down or not scraped: see DriftlineAgentAbsent.",
            q.models_reporting(model),
            unit=COUNT,
            steps=thresholds((None, BLUE)),
            links=runbook_links(runbook_base, "DriftlineAgentAbsent"),
        )
    )
    layout.add(
        single(
            "Versions drifting",
            "Model versions whose last window's dataset drift verdict against the reference "
            "is drift. Anything above 0 deserves a look at the model dashboard.",
            q.versions_drifting(model),
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, RED)),
            links=runbook_links(runbook_base, "DriftlineDatasetDrift"),
        )
    )
    layout.add(
        single(
            "Versions with quality breaches",
            "Model versions whose last window breached a data-quality check (missing values, "
            "unseen categories, type errors, out-of-range or non-finite values) or lacked a "
            "schema column. Above 0: the inputs are broken, which often explains drift too.",
            q.versions_quality_breached(model),
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, ORANGE)),
            links=runbook_links(runbook_base, "DriftlineMissingValues"),
        )
    )
    layout.add(
        single(
            "Records per second",
            "Prediction records decoded per second across the selected models. A drop to 0 "
            "while models serve traffic means the agents stopped reading: see "
            "DriftlineNoRecords.",
            q.total_traffic(model),
            unit=RECORDS_PER_SECOND,
            steps=thresholds((None, BLUE)),
            links=runbook_links(runbook_base, "DriftlineNoRecords"),
        )
    )
    layout.add(
        single(
            "Largest consumer lag",
            "The largest backlog of one model, in records not yet consumed. Growing lag "
            "means the agents read slower than the model writes and verdicts come late.",
            q.max_model_lag(model),
            unit=RECORDS,
            steps=thresholds((None, GREEN), (LAG_WARN, YELLOW), (LAG_ALERT, RED)),
            links=runbook_links(runbook_base, "DriftlineConsumerLagGrowing"),
        )
    )
    layout.add(
        single(
            "Alerts firing",
            "Alerts of driftline's rules (alert names starting with "
            f"{q.ALERT_NAME_PREFIX}) firing now, for the selected models or for no model "
            "(agent down). 0 when all is well; the table below lists them.",
            q.firing_alert_count(model),
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, RED)),
        )
    )
    layout.add(
        data_table(
            "Model versions",
            "One row per model version in its last closed window against the reference: "
            "the drift verdict, the share of features that drifted, the prediction drift "
            "verdict, the number of breached quality checks, traffic and how long ago the "
            "last window closed. Red cells need attention; click a row for the model "
            "dashboard. Traffic is counted per version only where the agent knows it.",
            [
                table_target(q.fleet_version_drift_verdict(model)),
                table_target(q.fleet_version_drift_share(model)),
                table_target(q.fleet_version_prediction_verdict(model)),
                table_target(q.version_quality_breaches(model)),
                table_target(q.version_traffic(model)),
                table_target(q.version_window_age(model)),
            ],
            span=24,
            height=9,
        )
        .unit(COUNT)
        .thresholds(thresholds((None, GREEN)))
        .data_links(ROW_TO_MODEL)
        .transformations(
            merge_and_name(
                {
                    "A": "Drift verdict",
                    "B": "Drift share",
                    "C": "Prediction drift",
                    "D": "Quality breaches",
                    "E": "Traffic",
                    "F": "Last window age",
                }
            )
        )
        .overrides(
            [
                override(
                    "Drift verdict",
                    mappings=FLAG_DRIFT,
                    **{"custom.cellOptions": colored_cells()},
                ),
                override(
                    "Drift share",
                    unit=RATIO,
                    thresholds=thresholds((None, GREEN), (SHARE_THRESHOLD, RED)),
                    **{"custom.cellOptions": colored_cells()},
                ),
                override(
                    "Prediction drift",
                    mappings=FLAG_DRIFT,
                    **{"custom.cellOptions": colored_cells()},
                ),
                override(
                    "Quality breaches",
                    unit=COUNT,
                    thresholds=thresholds((None, GREEN), (1, ORANGE)),
                    **{"custom.cellOptions": colored_cells()},
                ),
                override("Traffic", unit=RECORDS_PER_SECOND),
                override(
                    "Last window age",
                    unit=SECONDS,
                    thresholds=thresholds(
                        (None, GREEN), (WINDOW_AGE_WARN, YELLOW), (WINDOW_AGE_ALERT, RED)
                    ),
                    **{"custom.cellOptions": colored_cells()},
                ),
            ]
        )
    )

    layout.row("Over time")
    layout.add(
        ts(
            "Dataset drift share",
            "Share of each version's features that drifted against the reference, per "
            "window. The dashed line is the default share threshold (50%): a version above "
            "it for several windows has drifted as a whole. Click a series for its model "
            "dashboard.",
            [target(q.fleet_version_drift_share(model), "{{model}} {{model_version}}")],
            unit=RATIO,
            steps=thresholds((None, GREEN), (SHARE_THRESHOLD, RED)),
            show_thresholds=True,
            maximum=1,
            data_links=SERIES_TO_MODEL,
            links=runbook_links(runbook_base, "DriftlineDatasetDrift"),
        )
    )
    layout.add(
        ts(
            "Data quality checks breached",
            "Number of quality checks each version breached in its last window. Flat at 0 "
            "is healthy; a step up means a feature's missing, unseen, out-of-range, "
            "non-finite or mistyped values exceed the reference rate.",
            [target(q.version_quality_breaches(model), "{{model}} {{model_version}}")],
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, ORANGE)),
            data_links=SERIES_TO_MODEL,
            links=runbook_links(runbook_base, "DriftlineMissingValues"),
        )
    )
    layout.add(
        ts(
            "Traffic by version",
            "Records decoded per second per model version. Compare with the model's own "
            "request rate: a gap means lost records, a drop to 0 a stalled agent.",
            [target(q.version_traffic(model), "{{model}} {{model_version}}")],
            unit=RECORDS_PER_SECOND,
            links=runbook_links(runbook_base, "DriftlineNoRecords"),
        )
    )
    layout.add(
        ts(
            "Consumer lag",
            "Records each model's agents have yet to read, summed over partitions. Flat or "
            "falling is fine; steady growth means the agents cannot keep up.",
            [target(q.model_lag(model), "{{model}}")],
            unit=RECORDS,
            steps=thresholds((None, GREEN), (LAG_WARN, YELLOW), (LAG_ALERT, RED)),
            links=runbook_links(runbook_base, "DriftlineConsumerLagGrowing"),
        )
    )
    layout.add(
        data_table(
            "Firing driftline alerts",
            "driftline alerts firing now (Prometheus ALERTS series of rules named "
            f"{q.ALERT_NAME_PREFIX}*). Empty when nothing is wrong; each alert's runbook is "
            "linked from its runbook_url annotation and from the Runbooks link above.",
            [table_target(q.firing_alert_table(model))],
            span=24,
            height=7,
        )
        .unit(COUNT)
        .thresholds(thresholds((None, RED)))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "Value": True},
                    "renameByName": {},
                    "indexByName": {},
                },
            )
        )
    )
    return board
