"""The PromQL of driftline's dashboards, built from the metric definitions.

Every driftline metric name, label and suffix in a query comes from a ``MetricDef`` of
:mod:`monitor.outputs.metrics`: :func:`series` writes a selector and refuses a label the family
does not carry, and :func:`by` refuses to group by one. Renaming a metric or a label
therefore changes every panel with it, or fails the build, instead of leaving a panel
that silently shows "No data".

The few names that are not driftline's are constants here, each with where it comes
from: prometheus-client's process collector and Prometheus' own ``ALERTS`` series.

Queries take their label values as arguments, so the same function serves a dashboard
whose variable is multi-valued (a regex match, :func:`regex`) and one whose variable is
single (an exact match). The dashboards pass Grafana template variables (:data:`MODEL`,
:data:`VERSION`, :data:`FEATURE`, :data:`RATE_INTERVAL`, :data:`RANGE`); the tests pass
the same functions' output, with the variables substituted, to a real Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.outputs import metrics as m

# -- Grafana template variables, as written in a query ----------------------------------
MODEL = "$model"
VERSION = "$version"
FEATURE = "$feature"
RATE_INTERVAL = "$__rate_interval"
INTERVAL = "$__interval"
RANGE = "$__range"

# -- label values ---------------------------------------------------------------------
REFERENCE_BASELINE = "reference"
# ``baseline`` of a canary's window compared with the stable version's: "version:<stable>".
VERSION_BASELINE_PREFIX = "version:"

# -- series that are not driftline's ---------------------------------------------------
# prometheus-client's ProcessCollector, registered by monitor.outputs.exporter.new_registry().
PROCESS_RESIDENT_MEMORY = "process_resident_memory_bytes"
PROCESS_CPU_SECONDS = "process_cpu_seconds_total"
# Prometheus' synthetic series of pending and firing alerts; driftline's alert rules
# (alert_rules/) all have names that start with ALERT_NAME_PREFIX.
ALERTS = "ALERTS"
ALERT_NAME_PREFIX = "Driftline"
# The labels Prometheus gives every scraped series: they tell one agent process from another.
TARGET_LABELS = ("job", "instance")

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Match:
    """One label matcher: ``op`` is one of PromQL's =, !=, =~, !~."""

    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"not a PromQL label matcher: {self.op!r}")


def regex(value: str) -> Match:
    """A regex match, for multi-valued template variables and value alternatives."""
    return Match("=~", value)


def any_of(*values: str) -> Match:
    """A regex match of exactly these literal values."""
    return regex("|".join(_regex_escape(v) for v in values))


def _regex_escape(value: str) -> str:
    """A literal value as a RE2 pattern (``_quote`` then escapes the backslashes)."""
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in value)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_labels(
    defn: m.MetricDef, labels: tuple[str, ...] | list[str], extra: tuple = ()
) -> None:
    unknown = [lb for lb in labels if lb not in defn.labels and lb not in extra]
    if unknown:
        raise ValueError(f"{defn.name} has no label {unknown[0]!r}; its labels: {defn.labels}")


def series(defn: m.MetricDef, suffix: str = "", /, **matchers: str | Match) -> str:
    """The selector ``name{label="value", ...}`` of a family, matchers in the given order.

    A plain string value is an exact match. ``suffix`` selects a histogram's ``_bucket``,
    ``_sum`` or ``_count`` series (and allows matching ``le`` on ``_bucket``).
    """
    if suffix and (defn.kind != "histogram" or suffix not in HISTOGRAM_SUFFIXES):
        raise ValueError(f"{defn.name} is a {defn.kind}; it has no {suffix!r} series")
    _check_labels(defn, list(matchers), ("le",) if suffix == "_bucket" else ())
    return _selector(defn.name + suffix, matchers)


def _selector(name: str, matchers: dict[str, str | Match]) -> str:
    parts = []
    for label, value in matchers.items():
        match = value if isinstance(value, Match) else Match("=", value)
        parts.append(f"{label}{match.op}{_quote(match.value)}")
    return name + ("{" + ", ".join(parts) + "}" if parts else "")


def by(defn: m.MetricDef, *labels: str) -> str:
    """``by (a, b)``, refusing labels the family does not carry (target labels allowed)."""
    _check_labels(defn, labels, (*TARGET_LABELS, "le"))
    return f"by ({', '.join(labels)})"


