"""Closed windows whose evaluation raised, kept on disk until a retry succeeds.

A window leaves the window state when it closes, and the next checkpoint commits the
offsets past its records. If its evaluation then raises, the window would be gone: so
before anything else its sketch is written under ``<state.dir>/failed-windows/`` (one
``.sketch`` file and a ``.json`` file with its bounds and the error's type), and the agent
retries it later (after 5 s, 30 s, 2 min by default), also after a restart. A retry that
succeeds publishes the window's report as usual and deletes the files; after the last
attempt the files stay, marked ``given_up``, for an operator to inspect or to re-render
(``WindowSketch.from_bytes``). The error's message is not written (it may quote data).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from detectors.profile import Profile
from detectors.sketch import WindowSketch
from monitor.runtime.durable import write_durably
from monitor.runtime.panes import ClosedWindow

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_SECONDS: tuple[float, ...] = (5.0, 30.0, 120.0)
# At most this many windows are kept on disk; the oldest given-up ones go first.
DEFAULT_MAX_KEPT = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class FailedWindow:
    """One window waiting for a retry (or given up), and where its files are."""

    window: ClosedWindow
    attempts: int
    next_attempt: float | None  # None: given up
    error: str  # the exception's type name
    stem: Path

    @property
    def given_up(self) -> bool:
        return self.next_attempt is None


def _stem(directory: Path, w: ClosedWindow) -> Path:
    """A file name per window, without dots (``with_suffix`` adds the extension): the
    version made safe plus a hash of it (two versions cannot share a name), the bounds in
    milliseconds."""
    version = _UNSAFE.sub("_", w.model_version)[:48]
    digest = hashlib.sha256(w.model_version.encode()).hexdigest()[:8]
    bounds = f"{round(w.start * 1000)}-{round(w.end * 1000)}"
    return directory / f"{version}-{digest}-{w.kind}-{bounds}"


class FailedWindows:
    """The failed windows of one agent: kept, retried with back-off, given up."""

    def __init__(
        self,
        directory: Path,
        profile: Profile,
        backoff: Sequence[float] = DEFAULT_BACKOFF_SECONDS,
        max_kept: int = DEFAULT_MAX_KEPT,
    ) -> None:
        self.directory = directory
        self.profile = profile
        self.backoff = tuple(backoff)
        self.max_kept = max_kept
        self.windows: dict[Path, FailedWindow] = {}

    # -- recording ---------------------------------------------------------------------------

    def keep(self, closed: Sequence[ClosedWindow], error: BaseException, now: float) -> int:
        """Record a failed attempt of each window; returns how many were given up now."""
        given_up = 0
        for w in closed:
            stem = _stem(self.directory, w)
            entry = self.windows.get(stem)
            attempts = 1 if entry is None else entry.attempts + 1
            retry_in = self.backoff[attempts - 1] if attempts <= len(self.backoff) else None
            entry = FailedWindow(
                window=w,
                attempts=attempts,
                next_attempt=None if retry_in is None else now + retry_in,
                error=type(error).__name__,
                stem=stem,
            )
            self.windows[stem] = entry
            given_up += entry.given_up
            self._write(entry)
        self._trim()
        return given_up

    def succeeded(self, w: ClosedWindow) -> None:
        """A retry produced the window's report: forget it."""
        stem = _stem(self.directory, w)
        self.windows.pop(stem, None)
        for suffix in (".sketch", ".json"):
            stem.with_suffix(suffix).unlink(missing_ok=True)

    def due(self, now: float) -> list[ClosedWindow]:
        """Windows whose next attempt has come (each handed out once per attempt)."""
        out = []
        for entry in self.windows.values():
            if entry.next_attempt is not None and entry.next_attempt <= now:
                entry.next_attempt = None  # in flight; keep() or succeeded() settles it
                out.append(entry.window)
        return out

    @property
    def pending(self) -> int:
        return sum(not e.given_up for e in self.windows.values())

    # -- disk --------------------------------------------------------------------------------

    def _write(self, entry: FailedWindow) -> None:
        w = entry.window
        meta = {
            "reference": self.profile.content_hash,
            "model_version": w.model_version,
            "kind": w.kind,
            "start": w.start,
            "end": w.end,
            "rows": w.rows,
            "late": w.late,
            "duplicates": w.duplicates,
            "attempts": entry.attempts,
            "error": entry.error,
            "given_up": entry.given_up,
            "updated_at": time.time(),
        }
        # the window's performance state (sums and a bounded sample), so a retry after a
        # restart still reports its performance block
        state = w.performance
        if state is not None and hasattr(state, "to_dict"):
            meta["performance"] = state.to_dict()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            sketch_path = entry.stem.with_suffix(".sketch")
            if not sketch_path.exists():
                write_durably(sketch_path, w.sketch.to_bytes())
            write_durably(entry.stem.with_suffix(".json"), orjson.dumps(meta))
        except OSError as exc:
            log.error("failed window not kept in %s: %s", self.directory, exc.strerror)

    def _trim(self) -> None:
        if len(self.windows) <= self.max_kept:
            return
        # Given-up windows first, oldest first; pending ones only if nothing else is left.
        order = sorted(self.windows.values(), key=lambda e: (not e.given_up, e.window.end))
        for entry in order[: len(self.windows) - self.max_kept]:
            self.windows.pop(entry.stem, None)
            for suffix in (".sketch", ".json"):
                entry.stem.with_suffix(suffix).unlink(missing_ok=True)

    def load(self, now: float) -> int:
        """Windows a previous run kept and had not given up on: retried from ``now``.

        Files of another reference or that cannot be read are left where they are."""
        if not self.directory.is_dir():
            return 0
        loaded = 0
        for meta_path in sorted(self.directory.glob("*.json")):
            try:
                meta = orjson.loads(meta_path.read_bytes())
                if meta.get("reference") != self.profile.content_hash or meta.get("given_up"):
                    continue
                sketch = WindowSketch.from_bytes(
                    self.profile, meta_path.with_suffix(".sketch").read_bytes()
                )
                window = ClosedWindow(
                    model_version=str(meta["model_version"]),
                    start=float(meta["start"]),
                    end=float(meta["end"]),
                    sketch=sketch,
                    rows=int(meta["rows"]),
                    late=int(meta["late"]),
                    duplicates=int(meta["duplicates"]),
                    traceparents=[],
                    kind="rows" if meta["kind"] == "rows" else "time",
                )
                if meta.get("performance") is not None and self.profile.performance is not None:
                    from detectors.performance import PerformanceState

                    window.performance = PerformanceState.from_dict(
                        self.profile.performance, meta["performance"]
                    )
                attempts = int(meta["attempts"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("failed window %s not loaded: %s", meta_path.name, exc)
                continue
            stem = meta_path.with_suffix("")
            self.windows[stem] = FailedWindow(window, attempts, now, str(meta["error"]), stem)
            loaded += 1
        return loaded
