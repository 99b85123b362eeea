"""The ``performance`` block of an aggregated window, and its revisions.

Each agent's window partial carries its partition's ``PerformanceState``: exact sums and
a bottom-k sample of labelled rows keyed by the row's hash (``detectors/performance/
state.py``), so the merge of every partition's state is the state one agent reading all
of them would have had (docs/architecture.md, decision 2), and the aggregator evaluates
it with the lone agent's own function (``WindowEvaluator.performance``).

Labels that reach an agent after it sent a window's partial come as a *revision*
partial: that partition's whole state again. Before the window is judged the aggregator
swaps it into the held piece (``MergeState``); after, ``RevisableWindows`` — the judged
windows' per-piece states and reports, kept while a label may still arrive (the join's
horizon, at most ``labels.max_revisable_windows`` windows) — re-evaluates the window and
the report goes out again with ``revised: true``, as a lone agent's does.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import orjson

from detectors.performance import PerformanceReference, PerformanceResult, PerformanceState
from detectors.results import WindowReport
from monitor.ingest.kafka import MAX_REQUEST_BYTES
from monitor.runtime.merging import revision_is_stale
from monitor.runtime.partials import Partial

log = logging.getLogger(__name__)

Bounds = tuple[float, float]
PieceKey = tuple[int, int]  # partition, origin
Evaluate = Callable[..., PerformanceResult]
#: What a partial's sketch and performance state may take of the producer's request
#: limit (the rest is for the header and the record's framing).
PARTIAL_BYTES = MAX_REQUEST_BYTES - 64 * 1024


def performance_bytes(state: object | None, room: int) -> bytes:
    """A window's ``PerformanceState`` as a partial carries it, in at most ``room`` bytes:
    when the whole state does not fit, its sample of labelled rows is cut to the
    bottom-k by row key that does (still a uniform sample; the aggregator then merges
    every partition's at that smaller k), so the partial is sent rather than refused."""
    if not isinstance(state, PerformanceState):
        return b""
    data = state.to_bytes()
    if len(data) <= room:
        return data
    per_row = 8 * (state.sample_scores.shape[1] + 2)
    fixed = len(data) - per_row * len(state.sample_keys)
    size = max(0, (room - fixed) // per_row)
    log.warning(
        "a window's performance state of %d bytes does not fit a partial: its sample of "
        "labelled rows is cut from %d to %d (ROC AUC and PR AUC from fewer rows); lower "
        "labels.sample_size to keep them equal to one agent's",
        len(data),
        len(state.sample_keys),
        size,
    )
    return state.with_sample_size(size).to_bytes()


def merged_performance(
    ref: PerformanceReference | None, pieces: Sequence[Partial]
) -> PerformanceState | None:
    """The merge of the pieces' performance states (one model version's), or None when
    the profile learnt no labels or a piece carries none (an agent of an older release:
    a block from part of the window would misstate coverage and metrics)."""
    if ref is None or not pieces:
        return None
    if any(not p.performance for p in pieces):
        if any(p.performance for p in pieces):
            log.warning(
                "window %s: %d of %d partials carry no performance state; no performance block",
                pieces[0].window,
                sum(not p.performance for p in pieces),
                len(pieces),
            )
        return None
    try:
        states = [PerformanceState.from_bytes(ref, p.performance) for p in pieces]
    except ValueError as exc:  # judged without the block rather than not at all
        log.warning("window %s: unreadable performance state (%s)", pieces[0].window, exc)
        return None
    merged = states[0]
    for s in states[1:]:
        merged = merged.merge(s)
    return merged


class _Piece(NamedTuple):
    """One partition's state in a judged window, and who set it last (its sender or its
    latest reviser: ``revision_is_stale`` weighs a revision against them)."""

    agent: str
    epoch: int
    generation: int
    rows: int  # the window piece's rows
    state: bytes


@dataclass
class _Judged:
    """One judged window of one version: its pieces' states and its latest report."""

    report: WindowReport
    pieces: dict[PieceKey, _Piece] = field(default_factory=dict)


class RevisableWindows:
    """Judged windows whose performance block a revision partial may still change."""

    def __init__(
        self,
        ref: PerformanceReference,
        evaluate: Evaluate,
        *,
        max_windows: int,
        horizon: float,
    ) -> None:
        self.ref = ref
        self.evaluate = evaluate
        self.max_windows = int(max_windows)
        self.horizon = float(horizon)  # event-time seconds a label may still come after
        self.windows: dict[tuple[Bounds, str], _Judged] = {}

    def keep(self, report: WindowReport, pieces: Sequence[Partial]) -> None:
        """A judged report with a performance block, and the pieces it was merged from."""
        if report.performance is None or report.baseline != "reference":
            return
        bounds = (report.window_start, report.window_end)
        judged = _Judged(report)
        for p in pieces:
            if str(p.model_version) == report.model_version and p.partition is not None:
                judged.pieces[(p.partition, p.origin)] = _Piece(
                    p.agent_id, p.epoch, p.generation, p.rows, p.performance
                )
        self.windows[(bounds, report.model_version)] = judged
        self._trim(report.window_end)

    def revise(self, p: Partial) -> tuple[str, WindowReport | None]:
        """Apply a revision partial of a judged window: (outcome, the revised report).
        ``late`` when the window is no longer kept or the piece is not one it was merged
        from; ``stale`` when ``revision_is_stale`` (an older epoch of the agent that set
        the piece's state, or another agent's of an earlier generation or fewer rows: a
        zombie's); ``repeated`` when nothing changed."""
        if p.window is None or p.partition is None:
            return "foreign", None
        judged = self.windows.get((p.window, str(p.model_version)))
        piece = None if judged is None else judged.pieces.get((p.partition, p.origin))
        if judged is None or piece is None:
            return "late", None
        if revision_is_stale(piece.agent, piece.epoch, piece.generation, piece.rows, p):
            return "stale", None
        if piece.state == p.performance:
            return "repeated", None
        judged.pieces[(p.partition, p.origin)] = _Piece(
            p.agent_id, p.epoch, p.generation, piece.rows, p.performance
        )
        states = [PerformanceState.from_bytes(self.ref, x.state) for x in judged.pieces.values()]
        merged = states[0]
        for s in states[1:]:
            merged = merged.merge(s)
        perf = self.evaluate(merged, judged.report.rows, revised=True)
        judged.report = replace(judged.report, performance=perf)
        return "accepted", judged.report

    def _trim(self, newest_end: float) -> None:
        """Forget windows no label can reach any more (their predictions' horizon has
        passed) and, beyond ``max_windows``, the oldest."""
        for key in [k for k in self.windows if k[0][1] < newest_end - self.horizon]:
            del self.windows[key]
        over = len(self.windows) - self.max_windows
        if over > 0:
            for key in sorted(self.windows, key=lambda k: (k[0][1], k[0][0]))[:over]:
                del self.windows[key]

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> list[Any]:
        out: list[Any] = []
        for j in self.windows.values():
            pieces = [
                [part, origin, x.agent, x.epoch, _b64(x.state), x.generation, x.rows]
                for (part, origin), x in j.pieces.items()
            ]
            out.append([orjson.loads(j.report.to_json()), pieces])
        return out

    def restore(self, saved: list[Any]) -> None:
        """Load :meth:`snapshot` (all or nothing: a bad one raises, nothing changes)."""
        windows: dict[tuple[Bounds, str], _Judged] = {}
        for report_dict, pieces in saved:
            report = WindowReport.from_dict(report_dict)
            judged = _Judged(report)
            for part, origin, agent, epoch, b64, *rest in pieces:
                # (an older aggregator's state has no generation and rows: none known)
                generation, rows = (int(rest[0]), int(rest[1])) if rest else (-1, 0)
                judged.pieces[(int(part), int(origin))] = _Piece(
                    str(agent), int(epoch), generation, rows, base64.b64decode(b64)
                )
            windows[((report.window_start, report.window_end), report.model_version)] = judged
        self.windows = windows


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