def outcomes(*names: str) -> Match:
    """A matcher of record outcomes, each checked against metrics.RECORD_OUTCOMES."""
    for name in names:
        if name not in m.RECORD_OUTCOMES:
            raise ValueError(f"{name!r} is not a record outcome: {m.RECORD_OUTCOMES}")
    return Match("=", names[0]) if len(names) == 1 else any_of(*names)


def or_zero(expr: str) -> str:
    """``expr``, or 0 when it has no series, for stat panels where none means zero."""
    return f"({expr}) or vector(0)"


def label_values(defn: m.MetricDef, label: str, **matchers: str | Match) -> str:
    """Grafana's ``label_values(selector, label)`` variable query."""
    _check_labels(defn, (label,))
    return f"label_values({series(defn, **matchers)}, {label})"


def rate(defn: m.MetricDef, window: str = RATE_INTERVAL, /, **matchers: str | Match) -> str:
    if defn.kind != "counter":
        raise ValueError(f"{defn.name} is a {defn.kind}; rate() needs a counter")
    return f"rate({series(defn, **matchers)}[{window}])"


def age(defn: m.MetricDef, group: tuple[str, ...], **matchers: str | Match) -> str:
    """Seconds since a ``*_timestamp_seconds`` gauge's time, newest per group."""
    if not defn.name.endswith("_timestamp_seconds"):
        raise ValueError(f"{defn.name} is not a Unix timestamp")
    return f"time() - max {by(defn, *group)} ({series(defn, **matchers)})"


def histogram_quantile(
    q: float, defn: m.MetricDef, group: tuple[str, ...], **matchers: str | Match
) -> str:
    """The ``q`` quantile of a histogram family over the rate interval, per group."""
    buckets = f"rate({series(defn, '_bucket', **matchers)}[{RATE_INTERVAL}])"
    return f"histogram_quantile({q:g}, sum {by(defn, *group, 'le')} ({buckets}))"


def histogram_mean(defn: m.MetricDef, group: tuple[str, ...], **matchers: str | Match) -> str:
    """Mean observation of a histogram family over the rate interval, per group."""
    total = f"sum {by(defn, *group)} (rate({series(defn, '_sum', **matchers)}[{RATE_INTERVAL}]))"
    count = f"sum {by(defn, *group)} (rate({series(defn, '_count', **matchers)}[{RATE_INTERVAL}]))"
    return f"{total} / {count}"


def of_agents(name: str, **matchers: str | Match) -> str:
    """A process-level series (no ``model`` label) of the agents serving the matched models.

    Keeps the series of the scrape targets (job, instance) that also expose
    ``driftline_source_up`` for the models matched.
    """
    return f"{name} and on ({', '.join(TARGET_LABELS)}) {series(m.SOURCE_UP, **matchers)}"


def new_increases(defn: m.MetricDef, window: str, **matchers: str | Match) -> str:
    """Counter series that went up within ``window``, new series included.

    ``increase()`` cannot see a counter's first increment (its series appears with the
    value already counted), and for rare events such as rollback decisions the first
    one is the one that matters; ``x unless x offset w`` catches series born within w.
    """
    sel = series(defn, **matchers)
    return f"(increase({sel}[{window}]) > 0) or ({sel} unless {sel} offset {window})"


# -- the queries of the dashboards ----------------------------------------------------
# Each takes the matchers of its dashboard: ``model`` (and ``version``, ``feature``) are
# template variables there, exact values or regex matches.

_VERSION = ("model", "model_version")


def firing_alerts(model: str | Match) -> str:
    """Firing driftline alerts; alerts without a ``model`` label (agent down) always show."""
    pattern = model.value if isinstance(model, Match) else _regex_escape(model)
    return _selector(
        ALERTS,
        {
            "alertname": regex(ALERT_NAME_PREFIX + ".*"),
            "alertstate": "firing",
            "model": regex(f"{pattern}|"),
        },
    )


def fleet_version_drift_verdict(model: str | Match) -> str:
    d = m.DATASET_DRIFT_VERDICT
    return f"max {by(d, *_VERSION)} ({series(d, model=model, baseline=REFERENCE_BASELINE)})"


def fleet_version_drift_share(model: str | Match) -> str:
    d = m.DATASET_DRIFT_SHARE
    return f"max {by(d, *_VERSION)} ({series(d, model=model, baseline=REFERENCE_BASELINE)})"


def fleet_version_prediction_verdict(model: str | Match) -> str:
    d = m.PREDICTION_DRIFT_VERDICT
    return f"max {by(d, *_VERSION)} ({series(d, model=model, baseline=REFERENCE_BASELINE)})"


