"""Event-time windows: route rows to panes, drop duplicates and late rows, close windows.

Time windows are built from panes of length ``slide`` (``size`` when tumbling). Pane
``i`` holds the rows with event time in ``[i·p, (i+1)·p)``; window ``w`` covers
``[w·p, w·p + size)`` and is the exact merge of its ``size / slide`` panes, so a row is
sketched once however many sliding windows contain it. A pane is dropped as soon as the
last window that needs it has closed, so memory holds only the panes of open windows.
With ``rows=N`` windows are instead runs of N accepted rows in arrival order.

Windows are segmented by model version (canary and stable side by side, each with its
own sketch) unless ``segment_by_version`` is off, when one segment, ``"all"``, holds
every row. Late and duplicate counts are always reported per model version.

The watermark is one for every model version (a quiet canary must not hold the stable
version's windows open) but follows each source partition: it is the smallest event-time
progress over the active partitions minus ``allowed_lateness``
(``monitor/runtime/watermarks.py``), so catching up on a backlog partition by partition
loses nothing to lateness. A window closes once the watermark reaches its end; a row
whose every window has closed is late: counted (per version), never added. The watermark
advances row by row — each row sees the progress of the rows before it and its own — and
the windows it passes close before the next row is routed. So which rows are late, and
what each closed window holds, does not depend on where the stream is cut into batches;
that is what lets a checkpoint taken between any two batches resume to exactly the
windows of an uninterrupted run. A record stamped far in the future would still move its
partition's progress: the pipeline sets such records aside first (``max_event_skew``).

Duplicates (a row key seen before within ``size + slide + allowed_lateness`` of event
time, ``slide`` being ``size`` for tumbling windows) are found first, so a record
replayed after a restart counts as a duplicate rather than as late. The horizon is wide
enough that the original of any row still headed for an open window is remembered; an
older replay lands in a closed window and is counted late instead. Late and duplicate
rows are attributed to the next window their segment closes (for row windows: the window
being filled when they arrived), so the windows' counts add up to the totals without
counting a row twice.

When no record has arrived for ``idle_timeout`` seconds of processing time, ``tick``
(and the next ``add``) closes every open window and moves the closed horizon past them:
an idle partition or a quiet model does not hold a window open forever.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Protocol

import numpy as np

from detectors.missing import isna_objects
from detectors.profile import Profile
from detectors.sketch import WindowSketch
from monitor.ingest.batch import DecodedBatch
from monitor.ingest.dedupe import Deduplicator
from monitor.runtime.panes import (
    MAX_TRACEPARENTS,
    AddResult,
    ClosedWindow,
    WindowKind,
    _add_counts,
    _count_by,
    _factorize_versions,
    _first_traceparents,
    _Pane,
    merge_offsets,
)
from monitor.runtime.watermarks import PartitionClock
from monitor.runtime.window_snapshot import read_state, write_state

ALL_VERSIONS = "all"
_NEVER = -(2**62)  # closed-pane index before any window closed


class WindowsSettings(Protocol):
    """The fields of ``monitor.config.windows.WindowsConfig`` that windows read."""

    size: float
    slide: float | None
    rows: int | None
    allowed_lateness: float
    idle_timeout: float
    dedupe: bool
    dedupe_max_ids: int
    reservoir_size: int
    segment_by_version: bool


def window_params(config: WindowsSettings) -> dict[str, Any]:
    """Keyword arguments for ``WindowManager`` / ``WindowManager.restore`` from the config."""
    return {
        "size": float(config.size),
        "slide": None if config.slide is None else float(config.slide),
        "rows": None if config.rows is None else int(config.rows),
        "allowed_lateness": float(config.allowed_lateness),
        "idle_timeout": float(config.idle_timeout),
        "dedupe": bool(config.dedupe),
        "dedupe_max_ids": int(config.dedupe_max_ids),
        "reservoir_size": int(config.reservoir_size),
        "segment_by_version": bool(config.segment_by_version),
    }


class WindowManager:
    """Windows of one model's traffic over one reference profile."""

    def __init__(
        self,
        profile: Profile,
        *,
        size: float,
        slide: float | None = None,
        rows: int | None = None,
        allowed_lateness: float,
        idle_timeout: float,
        dedupe: bool,
        dedupe_max_ids: int,
        reservoir_size: int,
        segment_by_version: bool,
        seed: int | None = None,
    ) -> None:
        if not (size > 0 and math.isfinite(size)):
            raise ValueError(f"window size must be a positive number of seconds, got {size}")
        k = 1
        if slide is not None:
            if not 0 < slide <= size:
                raise ValueError(f"window slide must be in (0, size={size}], got {slide}")
            k = round(size / slide)
            if abs(k * slide - size) > 1e-9 * size:
                raise ValueError(f"window slide {slide} must divide the window size {size}")
        if rows is not None and rows < 1:
            raise ValueError(f"row windows need at least one row, got rows={rows}")
        if allowed_lateness < 0:
            raise ValueError(f"allowed_lateness must be >= 0, got {allowed_lateness}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0, got {idle_timeout}")
        if reservoir_size < 0:
            raise ValueError(f"reservoir_size must be >= 0, got {reservoir_size}")
        self.profile = profile
        self.size = float(size)
        self.slide = None if slide is None else float(slide)
        self.rows = rows
        self.allowed_lateness = float(allowed_lateness)
        self.idle_timeout = float(idle_timeout)
        self.dedupe = dedupe
        self.dedupe_max_ids = int(dedupe_max_ids)
        self.reservoir_size = int(reservoir_size)
        self.segment_by_version = segment_by_version
        self.seed = seed
        self.kind: WindowKind = "rows" if rows is not None else "time"
        self._pane_len = self.slide if self.slide is not None else self.size
        self._k = k  # panes per window
        self._dedupe = (
            Deduplicator(dedupe_max_ids, self.size + self._pane_len + self.allowed_lateness)
            if dedupe
            else None
        )
        self._panes: dict[tuple[str, int], _Pane] = {}
        self._closed_to = _NEVER  # windows ending at pane index <= this are closed
        self._max_event: float | None = None  # event-time progress (watermarks.py)
        self._clock = PartitionClock(self.idle_timeout)
        self._last_activity: float | None = None
        self._pending_late: dict[str, int] = {}
        self._pending_dup: dict[str, int] = {}
        self._row_base: dict[str, int] = {}  # row windows: accepted rows so far per segment
        self.accepted_total = 0
        self.late_total: dict[str, int] = {}
        self.duplicates_total: dict[str, int] = {}

    @classmethod
    def from_config(
        cls, profile: Profile, windows_config: WindowsSettings, *, seed: int | None = None
    ) -> WindowManager:
        return cls(profile, seed=seed, **window_params(windows_config))

    # -- state for metrics -----------------------------------------------------------------

    @property
    def watermark(self) -> float | None:
        """Event time up to which windows are closed (None before the first row)."""
        if self._max_event is None:
            return None
        wm = self._max_event - self.allowed_lateness
        if self.kind == "time" and self._closed_to != _NEVER:
            wm = max(wm, self._closed_to * self._pane_len)
        return wm

    @property
    def closed_until(self) -> float | None:
        """Every time window ending at or before this is closed (None: none yet)."""
        if self.kind != "time" or self._closed_to == _NEVER:
            return None
        return self._closed_to * self._pane_len

    def assign(self, partitions: set[int] | None, now: float) -> None:
        """The source partitions this agent owns now (see ``PartitionClock.assign``)."""
        self._clock.assign(partitions, now)

    @property
    def partitions(self) -> PartitionClock:
        return self._clock

    @property
    def open_panes(self) -> int:
        return len(self._panes)

    @property
    def dedupe_size(self) -> int:
        return 0 if self._dedupe is None else len(self._dedupe)

    @property
    def dedupe_evicted(self) -> int:
        return 0 if self._dedupe is None else self._dedupe.evicted

    # -- adding rows -----------------------------------------------------------------------

    def add(self, batch: DecodedBatch, now: float) -> AddResult:
        """Route a batch's rows to their windows; return the windows that closed.

        ``now`` is processing time (seconds): it drives the idle timeout and stands in for
        an event time that is not finite.
        """
        result = AddResult(closed=self._close_if_idle(now))
        n = batch.rows
        if n == 0:
            return result
        self._last_activity = now
        t = np.asarray(batch.event_time, dtype=np.float64)
        if not np.isfinite(t).all():
            t = np.where(np.isfinite(t), t, now)
        versions, version_code = _factorize_versions(batch.model_version)
        if self.segment_by_version:
            segments, seg_code = versions, version_code
        else:
            segments, seg_code = [ALL_VERSIONS], np.zeros(n, dtype=np.intp)
        keys = np.asarray(batch.row_key, dtype=np.uint64)

        dup = (
            self._dedupe.check_and_add(keys, t)
            if self._dedupe is not None
            else np.zeros(n, dtype=bool)
        )
        running_max = self._clock.advance(t, batch.partition, now)
        if self._max_event is not None:
            running_max = np.maximum(running_max, self._max_event)

        if self.kind == "time":
            late = self._add_time(batch, t, running_max, dup, segments, seg_code, result)
        else:
            late = np.zeros(n, dtype=bool)
            self._add_rows(batch, t, dup, segments, seg_code, result)

        if np.isfinite(running_max[-1]):
            self._max_event = float(running_max[-1])
            if self._dedupe is not None:
                self._dedupe.advance(self._max_event - self.allowed_lateness)
        result.late = _count_by(versions, version_code[late])
        result.duplicates = _count_by(versions, version_code[dup])
        result.accepted = int(n - late.sum() - dup.sum())
        result.segment = np.asarray(segments, dtype=object)[seg_code]
        self.accepted_total += result.accepted
        _add_counts(self.late_total, result.late)
        _add_counts(self.duplicates_total, result.duplicates)
        return result

    def _add_time(
        self,
        batch: DecodedBatch,
        t: np.ndarray,
        running_max: np.ndarray,
        dup: np.ndarray,
        segments: list[str],
        seg_code: np.ndarray,
        result: AddResult,
    ) -> np.ndarray:
        """Route in runs of rows that see the same closed horizon; returns the late mask.

        Rows of a pane that no window closing later in this batch contains (pane index at
        or past the batch's final horizon: most rows) are routed together at the end, so
        each such pane's sketch is updated once per batch.
        """
        p, k = self._pane_len, self._k
        pane = np.floor(t / p).astype(np.int64)
        known = np.isfinite(running_max)
        wm = np.where(known, running_max - self.allowed_lateness, 0.0)
        horizon = np.where(known, np.floor(wm / p), _NEVER).astype(np.int64)
        horizon = np.maximum(horizon, self._closed_to)
        late = ~dup & (pane + k <= horizon)
        accepted = ~dup & ~late
        result.pane = np.where(accepted, pane, -1)
        final = int(horizon[-1])
        deferred = accepted & (pane >= final)
        stepwise = accepted & ~deferred
        cuts = np.flatnonzero(np.diff(horizon)) + 1
        bounds = [0, *cuts.tolist(), len(t)]
        for a, b in itertools.pairwise(bounds):
            result.closed.extend(self._close_time(int(horizon[a])))
            self._add_pending(self._pending_late, segments, seg_code[a:b][late[a:b]])
            self._add_pending(self._pending_dup, segments, seg_code[a:b][dup[a:b]])
            idx = a + np.flatnonzero(stepwise[a:b])
            self._route(batch, t, idx, seg_code[idx], pane[idx], segments)
        idx = np.flatnonzero(deferred)
        self._route(batch, t, idx, seg_code[idx], pane[idx], segments)
        return late

    def _add_rows(
        self,
        batch: DecodedBatch,
        t: np.ndarray,
        dup: np.ndarray,
        segments: list[str],
        seg_code: np.ndarray,
        result: AddResult,
    ) -> None:
        """Row windows: the j-th accepted row of a segment goes to window j // rows."""
        n_rows = self.rows
        assert n_rows is not None
        accepted = ~dup
        # accepted rows of the same segment before each row, in arrival order
        order = np.argsort(seg_code, kind="stable")
        acc_sorted = accepted[order].astype(np.int64)
        before_sorted = np.cumsum(acc_sorted) - acc_sorted
        seg_sorted = seg_code[order]
        starts = np.flatnonzero(np.r_[True, seg_sorted[1:] != seg_sorted[:-1]])
        lengths = np.diff(np.r_[starts, len(order)])
        before_sorted -= np.repeat(before_sorted[starts], lengths)
        base = np.array([self._row_base.get(s, 0) for s in segments], dtype=np.int64)
        position = np.empty(len(t), dtype=np.int64)  # row number within the segment
        position[order] = base[seg_sorted] + before_sorted
        ordinal = position // n_rows
        result.pane = np.where(accepted, ordinal, -1)
        # duplicates are attributed to the window being filled when they arrived
        for code, ordn in zip(seg_code[dup].tolist(), ordinal[dup].tolist(), strict=True):
            self._pane(segments[code], ordn).duplicates += 1
        idx = np.flatnonzero(accepted)
        self._route(batch, t, idx, seg_code[idx], ordinal[idx], segments)
        counts = np.bincount(seg_code[idx], minlength=len(segments))
        for code, name in enumerate(segments):
            if counts[code]:
                self._row_base[name] = self._row_base.get(name, 0) + int(counts[code])
        # close the windows this batch filled, in the order their last row arrived
        done = idx[(position[idx] + 1) % n_rows == 0]
        for j in done.tolist():
            result.closed.append(self._close_pane((segments[int(seg_code[j])], int(ordinal[j]))))

    def _route(
        self,
        batch: DecodedBatch,
        t: np.ndarray,
        idx: np.ndarray,
        seg: np.ndarray,
        pane: np.ndarray,
        segments: list[str],
    ) -> None:
        """Update each (segment, pane) group's sketch once with its rows."""
        if not len(idx):
            return
        order = np.lexsort((pane, seg))  # stable: rows keep arrival order within a group
        idx, seg, pane = idx[order], seg[order], pane[order]
        change = np.flatnonzero((seg[1:] != seg[:-1]) | (pane[1:] != pane[:-1])) + 1
        bounds = [0, *change.tolist(), len(idx)]
        whole = len(idx) == len(t) and len(bounds) == 2 and bool((idx == np.arange(len(t))).all())
        for a, b in itertools.pairwise(bounds):
            rows = idx[a:b]
            target = self._pane(segments[int(seg[a])], int(pane[a]))
            target.sketch.update(
                # a batch all of one pane (the usual case) is read in place, not copied
                batch.columns
                if whole
                else {name: col[rows] for name, col in batch.columns.items()},
                row_keys=batch.row_key[rows],
                attributions=None if batch.attributions is None else batch.attributions[rows],
            )
            target.rows += len(rows)
            times = t[rows]
            target.t_min = min(target.t_min, float(times.min()))
            target.t_max = max(target.t_max, float(times.max()))
            target.cover(batch.partition[rows], batch.offset[rows])
            need = MAX_TRACEPARENTS - len(target.traceparents)
            if need > 0:
                tids = batch.traceparent[rows]
                for i in np.flatnonzero(~isna_objects(tids)).tolist():
                    tid = tids[i]
                    if tid and tid not in target.traceparents:
                        target.traceparents.append(str(tid))
                        if len(target.traceparents) >= MAX_TRACEPARENTS:
                            break

    def _pane(self, segment: str, index: int) -> _Pane:
        key = (segment, index)
        pane = self._panes.get(key)
        if pane is None:
            pane = _Pane(self._new_sketch())
            self._panes[key] = pane
        return pane

    def _new_sketch(self) -> WindowSketch:
        return WindowSketch(self.profile, self.reservoir_size, seed=self.seed)

    @staticmethod
    def _add_pending(pending: dict[str, int], segments: list[str], codes: np.ndarray) -> None:
        if not len(codes):
            return
        counts = np.bincount(codes, minlength=len(segments))
        for code in np.flatnonzero(counts).tolist():
            name = segments[code]
            pending[name] = pending.get(name, 0) + int(counts[code])

    # -- closing ---------------------------------------------------------------------------

    def _close_time(self, upto: int) -> list[ClosedWindow]:
        """Close every time window ending at pane index <= ``upto`` not closed before."""
        old = self._closed_to
        if upto <= old:
            return []
        k, p = self._k, self._pane_len
        due: dict[str, set[int]] = {}
        for seg, i in self._panes:
            lo, hi = max(i - k + 1, old - k + 1), min(i, upto - k)
            if lo <= hi:
                due.setdefault(seg, set()).update(range(lo, hi + 1))
        out: list[ClosedWindow] = []
        for seg in sorted(due):
            for n, w in enumerate(sorted(due[seg])):
                panes = [self._panes[(seg, j)] for j in range(w, w + k) if (seg, j) in self._panes]
                if k == 1:
                    sketch = panes[0].sketch
                else:
                    sketch = self._new_sketch()
                    for pane in panes:
                        sketch = sketch.merge(pane.sketch)
                out.append(
                    ClosedWindow(
                        model_version=seg,
                        start=w * p,
                        end=w * p + self.size,
                        sketch=sketch,
                        rows=sum(pane.rows for pane in panes),
                        late=self._pending_late.pop(seg, 0) if n == 0 else 0,
                        duplicates=self._pending_dup.pop(seg, 0) if n == 0 else 0,
                        traceparents=_first_traceparents(pane.traceparents for pane in panes),
                        kind="time",
                        offsets=merge_offsets(pane.offsets for pane in panes),
                    )
                )
        for key in [key for key in self._panes if key[1] + k <= upto]:
            del self._panes[key]
        self._closed_to = upto
        out.sort(key=lambda cw: (cw.end, cw.model_version))
        return out

    def _close_pane(self, key: tuple[str, int]) -> ClosedWindow:
        """Close one row window (full, or partial on idle timeout or flush)."""
        pane = self._panes.pop(key)
        seg, ordinal = key
        assert self.rows is not None
        self._row_base[seg] = max(self._row_base.get(seg, 0), (ordinal + 1) * self.rows)
        # Row windows are numbered by the rows of their segment: [start, end) row offsets.
        return ClosedWindow(
            model_version=seg,
            start=float(ordinal * self.rows),
            end=float(ordinal * self.rows + pane.rows),
            sketch=pane.sketch,
            rows=pane.rows,
            late=0,
            duplicates=pane.duplicates,
            traceparents=list(pane.traceparents),
            kind="rows",
            offsets=pane.offsets,
        )

    def _close_all(self) -> list[ClosedWindow]:
        if not self._panes:
            return []
        if self.kind == "time":
            return self._close_time(max(i for _, i in self._panes) + self._k)
        out: list[ClosedWindow] = []
        for key in sorted(self._panes):
            if self._panes[key].rows:
                out.append(self._close_pane(key))
            else:
                del self._panes[key]
        return out

    def _close_if_idle(self, now: float) -> list[ClosedWindow]:
        if self._last_activity is None or now - self._last_activity < self.idle_timeout:
            return []
        return self._close_all()

    def tick(self, now: float) -> list[ClosedWindow]:
        """Close every open window when no record arrived for ``idle_timeout`` seconds."""
        return self._close_if_idle(now)

    def flush(self) -> list[ClosedWindow]:
        """Close every open window now (partial row windows included)."""
        return self._close_all()

    def shift(self, gap: float) -> None:
        """The agent did not run for ``gap`` seconds (loop_gap.py): its idle clocks move
        forward by it, so the pause closes no window and idles no partition."""
        self._clock.shift(gap)
        if self._last_activity is not None:
            self._last_activity += gap

    # -- checkpoints -----------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "slide": self.slide,
            "rows": self.rows,
            "allowed_lateness": self.allowed_lateness,
            "idle_timeout": self.idle_timeout,
            "dedupe": self.dedupe,
            "dedupe_max_ids": self.dedupe_max_ids,
            "reservoir_size": self.reservoir_size,
            "segment_by_version": self.segment_by_version,
        }

    def snapshot(self) -> bytes:
        """The complete state: restoring it and continuing gives the same windows."""
        return write_state(self)

    @classmethod
    def restore(
        cls,
        profile: Profile,
        data: bytes,
        *,
        config: WindowsSettings | None = None,
        now: float | None = None,
        **params: Any,
    ) -> WindowManager:
        """A manager continuing from ``snapshot()``, built with the same parameters.

        The parameters come from ``config`` (the ``windows`` section) and/or keywords,
        which take precedence. The window layout (size, slide, rows, dedupe, reservoir
        size, segmentation) must match the snapshot's, else ``SnapshotError``: the caller
        starts windows fresh. Lateness, idle timeout and the dedupe cap take the new
        values. With ``now`` the idle clocks restart at ``now``, so the time the agent was
        down does not count as idle.
        """
        if config is not None:
            params = {**window_params(config), **params}
        out = cls(profile, **params)
        read_state(out, data, now)
        return out


# -- helpers --------------------------------------------------------------------------------
