"""Build driftline's Grafana dashboards with grafana-foundation-sdk and write their JSON.

    python3 -m dashboards.build            # rewrite dashboards/json/*.json
    python3 -m dashboards.build --check    # exit 1 when that would change them

Three dashboards: the fleet overview (every model and version at a glance), the model
detail (one version's drift, canary comparison, quality and rollbacks) and the agent's
health (consumption, windows, process). The PromQL comes from :mod:`dashboards.queries`,
built from the metric definitions of :mod:`monitor.outputs.metrics`; this module only decides
how it is shown: titles, units, thresholds, descriptions, layout and links.

The output is deterministic (fixed uids and panel ids, sorted keys, two-space indent, a
trailing newline), which is what lets ``--check`` and its unit test catch a checked-in
file that no longer matches the code. docs/dashboards.md describes every dashboard and
how to provision them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    statushistory,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prom_models

from dashboards import queries as q
from monitor.outputs import metrics as m

# Where docs/runbooks.md is served: the same default as alert_rules/thresholds.yaml
# (runbook_base_url), so a dashboard's runbook links and an alert's runbook_url agree.
RUNBOOK_BASE_URL = "https://driftline.example/docs/runbooks.md"

JSON_DIR = Path(__file__).resolve().parent / "json"
FLEET_UID = "driftline-fleet"
MODEL_UID = "driftline-model"
AGENT_UID = "driftline-agent"
TAG = "driftline"

# Panels reference the data source through the `datasource` variable, so one import
# works with whatever Prometheus a Grafana has.
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Units (Grafana unit ids).
RATIO = "percentunit"
SECONDS = "s"
BYTES = "bytes"
COUNT = "short"
RECORDS = "records"
RECORDS_PER_SECOND = "suffix: records/s"
PER_SECOND = "suffix: /s"
CPU_CORES = "suffix: cores"

# Colours of thresholds and value mappings.
GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"

# Visual thresholds, the defaults of the matching alerts (alert_rules/thresholds.yaml) and
# of the detectors (detectors/settings.py); the verdict and alert panels are the authority.
SHARE_THRESHOLD = 0.5  # DriftSettings.share_threshold
LAG_WARN, LAG_ALERT = 1000, 10000  # pipeline.consumer_lag_records
WINDOW_AGE_WARN, WINDOW_AGE_ALERT = 120, 180  # 3 windows of 60s: pipeline.stalled_windows
CHECKPOINT_AGE_ALERT = 300  # pipeline.checkpoint_stale_after
EVALUATION_ALERT = 30.0  # pipeline.evaluation_seconds
LATE_SHARE = 0.05  # pipeline.late_record_ratio

# -- small builders ---------------------------------------------------------------------------


def runbook_url(base: str, alert: str) -> str:
    """The URL of an alert's section in docs/runbooks.md (its heading is the alert's name)."""
    return f"{base}#{alert.lower()}"


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (the base colour)."""
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def mapping(*values: tuple[int, str, str]) -> list[dm.ValueMapping]:
    """Value mappings ``(value, text, colour)``: what a 0/1 flag means, in words."""
    options = {
        str(v): dm.ValueMappingResult(text=text, color=color, index=i)
        for i, (v, text, color) in enumerate(values)
    }
    return [dm.ValueMap(options=options)]


FLAG_DRIFT = mapping((0, "no drift", GREEN), (1, "DRIFT", RED))
FLAG_BREACH = mapping((0, "ok", GREEN), (1, "BREACHED", RED))
FLAG_UP = mapping((0, "DOWN", RED), (1, "up", GREEN))
FLAG_THRESHOLDS = thresholds((None, GREEN), (1, RED))


def target(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    fmt: prom_models.PromQueryFormat | None = None,
) -> prometheus.Dataquery:
    t = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    t = t.instant() if instant else t.range()
    if legend:
        t = t.legend_format(legend)
    if fmt is not None:
        t = t.format(fmt)
    return t


def table_target(expr: str) -> prometheus.Dataquery:
    return target(expr, instant=True, fmt=prom_models.PromQueryFormat.TABLE)


def link(title: str, url: str, *, new_tab: bool = False) -> dashboard.DashboardLink:
    return (
        dashboard.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(url)
        .target_blank(new_tab)
    )


def runbook_links(base: str, *alerts: str) -> list[dashboard.DashboardLink]:
    return [link(f"Runbook: {a}", runbook_url(base, a), new_tab=True) for a in alerts]