def version_quality_breaches(model: str | Match, **more: str | Match) -> str:
    """Quality checks breached in each version's last window (a count)."""
    d = m.QUALITY_BREACHED
    return f"sum {by(d, *_VERSION)} ({series(d, model=model, **more)})"


def version_traffic(model: str | Match, **more: str | Match) -> str:
    """Decoded records per second, per model version."""
    d = m.RECORDS
    return f"sum {by(d, *_VERSION)} ({rate(d, model=model, outcome=outcomes('decoded'), **more)})"


def version_window_age(model: str | Match, **more: str | Match) -> str:
    return age(m.LAST_WINDOW_CLOSE, _VERSION, model=model, **more)


def models_reporting(model: str | Match) -> str:
    d = m.REFERENCE_INFO
    return or_zero(f"count(count {by(d, 'model')} ({series(d, model=model)}))")


def versions_drifting(model: str | Match) -> str:
    return or_zero(f"count(({fleet_version_drift_verdict(model)}) == 1)")


def versions_quality_breached(model: str | Match) -> str:
    d = m.WINDOW_QUALITY_BREACHED
    return or_zero(f"count((max {by(d, *_VERSION)} ({series(d, model=model)})) == 1)")


def total_traffic(model: str | Match) -> str:
    return or_zero(f"sum({rate(m.RECORDS, model=model, outcome=outcomes('decoded'))})")


def model_lag(model: str | Match) -> str:
    """Records not yet consumed, summed over each model's partitions."""
    d = m.CONSUMER_LAG
    return f"sum {by(d, 'model')} ({partition_lag(model)})"


def max_model_lag(model: str | Match) -> str:
    return or_zero(f"max({model_lag(model)})")


def firing_alert_count(model: str | Match) -> str:
    return or_zero(f"count({firing_alerts(model)})")


def firing_alert_table(model: str | Match) -> str:
    return f"max by (alertname, severity, model, model_version) ({firing_alerts(model)})"


# -- model detail ---------------------------------------------------------------------


def _set_matchers(model: str | Match, version: str | Match) -> dict[str, str | Match]:
    return {"model": model, "model_version": version, "baseline": REFERENCE_BASELINE}


def drift_share(model: str | Match, version: str | Match) -> str:
    d = m.DATASET_DRIFT_SHARE
    return f"max {by(d, *_VERSION)} ({series(d, **_set_matchers(model, version))})"


def drift_verdict(model: str | Match, version: str | Match) -> str:
    d = m.DATASET_DRIFT_VERDICT
    return f"max {by(d, *_VERSION)} ({series(d, **_set_matchers(model, version))})"


def prediction_share(model: str | Match, version: str | Match) -> str:
    d = m.PREDICTION_DRIFT_SHARE
    return f"max {by(d, *_VERSION)} ({series(d, **_set_matchers(model, version))})"


def prediction_verdict(model: str | Match, version: str | Match) -> str:
    d = m.PREDICTION_DRIFT_VERDICT
    return f"max {by(d, *_VERSION)} ({series(d, **_set_matchers(model, version))})"


def drifted_feature_count(model: str | Match, version: str | Match) -> str:
    d = m.FEATURE_DRIFTED
    return or_zero(f"sum({series(d, **_set_matchers(model, version))})")


def window_rows(model: str | Match, version: str | Match) -> str:
    d = m.WINDOW_ROWS
    return f"max {by(d, *_VERSION)} ({series(d, model=model, model_version=version)})"


_COLUMN = ("feature", "detector")


def feature_family(
    defn: m.MetricDef,
    model: str | Match,
    version: str | Match,
    feature: str | Match | None = None,
) -> str:
    """A per-column family of one version against the reference, one series per column."""
    matchers = _set_matchers(model, version)
    if feature is not None:
        matchers["feature"] = feature
    return f"max {by(defn, *_COLUMN)} ({series(defn, **matchers)})"


def top_drifting_features(
    model: str | Match, version: str | Match, k: int = 10, window: str = RANGE
) -> str:
    """The ``k`` features flagged drifted for the largest share of ``window``."""
    d = m.FEATURE_DRIFTED
    sel = series(d, **_set_matchers(model, version))
    return f"topk({k}, max {by(d, *_COLUMN)} (avg_over_time({sel}[{window}])))"


def versions_drift_share(model: str | Match) -> str:
    """Every version's dataset drift share against the reference."""
    d = m.DATASET_DRIFT_SHARE
    return f"max {by(d, *_VERSION)} ({series(d, model=model, baseline=REFERENCE_BASELINE)})"


