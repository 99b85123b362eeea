"""Turns what the agent observes into Prometheus metrics (and, through telemetry, OTLP).

Every family comes from :mod:`monitor.outputs.metrics`; this module only decides which values go
into which series. One :class:`Exporter` serves one model.

Stale series. A gauge that described the previous window but has nothing to say about the
current one is *removed*, not set to NaN: when a column is untestable in a window (absent,
too few values, a statistic that is not finite), its statistic, p-value, threshold and
drifted series disappear from the exposition until a later window tests it again. A
missing series is what PromQL and alert rules handle well (``absent()``, no false
"drifted=1" left over from an hour ago); a NaN would be carried through every
aggregation. The same rule drops the p-value series of tests that define none, and the
share and verdict of a set with no tested column.

Counting records. ``driftline_records_total{outcome}`` counts every record once;
failures go through :meth:`Exporter.count_failures`, which counts them both there
(``outcome="failed"``) and by reason in ``driftline_records_failed_total``, so the two
always agree. The exporter never derives record counts from a WindowReport (whose late
and duplicate counts the agent has already reported as they happened).

Model versions. At most ``max_model_versions`` versions have series of their own; the
records, windows and decisions of others are counted under ``model_version="other"``,
and a version idle for ``model_version_idle`` seconds loses all its series (see
:mod:`monitor.outputs.versions`).

Windows compared with another version (``report.baseline == "version:<v>"``, canary
analysis) export their drift families under their own ``baseline`` label; rows, quality
and the windows-closed counter come from the reference comparison only, so a window is
never counted twice.
"""

from __future__ import annotations

import math
import platform
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from detectors.results import WindowReport
from monitor import __version__
from monitor.outputs import metrics as m
from monitor.outputs.multivariate_export import put_multivariate
from monitor.outputs.report_export import (
    PERFORMANCE_FAMILIES,
    finite,
    put_attribution,
    put_drift,
    put_performance,
)
from monitor.outputs.sequential_export import fired, put_sequential
from monitor.outputs.versions import OTHER_VERSION, VersionSlots


class Telemetry(Protocol):
    """What the exporter mirrors its observations into: OTLP instruments
    (``monitor.outputs.telemetry.Telemetry``), named here by shape so that the exporter
    does not depend on the OpenTelemetry module."""

    enabled: bool

    def set_gauge(self, defn: m.MetricDef, labels: Mapping[str, str], value: float) -> None: ...
    def remove_gauge(self, defn: m.MetricDef, labels: Mapping[str, str]) -> None: ...
    def set_info(self, defn: m.MetricDef, labels: Mapping[str, str]) -> None: ...
    def add(self, defn: m.MetricDef, labels: Mapping[str, str], n: float) -> None: ...
    def record(self, defn: m.MetricDef, labels: Mapping[str, str], value: float) -> None: ...


# Exemplar label sets are limited to 128 characters; a W3C trace id is 32 hex digits.
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_REFERENCE_SHORT = 12

LabelValues = tuple[str, ...]

__all__ = ["Exporter", "new_registry"]


