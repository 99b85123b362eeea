"""Panel builders every dashboard uses: queries, links, thresholds and value mappings,
table helpers, the four panel shapes (time series, stat, table, flags over time) and the
:class:`Layout` that numbers panels in the order they are added.

A new panel is built from these in the module of its dashboard (or of its row of the
model dashboard); a new panel *shape* shared by several dashboards goes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

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
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as prom_models

from dashboards.style import COUNT, GREEN, RED

# Panels reference the data source through the `datasource` variable, so one import
# works with whatever Prometheus a Grafana has.
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# -- small builders ---------------------------------------------------------------------------


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

# A panel builder of one shape: what base_panel takes it gives back, typed as such.
P = TypeVar(
    "P",
    timeseries.Panel,
    stat.Panel,
    table.Panel,
    heatmap.Panel,
    bargauge.Panel,
    statushistory.Panel,
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


def base_panel(
    panel: P,
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    span: int,
    height: int,
    links: Sequence[dashboard.DashboardLink] = (),
) -> P:
    """Title, description, data source, queries, size and links of a panel of any shape
    (the other builders here start from it; use it for a shape they do not cover)."""
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
    panel = base_panel(
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
    panel = base_panel(
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
    panel = base_panel(
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
    panel = base_panel(
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
