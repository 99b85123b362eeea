"""The join of labels to predictions by request id, in bounded state.

A prediction waits here for its label — only what the metrics need of it: its row key,
segment (model version), pane (window), event time and scores, about 40 bytes plus a
dict entry (about 200 bytes in all per pending prediction, measured) — until the label
comes, or its event time falls ``horizon`` behind the newest prediction's (``expired``), or
``max_pending`` newer predictions push it out (``evicted``). A label whose prediction
has not been seen yet waits ``wait`` seconds of prediction event time (or, without a
time, until the end of a replay), at most ``max_labels`` of them, then counts as
``no_prediction``. A second label for a request already joined, within the horizon, is
a ``duplicate`` (at most ``max_pending`` joined ids are remembered). Nothing of the raw
records is kept.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OUTCOMES = ("joined", "duplicate", "no_prediction")
UNLABELED = ("expired", "evicted")


@dataclass
class Joined:
    """Labelled predictions: where each prediction went and what it said, with its label
    (raw value, index into the label batch) and the label's KPI values."""

    segment: np.ndarray  # object: segment names
    pane: np.ndarray
    scores: np.ndarray
    keys: np.ndarray
    label_index: np.ndarray  # into the label batch, or -1 for a held label
    held_labels: list[Any] = field(default_factory=list)  # label values, label_index == -1
    held_kpis: list[tuple[float, ...]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.keys)


