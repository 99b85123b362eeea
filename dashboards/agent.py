"""The agent health dashboard: whether the driftline agents keep up (consumption, records
set aside, window evaluation, memory, CPU, checkpoints)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard, heatmap
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prom_models

from dashboards import queries as q
from dashboards.frame import AGENT_UID, model_variable, new_board, runbook_links
from dashboards.panels import (
    FLAG_UP,
    Layout,
    base_panel,
    data_table,
    single,
    table_target,
    target,
    thresholds,
    ts,
)
from dashboards.style import (
    BLUE,
    BYTES,
    CHECKPOINT_AGE_ALERT,
    COUNT,
    CPU_CORES,
    EVALUATION_ALERT,
    GREEN,
    LAG_ALERT,
    LAG_WARN,
    LATE_SHARE,
    ORANGE,
    PER_SECOND,
    RATIO,
    RECORDS,
    RECORDS_PER_SECOND,
    RED,
    SECONDS,
    WINDOW_AGE_ALERT,
    WINDOW_AGE_WARN,
    YELLOW,
)


def agent_health(runbook_base: str) -> dashboard.Dashboard:
    """The agents themselves: consumption, decoding, windows and the process."""
    model = q.regex(q.MODEL)
    board = new_board(
        AGENT_UID,
        "driftline / Agent health",
        "Whether the driftline agents keep up: consumption, consumer lag, records set "
        "aside, window evaluation time, memory and checkpoints.",
        runbook_base,
    ).with_variable(model_variable(multi=True))
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
        base_panel(
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
