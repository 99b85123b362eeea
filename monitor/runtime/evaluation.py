"""Turns closed windows into WindowReports: the detectors against the reference and, for a
canary, against the stable version's window of the same bounds.

Pure computation on sketches, so the agent runs it in a worker thread
(docs/architecture.md, decision 6) and replay runs it inline: both produce the same
reports from the same windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from detectors import reference_laws
from detectors.evaluate import compare_windows, evaluate_window
from detectors.profile import Profile
from detectors.results import WindowReport
from detectors.settings import DriftSettings, QualitySettings
from monitor.ingest.traceparent import parse_traceparent
from monitor.runtime.windows import ClosedWindow

if TYPE_CHECKING:
    from detectors.performance import PerformanceResult, PerformanceState
    from monitor.explain.logged import LoggedAttributor
    from monitor.explain.window import WindowAttributor
    from monitor.runtime.multivariate import MultivariateMonitor
    from monitor.runtime.sequential import SequentialMonitor


@dataclass(frozen=True)
class EvaluatedWindow:
    """A report, how long its tests took, and the traceparents of some of its records
    (for the evaluation span's links)."""

    report: WindowReport
    seconds: float
    traceparents: tuple[str, ...] = ()


class WindowEvaluator:
    """Everything needed to judge a window, fixed at start-up."""

    def __init__(
        self,
        profile: Profile,
        model: str,
        drift: DriftSettings,
        quality: QualitySettings,
        stable_version: str | None = None,
        multivariate: MultivariateMonitor | None = None,
        attributor: WindowAttributor | LoggedAttributor | None = None,
        performance: Callable[[PerformanceState, int], PerformanceResult] | None = None,
        sequential: SequentialMonitor | None = None,
    ) -> None:
        self.profile = profile
        # Page's CUSUMs over the stream of windows: the columns' drifted flags follow them.
        self.sequential = sequential
        # Row-level tests on the window's reservoir and the online MMD (multivariate:)
        self.multivariate = multivariate
        # SHAP attribution drift on each window against the reference (explain:)
        self.attributor = attributor
        # The performance block from a closed window's merged performance state.
        self.performance = performance
        self.model = model
        self.drift = drift
        self.quality = quality
        self.stable_version = stable_version
        # What depends on the reference alone (the Wasserstein bridge law) is ready before
        # the first window: read from the profile, or simulated here once.
        reference_laws.prepare(profile)

    def evaluate(self, closed: Sequence[ClosedWindow]) -> list[EvaluatedWindow]:
        """Reports for a set of windows closed together, canary comparisons included."""
        out = [self._with_multivariate(w, self._against_reference(w)) for w in closed]
        if self.stable_version is not None:
            stable = {(w.start, w.end): w for w in closed if w.model_version == self.stable_version}
            for w in closed:
                base = stable.get((w.start, w.end))
                if base is not None and w.model_version != self.stable_version and w.rows:
                    out.append(self._against_version(w, base))
        return out

    def _against_reference(self, w: ClosedWindow) -> EvaluatedWindow:
        started = time.perf_counter()
        drift, prediction, quality = evaluate_window(
            self.profile, w.sketch, self.drift, self.quality
        )
        if self.sequential is not None:
            drift, prediction = self.sequential.observe(w, drift, prediction)
        report = self._report(w, drift, prediction, quality, "reference")
        if self.attributor is not None and w.rows:
            attribution = self.attributor.evaluate(w.sketch, self.drift, drift)
            report = replace(report, attribution=attribution)
        if self.performance is not None and w.performance is not None:
            state: PerformanceState = w.performance  # type: ignore[assignment]
            report = replace(report, performance=self.performance(state, w.rows))
        return EvaluatedWindow(
            report,
            time.perf_counter() - started,
            tuple(w.traceparents),
        )

    def _with_multivariate(self, w: ClosedWindow, ev: EvaluatedWindow) -> EvaluatedWindow:
        """Adds the ``multivariate`` block (its time counts in the window's evaluation)."""
        if self.multivariate is None:
            return ev
        started = time.perf_counter()
        report = self.multivariate.attach(w, ev.report)
        return EvaluatedWindow(report, ev.seconds + time.perf_counter() - started, ev.traceparents)

    def _against_version(self, w: ClosedWindow, base: ClosedWindow) -> EvaluatedWindow:
        started = time.perf_counter()
        drift, prediction = compare_windows(base.sketch, w.sketch, self.drift)
        _, _, quality = evaluate_window(self.profile, w.sketch, self.drift, self.quality)
        return EvaluatedWindow(
            self._report(w, drift, prediction, quality, f"version:{base.model_version}"),
            time.perf_counter() - started,
            tuple(w.traceparents),
        )

    def _report(self, w, drift, prediction, quality, baseline: str) -> WindowReport:
        return WindowReport(
            model=self.model,
            model_version=w.model_version,
            window_start=w.start,
            window_end=w.end,
            window_kind=w.kind,
            baseline=baseline,
            reference_hash=self.profile.content_hash,
            rows=w.rows,
            late_records=w.late,
            duplicate_records=w.duplicates,
            evaluated_at=time.time(),
            drift=drift,
            prediction_drift=prediction,
            quality=quality,
            exemplar_trace_ids=tuple(
                t for t in (parse_traceparent(tp) for tp in w.traceparents) if t is not None
            ),
        )
