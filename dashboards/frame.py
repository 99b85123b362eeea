"""What every driftline dashboard shares around its panels: uids and tag, the dashboard
itself (time range, refresh, links, the data source variable), the model variable, and
the links between dashboards and to the runbooks."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import queries as q
from dashboards.panels import DATASOURCE, link
from monitor.outputs import metrics as m

FLEET_UID = "driftline-fleet"
MODEL_UID = "driftline-model"
AGENT_UID = "driftline-agent"
TAG = "driftline"


def runbook_url(base: str, alert: str) -> str:
    """The URL of an alert's section in docs/runbooks.md (its heading is the alert's name)."""
    return f"{base}#{alert.lower()}"


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
ROW_TO_MODEL: list[Builder[dm.DashboardLink]] = [
    link(
        "Model detail: ${__data.fields.model} ${__data.fields.model_version}",
        model_dashboard_url("${__data.fields.model}", "${__data.fields.model_version}"),
    )
]


def new_board(uid: str, title: str, description: str, runbook_base: str) -> dashboard.Dashboard:
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


def model_variable(*, multi: bool) -> dashboard.QueryVariable:
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
