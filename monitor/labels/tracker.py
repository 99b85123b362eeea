"""Each window's performance: predictions and labels filed by pane, merged when the
window closes, and revised when a label arrives after that.

The tracker follows the windows without owning them: ``WindowManager.add`` says which
pane every accepted prediction went to (``AddResult.pane``), and the tracker files the
prediction's estimator sums under the same (segment, pane) and hands it to the label
join. When windows close, their panes' states are merged into ``ClosedWindow.performance``
for the evaluator. A label joined after its window's report was published marks the
window for revision; ``revisions()`` then yields the report again with a recomputed
``performance`` block (``revised: true``). Pane states stay while a prediction of theirs
is pending or a window that needs them is open, so memory follows the join's bounds.

When windows are kept per source partition (an agent that publishes partials,
docs/agent.md "Scaling out"), so is the performance state: its segments are (version,
partition), each closed window's state is its partition's alone and goes out with the
window's partial, and a window whose partial was sent is revised by a *revision* partial
(``partial_revisions``) instead of a report; the aggregator merges the partitions' states.

Everything here is part of the agent's checkpoint (``snapshot``/``restore``), written
with the window state and the offsets of both topics, so a restart neither loses a
label nor counts one twice.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import orjson

from detectors.performance import PerformanceReference, PerformanceState, evaluate_performance
from detectors.performance.reference import Predictions
from detectors.results import WindowReport
from monitor.config.labels import KpiConfig, LabelsConfig
from monitor.labels.decode import LabelBatch
from monitor.labels.join import Joined, LabelJoin
from monitor.runtime.panes import AddResult, ClosedWindow

SNAPSHOT_FORMAT = 1
#: Between a model version and a source partition in a per-partition segment's name.
PARTITION_SEP = "\x1f"


def segment_of(window: ClosedWindow) -> str:
    """The tracker's segment of a closed window: its version, and its partition when the
    window is one partition's."""
    if window.partition is None:
        return window.model_version
    return f"{window.model_version}{PARTITION_SEP}{window.partition}"


