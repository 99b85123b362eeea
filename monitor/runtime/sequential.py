"""The sequential detectors of a running stream: one state per model version, fed by every
window judged against the reference, checkpointed with the window state, reset on demand.

``drifted`` on a column becomes its CUSUM's verdict (``detectors/sequential.py``): true in
the window where it fired, with ``sequential.detected_at`` the window's end (event time,
or row offset for row windows); the window's own test stays in the column as evidence.
The dataset verdict stays the share rule, on those flags; the dataset CUSUM's verdict
is the result's ``sequential`` block (its own alert and policy condition), so one
strongly drifting column does not make the dataset drift.

Reset semantics (docs/detectors.md, "A stream of windows"):

- after an alarm the column's CUSUM restarts from 0 (Page's renewal) and the column stays
  in alarm — ``alarms()``, the ``driftline_sequential_alarm`` gauge — until an operator
  acknowledges it (``reset``; ``POST /v1/sequential/reset``), which also zeroes its CUSUMs;
- a checkpoint from another reference (its content hash differs) is not restored: the
  state starts at 0, since the statistics were measured against another distribution;
- with sliding windows only every ``size / slide``-th window (those that do not overlap)
  is fed, so no row is counted twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from detectors.profile import Profile
from detectors.results import DriftResult, Sequential, TestResult
from detectors.sequential import ROLES, SequentialDetector, SequentialSettings, SequentialState
from detectors.sequential_calibration import calibrate_sequential
from monitor.runtime.windows import ClosedWindow

log = logging.getLogger(__name__)

STATE_FORMAT = 1
# Simulated windows when the run lengths are measured at start-up rather than at
# `reference build` (20 000 there): a quarter of the time; the curve is fitted at a
# lower threshold, which errs on the safe side (detectors/sequential_calibration.py).
START_UP_PANES = 5000


class SequentialMonitor:
    """Sequential detectors for every model version of one model; safe across threads
    (the evaluation worker updates, the HTTP server resets)."""

    def __init__(
        self,
        profile: Profile,
        settings: SequentialSettings,
        window_size: float | None = None,
        window_slide: float | None = None,
    ) -> None:
        calibration = profile.sequential
        if calibration is None:
            log.info(
                "reference %s has no sequential calibration (built by an older driftline); "
                "simulating it now",
                profile.short_hash,
            )
            calibration = calibrate_sequential(
                profile,
                panes=START_UP_PANES,
                allowance=settings.allowance,
                min_effect=settings.min_effect,
            )
        elif calibration.allowance != settings.allowance:
            log.info(
                "drift.sequential.allowance %g differs from the %g reference %s was calibrated "
                "with; simulating its run lengths again",
                settings.allowance,
                calibration.allowance,
                profile.short_hash,
            )
            calibration = calibrate_sequential(
                profile,
                pane_rows=calibration.pane_rows,
                panes=START_UP_PANES,
                allowance=settings.allowance,
                min_effect=settings.min_effect,
                unseen_rate=calibration.unseen_rate,
            )
        self.detector = SequentialDetector(profile, calibration, settings)
        self.reference_hash = profile.content_hash
        self.window_size = window_size
        self.window_slide = window_slide
        self._states: dict[str, SequentialState] = {}
        self._lock = threading.Lock()

    def feeds(self, w: ClosedWindow) -> bool:
        """Whether window ``w`` is one the detectors see (sliding windows: every k-th)."""
        if w.kind != "time" or not self.window_slide or not self.window_size:
            return True
        if self.window_slide >= self.window_size:
            return True
        k = round(self.window_size / self.window_slide)
        return round(w.start / self.window_slide) % k == 0

    def observe(
        self, w: ClosedWindow, features: DriftResult, predictions: DriftResult
    ) -> tuple[DriftResult, DriftResult]:
        """The two results with their columns' flags following the sequential detectors."""
        if not self.feeds(w) or w.rows == 0:
            return features, predictions
        with self._lock:
            state = self._states.get(w.model_version)
            if state is None:
                state = self._states[w.model_version] = self.detector.new_state()
            step = self.detector.update(state, w.sketch, at=w.end)
        return (
            _apply(features, step.columns, step.dataset.get("features")),
            _apply(predictions, step.columns, step.dataset.get("predictions")),
        )

    def reset(self, model_version: str | None = None, feature: str | None = None) -> int:
        """Acknowledge: zero the CUSUMs and clear the alarms of one column (or role:
        ``features``/``predictions``), or of all, for one model version or all. Returns
        how many model versions were touched."""
        with self._lock:
            versions = [model_version] if model_version is not None else list(self._states)
            touched = 0
            for mv in versions:
                state = self._states.get(mv)
                if state is None:
                    continue
                touched += 1
                if feature is None:
                    self._states[mv] = self.detector.new_state()
                    continue
                self._reset_one(state, feature)
            return touched

    def _reset_one(self, state: SequentialState, name: str) -> None:
        sc = self.detector.scorer
        if name in sc.numeric_names:
            state.numeric[sc.numeric_names.index(name)] = 0.0
        elif name in sc.categorical_names:
            state.categorical[sc.categorical_names.index(name)] = 0.0
        elif name in ROLES:
            state.dataset[ROLES.index(name)] = 0.0
        state.fired.pop(name, None)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a column or role the detectors watch."""
        sc = self.detector.scorer
        return name in sc.numeric_names or name in sc.categorical_names or name in ROLES

    def alarms(self) -> dict[str, dict[str, float]]:
        """Per model version, the columns and roles in alarm and where each last fired."""
        with self._lock:
            return {mv: dict(s.fired) for mv, s in self._states.items() if s.fired}

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state for the agent's checkpoint."""
        with self._lock:
            return {
                "format": STATE_FORMAT,
                "reference": self.reference_hash,
                "states": {mv: s.to_dict() for mv, s in self._states.items()},
            }

    def restore(self, data: Mapping[str, Any] | None) -> bool:
        """Continue from ``snapshot()``; False (and a fresh start) when it is missing, from
        another reference or unreadable."""
        if not data:
            return False
        if data.get("reference") != self.reference_hash:
            log.info("sequential state was built on another reference; starting at 0")
            return False
        try:
            if int(data.get("format", 0)) != STATE_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            like = self.detector.new_state()
            states = {
                str(mv): SequentialState.from_dict(s, like) for mv, s in data["states"].items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("sequential state unusable (%s); starting at 0", exc)
            return False
        with self._lock:
            self._states = states
        return True


def _apply(
    result: DriftResult, columns: Mapping[str, Sequential], dataset: Sequential | None
) -> DriftResult:
    if not result.columns and dataset is None:
        return result
    out: list[TestResult] = []
    for col in result.columns:
        seq = columns.get(col.feature)
        out.append(col if seq is None else replace(col, drifted=seq.fired, sequential=seq))
    drifted_count = sum(c.drifted for c in out)
    share = drifted_count / result.tested_count if result.tested_count else 0.0
    return replace(
        result,
        columns=tuple(out),
        drifted_count=drifted_count,
        share=share,
        drifted=bool(result.tested_count) and share >= result.share_threshold,
        sequential=dataset,
    )