def canary_drift_share(model: str | Match) -> str:
    """Each canary's dataset drift share against the stable version's window."""
    d = m.DATASET_DRIFT_SHARE
    sel = series(d, model=model, baseline=regex(VERSION_BASELINE_PREFIX + ".+"))
    return f"max {by(d, *_VERSION, 'baseline')} ({sel})"


def canary_feature_statistic(model: str | Match, version: str | Match) -> str:
    """The version's per-feature statistics against the stable version's window."""
    d = m.FEATURE_DRIFT_STATISTIC
    sel = series(
        d, model=model, model_version=version, baseline=regex(VERSION_BASELINE_PREFIX + ".+")
    )
    return f"max {by(d, *_COLUMN, 'baseline')} ({sel})"


def canary_feature_drifted(model: str | Match, version: str | Match) -> str:
    d = m.FEATURE_DRIFTED
    sel = series(
        d, model=model, model_version=version, baseline=regex(VERSION_BASELINE_PREFIX + ".+")
    )
    return f"max {by(d, *_COLUMN, 'baseline')} ({sel})"


def quality_ratio(model: str | Match, version: str | Match, feature: str | Match) -> str:
    d = m.QUALITY_RATIO
    sel = series(d, model=model, model_version=version, feature=feature)
    return f"max {by(d, 'feature', 'check')} ({sel})"


def quality_breached_count(model: str | Match, version: str | Match) -> str:
    d = m.QUALITY_BREACHED
    return or_zero(f"sum({series(d, model=model, model_version=version)})")


def rollback_decisions(model: str | Match, window: str = RANGE) -> str:
    """Rollback decisions in ``window``, by version, action and outcome."""
    d = m.ROLLBACK_DECISIONS
    group = by(d, "model_version", "action", "outcome")
    return f"sum {group} (increase({series(d, model=model)}[{window}]))"


def rollback_annotation(model: str | Match) -> str:
    """Series with a value at the steps where the policy took a rollback decision."""
    d = m.ROLLBACK_DECISIONS
    group = by(d, "model_version", "action", "outcome")
    return f"sum {group} ({new_increases(d, RATE_INTERVAL, model=model)})"


# -- agent health ---------------------------------------------------------------------


def total_records_rate(model: str | Match) -> str:
    """Records read per second (every outcome) by the agents of the matched models."""
    return or_zero(f"sum({rate(m.RECORDS, model=model)})")


def records_rate(model: str | Match) -> str:
    d = m.RECORDS
    return f"sum {by(d, 'model', 'outcome')} ({rate(d, model=model)})"


def partition_lag(model: str | Match) -> str:
    d = m.CONSUMER_LAG
    return f"max {by(d, 'model', 'topic', 'partition')} ({series(d, model=model)})"


def decode_errors(model: str | Match) -> str:
    d = m.RECORDS_FAILED
    return f"sum {by(d, 'model', 'reason')} ({rate(d, model=model)})"


def late_and_duplicate(model: str | Match) -> str:
    d = m.RECORDS
    sel = rate(d, model=model, outcome=outcomes("late", "duplicate"))
    return f"sum {by(d, 'model', 'model_version', 'outcome')} ({sel})"


def late_and_duplicate_share(model: str | Match) -> str:
    """Late and duplicate records as a share of all records, per model."""
    d = m.RECORDS
    late = rate(d, model=model, outcome=outcomes("late", "duplicate"))
    part = f"sum {by(d, 'model', 'outcome')} ({late})"
    total = f"sum {by(d, 'model')} ({rate(d, model=model)})"
    return f"{part} / ignoring (outcome) group_left {total}"


def evaluation_quantile(q: float, model: str | Match) -> str:
    return histogram_quantile(q, m.WINDOW_EVALUATION_SECONDS, ("model",), model=model)


def evaluation_mean(model: str | Match) -> str:
    return histogram_mean(m.WINDOW_EVALUATION_SECONDS, ("model",), model=model)


def evaluation_buckets(model: str | Match) -> str:
    """Window evaluations per bucket in each step (a Prometheus heatmap)."""
    d = m.WINDOW_EVALUATION_SECONDS
    buckets = f"increase({series(d, '_bucket', model=model)}[{RATE_INTERVAL}])"
    return f"sum {by(d, 'le')} ({buckets})"


def resident_memory(model: str | Match) -> str:
    return of_agents(PROCESS_RESIDENT_MEMORY, model=model)


def cpu_usage(model: str | Match) -> str:
    return of_agents(f"rate({PROCESS_CPU_SECONDS}[{RATE_INTERVAL}])", model=model)