def model_dashboard_url(model: str, version: str) -> str:
    """A link into the model dashboard, keeping the data source and time range."""
    return (
        f"/d/{MODEL_UID}?${{datasource:queryparam}}&var-model={model}&var-version={version}"
        "&${__url_time_range}"
    )


# Data links from a series (its labels) and from a table row (its fields).
SERIES_TO_MODEL = [
    link(
        "Model detail: ${__field.labels.model} ${__field.labels.model_version}",
        model_dashboard_url("${__field.labels.model}", "${__field.labels.model_version}"),
    )
]
ROW_TO_MODEL = [
    link(
        "Model detail: ${__data.fields.model} ${__data.fields.model_version}",
        model_dashboard_url("${__data.fields.model}", "${__data.fields.model_version}"),
    )
]


def legend_table(*calcs: str) -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(common_models.LegendDisplayMode.TABLE)
        .placement(common_models.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(list(calcs))
    )


def last_value() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def override(name: str, **props: object) -> dashboard.DashboardFieldConfigSourceOverrides:
    """Field-config properties of one field (a table column, a series) by display name."""
    return (
        dashboard.DashboardFieldConfigSourceOverrides()
        .matcher(dm.MatcherConfig(id_val="byName", options=name))
        .properties([dm.DynamicConfigValue(id_val=k, value=_built(v)) for k, v in props.items()])
    )


def _built(value: object) -> object:
    """A property value as the model holds it (builders are built)."""
    build = getattr(value, "build", None)
    return build() if callable(build) else value


def colored_cells() -> common_models.TableColoredBackgroundCellOptions:
    return common_models.TableColoredBackgroundCellOptions(
        mode=common_models.TableCellBackgroundDisplayMode.BASIC
    )


def merge_and_name(
    names: dict[str, str], exclude: Sequence[str] = ()
) -> list[dm.DataTransformerConfig]:
    """Join a table's instant queries on their labels and name its value columns.

    ``names`` maps ref ids (A, B, ...) to column titles; ``exclude`` lists more fields to
    hide besides the timestamp.
    """
    rename = {f"Value #{ref}": title for ref, title in names.items()}
    hidden = {name: True for name in ("Time", *exclude)}
    return [
        dm.DataTransformerConfig(id_val="merge", options={}),
        dm.DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": hidden, "renameByName": rename, "indexByName": {}},
        ),
    ]


# -- layout -----------------------------------------------------------------------------------

PanelBuilder = (
    timeseries.Panel
    | stat.Panel
    | table.Panel
    | heatmap.Panel
    | bargauge.Panel
    | statushistory.Panel
)


@dataclass
class Layout:
    """Numbers rows and panels in the order they are added, so the ids (and JSON) are stable."""

    board: dashboard.Dashboard
    next_id: int = 1

    def row(self, title: str) -> Layout:
        self.board.with_row(dashboard.Row(title).id(self._id()))
        return self

    def add(self, panel: PanelBuilder) -> Layout:
        self.board.with_panel(panel.id(self._id()))
        return self

    def _id(self) -> int:
        n = self.next_id
        self.next_id += 1
        return n


def _common(
    panel: PanelBuilder,
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    span: int,
    height: int,
    links: Sequence[dashboard.DashboardLink] = (),
) -> PanelBuilder:
    # Ref ids A, B, ... in order: table transformations name columns by them.
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([t.ref_id(chr(ord("A") + i)) for i, t in enumerate(targets)])
        .span(span)
        .height(height)
    )
    if links:
        panel = panel.links(list(links))
    return panel


def ts(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str,
    steps: dashboard.ThresholdsConfig | None = None,
    show_thresholds: bool = False,
    span: int = 12,
    height: int = 8,
    links: Sequence[dashboard.DashboardLink] = (),
    data_links: Sequence[dashboard.DashboardLink] = (),
    minimum: float | None = 0,
    maximum: float | None = None,
    log_scale: bool = False,
    calcs: Sequence[str] = ("lastNotNull", "max"),
) -> timeseries.Panel:
    panel = _common(
        timeseries.Panel(), title, description, targets, span=span, height=height, links=links
    )
    panel = (
        panel.unit(unit)
        .thresholds(steps or thresholds((None, GREEN)))
        .legend(legend_table(*calcs))
        .line_width(1)
        .fill_opacity(10)
        .span_nulls(False)
    )
    if show_thresholds:
        panel = panel.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
        )
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if log_scale:
        panel = panel.scale_distribution(
            common.ScaleDistributionConfig().type(common_models.ScaleDistribution.LOG).log(10)
        )
    if data_links:
        panel = panel.data_links(list(data_links))
    return panel


