"""Row-level drift in the agent: the window tests at window close and the online MMD on
the stream (docs/configuration.md, ``multivariate:``).

``observe`` runs inline on each decoded batch (a vectorised update of the online
detector on the sampled rows, ``multivariate.online.sample_fraction``); ``attach`` runs
with the window's other tests in the evaluation worker and puts the ``multivariate``
block on the report, with the online detector's verdict when it fired before the
window's end (event time; row offset in a replay without times) and after the segment's
previous window. The two share only the pending verdicts, under a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from detectors.multivariate.detector import MultivariateDetector
from detectors.multivariate.online_mmd import OnlineMMD
from detectors.multivariate.preprocess import Rows
from detectors.multivariate.result import MultivariateResult, OnlineVerdict
from detectors.multivariate.settings import MultivariateSettings
from detectors.profile import Profile
from detectors.results import WindowReport
from monitor.ingest.batch import DecodedBatch
from monitor.runtime.windows import ClosedWindow

log = logging.getLogger(__name__)

SkipCounter = Callable[[str], None]
OnlineGauge = Callable[[str, float | None, float, bool], None]


class MultivariateMonitor:
    """The configured row-level tests for one model (one online detector per version)."""

    def __init__(
        self,
        profile: Profile,
        settings: MultivariateSettings,
        on_skip: SkipCounter | None = None,
        on_online: OnlineGauge | None = None,
    ) -> None:
        self.settings = settings
        self.detector = MultivariateDetector(profile, settings)
        self.on_skip = on_skip
        self.on_online = on_online
        self._lock = threading.Lock()
        self._pending: dict[str, OnlineVerdict] = {}
        self._online: dict[str, OnlineMMD] = {}
        # Calibrated once (it is the costly part); each model version gets a copy.
        self._online_template = self.detector.online() if settings.online.enabled else None
        fraction = settings.online.sample_fraction
        self._key_cutoff = np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))

    # -- the stream (inline) ---------------------------------------------------------------

    def observe(self, batch: DecodedBatch) -> None:
        """Feed the sampled rows of a batch to the online detector of their version."""
        if self._online_template is None or not batch.rows:
            return
        keep = np.flatnonzero(np.asarray(batch.row_key, dtype=np.uint64) < self._key_cutoff)
        if not len(keep):
            return
        versions = batch.model_version[keep].astype(str)
        for version in pd.unique(versions).tolist():
            idx = keep[versions == version]
            self._observe_version(str(version), batch, idx)

    def _observe_version(self, version: str, batch: DecodedBatch, idx: np.ndarray) -> None:
        detector = self._online.get(version)
        if detector is None:
            assert self._online_template is not None
            detector = self._online_template.copy()
            self._online[version] = detector
        rows = self.detector.encoder.transform(_batch_rows(self.detector, batch, idx))
        hit = detector.update(rows)
        if hit is not None:
            row = int(idx[hit.index])
            t = float(batch.event_time[row])
            at = t if np.isfinite(t) else float(batch.offset[row])
            verdict = OnlineVerdict(hit.statistic, hit.threshold, at)
            with self._lock:
                self._pending.setdefault(version, verdict)
        if self.on_online is not None:
            step = max(detector.steps, detector.window - 1)
            stat = hit.statistic if hit is not None else detector.statistic
            self.on_online(version, stat, detector.threshold_at(step), hit is not None)

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Each version's online run and its verdicts not yet on a report, for the
        checkpoint (docs/agent.md, "State")."""
        with self._lock:
            pending = {v: verdict.to_dict() for v, verdict in self._pending.items()}
        return {"online": {v: d.state() for v, d in self._online.items()}, "pending": pending}

    def restore(self, saved: object) -> None:
        """Go on with the runs of a checkpoint; a version whose saved run does not fit this
        detector (another window or run time) starts a new run, with a warning."""
        if self._online_template is None or not isinstance(saved, dict):
            return
        for version, state in dict(saved.get("online") or {}).items():
            detector = self._online_template.copy()
            try:
                detector.restore(state)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("online MMD of version %s starts a new run: %s", version, exc)
                continue
            self._online[str(version)] = detector
        with self._lock:
            for version, verdict in dict(saved.get("pending") or {}).items():
                self._pending.setdefault(str(version), OnlineVerdict.from_dict(verdict))

    # -- the window (worker) ---------------------------------------------------------------

    def attach(self, w: ClosedWindow, report: WindowReport) -> WindowReport:
        """The report with its ``multivariate`` block (or the reason it has none)."""
        with self._lock:
            verdict = self._pending.get(w.model_version)
            # A batch can reach past the window closing with it: a detection there waits
            # for its own window.
            if verdict is not None and (verdict.detected_at or 0.0) < w.end:
                del self._pending[w.model_version]
            else:
                verdict = None
        seed = (self.settings.seed * 1_000_003 + int(w.start)) % 2**32
        result: MultivariateResult | None = None
        reason: str | None = None
        try:
            outcome = self.detector.evaluate(w.sketch, seed=seed)
        except Exception as exc:  # a bug must not cost the window its other results
            log.exception("multivariate tests failed for window %s", w.start)
            result, reason = None, f"error: {type(exc).__name__}"
            code = "error"
        else:
            result, reason = outcome.result, outcome.skipped_reason
            code = outcome.reason_code or ""
        if result is None and code and self.on_skip is not None:
            self.on_skip(code)
        if verdict is not None:
            result = _with_online(result, verdict, w.rows)
        return replace(report, multivariate=result, multivariate_skipped_reason=reason)


def _with_online(
    result: MultivariateResult | None, verdict: OnlineVerdict, rows: int
) -> MultivariateResult:
    if result is not None:
        return replace(result, drifted=True, sequential=verdict)
    return MultivariateResult(
        test="online_mmd",
        statistic=verdict.statistic,
        p_value=None,
        threshold=verdict.threshold,
        drifted=True,
        device="numpy",
        seconds=0.0,
        rows_window=rows,
        rows_reference=0,
        sequential=verdict,
    )


def _batch_rows(detector: MultivariateDetector, batch: DecodedBatch, idx: np.ndarray) -> Rows:
    """The batch's rows ``idx`` as the encoder's raw rows (absent columns missing)."""
    enc = detector.encoder
    numeric = np.full((len(idx), len(enc.numeric_names)), np.nan)
    for j, name in enumerate(enc.numeric_names):
        col = batch.columns.get(name)
        if col is not None:
            values = col[idx]
            if values.dtype.kind not in "fiub":
                values = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
            numeric[:, j] = np.asarray(values, dtype=np.float64)
    categorical = np.full((len(idx), len(enc.categorical_names)), None, dtype=object)
    for j, name in enumerate(enc.categorical_names):
        col = batch.columns.get(name)
        if col is not None:
            values = col[idx]
            categorical[:, j] = [None if v is None or v != v else str(v) for v in values]
    return Rows(enc.numeric_names, enc.categorical_names, numeric, categorical)
