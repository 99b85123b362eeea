"""The ``performance`` block of a WindowReport: realized metrics (from joined labels),
label-free estimates (CBPE, DLE) and business KPIs, as small frozen values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def _num(v: float | None) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return float(v)


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


@dataclass(frozen=True)
class RealizedMetric:
    """A metric measured on the window's labelled rows, with its 95 % interval."""

    metric: str
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": _num(self.value),
            "low": _num(self.low),
            "high": _num(self.high),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RealizedMetric:
        return cls(d["metric"], _float(d["value"]), _float(d["low"]), _float(d["high"]))


@dataclass(frozen=True)
class EstimatedMetric:
    """A metric estimated without labels; ``alert`` when it crosses ``threshold`` (below it
    for scores where higher is better, above it for errors)."""

    metric: str
    method: str
    value: float
    low: float
    high: float
    threshold: float
    alert: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "method": self.method,
            "value": _num(self.value),
            "low": _num(self.low),
            "high": _num(self.high),
            "threshold": _num(self.threshold),
            "alert": self.alert,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EstimatedMetric:
        return cls(
            d["metric"],
            d["method"],
            _float(d["value"]),
            _float(d["low"]),
            _float(d["high"]),
            _float(d["threshold"]),
            bool(d["alert"]),
        )


@dataclass(frozen=True)
class KpiResult:
    """A business KPI over the window: its mean, its Pearson correlation with the
    prediction, and its mean in each decile of the reference's predictions."""

    name: str
    mean: float
    correlation_with_prediction: float
    rows: int = 0
    by_decile: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mean": _num(self.mean),
            "correlation_with_prediction": _num(self.correlation_with_prediction),
            "rows": self.rows,
            "by_decile": [_num(v) for v in self.by_decile],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KpiResult:
        return cls(
            d["name"],
            _float(d["mean"]),
            _float(d["correlation_with_prediction"]),
            int(d.get("rows", 0)),
            tuple(_float(v) for v in d.get("by_decile", ())),
        )


@dataclass(frozen=True)
class PerformanceResult:
    """Model performance in one window.

    ``labeled_rows`` of the window's rows have a joined label (``coverage`` is their
    share); ``revised`` is true when labels that arrived after the window closed changed
    this block (the report is then a revision of one already sent).
    """

    labeled_rows: int
    coverage: float
    revised: bool = False
    realized: tuple[RealizedMetric, ...] = ()
    estimated: tuple[EstimatedMetric, ...] = ()
    kpis: tuple[KpiResult, ...] = ()
    task: str = ""

    @property
    def alert(self) -> bool:
        return any(e.alert for e in self.estimated)

    def realized_value(self, metric: str) -> float | None:
        for r in self.realized:
            if r.metric == metric:
                return r.value
        return None

    def estimated_value(self, metric: str) -> float | None:
        for e in self.estimated:
            if e.metric == metric:
                return e.value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "labeled_rows": self.labeled_rows,
            "coverage": _num(self.coverage),
            "revised": self.revised,
            "realized": [r.to_dict() for r in self.realized],
            "estimated": [e.to_dict() for e in self.estimated],
            "kpis": [k.to_dict() for k in self.kpis],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceResult:
        return cls(
            labeled_rows=int(d["labeled_rows"]),
            coverage=_float(d["coverage"]),
            revised=bool(d.get("revised", False)),
            realized=tuple(RealizedMetric.from_dict(r) for r in d.get("realized", ())),
            estimated=tuple(EstimatedMetric.from_dict(e) for e in d.get("estimated", ())),
            kpis=tuple(KpiResult.from_dict(k) for k in d.get("kpis", ())),
            task=d.get("task", ""),
        )