def single(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str,
    steps: dashboard.ThresholdsConfig,
    mappings: list[dm.ValueMapping] | None = None,
    span: int = 4,
    height: int = 4,
    links: Sequence[dashboard.DashboardLink] = (),
    decimals: int | None = None,
) -> stat.Panel:
    panel = _common(
        stat.Panel(), title, description, [target(expr)], span=span, height=height, links=links
    )
    panel = (
        panel.unit(unit)
        .thresholds(steps)
        .reduce_options(last_value())
        .color_mode(common_models.BigValueColorMode.BACKGROUND)
        .graph_mode(common_models.BigValueGraphMode.AREA)
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def data_table(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    span: int,
    height: int,
    links: Sequence[dashboard.DashboardLink] = (),
) -> table.Panel:
    panel = _common(
        table.Panel(), title, description, targets, span=span, height=height, links=links
    )
    return panel.align(common_models.FieldTextAlignment.AUTO).inspect(False)


def flags_over_time(
    title: str,
    description: str,
    expr: str,
    legend: str,
    flag: list[dm.ValueMapping],
    *,
    span: int = 24,
    height: int = 8,
    links: Sequence[dashboard.DashboardLink] = (),
) -> statushistory.Panel:
    """One row per series, one cell per step, coloured by a 0/1 flag: a drift heatmap."""
    panel = _common(
        statushistory.Panel(),
        title,
        description,
        [target(expr, legend)],
        span=span,
        height=height,
        links=links,
    )
    return (
        panel.unit(COUNT)
        .thresholds(FLAG_THRESHOLDS)
        .mappings(flag)
        .show_value(common_models.VisibilityMode.NEVER)
        .fill_opacity(80)
        .row_height(0.8)
    )


# -- the dashboards ---------------------------------------------------------------------------


def _board(uid: str, title: str, description: str, runbook_base: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(link("Runbooks", runbook_base, new_tab=True))
        .link(
            dashboard.DashboardLink("driftline dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(
            dashboard.DatasourceVariable("datasource")
            .label("Prometheus")
            .description("The Prometheus that scrapes the driftline agents.")
            .type("prometheus")
        )
    )


def _model_variable(*, multi: bool) -> dashboard.QueryVariable:
    var = (
        dashboard.QueryVariable("model")
        .label("Model")
        .description("Models with a driftline agent (the model name from monitor.yaml).")
        .datasource(DATASOURCE)
        .query(q.label_values(m.REFERENCE_INFO, "model"))
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        var = var.multi(True).include_all(True).all_value(".*")
    return var


def fleet(runbook_base: str = RUNBOOK_BASE_URL) -> dashboard.Dashboard:
    """Every model and version at a glance, with links into the model dashboard."""
    model = q.regex(q.MODEL)
    board = _board(
        FLEET_UID,
        "driftline / Fleet overview",
        "Every monitored model and version: drift verdict, drift share, data quality, "
        "traffic, consumer lag and firing driftline alerts.",
        runbook_base,
    ).with_variable(_model_variable(multi=True))
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


def model_detail(runbook_base: str = RUNBOOK_BASE_URL) -> dashboard.Dashboard:
    """One model version: drift, prediction drift, canary comparison, quality, rollbacks."""
    model, version, feature = q.MODEL, q.VERSION, q.regex(q.FEATURE)
    board = (
        _board(
            MODEL_UID,
            "driftline / Model detail",
            "One model version against its reference profile (and, for a canary, against the "
            "stable version): which features drifted and when, prediction drift, data "
            "quality and the rollback decisions of the policy.",
            runbook_base,
        )
        .with_variable(_model_variable(multi=False))
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
        _common(
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
    return board


def agent_health(runbook_base: str = RUNBOOK_BASE_URL) -> dashboard.Dashboard:
    """The agents themselves: consumption, decoding, windows and the process."""
    model = q.regex(q.MODEL)
    board = _board(
        AGENT_UID,
        "driftline / Agent health",
        "Whether the driftline agents keep up: consumption, consumer lag, records set "
        "aside, window evaluation time, memory and checkpoints.",
        runbook_base,
    ).with_variable(_model_variable(multi=True))
    layout = Layout(board)

    layout.row("Consumption")
    layout.add(
        single(
            "Source",
            "Whether every agent of the model is connected to its source. DOWN: the agent "
            "cannot read predictions (broker unreachable, credentials, topic).",
            q.source_up(model),
            unit=COUNT,
            steps=thresholds((None, RED), (1, GREEN)),
            mappings=FLAG_UP,
            span=6,
            links=runbook_links(runbook_base, "DriftlineSourceDown"),
        )
    )
    layout.add(
        single(
            "Records per second",
            "Records the agents of the selected models read per second, all outcomes. 0 "
            "while the models serve traffic: the agents stopped reading.",
            q.total_records_rate(model),
            unit=RECORDS_PER_SECOND,
            steps=thresholds((None, BLUE)),
            span=6,
            links=runbook_links(runbook_base, "DriftlineNoRecords"),
        )
    )
    layout.add(
        single(
            "Largest consumer lag",
            "The largest backlog of one model, in records. A small steady value is normal; "
            "growth means the agents fall behind.",
            q.max_model_lag(model),
            unit=RECORDS,
            steps=thresholds((None, GREEN), (LAG_WARN, YELLOW), (LAG_ALERT, RED)),
            span=6,
            links=runbook_links(runbook_base, "DriftlineConsumerLagGrowing"),
        )
    )
    layout.add(
        single(
            "Oldest checkpoint",
            "Seconds since the least recent durable checkpoint of the selected models. "
            "Offsets are committed only after a checkpoint, so an old one means a restart "
            "would re-read (never double-count) a long stretch.",
            f"max({q.checkpoint_age(model)})",
            unit=SECONDS,
            steps=thresholds((None, GREEN), (CHECKPOINT_AGE_ALERT, RED)),
            span=6,
            links=runbook_links(runbook_base, "DriftlineCheckpointStale"),
        )
    )
    layout.add(
        ts(
            "Records by outcome",
            "Records read per second: decoded (used), failed (set aside), late (after the "
            "allowed lateness) and duplicate (request id seen before). Decoded should carry "
            "almost all of it.",
            [target(q.records_rate(model), "{{model}} {{outcome}}")],
            unit=RECORDS_PER_SECOND,
            links=runbook_links(runbook_base, "DriftlineNoRecords"),
        )
    )
    layout.add(
        ts(
            "Consumer lag by partition",
            "Records not yet consumed, per partition. One partition growing while the others "
            "stay flat points at a hot key or a stuck consumer.",
            [target(q.partition_lag(model), "{{model}} {{topic}}/{{partition}}")],
            unit=RECORDS,
            steps=thresholds((None, GREEN), (LAG_WARN, YELLOW), (LAG_ALERT, RED)),
            links=runbook_links(runbook_base, "DriftlineConsumerLagGrowing"),
        )
    )
    layout.add(
        ts(
            "Decode errors by reason",
            "Records set aside per second, by why they could not be decoded. Any steady "
            "rate means the producer's record format changed or is broken. No data: no "
            "record has been set aside since the agents started.",
            [target(q.decode_errors(model), "{{model}} {{reason}}")],
            unit=RECORDS_PER_SECOND,
            span=8,
            links=runbook_links(runbook_base, "DriftlineDecodeErrors"),
        )
    )
    layout.add(
        ts(
            "Late and duplicate records",
            "Records per second that arrived after the allowed lateness (not in any window) "
            "or repeated a request id (counted once). Late records mean the producer or the "
            "agent lags; duplicates mean retries upstream.",
            [target(q.late_and_duplicate(model), "{{model}} {{model_version}} {{outcome}}")],
            unit=RECORDS_PER_SECOND,
            span=8,
            links=runbook_links(runbook_base, "DriftlineLateRecords"),
        )
    )
    layout.add(
        ts(
            "Late and duplicate share",
            "Late and duplicate records as a share of all records read. A few percent late "
            "leaves the windows unrepresentative; raise windows.allowed_lateness or find the "
            "delay.",
            [target(q.late_and_duplicate_share(model), "{{model}} {{outcome}}")],
            unit=RATIO,
            steps=thresholds((None, GREEN), (LATE_SHARE, ORANGE)),
            show_thresholds=True,
            span=8,
            links=runbook_links(runbook_base, "DriftlineLateRecords"),
        )
    )

    layout.row("Windows")
    layout.add(
        ts(
            "Window evaluation time",
            "Time to run every test on a closed window: median, 90th and 99th percentile "
            "and mean. It must stay well below the window length, or verdicts fall behind. "
            "Gaps: no window closed within the rate interval.",
            [
                target(q.evaluation_quantile(0.5, model), "{{model}} p50"),
                target(q.evaluation_quantile(0.9, model), "{{model}} p90"),
                target(q.evaluation_quantile(0.99, model), "{{model}} p99"),
                target(q.evaluation_mean(model), "{{model}} mean"),
            ],
            unit=SECONDS,
            steps=thresholds((None, GREEN), (EVALUATION_ALERT, RED)),
            show_thresholds=True,
            links=runbook_links(runbook_base, "DriftlineWindowEvaluationSlow"),
        ).interval("1m")
    )
    layout.add(
        _common(
            heatmap.Panel(),
            "Window evaluation time distribution",
            "How many windows took how long to evaluate, per step. A band moving up means "
            "evaluations get slower (more features, bigger reservoirs, exact tests).",
            [
                target(
                    q.evaluation_buckets(model),
                    "{{le}}",
                    fmt=prom_models.PromQueryFormat.HEATMAP,
                )
            ],
            span=12,
            height=8,
        )
        .interval("1m")
        .unit(SECONDS)
        .thresholds(thresholds((None, GREEN)))
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(SECONDS))
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common_models.HeatmapCellLayout.LE))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_models.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
        )
        .cell_values(heatmap.CellValues().unit(COUNT))
        .hide_from(common.HideSeriesConfig().legend(False).tooltip(False).viz(False))
    )
    layout.add(
        ts(
            "Windows closed",
            "Windows closed and evaluated per second, per version (one per window length in "
            "steady state). 0 means no verdicts, whatever the other panels say.",
            [target(q.windows_closed_rate(model), "{{model}} {{model_version}}")],
            unit=PER_SECOND,
            links=runbook_links(runbook_base, "DriftlineWindowsStalled"),
        )
    )
    layout.add(
        ts(
            "Time since the last window closed",
            "Seconds since each version's last window closed. A saw-tooth up to one window "
            "length is normal; a line that keeps rising means the windows stalled.",
            [target(q.version_window_age(model), "{{model}} {{model_version}}")],
            unit=SECONDS,
            steps=thresholds((None, GREEN), (WINDOW_AGE_WARN, YELLOW), (WINDOW_AGE_ALERT, RED)),
            links=runbook_links(runbook_base, "DriftlineWindowsStalled"),
        )
    )

    layout.row("Process")
    layout.add(
        ts(
            "Resident memory",
            "Memory of each agent process. Sketches are bounded by features × bins and the "
            "reservoir, so it should plateau; steady growth is a leak or a dedupe set that "
            "is too large (windows.dedupe_max_ids).",
            [target(q.resident_memory(model), "{{instance}}")],
            unit=BYTES,
            span=8,
        )
    )
    layout.add(
        ts(
            "CPU",
            "CPU used by each agent process, in cores. Near the container's limit the agent "
            "falls behind and lag grows.",
            [target(q.cpu_usage(model), "{{instance}}")],
            unit=CPU_CORES,
            span=8,
        )
    )
    layout.add(
        ts(
            "Checkpoint age",
            "Seconds since each model's last durable checkpoint. A saw-tooth at the "
            "checkpoint interval is healthy; a rising line means checkpoints fail "
            "(state directory, disk).",
            [target(q.checkpoint_age(model), "{{model}}")],
            unit=SECONDS,
            steps=thresholds((None, GREEN), (CHECKPOINT_AGE_ALERT, RED)),
            show_thresholds=True,
            span=8,
            links=runbook_links(runbook_base, "DriftlineCheckpointStale"),
        )
    )
    layout.add(
        data_table(
            "Agent versions",
            "driftline and Python versions of the running agents, with how many agents run "
            "each. More than one driftline version means a rollout is in progress.",
            [table_target(q.agent_builds(model))],
            span=24,
            height=5,
        )
        .unit(COUNT)
        .thresholds(thresholds((None, BLUE)))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": "Agents"},
                    "indexByName": {},
                },
            )
        )
    )
    return board


# -- output -----------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[str], dashboard.Dashboard]] = {
    "driftline-fleet.json": fleet,
    "driftline-model.json": model_detail,
    "driftline-agent.json": agent_health,
}


def to_json(board: dashboard.Dashboard | dm.Dashboard) -> str:
    """The dashboard's JSON as it is checked in: sorted keys, two-space indent, final newline."""
    model = board.build() if isinstance(board, dashboard.Dashboard) else board
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(runbook_base: str = RUNBOOK_BASE_URL) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: to_json(build(runbook_base)) for name, build in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build driftline's Grafana dashboards")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files in the output directory differ from what would be written",
    )
    parser.add_argument("--output-dir", type=Path, default=JSON_DIR)
    parser.add_argument(
        "--runbook-base-url",
        default=RUNBOOK_BASE_URL,
        help=f"where docs/runbooks.md is served (default {RUNBOOK_BASE_URL})",
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in render(args.runbook_base_url).items():
        path = args.output_dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        for path in stale:
            print(f"{path} is out of date; run python3 -m dashboards.build", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