class PerformanceTracker:
    """Performance state of one model's windows (see the module docstring)."""

    def __init__(
        self,
        ref: PerformanceReference,
        labels: LabelsConfig,
        kpis: Sequence[KpiConfig] = (),
        *,
        pane_length: float,
        panes_per_window: int,
        row_windows: bool,
    ) -> None:
        self.ref = ref
        self.config = labels
        self.pane_length = pane_length
        self.k = panes_per_window
        self.row_windows = row_windows
        self.kpis_from_labels = tuple(k.name for k in kpis if k.from_ == "labels")
        self.kpis_from_predictions = {k.name: k.path for k in kpis if k.from_ == "predictions"}
        self.kpi_names = tuple(k.name for k in kpis)
        self.kpis = tuple(kpis)
        self.metrics = set(labels.metrics)
        self.join = LabelJoin(
            len(ref.score_columns),
            horizon=labels.join_horizon,
            wait=labels.wait_for_prediction,
            max_pending=labels.max_pending_predictions,
            max_labels=labels.max_pending_labels,
            kpi_names=self.kpis_from_labels,
        )
        self.panes: dict[tuple[str, int], PerformanceState] = {}
        self.closed_to: dict[str, int] = {}  # per segment: first pane of any open window
        # closed windows that may be revised: (segment, first pane) -> report (None until
        # published) and whether labels arrived since
        self.reports: dict[tuple[str, int], WindowReport | None] = {}
        self.dirty: set[tuple[str, int]] = set()
        # closed windows whose partial was sent: key -> [version, partition, start, end,
        # rows, origin, fresh] (what a revision partial of it says)
        self.sent: dict[tuple[str, int], list[Any]] = {}
        self.invalid_labels = 0

    # -- predictions -----------------------------------------------------------------------

    def observe(
        self,
        columns: dict[str, Any],
        keys: np.ndarray,
        times: np.ndarray,
        result: AddResult,
        now: float,
    ) -> list[tuple[str, int]]:
        """File the accepted rows of a batch ``windows.add`` just took (``result``); returns
        closed windows revised by labels that were waiting for these predictions."""
        if result.pane is None or result.segment is None:
            return []
        accepted = np.flatnonzero(result.pane >= 0)
        if not len(accepted):
            return []
        p = self.ref.predictions(columns).take(accepted)
        segment = result.segment[accepted]
        if result.partition is not None:
            segment = _per_partition(segment, np.asarray(result.partition)[accepted])
        pane = result.pane[accepted]
        sub = {k: np.asarray(v)[accepted] for k, v in columns.items()}
        t = np.asarray(times, dtype=np.float64)[accepted]
        if not self.row_windows:
            t = np.where(np.isfinite(t), t, now)
        for (seg, pn), idx in _groups(segment, pane):
            state = self._pane(seg, pn)
            part = p.take(idx)
            state.add_predictions(part, {k: v[idx] for k, v in sub.items()})
            for name, path in self.kpis_from_predictions.items():
                if path in sub:
                    state.add_kpi(name, _floats(sub[path][idx]), part)
        ok = p.valid
        joined = self.join.add_predictions(
            np.asarray(keys, dtype=np.uint64)[accepted][ok],
            segment[ok],
            pane[ok],
            t[ok],
            p.scores[ok],
        )
        if joined.rows:
            values = np.asarray(joined.held_labels, dtype=object)
            kpis = np.asarray(joined.held_kpis, dtype=np.float64).reshape(
                joined.rows, len(self.kpis_from_labels)
            )
            return self._file_labels(joined, values, kpis)
        return []

    def empty_like(self) -> PerformanceTracker:
        """A tracker with the same settings and no state (to read an older snapshot)."""
        return PerformanceTracker(
            self.ref,
            self.config,
            self.kpis,
            pane_length=self.pane_length,
            panes_per_window=self.k,
            row_windows=self.row_windows,
        )

    def _pane(self, segment: str, pane: int) -> PerformanceState:
        state = self.panes.get((segment, pane))
        if state is None:
            state = self.panes[(segment, pane)] = PerformanceState(
                self.ref, self.config.sample_size
            )
        return state

    # -- labels ----------------------------------------------------------------------------

    def add_labels(self, batch: LabelBatch) -> list[tuple[str, int]]:
        """Join a batch of labels; returns the closed windows they revised."""
        if not batch.rows:
            return []
        kpis = (
            np.column_stack(
                [batch.kpis.get(n, np.full(batch.rows, np.nan)) for n in self.kpis_from_labels]
            )
            if self.kpis_from_labels
            else np.zeros((batch.rows, 0))
        )
        joined = self.join.add_labels(
            batch.row_key, batch.label, batch.event_time, kpis, batch.partition
        )
        if not joined.rows:
            return []
        return self._file_labels(joined, batch.label[joined.label_index], kpis[joined.label_index])

    def _file_labels(self, joined: Joined, values: np.ndarray, kpis: np.ndarray) -> list:
        y, ok = self.ref.encode_labels(values)
        self.invalid_labels += int((~ok).sum())
        touched: set[tuple[str, int]] = set()
        for (seg, pn), idx in _groups(joined.segment, joined.pane):
            idx = idx[ok[idx]]
            if not len(idx):
                continue
            scores = joined.scores[idx]
            p = self._predictions(scores)
            state = self._pane(seg, pn)
            state.add_labels(joined.keys[idx], p, y[idx])
            for j, name in enumerate(self.kpis_from_labels):
                state.add_kpi(name, kpis[idx, j], p)
            touched.add((seg, pn))
        revised = []
        for seg, pn in touched:
            for w in range(pn - self.k + 1, pn + 1):
                if (seg, w) in self.reports:
                    self.dirty.add((seg, w))
                    revised.append((seg, w))
        return revised

    def _predictions(self, scores: np.ndarray) -> Predictions:
        cols = {name: scores[:, j] for j, name in enumerate(self.ref.score_columns)}
        return self.ref.predictions(cols)

    # -- windows ---------------------------------------------------------------------------

    def first_pane(self, start: float) -> int:
        """The first pane of the window starting at ``start`` (``pane_length`` is the
        pane's seconds, or the window's rows for row windows)."""
        return math.floor(start / self.pane_length + 0.5)

    def on_closed(self, closed: Sequence[ClosedWindow]) -> None:
        """Attach each closed window's merged state, and drop panes nothing needs."""
        for w in closed:
            first = self.first_pane(w.start)
            seg = segment_of(w)
            w.performance = self._merged((seg, first))
            self.reports[(seg, first)] = None
            self.closed_to[seg] = max(self.closed_to.get(seg, 0), first + 1)
        self._trim()

    def _merged(self, key: tuple[str, int]) -> PerformanceState:
        """The merged state of the window whose first pane is ``key``."""
        seg, first = key
        merged = PerformanceState(self.ref, self.config.sample_size)
        for i in range(first, first + self.k):
            if (seg, i) in self.panes:
                merged = merged.merge(self.panes[(seg, i)])
        return merged

    def note_partial(self, window: ClosedWindow, origin: int, fresh: bool) -> None:
        """A closed window of one partition went out as a partial (state's ``origin``):
        labels that arrive later revise it through :meth:`partial_revisions`."""
        key = (segment_of(window), self.first_pane(window.start))
        if key in self.reports and window.partition is not None:
            self.sent[key] = [
                window.model_version,
                window.partition,
                window.start,
                window.end,
                window.rows,
                origin,
                fresh,
            ]

    def partial_revisions(self) -> Iterator[tuple[list[Any], PerformanceState]]:
        """Per window sent as a partial whose labels changed since: what its revision
        partial says (see ``sent``) and the window's whole performance state now."""
        for key in sorted(self.dirty):
            info = self.sent.get(key)
            if info is None:
                continue
            self.dirty.discard(key)
            yield info, self._merged(key)

    def remember(self, report: WindowReport) -> None:
        """Keep a published report so that late labels can revise it."""
        if report.performance is None or report.baseline != "reference":
            return
        key = (report.model_version, self.first_pane(report.window_start))
        if key in self.reports:
            self.reports[key] = report

    def revisions(self) -> Iterator[WindowReport]:
        """Reports whose performance block labels changed since they were published."""
        for key in sorted(self.dirty):
            report = self.reports.get(key)
            if report is None:
                continue  # not published yet: its report will carry the labels
            perf = self.evaluate(self._merged(key), report.rows, revised=True)
            new = replace(report, performance=perf)
            self.reports[key] = new
            self.dirty.discard(key)
            yield new

    def evaluate(self, state: PerformanceState, rows: int, *, revised: bool = False):
        perf = evaluate_performance(
            self.ref, state, window_rows=rows, kpis=self.kpi_names, revised=revised
        )
        return replace(perf, realized=tuple(r for r in perf.realized if r.metric in self.metrics))

    def expire(self) -> None:
        self.join.expire()
        self._trim()

    def _trim(self) -> None:
        """Drop panes whose windows all closed and that wait for no label; and reports
        beyond ``max_revisable_windows`` (oldest first) or whose panes are gone."""
        pending = self.join.pending_by_pane
        for key in list(self.panes):
            seg, pn = key
            needed = any((seg, w) in self.reports for w in range(pn - self.k + 1, pn + 1))
            if pn < self.closed_to.get(seg, -(2**62)) and key not in pending and not needed:
                del self.panes[key]
        for key in list(self.reports):
            seg, first = key
            alive = any((seg, i) in pending for i in range(first, first + self.k))
            if not alive and key not in self.dirty:
                del self.reports[key]
        over = len(self.reports) - self.config.max_revisable_windows
        if over > 0:
            for key in sorted(self.reports, key=lambda k: k[1])[:over]:
                del self.reports[key]
                self.dirty.discard(key)
        for key in [k for k in self.sent if k not in self.reports]:
            del self.sent[key]

    # -- a source partition moving between agents -------------------------------------------

    def partition_state(self, partition: int, *, remove: bool = False) -> dict[str, Any]:
        """Everything of one source partition (its per-partition segments): the panes,
        the closed windows that may still be revised, and its predictions waiting for a
        label; for the agent that takes the partition over with its windows
        (``restore_partition``), so its labels join there and its windows' performance
        state stays whole. JSON-able. ``remove`` drops it here."""
        suffix = f"{PARTITION_SEP}{partition}"
        segs = {s for s, _ in self.panes} | set(self.closed_to) | set(self.join.segments)
        segs = {s for s in segs if s.endswith(suffix)}
        keys, names, panes, times, scores = self.join.pending_of(segs, remove=remove)
        buf = io.BytesIO()
        np.savez(buf, key=keys, pane=panes, time=times, scores=scores)
        out = {
            "format": SNAPSHOT_FORMAT,
            "partition": partition,
            "panes": [
                [s, p, base64.b64encode(st.to_bytes()).decode()]
                for (s, p), st in self.panes.items()
                if s in segs
            ],
            "closed_to": {s: c for s, c in self.closed_to.items() if s in segs},
            "reports": [[s, p] for s, p in self.reports if s in segs],
            "dirty": [[s, p] for s, p in sorted(self.dirty) if s in segs],
            "sent": [[s, p, info] for (s, p), info in self.sent.items() if s in segs],
            "pending_segments": names.tolist(),
            "pending": base64.b64encode(buf.getvalue()).decode(),
            # labels of the same-numbered labels topic partition waiting for a prediction
            "held": self.join.held_of(partition, remove=remove),
        }
        if remove:
            for table in (self.panes, self.reports, self.sent):
                for key in [k for k in table if k[0] in segs]:
                    del table[key]
            self.dirty = {k for k in self.dirty if k[0] not in segs}
            for seg in segs:
                self.closed_to.pop(seg, None)
        return out

    def restore_partition(self, d: dict[str, Any]) -> list[tuple[str, int]]:
        """Take over a partition's :meth:`partition_state`; its predictions meet the labels
        already waiting here. Returns the closed windows those labels revised."""
        if d.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"partition performance state format {d.get('format')!r}")
        panes = {
            (str(s), int(p)): PerformanceState.from_bytes(self.ref, base64.b64decode(b))
            for s, p, b in d["panes"]
        }
        data = np.load(io.BytesIO(base64.b64decode(d["pending"])), allow_pickle=False)
        for key, state in panes.items():
            mine = self.panes.get(key)
            self.panes[key] = state if mine is None else mine.merge(state)
        for seg, c in d["closed_to"].items():
            self.closed_to[str(seg)] = max(self.closed_to.get(str(seg), 0), int(c))
        for s, p in d["reports"]:
            self.reports.setdefault((str(s), int(p)), None)
        self.dirty |= {(str(s), int(p)) for s, p in d["dirty"]}
        self.sent.update({(str(s), int(p)): list(info) for s, p, info in d["sent"]})
        segments = np.array([str(s) for s in d["pending_segments"]], dtype=object)
        joined = self.join.add_predictions(
            data["key"], segments, data["pane"], data["time"], data["scores"]
        )
        revised = []
        if joined.rows:
            values = np.asarray(joined.held_labels, dtype=object)
            kpis = np.asarray(joined.held_kpis, dtype=np.float64).reshape(
                joined.rows, len(self.kpis_from_labels)
            )
            revised += self._file_labels(joined, values, kpis)
        held = d.get("held", [])
        if held:
            n = len(self.kpis_from_labels)
            hk = np.array([int(k) for k, _, _, _ in held], dtype=np.uint64)
            hv = np.array([v for _, v, _, _ in held], dtype=object)
            ht = np.array([math.nan if t is None else float(t) for _, _, t, _ in held])
            hkpi = np.array([list(kv) for _, _, _, kv in held], dtype=np.float64).reshape(
                len(held), n
            )
            parts = np.full(len(held), int(d.get("partition", -1)), dtype=np.int64)
            joined = self.join.add_labels(hk, hv, ht, hkpi, parts)
            if joined.rows:
                idx = joined.label_index
                revised += self._file_labels(joined, hv[idx], hkpi[idx])
        return revised

    # -- checkpoint ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        meta, arrays = self.join.snapshot()
        return {
            "format": SNAPSHOT_FORMAT,
            "join": meta,
            "join_arrays": base64.b64encode(arrays).decode(),
            "panes": [[s, p, st.to_dict()] for (s, p), st in self.panes.items()],
            "closed_to": self.closed_to,
            "reports": [
                [s, p, None if r is None else orjson.loads(r.to_json())]
                for (s, p), r in self.reports.items()
            ],
            "dirty": [[s, p] for s, p in sorted(self.dirty)],
            "sent": [[s, p, info] for (s, p), info in self.sent.items()],
            "invalid_labels": self.invalid_labels,
        }

    def restore(self, d: dict[str, Any]) -> None:
        """Resume from ``snapshot()``; all or nothing (a bad snapshot raises and leaves
        this tracker as it was)."""
        if d.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"performance state format {d.get('format')!r} is not supported")
        join = LabelJoin(
            self.join.width,
            horizon=self.join.horizon,
            wait=self.join.wait,
            max_pending=self.join.max_pending,
            max_labels=self.join.max_labels,
            kpi_names=self.join.kpi_names,
        )
        join.restore(d["join"], base64.b64decode(d["join_arrays"]))
        panes = {
            (str(s), int(p)): PerformanceState.from_dict(self.ref, st) for s, p, st in d["panes"]
        }
        closed_to = {str(k): int(v) for k, v in d["closed_to"].items()}
        reports = {
            (str(s), int(p)): None if r is None else WindowReport.from_dict(r)
            for s, p, r in d["reports"]
        }
        dirty = {(str(s), int(p)) for s, p in d["dirty"]}
        sent = {(str(s), int(p)): list(info) for s, p, info in d.get("sent", [])}
        self.join, self.panes, self.closed_to = join, panes, closed_to
        self.reports, self.dirty, self.sent = reports, dirty, sent
        self.invalid_labels = int(d.get("invalid_labels", 0))


