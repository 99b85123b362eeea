"""What the policies see of a version: its recent windows, and what is wrong with them.

A window holds one report per baseline (the reference, and the stable version when
``windows.stable_version`` is set). :func:`window_problems` says why a window is bad
under a policy's conditions; :func:`streaks` counts the bad and clean windows in a row
that arm, trigger and re-arm a policy (see ``monitor.actions.policy``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.performance.results import PerformanceResult
from detectors.results import DriftResult, WindowReport

__all__ = [
    "MAX_VERSIONS",
    "MIN_HISTORY",
    "Window",
    "WindowHistory",
    "category",
    "report_summary",
    "streaks",
    "window_problems",
]

# Windows kept per version; enough for any sensible for_windows + clear_windows.
MIN_HISTORY = 64
MAX_VERSIONS = 256


def category(baseline: str) -> str:
    """A report's baseline as a policy names it: reference or stable."""
    return "reference" if baseline == "reference" else "stable"


@dataclass
class Window:
    """One window of one version: its reports, one per baseline."""

    start: float
    end: float
    kind: str
    reports: dict[str, WindowReport] = field(default_factory=dict)

    @property
    def key(self) -> tuple[float, float]:
        return (self.start, self.end)


def _drift_problem(what: str, result: DriftResult, baseline: str) -> str:
    names = [c.feature for c in result.columns if c.drifted]
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"{what} vs {baseline}: share {result.share:.2f} >= {result.share_threshold:.2f}" + (
        f" ({shown})" if shown else ""
    )


def _sequential_fired(report: WindowReport) -> list[str]:
    """The columns (and ``dataset``) whose sequential detector fired in this window."""
    names = [
        c.feature
        for result in (report.drift, report.prediction_drift)
        for c in result.columns
        if c.sequential is not None and c.sequential.fired
    ]
    if report.drift.sequential is not None and report.drift.sequential.fired:
        names.insert(0, "dataset")
    return names


# A realized metric counts against a window only with this many labelled rows.
MIN_LABELED_ROWS = 100


def realized_drops(perf: PerformanceResult) -> list[str]:
    """Realized metrics beyond the reference threshold of their estimate (below it for
    scores, above it for errors), in a window with at least ``MIN_LABELED_ROWS`` labels."""
    if perf.labeled_rows < MIN_LABELED_ROWS:
        return []
    limits = {e.metric: e.threshold for e in perf.estimated}
    out = []
    for r in perf.realized:
        limit = limits.get(r.metric)
        if limit is None or limit != limit:
            continue
        errors = r.metric in ("log_loss", "brier", "ece", "mae", "rmse", "mape")
        if (r.value > limit) if errors else (r.value < limit):
            out.append(f"{r.metric} {r.value:.3f} (threshold {limit:.3f})")
    return out


def window_problems(
    window: Window, conditions: Iterable[str], baselines: Iterable[str]
) -> list[str]:
    """Why ``window`` is bad under ``conditions`` (empty: it is clean)."""
    conditions = set(conditions)
    allowed = set(baselines)
    problems: list[str] = []
    for baseline, report in sorted(window.reports.items()):
        if category(baseline) not in allowed:
            continue
        if "dataset_drift" in conditions and report.drift.drifted:
            problems.append(_drift_problem("dataset drift", report.drift, baseline))
        if "prediction_drift" in conditions and report.prediction_drift.drifted:
            problems.append(_drift_problem("prediction drift", report.prediction_drift, baseline))
        if "sequential_drift" in conditions:
            fired = _sequential_fired(report)
            if fired:
                problems.append(f"sequential drift vs {baseline}: {', '.join(fired[:5])}")
        perf = report.performance
        if perf is not None and "performance_estimated_drop" in conditions:
            low = [
                f"{e.metric} {e.value:.3f} (threshold {e.threshold:.3f})"
                for e in perf.estimated
                if e.alert
            ]
            if low:
                problems.append(f"estimated performance vs {baseline}: {', '.join(low)}")
        if perf is not None and "performance_realized_drop" in conditions:
            low = realized_drops(perf)
            if low:
                problems.append(f"realized performance vs {baseline}: {', '.join(low)}")
        if "quality_breach" in conditions and report.quality.breached:
            checks = [f"{c.feature} {c.check} {c.rate:.3f}" for c in report.quality.breaches]
            checks += [f"missing column {c}" for c in report.quality.missing_columns]
            shown = ", ".join(checks[:5]) + (", ..." if len(checks) > 5 else "")
            problems.append(f"quality breach vs {baseline}: {shown}")
    return problems


def report_summary(report: WindowReport) -> dict[str, Any]:
    """The evidence a report gives: bounds, shares, drifted columns, quality breaches."""

    def drift(result: DriftResult) -> dict[str, Any]:
        return {
            "drifted": result.drifted,
            "share": result.share,
            "share_threshold": result.share_threshold,
            "drifted_count": result.drifted_count,
            "tested_count": result.tested_count,
            "drifted_columns": [
                {
                    "feature": c.feature,
                    "test": c.test,
                    "statistic": c.to_dict()["statistic"],
                    "threshold": c.to_dict()["threshold"],
                }
                for c in result.columns
                if c.drifted
            ],
        }

    return {
        "window": {
            "start": report.window_start,
            "end": report.window_end,
            "kind": report.window_kind,
        },
        "model_version": report.model_version,
        "baseline": report.baseline,
        "reference_hash": report.reference_hash,
        "rows": report.rows,
        "dataset_drift": drift(report.drift),
        "prediction_drift": drift(report.prediction_drift),
        "quality": {
            "breached": report.quality.breached,
            "breaches": [c.to_dict() for c in report.quality.breaches],
            "missing_columns": list(report.quality.missing_columns),
        },
    }


class WindowHistory:
    """The last windows of each (model, version), in window order."""

    def __init__(self, per_version: int = MIN_HISTORY, max_versions: int = MAX_VERSIONS) -> None:
        self.per_version = per_version
        self.max_versions = max_versions
        self._versions: OrderedDict[tuple[str, str], dict[tuple[float, float], Window]] = (
            OrderedDict()
        )

    def add(self, report: WindowReport) -> Window:
        key = (report.model, report.model_version)
        windows = self._versions.get(key)
        if windows is None:
            windows = self._versions[key] = {}
            if len(self._versions) > self.max_versions:
                self._versions.popitem(last=False)
        self._versions.move_to_end(key)
        wkey = (report.window_start, report.window_end)
        window = windows.get(wkey)
        if window is None:
            window = windows[wkey] = Window(
                report.window_start, report.window_end, report.window_kind
            )
            if len(windows) > self.per_version:
                del windows[min(windows, key=lambda k: (k[1], k[0]))]
        window.reports[report.baseline] = report
        return window

    def windows(self, model: str, version: str) -> list[Window]:
        windows = self._versions.get((model, version), {})
        return [windows[k] for k in sorted(windows, key=lambda k: (k[1], k[0]))]

    def versions(self, model: str) -> list[str]:
        return [v for m, v in self._versions if m == model]


def streaks(problems: Sequence[list[str]]) -> tuple[int, int]:
    """(bad, clean): how many of the last windows in a row are bad, and clean."""
    bad = clean = 0
    for p in reversed(problems):
        if p and not clean:
            bad += 1
        elif not p and not bad:
            clean += 1
        else:
            break
    return bad, clean