def new_registry() -> CollectorRegistry:
    """A registry of the agent's own, with the standard process, platform and GC families.

    The process-wide default registry is not used: tests (and a process running several
    exporters) would collide on metric names there.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _build(defn: m.MetricDef, registry: CollectorRegistry) -> Counter | Gauge | Histogram | Info:
    if defn.kind == "counter":
        return Counter(defn.name, defn.help, defn.labels, registry=registry)
    if defn.kind == "gauge":
        return Gauge(defn.name, defn.help, defn.labels, registry=registry, unit=defn.unit)
    if defn.kind == "histogram":
        return Histogram(
            defn.name,
            defn.help,
            defn.labels,
            registry=registry,
            unit=defn.unit,
            buckets=defn.buckets or Histogram.DEFAULT_BUCKETS,
        )
    # info: the labels are the info's keys, replaced as a whole on every update
    return Info(defn.family, defn.help, registry=registry)


class Exporter:
    """The Prometheus side of the agent: one object per model, safe to call from threads.

    ``window_label`` is the value of the ``window`` label (the window length, "60s");
    ``reference_hash`` the profile's hash (its first 12 characters become the
    ``reference`` label). When ``telemetry`` is given (or attached later), every
    observation is mirrored into its OpenTelemetry instruments.
    """

    def __init__(
        self,
        model: str,
        window_label: str,
        reference_hash: str,
        registry: CollectorRegistry | None = None,
        exemplars: bool = True,
        *,
        telemetry: Telemetry | None = None,
        max_model_versions: int = 5,
        model_version_idle: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.window_label = window_label
        self.exemplars = exemplars
        self.registry = registry if registry is not None else new_registry()
        self.telemetry: Telemetry | None = None
        self._lock = threading.Lock()
        self._metrics = {d.name: _build(d, self.registry) for d in m.ALL_METRICS}
        # (model_version, baseline) -> family name -> label values exported for it
        self._live: dict[tuple[str, str], dict[str, set[LabelValues]]] = {}
        # model_version -> start of the latest window with a performance block
        self._latest_start: dict[str, float] = {}
        self.reference_hash = ""
        self.versions = VersionSlots(max_model_versions, model_version_idle, clock)
        self._set(m.MODEL_VERSIONS_TRACKED, {"model": model}, 0.0)
        # at 0 from the start, so increase() sees the first overflow or expiry
        self._inc(m.UNTRACKED_VERSION_WINDOWS, {"model": model}, 0.0)
        self._inc(m.MODEL_VERSIONS_EXPIRED, {"model": model}, 0.0)
        self._info(m.BUILD_INFO, {"version": __version__, "python": platform.python_version()})
        self._set(m.SOURCE_UP, {"model": model}, 0.0)
        self.set_reference(reference_hash, None)
        if telemetry is not None:
            self.attach_telemetry(telemetry)

    # -- the agent's calls ------------------------------------------------------------------
    def observe_report(self, report: WindowReport, evaluation_seconds: float) -> None:
        """Export a closed window's results; ``evaluation_seconds`` is how long its tests took.

        (The evaluation's span is Telemetry.window_evaluated: it needs the records' trace
        contexts, which a report does not carry.)
        """
        mv, baseline = self.versions.label(report.model_version), report.baseline
        self._expire_versions()
        if mv == OTHER_VERSION:
            self._observe_untracked(report, evaluation_seconds)
            return
        base = {"model": self.model, "model_version": mv, "window": self.window_label}
        values: dict[str, dict[LabelValues, float]] = {}

        def put(defn: m.MetricDef, value: float | None, **labels: str) -> None:
            if not finite(value):
                return
            merged = {**base, "baseline": baseline, **labels}
            key = tuple(merged[name] for name in defn.labels)
            values.setdefault(defn.name, {})[key] = float(value)  # type: ignore[arg-type]

        put_drift(put, report)
        primary = baseline == "reference"
        closed_at = report.evaluated_at if report.evaluated_at is not None else time.time()
        if primary:
            for q in report.quality.checks:
                put(m.QUALITY_RATIO, q.rate, feature=q.feature, check=q.check)
                put(m.QUALITY_BREACHED, float(q.breached), feature=q.feature, check=q.check)
            put(m.WINDOW_QUALITY_BREACHED, float(report.quality.breached))
            put(m.WINDOW_ROWS, float(report.rows))
            put_multivariate(put, report)
            if report.performance is not None:
                put_performance(put, report.performance)
                self._latest_start[mv] = report.window_start
            put(m.LAST_WINDOW_CLOSE, closed_at)
            if report.window_kind == "time":
                put(m.LAST_WINDOW_END, report.window_end)
            if report.attribution is not None:
                put_attribution(put, report.attribution)
            put_sequential(put, report)

        with self._lock:
            previous = self._live.get((mv, baseline), {})
            for name, series in previous.items():
                gone = series - values.get(name, {}).keys()
                for key in gone:
                    self._remove(m.BY_NAME[name], key)
            for name, series_values in values.items():
                defn = m.BY_NAME[name]
                for key, value in series_values.items():
                    self._set(defn, dict(zip(defn.labels, key, strict=True)), value)
            self._live[(mv, baseline)] = {name: set(s) for name, s in values.items()}
            if primary:
                for feature in fired(report):
                    self._sequential_alarm(mv, feature, 1.0)

        exemplar = self._exemplar(report)
        self._observe(
            m.WINDOW_EVALUATION_SECONDS,
            {"model": self.model, "window": self.window_label},
            evaluation_seconds,
            exemplar,
        )
        if primary:
            self._inc(m.WINDOWS_CLOSED, base, 1.0, exemplar)

    def attach_telemetry(self, telemetry: Telemetry) -> None:
        """Mirror every observation from now on into ``telemetry`` (OTLP).

        What is already exported is copied over: gauges and info series as they stand,
        counters as their current totals. Histogram observations made before attaching
        are not replayed. Attach at start-up, before other threads observe.
        """
        if not telemetry.enabled:
            return
        with self._lock:
            for defn in m.ALL_METRICS:
                for family in self._metrics[defn.name].collect():
                    for sample in family.samples:
                        if defn.kind == "gauge":
                            telemetry.set_gauge(defn, sample.labels, sample.value)
                        elif defn.kind == "info":
                            telemetry.set_info(defn, sample.labels)
                        elif defn.kind == "counter" and sample.name == defn.name:
                            telemetry.add(defn, sample.labels, sample.value)
            self.telemetry = telemetry

    def observe_revision(self, report: WindowReport) -> None:
        """A report sent again with a revised performance block (late labels): counted,
        and its performance series updated when it is the latest window of its version."""
        mv = self.versions.label(report.model_version)
        self._inc(m.PERFORMANCE_REVISIONS, {"model": self.model, "model_version": mv}, 1.0)
        if report.performance is None or report.baseline != "reference" or mv == OTHER_VERSION:
            return
        if report.window_start < self._latest_start.get(mv, -math.inf):
            return
        base = {"model": self.model, "model_version": mv, "window": self.window_label}
        values: dict[str, dict[LabelValues, float]] = {}

        def put(defn: m.MetricDef, value: float | None, **labels: str) -> None:
            if finite(value):
                merged = {**base, **labels}
                key = tuple(merged[name] for name in defn.labels)
                values.setdefault(defn.name, {})[key] = float(value)  # type: ignore[arg-type]

        put_performance(put, report.performance)
        with self._lock:
            live = self._live.setdefault((mv, report.baseline), {})
            for defn in PERFORMANCE_FAMILIES:
                now = values.get(defn.name, {})
                for key in live.get(defn.name, set()) - now.keys():
                    self._remove(defn, key)
                for key, value in now.items():
                    self._set(defn, dict(zip(defn.labels, key, strict=True)), value)
                live[defn.name] = set(now)

    def count_labels(self, outcome: str, n: int) -> None:
        """Count ``n`` labels (or unlabelled predictions) by what the join did with them."""
        if outcome not in m.LABEL_OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {m.LABEL_OUTCOMES}")
        if n:
            self._inc(m.LABELS_TOTAL, {"model": self.model, "outcome": outcome}, float(n))

    def set_label_join(self, predictions: int, labels: int) -> None:
        """How many predictions wait for a label and labels for a prediction."""
        self._set(m.LABEL_JOIN_PENDING, {"model": self.model, "kind": "predictions"}, predictions)
        self._set(m.LABEL_JOIN_PENDING, {"model": self.model, "kind": "labels"}, labels)

    def count_records(self, outcome: str, n: int, model_version: str | None = None) -> None:
        """Count ``n`` records that were decoded, late or duplicate (failures: count_failures).

        ``model_version`` is empty in the label when the records could not be attributed
        to a version.
        """
        if outcome not in m.RECORD_OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {m.RECORD_OUTCOMES}")
        if outcome == "failed":
            raise ValueError("count failed records with count_failures(reason, n)")
        self._count_records(outcome, n, self.versions.label(model_version or ""))
        self._expire_versions()

    def count_multivariate_skipped(self, reason: str) -> None:
        """A window whose row-level tests did not run (too few rows, budget, error)."""
        self._inc(m.MULTIVARIATE_SKIPPED, {"model": self.model, "reason": reason}, 1.0)

    def set_online_mmd(
        self, model_version: str, statistic: float | None, threshold: float, detected: bool
    ) -> None:
        """Where the online MMD stands after a batch, and whether it fired in it."""
        labels = {"model": self.model, "model_version": self.versions.label(model_version)}
        if labels["model_version"] == OTHER_VERSION:
            if detected:
                self._inc(m.MULTIVARIATE_ONLINE_DETECTIONS, labels, 1.0)
            return  # no gauges shared by several versions
        if statistic is not None and math.isfinite(statistic):
            self._set(m.MULTIVARIATE_ONLINE_STATISTIC, labels, statistic)
        self._set(m.MULTIVARIATE_ONLINE_THRESHOLD, labels, threshold)
        if detected:
            self._inc(m.MULTIVARIATE_ONLINE_DETECTIONS, labels, 1.0)

    def count_failures(self, reason: str, n: int) -> None:
        """Count ``n`` records set aside for ``reason`` (also in records_total, outcome=failed)."""
        self._inc(m.RECORDS_FAILED, {"model": self.model, "reason": reason}, float(n))
        self._count_records("failed", n, "")

    def count_failed_evaluations(self, outcome: str, n: int) -> None:
        """Count ``n`` window evaluations that raised (outcome "retry" or "given_up")."""
        labels = {"model": self.model, "window": self.window_label, "outcome": outcome}
        self._inc(m.WINDOW_EVALUATIONS_FAILED, labels, float(n))

    def count_partials_published(self, kind: str, n: int) -> None:
        """``n`` partials of ``kind`` (window, progress) acknowledged by the broker."""
        self._inc(m.PARTIALS_PUBLISHED, {"model": self.model, "kind": kind}, float(n))

    def count_partials_received(self, outcome: str, n: int = 1) -> None:
        self._inc(m.PARTIALS_RECEIVED, {"model": self.model, "outcome": outcome}, float(n))

    def observe_aggregation(
        self, latency: float, coverage: float, partial_reasons: Iterable[str], open_windows: int
    ) -> None:
        """One aggregated window judged: its latency, coverage and why it is partial."""
        labels = {"model": self.model}
        self._observe(m.AGGREGATION_LATENCY, labels, max(0.0, latency))
        self._set(m.AGGREGATION_COVERAGE, labels, coverage)
        for reason in partial_reasons:
            self._inc(m.AGGREGATION_PARTIAL_WINDOWS, {"model": self.model, "reason": reason}, 1.0)
        self.set_open_windows(open_windows)

    def set_open_windows(self, n: int) -> None:
        self._set(m.AGGREGATION_OPEN_WINDOWS, {"model": self.model}, float(n))

    def set_lag(self, topic: str, partition: int, lag: int | None) -> None:
        """The partition's consumer lag in records; ``None`` drops the series (revoked)."""
        labels = {"model": self.model, "topic": topic, "partition": str(partition)}
        if lag is None:
            self._remove(m.CONSUMER_LAG, tuple(labels[k] for k in m.CONSUMER_LAG.labels))
        else:
            self._set(m.CONSUMER_LAG, labels, float(max(lag, 0)))

    def set_source_up(self, up: bool) -> None:
        self._set(m.SOURCE_UP, {"model": self.model}, 1.0 if up else 0.0)

    def set_checkpoint(self, ts: float) -> None:
        """The Unix time of the last durable checkpoint."""
        self._set(m.LAST_CHECKPOINT, {"model": self.model}, float(ts))

    def count_state_lost(self, partitions: int) -> None:
        """Partitions resumed at committed offsets without their window state."""
        self._inc(m.STATE_LOST, {"model": self.model}, float(partitions))

    def count_changelog_write(self, outcome: str) -> None:
        """One checkpoint written to the changelog topic: acknowledged or failed."""
        self._inc(m.CHANGELOG_WRITES, {"model": self.model, "outcome": outcome}, 1.0)

    def set_reference(self, reference_hash: str, rows: int | None) -> None:
        """The reference profile in use (its info series is replaced, never duplicated)."""
        self.reference_hash = reference_hash
        self._info(
            m.REFERENCE_INFO,
            {"model": self.model, "reference": reference_hash[:_REFERENCE_SHORT]},
        )
        if rows is not None:
            self._set(m.REFERENCE_ROWS, {"model": self.model}, float(rows))

    def count_attribution_skipped(self, reason: str) -> None:
        """A window whose attributions were not computed (explain: budget, too few rows)."""
        self._inc(m.ATTRIBUTION_SKIPPED, {"model": self.model, "reason": reason}, 1.0)

    def count_attribution_invalid(self, reason: str, n: int) -> None:
        """Records whose logged attributions could not be read (the records are kept)."""
        self._inc(m.ATTRIBUTION_RECORDS_INVALID, {"model": self.model, "reason": reason}, float(n))

    def count_rollback(self, model_version: str, action: str, outcome: str) -> None:
        labels = {
            "model": self.model,
            "model_version": self.versions.label(model_version),
            "action": action,
            "outcome": outcome,
        }
        self._inc(m.ROLLBACK_DECISIONS, labels, 1.0)

    def drop_judged_series(self) -> None:
        """Drop the gauges of judged windows (every gauge with a ``window`` label, and the
        aggregation coverage): another member judges the model now (runtime/judging.py).
        The agent's own health series and all counters stay."""
        with self._lock:
            for defn in m.ALL_METRICS:
                judged = "window" in defn.labels or defn is m.AGGREGATION_COVERAGE
                if defn.kind != "gauge" or not judged:
                    continue
                for key in self._series_keys(defn):
                    self._remove(defn, key)

    # -- internals --------------------------------------------------------------------------
    def _observe_untracked(self, report: WindowReport, evaluation_seconds: float) -> None:
        """A window of a version beyond the limit: counted, no per-window series."""
        self._observe(
            m.WINDOW_EVALUATION_SECONDS,
            {"model": self.model, "window": self.window_label},
            evaluation_seconds,
        )
        if report.baseline == "reference":
            labels = {"model": self.model, "model_version": OTHER_VERSION}
            self._inc(m.WINDOWS_CLOSED, {**labels, "window": self.window_label}, 1.0)
            self._inc(m.UNTRACKED_VERSION_WINDOWS, {"model": self.model}, 1.0)

    def _expire_versions(self) -> None:
        """Drop every series of the versions that stopped sending (freeing their slots)."""
        gone = self.versions.expire()
        if gone:
            with self._lock:
                for version in gone:
                    self._drop_version(version)
            self._inc(m.MODEL_VERSIONS_EXPIRED, {"model": self.model}, float(len(gone)))
        self._set(m.MODEL_VERSIONS_TRACKED, {"model": self.model}, float(len(self.versions)))

    def _series_keys(self, defn: m.MetricDef, **match: str) -> set[LabelValues]:
        """The label values of every series of ``defn`` whose labels include ``match``."""
        return {
            tuple(sample.labels[k] for k in defn.labels)
            for family in self._metrics[defn.name].collect()
            for sample in family.samples
            if all(sample.labels.get(k) == v for k, v in match.items())
        }

    def _drop_version(self, version: str) -> None:
        for defn in m.ALL_METRICS:
            if "model_version" not in defn.labels:
                continue
            metric = self._metrics[defn.name]
            for key in self._series_keys(defn, model_version=version):
                if defn.kind == "gauge":
                    self._remove(defn, key)
                else:
                    metric.remove(*key)  # type: ignore[union-attr]
        for live_key in [k for k in self._live if k[0] == version]:
            del self._live[live_key]
        self._latest_start.pop(version, None)

    def _sequential_alarm(self, model_version: str, feature: str | None, value: float) -> None:
        """Raise (1) or clear (0) one alarm gauge; raising also counts a firing."""
        base = {"model": self.model, "model_version": model_version, "window": self.window_label}
        if feature is None:
            self._set(m.DATASET_SEQUENTIAL_ALARM, base, value)
            return
        labels = {**base, "feature": feature}
        self._set(m.SEQUENTIAL_ALARM, labels, value)
        if value:
            self._inc(m.SEQUENTIAL_ALARMS, labels, 1.0)

    def set_sequential_alarms(self, alarms: Mapping[str, Iterable[str]]) -> None:
        """Raise the alarm gauges of the columns (and ``features``/``predictions`` for the
        dataset detectors) in alarm per model version: after a restart from a checkpoint."""
        with self._lock:
            for mv, names in alarms.items():
                base = {"model": self.model, "model_version": mv, "window": self.window_label}
                for name in names:
                    if name == "features":
                        self._set(m.DATASET_SEQUENTIAL_ALARM, base, 1.0)
                    elif name != "predictions":
                        self._set(m.SEQUENTIAL_ALARM, {**base, "feature": name}, 1.0)

    def clear_sequential_alarms(
        self, model_version: str | None = None, feature: str | None = None
    ) -> None:
        """Set the alarm gauges an acknowledgement covers back to 0."""
        with self._lock:
            for defn in (m.SEQUENTIAL_ALARM, m.DATASET_SEQUENTIAL_ALARM):
                gauge = self._metrics[defn.name]
                for family in gauge.collect():
                    for sample in family.samples:
                        labels = sample.labels
                        if model_version is not None and labels["model_version"] != model_version:
                            continue
                        if defn is m.SEQUENTIAL_ALARM and feature not in (None, labels["feature"]):
                            continue
                        if defn is m.DATASET_SEQUENTIAL_ALARM and feature not in (None, "features"):
                            continue
                        self._set(defn, labels, 0.0)

    def _exemplar(self, report: WindowReport) -> dict[str, str] | None:
        if not self.exemplars:
            return None
        for trace_id in report.exemplar_trace_ids:
            tid = trace_id.lower()
            if _TRACE_ID.match(tid) and tid != "0" * 32:
                return {"trace_id": tid}
        return None

    def _count_records(self, outcome: str, n: int, model_version: str) -> None:
        labels = {"model": self.model, "model_version": model_version, "outcome": outcome}
        self._inc(m.RECORDS, labels, float(n))

    def _set(self, defn: m.MetricDef, labels: Mapping[str, str], value: float) -> None:
        gauge = self._metrics[defn.name]
        assert isinstance(gauge, Gauge)
        gauge.labels(**labels).set(value)
        if self.telemetry is not None:
            self.telemetry.set_gauge(defn, labels, value)

    def _remove(self, defn: m.MetricDef, key: LabelValues) -> None:
        gauge = self._metrics[defn.name]
        assert isinstance(gauge, Gauge)
        gauge.remove(*key)  # a no-op when the series was never set
        if self.telemetry is not None:
            self.telemetry.remove_gauge(defn, dict(zip(defn.labels, key, strict=True)))

    def _inc(
        self,
        defn: m.MetricDef,
        labels: Mapping[str, str],
        n: float,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        if n < 0:
            raise ValueError(f"{defn.name}: counts only go up (got {n})")
        counter = self._metrics[defn.name]
        assert isinstance(counter, Counter)
        counter.labels(**labels).inc(n, exemplar=exemplar)
        if self.telemetry is not None:
            self.telemetry.add(defn, labels, n)

    def _observe(
        self,
        defn: m.MetricDef,
        labels: Mapping[str, str],
        value: float,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        histogram = self._metrics[defn.name]
        assert isinstance(histogram, Histogram)
        histogram.labels(**labels).observe(value, exemplar=exemplar)
        if self.telemetry is not None:
            self.telemetry.record(defn, labels, value)

    def _info(self, defn: m.MetricDef, labels: Mapping[str, str]) -> None:
        info = self._metrics[defn.name]
        assert isinstance(info, Info)
        info.info(dict(labels))
        if self.telemetry is not None:
            self.telemetry.set_info(defn, labels)
