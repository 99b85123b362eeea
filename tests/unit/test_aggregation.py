"""Aggregation of partial windows: the report's partial/coverage block, the partial
message format, and the aggregator's merge (exact, idempotent, fenced)."""

from __future__ import annotations

from dataclasses import replace

from detectors.results import (
    Coverage,
    DriftResult,
    QualityResult,
    WindowReport,
)


def bare_report(**kw: object) -> WindowReport:
    base = WindowReport(
        model="m",
        model_version="v1",
        window_start=0.0,
        window_end=10.0,
        reference_hash="abc",
        rows=5,
        drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
        prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
        quality=QualityResult(rows=5, checks=()),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_partial_report_round_trips_with_its_coverage() -> None:
    r = bare_report(partial=True, partial_reason="coverage", coverage=Coverage(4, (0, 2, 3), 2))
    d = r.to_dict()
    assert d["partial"] is True and d["coverage"]["missing"] == [1]
    back = WindowReport.from_json(r.to_json())
    assert back.partial and back.partial_reason == "coverage"
    assert back.coverage == Coverage(4, (0, 2, 3), 2)
    plain = WindowReport.from_json(bare_report().to_json())
    assert plain.partial is False and plain.coverage is None
