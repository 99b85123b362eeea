"""False alarms and detection delay on streams: driftline's sequential detectors against
river's ADWIN, PageHinkley and KSWIN, in the same run, on the same generated events.

Streams (one column each, generated here with fixed seeds):

* ``normal``: N(0, 1);
* ``heavy``: Student t with 3 degrees of freedom, scaled to unit variance;
* ``ties``: N(0, 1.5) rounded to integers (about 9 distinct values);
* ``categorical``: 20 categories with Zipf shares.

Changes, at a known event after ``--before`` unchanged events: a mean shift of 0.1, 0.25
and 0.5 standard deviations and a variance change (×1.5 standard deviation) on each
numeric stream; a new category taking 5% of the events on the categorical stream.

driftline runs with its defaults: a profile of a 50 000-event reference sample of the
same distribution (``reference build``: bins, calibration of the sequential detectors at
the window size used), windows of ``--window`` events (``windows.rows``) and the default
``drift.sequential`` settings (an expected run of 1e8 rows between false alarms per
column). Each window's counts are binned as the sketch bins them and fed to the same
``SequentialDetector`` the agent runs. river's detectors run with their defaults on the
raw values (categorical: each event's category code, its frequency rank in the
reference; a new category gets the next code).

Measured:

* false alarms per 1M unchanged events: ``--events`` events per stream (KSWIN, which
  runs a KS test per event at about 1 ms, on ``--kswin-events`` and scaled to 1M);
* ADWIN's own expected run between false alarms, from ``--adwin-events`` unchanged
  events per stream, and driftline's delay when configured to that same rate
  (``expected_run_rows``): the comparison at an equal false-alarm rate;
* detection delay: ``--reps`` streams per change (KSWIN: ``--kswin-reps``), delay = the
  number of changed events seen when the detector first fires after the change, median
  and 90th percentile, and how many of the streams it found within ``--after`` events;
  alarms before the change are counted as false starts.

Run: ``nice python3 -m bench.stream_bench`` (river is in the ``bench`` extra); prints
the tables and writes their markdown to ``bench/results/stream.md``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.profile import Profile, build_profile
from detectors.sequential import SequentialDetector, SequentialSettings
from detectors.sequential_calibration import calibrate_sequential

DEFAULT_EXPECTED_RUN_ROWS = 100_000_000
ZIPF = (1 / np.arange(1, 21)) / (1 / np.arange(1, 21)).sum()
STREAMS = ("normal", "heavy", "ties", "categorical")
NUMERIC_CHANGES = ("shift 0.1", "shift 0.25", "shift 0.5", "variance x1.5")


def draw(stream: str, rng: np.random.Generator, n: int, change: str | None = None) -> np.ndarray:
    """``n`` events of ``stream``, unchanged or after ``change``."""
    shift = float(change.split()[1]) if change and change.startswith("shift") else 0.0
    scale = 1.5 if change == "variance x1.5" else 1.0
    if stream == "normal":
        return rng.normal(size=n) * scale + shift
    if stream == "heavy":
        return rng.standard_t(3, size=n) / math.sqrt(3.0) * scale + shift
    if stream == "ties":
        return np.round(rng.normal(0.0, 1.5, size=n) * scale + 1.5 * shift)
    codes = rng.choice(20, p=ZIPF, size=n)
    if change == "new category":
        codes = np.where(rng.random(n) < 0.05, 20, codes)
    return codes


def changes(stream: str) -> tuple[str, ...]:
    return ("new category",) if stream == "categorical" else NUMERIC_CHANGES


class Driftline:
    """driftline's sequential detector for one column, fed window by window."""

    def __init__(
        self,
        stream: str,
        window: int,
        seed: int,
        expected_run_rows: float = DEFAULT_EXPECTED_RUN_ROWS,
    ) -> None:
        ref = draw(stream, np.random.default_rng(seed), 50_000)
        frame = pd.DataFrame({"x": _as_column(stream, ref)})
        profile = build_profile(frame)
        profile = profile.with_sequential(calibrate_sequential(profile, frame, pane_rows=window))
        self.profile: Profile = profile
        self.window = window
        settings = SequentialSettings(expected_run_windows=expected_run_rows / window)
        assert profile.sequential is not None
        self.detector = SequentialDetector(profile, profile.sequential, settings)
        self.categorical = stream == "categorical"

    def alarms(self, values: np.ndarray) -> list[int]:
        """Event indices (0-based, the last event of the window) where it fired."""
        p, w = self.profile, self.window
        windows = len(values) // w
        pane = np.repeat(np.arange(windows), w)
        x = values[: windows * w]
        if self.categorical:
            width = p.categorical_width
            vocab = {v: i for i, v in enumerate(p.categorical["x"].vocabulary)}
            slot = np.array([vocab.get(f"c{int(v)}", width - 1) for v in x])
            counts = np.bincount(pane * width + slot, minlength=windows * width)
            cat = counts.reshape(windows, 1, width)
            num = np.zeros((windows, 0, p.numeric_width), dtype=np.int64)
        else:
            width = p.numeric_width
            slot = np.searchsorted(p.numeric["x"].edges, x, side="left")
            counts = np.bincount(pane * width + slot, minlength=windows * width)
            num = counts.reshape(windows, 1, width)
            cat = np.zeros((windows, 0, p.categorical_width), dtype=np.int64)
        state = self.detector.new_state()
        out = []
        for i in range(windows):
            step = self.detector.update_counts(state, num[i], cat[i], at=float((i + 1) * w - 1))
            if step.columns["x"].fired:
                out.append((i + 1) * w - 1)
        return out


