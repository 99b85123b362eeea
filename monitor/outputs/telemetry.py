"""OpenTelemetry export: the same metrics over OTLP/HTTP, and a span per window evaluation.

Nothing here defines a metric. :class:`Telemetry` builds one OpenTelemetry instrument per
:data:`monitor.outputs.metrics.ALL_METRICS` entry and the
:class:`~monitor.outputs.exporter.Exporter`
mirrors every observation into it, so a Prometheus scrape and an OTLP collector see the
same families, values and labels (as attributes). Gauges are observable instruments
backed by the exporter's current values: a series the exporter removes (an untestable
column) stops being reported over OTLP too, instead of repeating its last value.

Each window evaluation is a span ``driftline.window.evaluate`` whose links point at
example records' traces (parsed from their W3C ``traceparent``), so a drifted window in
a trace backend leads to requests that fell into it.

OTLP authentication headers come from an environment variable named in the config, in
the ``OTEL_EXPORTER_OTLP_HEADERS`` format (``key=value,key2=value2``, values URL-encoded).
Their values are never logged or put in an error message.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from detectors.results import WindowReport
from monitor import __version__
from monitor.outputs import metrics as m

# OpenTelemetry is imported where it is used: an agent without an OTLP endpoint never
# loads it (docs/architecture.md, "Imports on the agent's path").
if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation
    from opentelemetry.trace import SpanContext
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from monitor.config.exporter import ExporterConfig
    from monitor.outputs.exporter import Exporter

WINDOW_SPAN = "driftline.window.evaluate"
# Links per span: enough to reach examples of a window, bounded like everything else.
MAX_LINKS = 32

_Key = tuple[tuple[str, str], ...]


@cache
def _propagator() -> TraceContextTextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


__all__ = ["MAX_LINKS", "WINDOW_SPAN", "Telemetry", "headers_from_env", "span_contexts"]


def headers_from_env(env_name: str | None) -> dict[str, str]:
    """OTLP request headers from the environment variable ``env_name`` (none when unset).

    Raises ValueError when the variable is named but missing or malformed; the message
    names the variable, never its content.
    """
    if not env_name:
        return {}
    raw = os.environ.get(env_name)
    if raw is None:
        raise ValueError(f"exporter.otlp_headers_env: environment variable {env_name} is not set")
    headers: dict[str, str] = {}
    for i, item in enumerate(p for p in raw.split(",") if p.strip()):
        key, sep, value = item.partition("=")
        key = unquote(key).strip().lower()
        if not sep or not key:
            raise ValueError(
                f"exporter.otlp_headers_env: item {i + 1} of {env_name} is not key=value "
                "(expected key=value,key2=value2 with URL-encoded values)"
            )
        headers[key] = unquote(value).strip()
    return headers


def span_contexts(traceparents: Iterable[str], limit: int = MAX_LINKS) -> list[SpanContext]:
    """The valid, distinct remote span contexts among W3C ``traceparent`` values."""
    from opentelemetry import trace

    seen: set[tuple[int, int]] = set()
    out: list[SpanContext] = []
    for value in traceparents:
        if len(out) >= limit:
            break
        ctx = _propagator().extract({"traceparent": value})
        sc = trace.get_current_span(ctx).get_span_context()
        if sc.is_valid and (sc.trace_id, sc.span_id) not in seen:
            seen.add((sc.trace_id, sc.span_id))
            out.append(sc)
    return out


def _key(labels: Mapping[str, str]) -> _Key:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Telemetry:
    """OTLP/HTTP export of driftline's metrics and window spans to ``endpoint``.

    ``endpoint`` is the collector's base URL (``http://collector:4318``); metrics go to
    ``/v1/metrics`` every ``interval`` seconds, spans to ``/v1/traces`` in batches.
    Providers are private to this object (the process-wide OpenTelemetry globals are left
    alone), so the agent's own libraries keep whatever they were configured with.
    Without an endpoint the object is disabled and every method is a no-op, so callers
    need no ``if telemetry`` around each call.
    """

    def __init__(
        self,
        endpoint: str | None,
        *,
        model: str,
        interval: float = 15.0,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.enabled = bool(endpoint)
        self._lock = threading.Lock()
        self._gauges: dict[str, dict[_Key, float]] = {}
        self._sync: dict[str, Counter | Histogram] = {}
        if not endpoint:
            self.endpoint = None
            return
        base = endpoint.rstrip("/")
        for suffix in ("/v1/metrics", "/v1/traces"):
            base = base.removesuffix(suffix)
        self.endpoint = base
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create(
            {
                "service.name": "driftline",
                "service.version": __version__,
                "driftline.model": model,
            }
        )
        hdrs = dict(headers or {})
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=hdrs, timeout=timeout),
            export_interval_millis=max(interval, 0.001) * 1000.0,
            export_timeout_millis=timeout * 1000.0,
        )
        self._meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        self._tracer_provider = TracerProvider(resource=resource)
        self._tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=hdrs, timeout=timeout)
            )
        )
        self._tracer = self._tracer_provider.get_tracer("driftline", __version__)
        meter = self._meter_provider.get_meter("driftline", __version__)

        for defn in m.ALL_METRICS:
            if defn.kind == "counter":
                self._sync[defn.name] = meter.create_counter(
                    defn.otel_name, unit=defn.otel_unit, description=defn.help
                )
            elif defn.kind == "histogram":
                self._sync[defn.name] = meter.create_histogram(
                    defn.otel_name,
                    unit=defn.otel_unit,
                    description=defn.help,
                    explicit_bucket_boundaries_advisory=list(defn.buckets or ()) or None,
                )
            else:  # gauges and info (an info series is a gauge of value 1)
                self._gauges[defn.name] = {}
                meter.create_observable_gauge(
                    defn.otel_name,
                    callbacks=[self._callback(defn.name)],
                    unit=defn.otel_unit,
                    description=defn.help,
                )

    @classmethod
    def from_config(
        cls, config: ExporterConfig, model: str, exporter: Exporter | None = None
    ) -> Telemetry:
        """The agent's telemetry (disabled, every call a no-op, without an endpoint).

        When ``exporter`` is given, its observations are mirrored from now on (and its
        current gauges and counters copied over).
        """
        headers = headers_from_env(config.otlp_headers_env) if config.otlp_endpoint else {}
        telemetry = cls(
            config.otlp_endpoint, model=model, interval=config.otlp_interval, headers=headers
        )
        if exporter is not None:
            exporter.attach_telemetry(telemetry)
        return telemetry

    # -- the exporter's mirror --------------------------------------------------------------
    def set_gauge(self, defn: m.MetricDef, labels: Mapping[str, str], value: float) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._gauges[defn.name][_key(labels)] = value

    def remove_gauge(self, defn: m.MetricDef, labels: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._gauges[defn.name].pop(_key(labels), None)

    def set_info(self, defn: m.MetricDef, labels: Mapping[str, str]) -> None:
        """Replace the info series (there is one per family)."""
        if not self.enabled:
            return
        with self._lock:
            self._gauges[defn.name] = {_key(labels): 1.0}

    def add(self, defn: m.MetricDef, labels: Mapping[str, str], n: float) -> None:
        if not self.enabled:
            return
        from opentelemetry.metrics import Counter

        counter = self._sync[defn.name]
        assert isinstance(counter, Counter)
        counter.add(n, attributes=dict(labels))

    def record(self, defn: m.MetricDef, labels: Mapping[str, str], value: float) -> None:
        if not self.enabled:
            return
        from opentelemetry.metrics import Histogram

        histogram = self._sync[defn.name]
        assert isinstance(histogram, Histogram)
        histogram.record(value, attributes=dict(labels))

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                series = list(self._gauges[name].items())
            return [Observation(value, attributes=dict(key)) for key, value in series]

        return observe

    # -- spans ------------------------------------------------------------------------------
    def window_evaluated(
        self,
        report: WindowReport,
        evaluation_seconds: float,
        traceparents: Sequence[str] = (),
    ) -> None:
        """Record the evaluation that just ended as a span linked to example traces.

        ``traceparents`` are W3C ``traceparent`` values of some of the window's records;
        invalid ones are skipped.
        """
        if not self.enabled:
            return
        from opentelemetry import context as otel_context
        from opentelemetry.trace import Link, SpanKind

        end = time.time_ns()
        start = end - int(max(evaluation_seconds, 0.0) * 1e9)
        links = [
            Link(sc, attributes={"driftline.link": "window_record"})
            for sc in span_contexts(traceparents)
        ]
        drifted_features = [c.feature for c in report.drift.columns if c.drifted]
        attributes: dict[str, Any] = {
            "driftline.model": report.model,
            "driftline.model_version": report.model_version,
            "driftline.baseline": report.baseline,
            "driftline.reference": report.reference_hash,
            "driftline.window.kind": report.window_kind,
            "driftline.window.start": float(report.window_start),
            "driftline.window.end": float(report.window_end),
            "driftline.window.rows": int(report.rows),
            "driftline.drifted": bool(report.drifted),
            "driftline.drift.share": float(report.drift.share),
            "driftline.drift.drifted_features": drifted_features,
            "driftline.prediction_drift.drifted": bool(report.prediction_drift.drifted),
            "driftline.quality.breached": bool(report.quality.breached),
        }
        span = self._tracer.start_span(
            WINDOW_SPAN,
            context=otel_context.Context(),  # a root span: the window belongs to no request
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_time=start,
        )
        span.end(end_time=end)

    # -- lifecycle --------------------------------------------------------------------------
    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything now (metrics and pending spans); True when both succeeded."""
        if not self.enabled:
            return True
        millis = int(timeout_s * 1000)
        spans = self._tracer_provider.force_flush(millis)
        metrics = self._meter_provider.force_flush(millis)
        return bool(spans and metrics)

    def shutdown(self) -> None:
        """Flush and stop both providers (a last metrics export happens here)."""
        if not self.enabled:
            return
        self._tracer_provider.shutdown()
        self._meter_provider.shutdown()