def checkpoint_age(model: str | Match) -> str:
    return age(m.LAST_CHECKPOINT, ("model",), model=model)


def source_up(model: str | Match) -> str:
    d = m.SOURCE_UP
    return f"min {by(d, 'model')} ({series(d, model=model)})"


def windows_closed_rate(model: str | Match) -> str:
    d = m.WINDOWS_CLOSED
    return f"sum {by(d, *_VERSION)} ({rate(d, model=model)})"


def agent_builds(model: str | Match) -> str:
    d = m.BUILD_INFO
    return f"count {by(d, 'version', 'python')} ({of_agents(d.name, model=model)})"


# -- attributions (explain:) --------------------------------------------------------------


def attribution_ndcg(model: str | Match, version: str | Match) -> str:
    d = m.ATTRIBUTION_NDCG
    return f"min {by(d, *_VERSION)} ({series(d, model=model, model_version=version)})"


def attribution_ndcg_threshold(model: str | Match, version: str | Match) -> str:
    d = m.ATTRIBUTION_NDCG_THRESHOLD
    return f"max {by(d, *_VERSION)} ({series(d, model=model, model_version=version)})"


def attribution_family(defn: m.MetricDef, model: str | Match, version: str | Match) -> str:
    """A per-feature attribution family of one version, one series per feature."""
    return f"max {by(defn, 'feature')} ({series(defn, model=model, model_version=version)})"


def top_impact_features(model: str | Match, version: str | Match, k: int = 10) -> str:
    """The ``k`` drifted features with the highest impact (drift × importance) now."""
    d = m.FEATURE_DRIFT_IMPACT
    return f"topk({k}, {attribution_family(d, model, version)})"


def attribution_skipped(model: str | Match) -> str:
    d = m.ATTRIBUTION_SKIPPED
    return f"sum {by(d, 'reason')} (increase({series(d, model=model)}[{RANGE}]))"


def attribution_invalid(model: str | Match) -> str:
    """Records whose logged attributions could not be read, per second, by reason."""
    d = m.ATTRIBUTION_RECORDS_INVALID
    return f"sum {by(d, 'reason')} ({rate(d, model=model)})"


# -- model performance (labels:, kpis:) ------------------------------------------------------


def performance_family(defn: m.MetricDef, model: str | Match, version: str | Match) -> str:
    """A per-metric performance gauge of one version, one series per metric."""
    return f"max {by(defn, 'metric')} ({series(defn, model=model, model_version=version)})"


def label_coverage(model: str | Match, version: str | Match) -> str:
    d = m.LABEL_COVERAGE
    return f"min {by(d, *_VERSION)} ({series(d, model=model, model_version=version)})"


def labels_by_outcome(model: str | Match) -> str:
    """Labels (and unlabelled predictions) per second, by what the join did with them."""
    d = m.LABELS_TOTAL
    return f"sum {by(d, 'outcome')} ({rate(d, model=model)})"


def kpi_family(defn: m.MetricDef, model: str | Match, version: str | Match) -> str:
    """A per-KPI gauge of one version, one series per KPI."""
    return f"max {by(defn, 'kpi')} ({series(defn, model=model, model_version=version)})"


_SEQUENTIAL = ("feature",)


def sequential_alarms_held(model: str | Match, version: str | Match) -> str:
    """Columns (and the dataset detector) whose sequential alarm is held now."""
    col, ds = m.SEQUENTIAL_ALARM, m.DATASET_SEQUENTIAL_ALARM
    matchers: dict[str, str | Match] = {"model": model, "model_version": version}
    return (
        or_zero(f"sum({series(col, **matchers)})")
        + f" + {or_zero(f'max({series(ds, **matchers)})')}"
    )


def sequential_evidence(model: str | Match, version: str | Match, feature: str | Match) -> str:
    """Each column's CUSUM over its threshold (1: the detector fires)."""
    matchers: dict[str, str | Match] = {
        "model": model,
        "model_version": version,
        "feature": feature,
    }
    stat, thr = m.SEQUENTIAL_STATISTIC, m.SEQUENTIAL_THRESHOLD
    per_column = by(stat, *_SEQUENTIAL)
    evidence = f"max {per_column} ({series(stat, **matchers)})"
    return f"{evidence} / max {per_column} ({series(thr, **matchers)})"


def dataset_sequential(defn: m.MetricDef, model: str | Match, version: str | Match) -> str:
    """The dataset-level sequential detector's statistic or threshold of one version."""
    return f"max {by(defn, *_VERSION)} ({series(defn, model=model, model_version=version)})"