def _as_column(stream: str, values: np.ndarray) -> np.ndarray:
    if stream == "categorical":
        return np.array([f"c{int(v)}" for v in values], dtype=object)
    return values


def river_alarms(make: Callable[[], object], values: np.ndarray) -> list[int]:
    detector = make()
    out = []
    for i, v in enumerate(values.tolist()):
        detector.update(v)  # type: ignore[attr-defined]
        if detector.drift_detected:  # type: ignore[attr-defined]
            out.append(i)
    return out


def river_detectors() -> dict[str, Callable[[], object]]:
    from river import drift

    return {
        "ADWIN": drift.ADWIN,
        "PageHinkley": drift.PageHinkley,
        "KSWIN": lambda: drift.KSWIN(seed=0),
    }


@dataclass
class Delay:
    delays: list[int]
    found: int
    reps: int
    false_starts: int

    def cell(self) -> str:
        if not self.delays:
            return f"none found (0/{self.reps})"
        med = int(np.median(self.delays))
        p90 = int(np.percentile(self.delays, 90))
        return f"{med} / {p90} ({self.found}/{self.reps})"


def measure_delay(
    alarms_of: Callable[[np.ndarray], list[int]],
    stream: str,
    change: str,
    reps: int,
    before: int,
    after: int,
    seed: int,
) -> Delay:
    rng = np.random.default_rng(seed)
    delays: list[int] = []
    false_starts = 0
    for _ in range(reps):
        x = np.concatenate([draw(stream, rng, before), draw(stream, rng, after, change)])
        alarms = alarms_of(x)
        false_starts += sum(a < before for a in alarms)
        post = [a for a in alarms if a >= before]
        if post:
            delays.append(post[0] - before + 1)
    return Delay(delays, len(delays), reps, false_starts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=int, default=25, help="driftline window rows")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kswin-events", type=int, default=50_000)
    parser.add_argument("--adwin-events", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--kswin-reps", type=int, default=3)
    parser.add_argument("--before", type=int, default=10_000)
    parser.add_argument("--after", type=int, default=20_000)
    parser.add_argument("--streams", default=",".join(STREAMS))
    parser.add_argument("--skip", default="", help="comma-separated detectors to leave out")
    parser.add_argument("--out", default="bench/results/stream.md")
    args = parser.parse_args(argv)
    streams = [s for s in args.streams.split(",") if s]
    skip = {s for s in args.skip.split(",") if s}
    rivers = {k: v for k, v in river_detectors().items() if k not in skip}
    names = ["driftline", *rivers]
    matched = "ADWIN" in rivers and args.adwin_events > 0
    columns = [*names, "driftline at ADWIN's rate"] if matched else names
    started = time.time()
    adwin_rows = []

    fa_rows = []
    delay_rows: dict[tuple[str, str], dict[str, str]] = {}
    for s_i, stream in enumerate(streams):
        ours = Driftline(stream, args.window, seed=1000 + s_i)
        fa: dict[str, str] = {}
        for name in names:
            n = args.kswin_events if name == "KSWIN" else args.events
            x = draw(stream, np.random.default_rng(2000 + s_i), n)
            alarms = ours.alarms(x) if name == "driftline" else river_alarms(rivers[name], x)
            per_million = len(alarms) * 1_000_000 / n
            fa[name] = f"{len(alarms)} in {n:,} ({per_million:,.1f} per 1M)"
            print(f"[{time.time() - started:7.0f}s] {stream} unchanged {name}: {fa[name]}")
        fa_rows.append((stream, fa))
        same_rate = None
        if matched:
            x = draw(stream, np.random.default_rng(4000 + s_i), args.adwin_events)
            found = len(river_alarms(rivers["ADWIN"], x))
            arl = args.adwin_events / max(found, 1)
            adwin_rows.append((stream, found, arl))
            print(
                f"[{time.time() - started:7.0f}s] {stream} ADWIN: {found} in {args.adwin_events:,}"
            )
            same_rate = Driftline(stream, args.window, seed=1000 + s_i, expected_run_rows=arl)
        for c_i, change in enumerate(changes(stream)):
            cells: dict[str, str] = {}
            for name in columns:
                reps = args.kswin_reps if name == "KSWIN" else args.reps
                seed = 3000 + 10 * s_i + c_i
                fn: Callable[[np.ndarray], list[int]]
                if name == "driftline":
                    fn = ours.alarms
                elif name == "driftline at ADWIN's rate":
                    assert same_rate is not None
                    fn = same_rate.alarms
                else:
                    fn = partial(river_alarms, rivers[name])

                d = measure_delay(fn, stream, change, reps, args.before, args.after, seed)
                cells[name] = d.cell() + (f", {d.false_starts} early" if d.false_starts else "")
                print(f"[{time.time() - started:7.0f}s] {stream} {change} {name}: {cells[name]}")
            delay_rows[(stream, change)] = cells

    lines = [
        f"driftline windows of {args.window} rows; {args.events:,} unchanged events per "
        f"stream (KSWIN {args.kswin_events:,}); delays over {args.reps} streams per change "
        f"(KSWIN {args.kswin_reps}), change after {args.before:,} events, "
        f"up to {args.after:,} changed events.",
        "",
        "False alarms on unchanged streams:",
        "",
        "| stream | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for stream, fa in fa_rows:
        lines.append(f"| {stream} | " + " | ".join(fa[n] for n in names) + " |")
    if adwin_rows:
        lines += [
            "",
            "ADWIN's own false-alarm rate (what the last column of the delays matches):",
            "",
            "| stream | ADWIN false alarms | events | expected run between them |",
            "| --- | --- | --- | --- |",
        ]
        for stream, found, arl in adwin_rows:
            run = f"{arl:,.0f}" if found else f"more than {arl:,.0f}"
            lines.append(f"| {stream} | {found} | {args.adwin_events:,} | {run} |")
    lines += [
        "",
        "Detection delay in events, median / 90th percentile (found / streams):",
        "",
        "| stream | change | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for (stream, change), cells in delay_rows.items():
        lines.append(f"| {stream} | {change} | " + " | ".join(cells[n] for n in columns) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} in {time.time() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