class LabelJoin:
    """Pending predictions and labels; see the module docstring."""

    def __init__(
        self,
        width: int,
        *,
        horizon: float,
        wait: float,
        max_pending: int,
        max_labels: int,
        kpi_names: tuple[str, ...] = (),
    ) -> None:
        self.width = width
        self.horizon = float(horizon)
        self.wait = float(wait)
        self.max_pending = int(max_pending)
        self.max_labels = int(max_labels)
        self.kpi_names = kpi_names
        self.segments: list[str] = []
        self._seg_code: dict[str, int] = {}
        self._index: dict[int, int] = {}  # row key -> slot
        cap = 1024
        self._key = np.zeros(cap, dtype=np.uint64)
        self._seg = np.zeros(cap, dtype=np.int32)
        self._pane = np.zeros(cap, dtype=np.int64)
        self._time = np.zeros(cap)
        self._scores = np.zeros((cap, width))
        self._alive = np.zeros(cap, dtype=bool)
        self._used = 0
        self._oldest = 0  # slots before this are all dead
        # labels waiting for their prediction: key -> (label, label time, kpi values)
        self._held: dict[int, tuple[Any, float, tuple[float, ...]]] = {}
        # the labels topic's partition of a held label, when known (it moves with the
        # prediction partition of the same number: docs/agent.md "Scaling out")
        self._held_partition: dict[int, int] = {}
        # requests joined within the horizon: key -> prediction event time
        self._joined: dict[int, float] = {}
        self.watermark = -math.inf
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES + UNLABELED, 0)
        self.pending_by_pane: dict[tuple[str, int], int] = {}

    # -- predictions -----------------------------------------------------------------------

    def add_predictions(
        self,
        keys: np.ndarray,
        segment: np.ndarray,
        pane: np.ndarray,
        time: np.ndarray,
        scores: np.ndarray,
    ) -> Joined:
        """File accepted predictions; those whose label is already here join at once."""
        keys = np.asarray(keys, dtype=np.uint64)
        if len(keys) == 0:
            return self._empty()
        t = np.asarray(time, dtype=np.float64)
        finite = t[np.isfinite(t)]
        if len(finite):
            self.watermark = max(self.watermark, float(finite.max()))
        seg = np.array([self._code(s) for s in segment.tolist()], dtype=np.int32)
        key_list = keys.tolist()
        held = np.array([k in self._held for k in key_list], dtype=bool)
        out = self._empty()
        if held.any():
            idx = np.flatnonzero(held)
            labels, kpis = [], []
            for i in idx.tolist():
                label, _, kv = self._held.pop(key_list[i])
                self._held_partition.pop(key_list[i], None)
                labels.append(label)
                kpis.append(kv)
                self._joined[key_list[i]] = float(t[i])
            self.counts["joined"] += len(idx)
            self._bound_joined()
            out = Joined(
                np.asarray(segment, dtype=object)[idx],
                np.asarray(pane)[idx],
                scores[idx],
                keys[idx],
                np.full(len(idx), -1, dtype=np.int64),
                labels,
                kpis,
            )
        rest = np.flatnonzero(~held)
        if len(rest):
            self._insert(keys[rest], seg[rest], np.asarray(pane)[rest], t[rest], scores[rest])
        return out

    def _insert(self, keys, seg, pane, t, scores) -> None:
        n = len(keys)
        self._reserve(n)
        a, b = self._used, self._used + n
        self._key[a:b], self._seg[a:b], self._pane[a:b] = keys, seg, pane
        self._time[a:b], self._scores[a:b], self._alive[a:b] = t, scores, True
        for k, slot in zip(keys.tolist(), range(a, b), strict=True):
            old = self._index.get(k)
            if old is not None:  # the same request again: keep the newer one
                self._kill(np.array([old]))
            self._index[k] = slot
        self._used = b
        self._count_panes(seg, pane, +1)
        over = len(self._index) - self.max_pending
        if over > 0:
            alive = np.flatnonzero(self._alive[self._oldest : self._used])[:over] + self._oldest
            self._kill(alive)
            self.counts["evicted"] += len(alive)

    def _reserve(self, n: int) -> None:
        live = self._used - self._oldest
        if self._used + n <= len(self._key):
            return
        if self._oldest > 0 and live + n <= len(self._key) // 2:
            self._compact()
            return
        cap = max(2 * len(self._key), self._used + n)
        for name in ("_key", "_seg", "_pane", "_time", "_scores", "_alive"):
            arr = getattr(self, name)
            grown = np.zeros((cap, *arr.shape[1:]), dtype=arr.dtype)
            grown[: self._used] = arr[: self._used]
            setattr(self, name, grown)

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: self._used])
        n = len(keep)
        for name in ("_key", "_seg", "_pane", "_time", "_scores", "_alive"):
            arr = getattr(self, name)
            arr[:n] = arr[keep]
        self._alive[n:] = False
        self._used, self._oldest = n, 0
        self._index = dict(zip(self._key[:n].tolist(), range(n), strict=True))

    def _kill(self, slots: np.ndarray) -> None:
        if not len(slots):
            return
        self._alive[slots] = False
        for k in self._key[slots].tolist():
            self._index.pop(k, None)
        self._count_panes(self._seg[slots], self._pane[slots], -1)
        while self._oldest < self._used and not self._alive[self._oldest]:
            self._oldest += 1

    def _count_panes(self, seg: np.ndarray, pane: np.ndarray, sign: int) -> None:
        pairs, counts = np.unique(np.column_stack([seg, pane]), axis=0, return_counts=True)
        for (s, p), c in zip(pairs.tolist(), counts.tolist(), strict=True):
            key = (self.segments[s], p)
            left = self.pending_by_pane.get(key, 0) + sign * c
            if left > 0:
                self.pending_by_pane[key] = left
            else:
                self.pending_by_pane.pop(key, None)

    # -- labels ----------------------------------------------------------------------------

    def add_labels(
        self,
        keys: np.ndarray,
        labels: np.ndarray,
        time: np.ndarray,
        kpis: np.ndarray,
        partition: np.ndarray | None = None,
    ) -> Joined:
        """Join labels (``kpis``: rows × KPI names; ``partition``: each one's labels
        topic partition, if known); the unmatched ones are held."""
        keys = np.asarray(keys, dtype=np.uint64)
        slots = np.array([self._index.get(k, -1) for k in keys.tolist()], dtype=np.int64)
        # a request labelled twice in one batch: the first label wins
        _, first = np.unique(keys, return_index=True)
        repeat = np.ones(len(keys), dtype=bool)
        repeat[first] = False
        slots[repeat] = -1
        hit = np.flatnonzero(slots >= 0)
        s = slots[hit]
        out = Joined(
            np.array([self.segments[c] for c in self._seg[s].tolist()], dtype=object),
            self._pane[s].copy(),
            self._scores[s].copy(),
            keys[hit],
            hit,
        )
        for k, tp in zip(keys[hit].tolist(), self._time[s].tolist(), strict=True):
            self._joined[k] = tp
        self._bound_joined()
        self._kill(s)
        self.counts["joined"] += len(hit)
        for i in np.flatnonzero(slots < 0).tolist():
            k = int(keys[i])
            if repeat[i] or k in self._joined or k in self._held:
                self.counts["duplicate"] += 1
                continue
            self._held[k] = (labels[i], float(time[i]), tuple(kpis[i].tolist()))
            if partition is not None:
                self._held_partition[k] = int(partition[i])
        over = len(self._held) - self.max_labels
        if over > 0:
            for k in list(self._held)[:over]:
                del self._held[k]
            self.counts["no_prediction"] += over
        self._prune_held_partition()
        return out

    def _prune_held_partition(self) -> None:
        if len(self._held_partition) > 2 * len(self._held) + 1024:
            self._held_partition = {
                k: p for k, p in self._held_partition.items() if k in self._held
            }

    def held_of(self, partition: int, *, remove: bool = False) -> list[list[Any]]:
        """The held labels of a labels topic partition, as ``[key, label, time, kpis]``
        (JSON-able), for ``add_labels`` elsewhere; ``remove`` drops them here."""
        keys = [k for k, p in self._held_partition.items() if p == partition and k in self._held]
        out = []
        for k in keys:
            v, t, kv = self._held[k]
            out.append([str(k), _jsonable(v), t if math.isfinite(t) else None, list(kv)])
            if remove:
                del self._held[k]
                del self._held_partition[k]
        return out

    def _bound_joined(self) -> None:
        """Remember at most ``max_pending`` joined ids (the oldest go first); a duplicate of
        a forgotten one then waits as a label and counts as ``no_prediction``."""
        over = len(self._joined) - self.max_pending
        if over > 0:
            for k in list(itertools.islice(self._joined, over)):
                del self._joined[k]

    # -- expiry ----------------------------------------------------------------------------

    def expire(self) -> None:
        """Drop predictions past the horizon, joined ids past it, labels past ``wait``."""
        if not math.isfinite(self.watermark):
            return
        cutoff = self.watermark - self.horizon
        live = np.flatnonzero(self._alive[self._oldest : self._used]) + self._oldest
        old = live[self._time[live] < cutoff]
        if len(old):
            self._kill(old)
            self.counts["expired"] += len(old)
        if self._joined:
            self._joined = {k: t for k, t in self._joined.items() if not t < cutoff}
        label_cutoff = self.watermark - self.wait
        stale = [k for k, (_, t, _) in self._held.items() if t < label_cutoff]
        for k in stale:
            del self._held[k]
        self.counts["no_prediction"] += len(stale)
        self._prune_held_partition()

    def finish(self) -> None:
        """End of input (replay): every label still waiting has no prediction."""
        self.counts["no_prediction"] += len(self._held)
        self._held.clear()
        self._held_partition.clear()

    @property
    def pending_predictions(self) -> int:
        return len(self._index)

    @property
    def pending_labels(self) -> int:
        return len(self._held)

    def _code(self, segment: str) -> int:
        code = self._seg_code.get(segment)
        if code is None:
            code = self._seg_code[segment] = len(self.segments)
            self.segments.append(segment)
        return code

    def _empty(self) -> Joined:
        return Joined(
            np.empty(0, dtype=object),
            np.empty(0, dtype=np.int64),
            np.empty((0, self.width)),
            np.empty(0, dtype=np.uint64),
            np.empty(0, dtype=np.int64),
        )

    def pending_of(
        self, segments: set[str], *, remove: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The pending predictions of ``segments`` (keys, segment names, panes, event
        times, scores), for ``add_predictions`` elsewhere: a source partition's moving
        to another agent. ``remove`` drops them here (not counted as expired)."""
        codes = [self._seg_code[s] for s in segments if s in self._seg_code]
        live = np.flatnonzero(self._alive[: self._used])
        mine = live[np.isin(self._seg[live], codes)]
        names = np.array([self.segments[c] for c in self._seg[mine].tolist()], dtype=object)
        out = (
            self._key[mine].copy(),
            names,
            self._pane[mine].copy(),
            self._time[mine].copy(),
            self._scores[mine].copy(),
        )
        if remove:
            self._kill(mine)
        return out

    # -- checkpoint ------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, Any], bytes]:
        """JSON-able metadata and the pending predictions' arrays (``.npz`` bytes)."""
        live = np.flatnonzero(self._alive[: self._used])
        buf = io.BytesIO()
        np.savez(
            buf,
            key=self._key[live],
            seg=self._seg[live],
            pane=self._pane[live],
            time=self._time[live],
            scores=self._scores[live],
        )
        meta = {
            "segments": self.segments,
            "watermark": self.watermark if math.isfinite(self.watermark) else None,
            "counts": self.counts,
            "held": [
                [str(k), _jsonable(v), t if math.isfinite(t) else None, list(kv)]
                for k, (v, t, kv) in self._held.items()
            ],
            "joined": [[str(k), t] for k, t in self._joined.items()],
            "held_partition": [
                [str(k), p] for k, p in self._held_partition.items() if k in self._held
            ],
        }
        return meta, buf.getvalue()

    def restore(self, meta: dict[str, Any], arrays: bytes) -> None:
        data = np.load(io.BytesIO(arrays), allow_pickle=False)
        self.segments = [str(s) for s in meta["segments"]]
        self._seg_code = {s: i for i, s in enumerate(self.segments)}
        wm = meta["watermark"]
        self.watermark = -math.inf if wm is None else float(wm)
        self.counts = {k: int(meta["counts"].get(k, 0)) for k in OUTCOMES + UNLABELED}
        self._held = {
            int(k): (v, math.nan if t is None else float(t), tuple(float(x) for x in kv))
            for k, v, t, kv in meta["held"]
        }
        self._joined = {int(k): float(t) for k, t in meta["joined"]}
        self._held_partition = {int(k): int(p) for k, p in meta.get("held_partition", [])}
        self._used = self._oldest = 0
        self._index.clear()
        self.pending_by_pane.clear()
        if len(data["key"]):
            self._insert(data["key"], data["seg"], data["pane"], data["time"], data["scores"])


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
