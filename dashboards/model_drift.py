"""The drift rows of the model detail dashboard: the version against its reference
profile (dataset and per-feature drift) and its prediction drift."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, common
from grafana_foundation_sdk.models import common as common_models

from dashboards import queries as q
from dashboards.frame import runbook_links
from dashboards.panels import (
    FLAG_DRIFT,
    FLAG_THRESHOLDS,
    Layout,
    base_panel,
    colored_cells,
    data_table,
    flags_over_time,
    last_value,
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
    RATIO,
    RECORDS,
    RED,
    SECONDS,
    SHARE_THRESHOLD,
    WINDOW_AGE_ALERT,
    WINDOW_AGE_WARN,
    YELLOW,
)
from monitor.outputs import metrics as m


def reference_drift_row(layout: Layout, runbook_base: str) -> None:
    """Drift against the reference: verdicts, drift share, the features that drifted and
    their tests."""
    model, version, feature = q.MODEL, q.VERSION, q.regex(q.FEATURE)
    drift_links = runbook_links(runbook_base, "DriftlineDatasetDrift", "DriftlineFeatureDrift")

    layout.row("Drift against the reference")
    layout.add(
        single(
            "Dataset drift share",
            "Share of the version's features that drifted in the last window. Above the "
            "share threshold (50% by default) the window's verdict is drift.",
            q.drift_share(model, version),
            unit=RATIO,
            steps=thresholds((None, GREEN), (SHARE_THRESHOLD, RED)),
            links=drift_links,
        )
    )
    layout.add(
        single(
            "Dataset drift verdict",
            "The last window's verdict against the reference. DRIFT for several windows in a "
            "row fires DriftlineDatasetDrift: the model sees data unlike its training data.",
            q.drift_verdict(model, version),
            unit=COUNT,
            steps=FLAG_THRESHOLDS,
            mappings=FLAG_DRIFT,
            links=runbook_links(runbook_base, "DriftlineDatasetDrift"),
        )
    )
    layout.add(
        single(
            "Drifted features",
            "Features flagged drifted in the last window. A few is noise or a seasonal "
            "feature; many, or the features the model leans on, is real drift.",
            q.drifted_feature_count(model, version),
            unit=COUNT,
            steps=thresholds((None, GREEN), (1, YELLOW)),
            links=runbook_links(runbook_base, "DriftlineFeatureDrift"),
        )
    )
    layout.add(
        single(
            "Prediction drift verdict",
            "Whether the model's outputs drifted against the reference in the last window. "
            "Prediction drift with input drift: the model reacts to the new data; without "
            "it: the model changed.",
            q.prediction_verdict(model, version),
            unit=COUNT,
            steps=FLAG_THRESHOLDS,
            mappings=FLAG_DRIFT,
            links=runbook_links(runbook_base, "DriftlinePredictionDrift"),
        )
    )
    layout.add(
        single(
            "Rows in the last window",
            "Predictions in the last closed window. Few rows make every test noisy: read "
            "the verdicts of a small window with care.",
            q.window_rows(model, version),
            unit=RECORDS,
            steps=thresholds((None, BLUE)),
        )
    )
    layout.add(
        single(
            "Last window closed",
            "Seconds since the version's last window closed. Growing past a few window "
            "lengths means no new verdicts: the agent stalled or the version gets no "
            "traffic.",
            q.version_window_age(model, model_version=version),
            unit=SECONDS,
            steps=thresholds((None, GREEN), (WINDOW_AGE_WARN, YELLOW), (WINDOW_AGE_ALERT, RED)),
            links=runbook_links(runbook_base, "DriftlineWindowsStalled"),
        )
    )
    layout.add(
        ts(
            "Drift share over time",
            "Share of features (and of prediction columns) that drifted, per window. The "
            "dashed line is the default share threshold: sustained time above it is dataset "
            "drift; spikes that come and go are noisy windows.",
            [
                target(q.drift_share(model, version), "features"),
                target(q.prediction_share(model, version), "predictions"),
            ],
            unit=RATIO,
            steps=thresholds((None, GREEN), (SHARE_THRESHOLD, RED)),
            show_thresholds=True,
            maximum=1,
            links=drift_links,
        )
    )
    layout.add(
        base_panel(
            bargauge.Panel(),
            "Top drifting features",
            "The 10 features flagged drifted for the largest part of the selected time "
            "range (100%: drifted in every window). Start the investigation here.",
            [
                target(
                    q.top_drifting_features(model, version),
                    "{{feature}} ({{detector}})",
                    instant=True,
                )
            ],
            span=12,
            height=8,
            links=runbook_links(runbook_base, "DriftlineFeatureDrift"),
        )
        .unit(RATIO)
        .min(0)
        .max(1)
        .thresholds(thresholds((None, GREEN), (0.2, YELLOW), (0.5, RED)))
        .reduce_options(last_value())
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
    )
    layout.add(
        flags_over_time(
            "Drifted features over time",
            "One row per feature, red in the windows where its test flagged drift against "
            "the reference. Long red bands are persistent drift; scattered cells are the "
            "false-positive rate of the tests.",
            q.feature_family(m.FEATURE_DRIFTED, model, version, feature),
            "{{feature}}",
            FLAG_DRIFT,
            links=runbook_links(runbook_base, "DriftlineFeatureDrift"),
        )
    )
    layout.add(
        data_table(
            "Feature tests in the last window",
            "Each feature's drift test in the last window: the statistic, its p-value (for "
            "tests that have one), the threshold it was judged against and the verdict. The "
            "threshold is a p-value for uncalibrated ks, chi_square and cramer_von_mises "
            "(drift when the p-value is below it) and a statistic otherwise (drift when the "
            "statistic exceeds it).",
            [
                table_target(q.feature_family(m.FEATURE_DRIFT_STATISTIC, model, version, feature)),
                table_target(q.feature_family(m.FEATURE_DRIFT_P_VALUE, model, version, feature)),
                table_target(q.feature_family(m.FEATURE_DRIFT_THRESHOLD, model, version, feature)),
                table_target(q.feature_family(m.FEATURE_DRIFTED, model, version, feature)),
            ],
            span=24,
            height=9,
            links=runbook_links(runbook_base, "DriftlineFeatureDrift"),
        )
        .unit(COUNT)
        .decimals(4)
        .thresholds(thresholds((None, GREEN)))
        .transformations(
            merge_and_name({"A": "Statistic", "B": "p-value", "C": "Threshold", "D": "Drifted"})
        )
        .sort_by([common.TableSortByFieldState().display_name("Drifted").desc(True)])
        .overrides(
            [
                override(
                    "Drifted",
                    mappings=FLAG_DRIFT,
                    thresholds=FLAG_THRESHOLDS,
                    **{"custom.cellOptions": colored_cells()},
                )
            ]
        )
    )
    layout.add(
        ts(
            "Drift statistic by feature",
            "The test statistic of each selected feature per window. Its scale depends on "
            "the detector (in the legend), so compare a feature with its own past: a step "
            "that stays is a change in that feature's distribution.",
            [
                target(
                    q.feature_family(m.FEATURE_DRIFT_STATISTIC, model, version, feature),
                    "{{feature}} ({{detector}})",
                )
            ],
            unit=COUNT,
        )
    )
    layout.add(
        ts(
            "p-value by feature",
            "p-values of the features tested with ks, chi_square or cramer_von_mises "
            "(distances and PSI have none). Close to 0 is evidence of drift; on large "
            "windows tiny p-values also flag harmless shifts, which is why the distances "
            "are the defaults there.",
            [
                target(
                    q.feature_family(m.FEATURE_DRIFT_P_VALUE, model, version, feature),
                    "{{feature}} ({{detector}})",
                )
            ],
            unit=COUNT,
            steps=thresholds((None, RED), (0.05, GREEN)),
            log_scale=True,
            minimum=None,
            maximum=1,
        )
    )


def prediction_drift_row(layout: Layout, runbook_base: str) -> None:
    """Prediction drift: each prediction column's statistic and verdict."""
    model, version = q.MODEL, q.VERSION
    layout.row("Prediction drift")
    layout.add(
        ts(
            "Prediction drift statistic",
            "The drift statistic of each prediction column against the reference, per "
            "window (scale by detector, in the legend). A shift here changes what the model "
            "decides, whatever the inputs did.",
            [
                target(
                    q.feature_family(m.PREDICTION_DRIFT_STATISTIC, model, version),
                    "{{feature}} ({{detector}})",
                )
            ],
            unit=COUNT,
            links=runbook_links(runbook_base, "DriftlinePredictionDrift"),
        )
    )
    layout.add(
        flags_over_time(
            "Prediction columns drifted",
            "Red where a prediction column drifted against the reference. Persistent red "
            "fires DriftlinePredictionDrift.",
            q.feature_family(m.PREDICTION_DRIFTED, model, version),
            "{{feature}}",
            FLAG_DRIFT,
            span=12,
            links=runbook_links(runbook_base, "DriftlinePredictionDrift"),
        )
    )