def _groups(segment: np.ndarray, pane: np.ndarray) -> Iterator[tuple[tuple[str, int], np.ndarray]]:
    """Row indices grouped by (segment, pane)."""
    if not len(pane):
        return
    seg_codes, seg_names = _factorize(segment)
    order = np.lexsort((pane, seg_codes))
    s, p = seg_codes[order], np.asarray(pane)[order]
    cut = np.flatnonzero((s[1:] != s[:-1]) | (p[1:] != p[:-1])) + 1
    for a, b in zip(np.r_[0, cut], np.r_[cut, len(order)], strict=True):
        yield (seg_names[int(s[a])], int(p[a])), order[a:b]


def _per_partition(segment: np.ndarray, partition: np.ndarray) -> np.ndarray:
    """Each row's (version, partition) segment name."""
    codes, names = _factorize(segment)
    combined = codes * (1 << 32) + np.asarray(partition, dtype=np.int64)
    uniq, inverse = np.unique(combined, return_inverse=True)
    labels = np.array(
        [f"{names[u >> 32]}{PARTITION_SEP}{u & 0xFFFFFFFF}" for u in uniq.tolist()], dtype=object
    )
    return labels[inverse.reshape(-1)]


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    names: dict[str, int] = {}
    codes = np.array([names.setdefault(str(v), len(names)) for v in values.tolist()])
    return codes.astype(np.int64), list(names)


def _floats(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    return np.array(
        [
            float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
            for v in arr.tolist()
        ]
    )
