"""Typed results of the drift and quality tests, and the WindowReport that carries them.

Every sink (log, Kafka topic, file, Prometheus, policies, HTML report) consumes the same
``WindowReport``; its JSON form is versioned (``REPORT_VERSION``) so consumers can tell.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from detectors.multivariate.result import MultivariateResult
from detectors.performance.results import PerformanceResult

# 2 added, without renaming anything: per-column ``effect`` and ``sequential``, the
# ``multivariate``, ``attribution`` and ``performance`` blocks, ``partial`` and ``revised``.
# Version 1 reports still load (the new fields take their defaults).
REPORT_VERSION = 2
READABLE_REPORT_VERSIONS = (1, 2)


def _num(v: float | None) -> float | None:
    """JSON has no NaN or infinity: undefined numbers serialise as null."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return float(v)


@dataclass(frozen=True)
class Effect:
    """A distance between window and reference, with its confidence interval.

    ``estimate`` is the column's distance corrected for its no-change bias (plug-in
    distances are positive on unchanged data); ``[low, high]`` is a confidence interval at
    the per-column level of the window's family-wise false-alarm rate. A distance test
    flags the column when ``low`` exceeds its margin (``TestResult.threshold``), i.e. when
    the change is larger than negligible with that confidence.
    """

    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": _num(self.estimate), "low": _num(self.low), "high": _num(self.high)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Effect:
        def f(v: Any) -> float:
            return float("nan") if v is None else float(v)

        return cls(estimate=f(d.get("estimate")), low=f(d.get("low")), high=f(d.get("high")))


@dataclass(frozen=True)
class Sequential:
    """Where a column's (or the dataset's) sequential detector stands after this window.

    ``statistic`` is the CUSUM of its leading ``channel`` ("location_up", "scale_down",
    "shape", "unseen", "dataset", ...) and ``threshold`` the one it is judged against,
    calibrated for the configured expected run time between false alarms
    (``detectors/sequential.py``). ``detected_at`` is set only in the window where the
    detector fired: the event time (agent) or row offset (row windows in replay) of the
    window's end; None otherwise.
    """

    statistic: float
    threshold: float
    detected_at: float | None = None
    channel: str | None = None

    @property
    def fired(self) -> bool:
        return self.detected_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": _num(self.statistic),
            "threshold": _num(self.threshold),
            "detected_at": self.detected_at,
            "channel": self.channel,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sequential:
        def f(v: Any) -> float:
            return float("nan") if v is None else float(v)

        at = d.get("detected_at")
        return cls(
            statistic=f(d.get("statistic")),
            threshold=f(d.get("threshold")),
            detected_at=None if at is None else float(at),
            channel=d.get("channel"),
        )


@dataclass(frozen=True)
class TestResult:
    """One test of one column: what was measured and whether it crossed its threshold.

    ``p_value`` is None for tests that define none (PSI, distances). ``error_bound`` is
    set in binned mode where the statistic approximates its exact-mode value: the exact
    statistic lies within ``statistic ± error_bound`` (for KS: in
    ``[statistic, statistic + error_bound]``). ``threshold`` is the one applied and
    ``threshold_source`` says where it came from: "default" (``drift.thresholds``),
    "override" (the column's own), "calibrated" (measured on the reference) or
    "noise_floor" (the statistic's no-change noise, above the configured threshold).
    ``effect`` is the distance with its confidence interval where the test has one.
    """

    __test__ = False  # not a pytest test class

    feature: str
    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    mode: str = "binned"
    error_bound: float | None = None
    threshold_source: str = "default"
    effect: Effect | None = None
    sequential: Sequential | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("statistic", "p_value", "threshold", "error_bound"):
            d[k] = _num(d[k])
        d["effect"] = None if self.effect is None else self.effect.to_dict()
        d["sequential"] = None if self.sequential is None else self.sequential.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TestResult:
        return cls(
            feature=d["feature"],
            test=d["test"],
            statistic=float("nan") if d["statistic"] is None else float(d["statistic"]),
            p_value=d.get("p_value"),
            threshold=float("nan") if d["threshold"] is None else float(d["threshold"]),
            drifted=bool(d["drifted"]),
            mode=d.get("mode", "binned"),
            error_bound=d.get("error_bound"),
            threshold_source=d.get("threshold_source", "default"),
            effect=None if d.get("effect") is None else Effect.from_dict(d["effect"]),
            sequential=(
                None if d.get("sequential") is None else Sequential.from_dict(d["sequential"])
            ),
        )


