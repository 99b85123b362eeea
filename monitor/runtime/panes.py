"""What windows are made of: panes (a sketch and its counters), the windows they close
into, and the per-version counting helpers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import numpy as np

from detectors.missing import is_missing, pandas_singletons
from detectors.sketch import WindowSketch

WindowKind: TypeAlias = Literal["time", "rows"]

UNKNOWN_VERSION = "unknown"


MAX_TRACEPARENTS = 8


@dataclass
class ClosedWindow:
    """A finished window: its bounds, its merged sketch and what was set aside."""

    model_version: str
    start: float
    end: float  # exclusive for time windows; the last row's event time for row windows
    sketch: WindowSketch
    rows: int
    late: int
    duplicates: int
    traceparents: list[str]
    kind: WindowKind
    # The window's merged performance state (detectors.performance.PerformanceState), set
    # by the performance tracker when the profile has learnt from labels; else None.
    performance: object | None = None
    # Source partition -> [first offset, last offset, rows] of the rows in the window:
    # what a partial of this window covers (docs/agent.md, "Scaling out").
    offsets: dict[int, list[int]] = field(default_factory=dict)
    # The source partition of a window kept per partition (monitor/runtime/partitioned.py).
    partition: int | None = None


@dataclass
class AddResult:
    """What one ``add`` did: windows it closed and rows it set aside, per model version."""

    closed: list[ClosedWindow] = field(default_factory=list)
    late: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    # Per row of the batch: the pane (time windows) or window ordinal (row windows) it
    # went to, -1 when it was late or a duplicate; and its segment. The performance
    # tracker files each accepted prediction under the same window this way.
    pane: np.ndarray | None = None
    segment: np.ndarray | None = None
    # Per row: its source partition, when windows are kept per partition (partitioned.py);
    # the tracker then keeps each partition's performance state apart, for its partials.
    partition: np.ndarray | None = None


@dataclass
class _Pane:
    sketch: WindowSketch
    rows: int = 0
    t_min: float = math.inf
    t_max: float = -math.inf
    traceparents: list[str] = field(default_factory=list)
    duplicates: int = 0  # row windows: duplicates that arrived while it was being filled
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition -> [lo, hi, rows]

    def cover(self, partition: np.ndarray, offset: np.ndarray) -> None:
        """Widen the offset range of each partition these rows came from."""
        if len(partition) == 1 or (partition[0] == partition).all():
            _widen(self.offsets, int(partition[0]), offset)
            return
        for p in np.unique(partition).tolist():
            _widen(self.offsets, int(p), offset[partition == p])


def _widen(ranges: dict[int, list[int]], p: int, offset: np.ndarray) -> None:
    lo, hi = int(offset.min()), int(offset.max())
    r = ranges.get(p)
    if r is None:
        ranges[p] = [lo, hi, len(offset)]
    else:
        r[0], r[1], r[2] = min(r[0], lo), max(r[1], hi), r[2] + len(offset)


def merge_offsets(parts: Iterable[dict[int, list[int]]]) -> dict[int, list[int]]:
    """The offset ranges of several panes (or windows) together."""
    out: dict[int, list[int]] = {}
    for ranges in parts:
        for p, (lo, hi, n) in ranges.items():
            r = out.get(p)
            if r is None:
                out[p] = [lo, hi, n]
            else:
                r[0], r[1], r[2] = min(r[0], lo), max(r[1], hi), r[2] + n
    return out


def _factorize_versions(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Distinct model versions (missing ones as "unknown") and each row's code.

    Codes as ``pandas.factorize`` gives them (first occurrence first, missing values -1),
    without pandas (docs/architecture.md, "Imports on the agent's path").
    """
    items = np.asarray(values, dtype=object).ravel().tolist()
    singletons = pandas_singletons()
    lookup: dict[object, int] = {}
    names: list[str] = []
    for v in dict.fromkeys(items):
        if is_missing(v, singletons):
            lookup[v] = -1
        else:
            lookup[v] = len(names)
            names.append(str(v))
    if len(lookup) == 1:  # one version in the whole batch, the usual case
        codes = np.full(len(items), next(iter(lookup.values())), dtype=np.intp)
    else:
        codes = np.fromiter(map(lookup.__getitem__, items), dtype=np.intp, count=len(items))
    if (codes < 0).any():
        if UNKNOWN_VERSION in names:
            codes = np.where(codes < 0, names.index(UNKNOWN_VERSION), codes)
        else:
            codes = np.where(codes < 0, len(names), codes)
            names.append(UNKNOWN_VERSION)
    return names, codes.astype(np.intp)


def _count_by(names: list[str], codes: np.ndarray) -> dict[str, int]:
    if not len(codes):
        return {}
    counts = np.bincount(codes, minlength=len(names))
    return {names[i]: int(counts[i]) for i in np.flatnonzero(counts).tolist()}


def _add_counts(total: dict[str, int], more: dict[str, int]) -> None:
    for name, count in more.items():
        total[name] = total.get(name, 0) + count


def _first_traceparents(lists: Iterable[list[str]]) -> list[str]:
    out: list[str] = []
    for ids in lists:
        for tid in ids:
            if tid not in out:
                out.append(tid)
                if len(out) >= MAX_TRACEPARENTS:
                    return out
    return out