@dataclass(frozen=True)
class DriftResult:
    """A set of column tests and the verdict on the set (features, or predictions).

    ``drifted`` is ``share >= share_threshold`` where ``share`` is the fraction of tested
    columns flagged after the multiple-testing ``correction`` ("none", "bonferroni" or
    "benjamini_hochberg"; corrections apply to p-value tests only). On a stream the
    columns' flags are their sequential detectors' verdicts, and ``sequential`` is the
    dataset-level detector (its verdict in ``sequential.detected_at``; ``drifted`` stays
    the share rule).
    """

    share: float
    drifted_count: int
    tested_count: int
    share_threshold: float
    drifted: bool
    correction: str
    columns: tuple[TestResult, ...] = ()
    sequential: Sequential | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": _num(self.share),
            "drifted_count": self.drifted_count,
            "tested_count": self.tested_count,
            "share_threshold": self.share_threshold,
            "drifted": self.drifted,
            "correction": self.correction,
            "columns": [c.to_dict() for c in self.columns],
            "sequential": None if self.sequential is None else self.sequential.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftResult:
        return cls(
            share=float(d["share"] or 0.0),
            drifted_count=int(d["drifted_count"]),
            tested_count=int(d["tested_count"]),
            share_threshold=float(d["share_threshold"]),
            drifted=bool(d["drifted"]),
            correction=d["correction"],
            columns=tuple(TestResult.from_dict(c) for c in d["columns"]),
            sequential=(
                None if d.get("sequential") is None else Sequential.from_dict(d["sequential"])
            ),
        )

    def column(self, name: str) -> TestResult:
        for c in self.columns:
            if c.feature == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True)
class QualityCheck:
    """One data-quality rate of one column (or of the whole window for row-level checks).

    ``check`` is one of "missing", "out_of_range", "non_finite", "type_error", "unseen".
    ``breached`` is ``rate > reference_rate + threshold``.
    """

    feature: str
    check: str
    rate: float
    reference_rate: float
    threshold: float
    breached: bool
    count: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("rate", "reference_rate", "threshold"):
            d[k] = _num(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityCheck:
        return cls(**{**d, "rate": d["rate"] or 0.0, "reference_rate": d["reference_rate"] or 0.0})


@dataclass(frozen=True)
class QualityResult:
    """Data quality of one window against the reference."""

    rows: int
    checks: tuple[QualityCheck, ...] = ()
    missing_columns: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = ()

    @property
    def breached(self) -> bool:
        return bool(self.missing_columns) or any(c.breached for c in self.checks)

    @property
    def breaches(self) -> tuple[QualityCheck, ...]:
        return tuple(c for c in self.checks if c.breached)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "breached": self.breached,
            "checks": [c.to_dict() for c in self.checks],
            "missing_columns": list(self.missing_columns),
            "extra_columns": list(self.extra_columns),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityResult:
        return cls(
            rows=int(d["rows"]),
            checks=tuple(QualityCheck.from_dict(c) for c in d["checks"]),
            missing_columns=tuple(d["missing_columns"]),
            extra_columns=tuple(d["extra_columns"]),
        )


@dataclass(frozen=True)
class AttributionColumn:
    """How one feature's SHAP attributions moved between the reference and the window.

    ``change`` is ``window_mean_abs − reference_mean_abs`` (model output units) and
    ``[change_low, change_high]`` its bootstrap interval over the explained rows. ``test``,
    ``statistic``, ``p_value`` and ``threshold`` are the drift test of the feature's SHAP
    distribution (the test a numeric feature would get); ``share`` is the Wasserstein
    distance between the two SHAP distributions as a share of the model's total reference
    attribution. ``mean_shift`` is the change in the feature's mean SHAP (its part of the
    change in the mean explained output), ``[mean_shift_low, mean_shift_high]`` its
    interval. ``drifted``: the test flagged the distribution and one of the two intervals
    lies beyond the configured margin (a change the model barely feels is not attribution
    drift; detectors/attribution.py).
    """

    feature: str
    reference_mean_abs: float
    window_mean_abs: float
    change: float
    change_low: float
    change_high: float
    test: str
    statistic: float
    p_value: float | None
    threshold: float
    share: float
    drifted: bool
    mean_shift: float = 0.0
    mean_shift_low: float = float("nan")
    mean_shift_high: float = float("nan")
    # the window's SHAP values at 0, 10, ..., 100 % (the report draws them against the
    # reference's); empty in reports written before
    quantiles: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["quantiles"] = [_num(q) for q in self.quantiles]
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = _num(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributionColumn:
        def f(key: str) -> float:
            v = d.get(key)
            return float("nan") if v is None else float(v)

        return cls(
            feature=d["feature"],
            reference_mean_abs=f("reference_mean_abs"),
            window_mean_abs=f("window_mean_abs"),
            change=f("change"),
            change_low=f("change_low"),
            change_high=f("change_high"),
            test=d.get("test", ""),
            statistic=f("statistic"),
            p_value=d.get("p_value"),
            threshold=f("threshold"),
            share=f("share"),
            drifted=bool(d["drifted"]),
            mean_shift=f("mean_shift") if d.get("mean_shift") is not None else 0.0,
            mean_shift_low=f("mean_shift_low"),
            mean_shift_high=f("mean_shift_high"),
            quantiles=tuple(
                float("nan") if q is None else float(q) for q in d.get("quantiles", ())
            ),
        )


@dataclass(frozen=True)
class ImpactItem:
    """A drifted feature weighted by how much the model relies on it.

    ``drift`` is how far the feature's drift statistic went past its threshold (1 at the
    threshold, see detectors/attribution.py), ``importance`` the feature's share of the
    reference's mean |SHAP|, ``score = drift × importance``. ``prediction_shift`` is the
    feature's part of the change in the mean explained output (its change in mean SHAP).
    """

    feature: str
    drift: float
    importance: float
    score: float
    prediction_shift: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: (_num(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImpactItem:
        return cls(
            feature=d["feature"],
            drift=float(d["drift"] or 0.0),
            importance=float(d["importance"] or 0.0),
            score=float(d["score"] or 0.0),
            prediction_shift=float(d.get("prediction_shift") or 0.0),
        )


@dataclass(frozen=True)
class AttributionResult:
    """Attribution drift of one window: the nDCG of the feature ranking (SageMaker
    Clarify's measure), each feature's attribution change, and the drifted features ranked
    by impact. ``drifted`` when nDCG < ``ndcg_threshold`` or any column drifted.
    ``prediction_drivers`` are the features whose attributions drifted, largest share of
    the mean output's change first: what drives a prediction drift."""

    method: str
    ndcg: float
    ndcg_threshold: float
    drifted: bool
    rows: int
    columns: tuple[AttributionColumn, ...] = ()
    impact: tuple[ImpactItem, ...] = ()
    prediction_drivers: tuple[str, ...] = ()
    seconds: float = 0.0
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "ndcg": _num(self.ndcg),
            "ndcg_threshold": self.ndcg_threshold,
            "drifted": self.drifted,
            "rows": self.rows,
            "columns": [c.to_dict() for c in self.columns],
            "impact": [i.to_dict() for i in self.impact],
            "prediction_drivers": list(self.prediction_drivers),
            "seconds": _num(self.seconds),
            "device": self.device,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributionResult:
        return cls(
            method=d["method"],
            ndcg=float("nan") if d.get("ndcg") is None else float(d["ndcg"]),
            ndcg_threshold=float(d["ndcg_threshold"]),
            drifted=bool(d["drifted"]),
            rows=int(d.get("rows", 0)),
            columns=tuple(AttributionColumn.from_dict(c) for c in d.get("columns", [])),
            impact=tuple(ImpactItem.from_dict(i) for i in d.get("impact", [])),
            prediction_drivers=tuple(d.get("prediction_drivers", ())),
            seconds=float(d.get("seconds") or 0.0),
            device=d.get("device", "cpu"),
        )

    def column(self, name: str) -> AttributionColumn:
        for c in self.columns:
            if c.feature == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True)
class Coverage:
    """What a report merged from several agents' partials covers (docs/agent.md,
    "Scaling out"): the source partitions there are, the ones whose owner had reported
    past the window's end, and how many agents' partials went into it."""

    partitions: int
    reported: tuple[int, ...]
    agents: int

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(p for p in range(self.partitions) if p not in set(self.reported))

    def to_dict(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "reported": list(self.reported),
            "missing": list(self.missing),
            "agents": self.agents,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Coverage:
        return cls(int(d["partitions"]), tuple(int(p) for p in d["reported"]), int(d["agents"]))


@dataclass(frozen=True)
class WindowReport:
    """Everything driftline concluded about one window of one model version.

    ``window_start``/``window_end`` are event-time seconds since the epoch (half-open
    ``[start, end)``); for row-count windows (replay without a time column) they are row
    offsets and ``window_kind`` is "rows". ``baseline`` says what the window was compared
    with: "reference", or "version:<v>" when a canary is compared with the stable version.
    """

    model: str
    model_version: str
    window_start: float
    window_end: float
    reference_hash: str
    rows: int
    drift: DriftResult
    prediction_drift: DriftResult
    quality: QualityResult
    window_kind: str = "time"
    baseline: str = "reference"
    late_records: int = 0
    duplicate_records: int = 0
    evaluated_at: float | None = None
    exemplar_trace_ids: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = REPORT_VERSION
    # SHAP attribution drift (explain: in monitor.yaml); None when not configured or skipped.
    attribution: AttributionResult | None = None
    # Realized and estimated model performance and KPIs (labels:, kpis: in monitor.yaml);
    # None when the profile was built without labels.
    performance: PerformanceResult | None = None
    # Row-level tests (multivariate: in monitor.yaml); None when disabled or skipped, and
    # then multivariate_skipped_reason says why.
    multivariate: MultivariateResult | None = None
    multivariate_skipped_reason: str | None = None
    # True when the report covers less than the whole window; ``partial_reason`` says
    # why ("coverage": an aggregator's deadline passed before every source partition
    # reported, and ``coverage`` says what it had).
    partial: bool = False
    partial_reason: str | None = None
    coverage: Coverage | None = None

    @property
    def drifted(self) -> bool:
        return (
            self.drift.drifted
            or self.prediction_drift.drifted
            or (self.multivariate is not None and self.multivariate.drifted)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model": self.model,
            "model_version": self.model_version,
            "window": {
                "kind": self.window_kind,
                "start": self.window_start,
                "end": self.window_end,
            },
            "baseline": self.baseline,
            "reference_hash": self.reference_hash,
            "rows": self.rows,
            "late_records": self.late_records,
            "duplicate_records": self.duplicate_records,
            "evaluated_at": self.evaluated_at,
            "drift": self.drift.to_dict(),
            "prediction_drift": self.prediction_drift.to_dict(),
            "quality": self.quality.to_dict(),
            "exemplar_trace_ids": list(self.exemplar_trace_ids),
            "extra": self.extra,
            "attribution": None if self.attribution is None else self.attribution.to_dict(),
            "performance": None if self.performance is None else self.performance.to_dict(),
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
            "multivariate_skipped_reason": self.multivariate_skipped_reason,
            "partial": self.partial,
            "partial_reason": self.partial_reason,
            "coverage": None if self.coverage is None else self.coverage.to_dict(),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowReport:
        if d.get("version") not in READABLE_REPORT_VERSIONS:
            raise ValueError(f"unsupported WindowReport version {d.get('version')!r}")
        return cls(
            model=d["model"],
            model_version=d["model_version"],
            window_start=d["window"]["start"],
            window_end=d["window"]["end"],
            window_kind=d["window"]["kind"],
            baseline=d["baseline"],
            reference_hash=d["reference_hash"],
            rows=int(d["rows"]),
            late_records=int(d.get("late_records", 0)),
            duplicate_records=int(d.get("duplicate_records", 0)),
            evaluated_at=d.get("evaluated_at"),
            drift=DriftResult.from_dict(d["drift"]),
            prediction_drift=DriftResult.from_dict(d["prediction_drift"]),
            quality=QualityResult.from_dict(d["quality"]),
            exemplar_trace_ids=tuple(d.get("exemplar_trace_ids", ())),
            extra=dict(d.get("extra", {})),
            partial=bool(d.get("partial", False)),
            partial_reason=d.get("partial_reason"),
            coverage=Coverage.from_dict(d["coverage"]) if d.get("coverage") else None,
            attribution=(
                AttributionResult.from_dict(d["attribution"]) if d.get("attribution") else None
            ),
            performance=(
                PerformanceResult.from_dict(d["performance"]) if d.get("performance") else None
            ),
            multivariate=(
                MultivariateResult.from_dict(d["multivariate"]) if d.get("multivariate") else None
            ),
            multivariate_skipped_reason=d.get("multivariate_skipped_reason"),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> WindowReport:
        return cls.from_dict(orjson.loads(data))
