"""Speed, memory and agreement of driftline's statistical core against two baselines.

On the same generated traffic (``bench.data``: 20 numeric features of varied shapes, 5
categorical, a model score) and a 100k-row reference, each method judges windows of 10k,
100k and 1M rows:

* ``driftline``: sketch update in 100k-row batches (as the agent feeds it) plus
  ``evaluate_window`` with default settings; the profile is built once, untimed here and
  reported on its own;
* ``scipy KS/chi2``: what a straightforward tool does, a per-column loop on the raw arrays
  (``ks_2samp`` for numeric columns, ``chi2_contingency`` on value counts for categorical
  ones, drifted when p < 0.05), holding the whole window in memory;
* ``scipy W/JS``: the same loop with Evidently's large-data effect sizes (Wasserstein
  distance over the reference std >= 0.1, Jensen-Shannon distance >= 0.1), to show that
  the p-value loop's verdicts on large windows come from the test, not the code;
* ``Evidently``: ``Report([DataDriftPreset()])`` on the same pandas frames with the column
  types given (needs the ``bench`` extra).

Each method runs in a fresh subprocess so its peak memory is its own. Run it as
``python3 -m bench.detectors_bench`` (``--quick`` for 10k and 100k only); it prints rich
tables and writes their markdown to ``bench/results/detectors.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import data

SIZES_FULL = (10_000, 100_000, 1_000_000)
SIZES_QUICK = (10_000, 100_000)
BATCH_ROWS = 100_000
# Windows up to this size get every scenario (the agreement table); larger ones only the
# no-drift window (false alarms at scale) and the timing.
AGREEMENT_MAX_ROWS = 100_000
METHODS = ("driftline", "scipy_ks", "scipy_wjs", "evidently")
METHOD_TITLES = {
    "driftline": "driftline",
    "scipy_ks": "scipy KS/chi2 loop",
    "scipy_wjs": "scipy W/JS loop",
    "evidently": "Evidently",
}
P_VALUE = 0.05
DISTANCE = 0.1
DEFAULT_BUDGET_S = 600.0
RESULTS = Path(__file__).resolve().parent / "results" / "detectors.md"

SHORT: dict[str, str] = {
    **{name: f"n{i + 1:02d}" for i, name in enumerate(data.NUMERIC)},
    **{name: f"c{i + 1}" for i, name in enumerate(data.CATEGORICAL)},
    data.PREDICTION: "pred",
}


def repeats_for(rows: int) -> int:
    """Best of 3 for small windows, a single run for the 1M-row window."""
    return 3 if rows <= 100_000 else 1


def window_seed(rows: int, scenario: str) -> int:
    return 10_007 * (list(data.SCENARIOS).index(scenario) + 1) + rows


# -- the methods ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one method concluded about one window, and what it cost."""

    flags: list[str]
    tests: dict[str, str]
    quality: list[str] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


Arrays = Mapping[str, np.ndarray]


class Method:
    """A drift checker under test: ``prepare`` sees the reference once (untimed), ``run``
    judges one window (timed)."""

    def prepare(self, reference: pd.DataFrame) -> dict[str, float]:
        raise NotImplementedError

    def run(self, frame: pd.DataFrame, arrays: Arrays) -> Outcome:
        raise NotImplementedError


class Driftline(Method):
    def prepare(self, reference: pd.DataFrame) -> dict[str, float]:
        from detectors.profile import build_profile

        t0 = time.perf_counter()
        self.profile = build_profile(reference, schema=data.schema())
        return {"profile_seconds": time.perf_counter() - t0}

    def run(self, frame: pd.DataFrame, arrays: Arrays) -> Outcome:
        from detectors.evaluate import evaluate_window
        from detectors.sketch import WindowSketch

        t0 = time.perf_counter()
        sketch = WindowSketch(self.profile, seed=0)
        rows = len(frame)
        for start in range(0, rows, BATCH_ROWS):
            sketch.update({k: v[start : start + BATCH_ROWS] for k, v in arrays.items()})
        t1 = time.perf_counter()
        features, predictions, quality = evaluate_window(self.profile, sketch)
        t2 = time.perf_counter()
        results = (*features.columns, *predictions.columns)
        return Outcome(
            flags=[r.feature for r in results if r.drifted],
            tests={r.feature: f"{r.test} ({r.mode})" for r in results},
            quality=[f"{c.feature}:{c.check}" for c in quality.breaches],
            extra={
                "update_seconds": t1 - t0,
                "evaluate_seconds": t2 - t1,
                "sketch_bytes": float(sketch_nbytes(sketch)),
            },
        )


def sketch_nbytes(sketch: Any) -> int:
    """Bytes held by a sketch's arrays (the reservoir's text cells count as pointers)."""
    total = sum(getattr(sketch, name).nbytes for name in sketch._ARRAYS)
    return int(total + sketch.res_categorical.nbytes)


class ScipyLoop(Method):
    """One scipy call per column on the raw window; reference cleaning is done once in
    ``prepare`` (which favours this baseline)."""

    def __init__(self, effect_size: bool) -> None:
        self.effect_size = effect_size

    def prepare(self, reference: pd.DataFrame) -> dict[str, float]:
        self.numeric = [*data.NUMERIC, data.PREDICTION]
        self.ref_num = {}
        self.ref_std = {}
        for name in self.numeric:
            x = reference[name].to_numpy(np.float64)
            self.ref_num[name] = x[~np.isnan(x)]
            self.ref_std[name] = float(np.std(self.ref_num[name], ddof=1))
        self.ref_cat = {n: reference[n].dropna().value_counts() for n in data.CATEGORICAL}
        return {}

    def run(self, frame: pd.DataFrame, arrays: Arrays) -> Outcome:
        from scipy.spatial.distance import jensenshannon
        from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

        flags: list[str] = []
        tests: dict[str, str] = {}
        for name in self.numeric:
            x = arrays[name]
            x = x[~np.isnan(x)]
            if self.effect_size:
                score = wasserstein_distance(self.ref_num[name], x) / self.ref_std[name]
                drifted, tests[name] = score >= DISTANCE, "wasserstein / std"
            else:
                drifted, tests[name] = ks_2samp(self.ref_num[name], x).pvalue < P_VALUE, "ks_2samp"
            if drifted:
                flags.append(name)
        for name in data.CATEGORICAL:
            ref = self.ref_cat[name]
            cur = pd.Series(arrays[name]).value_counts()
            table = pd.concat([ref, cur], axis=1).fillna(0).to_numpy(np.float64).T
            if self.effect_size:
                p = table / table.sum(axis=1, keepdims=True)
                drifted, tests[name] = jensenshannon(p[0], p[1]) >= DISTANCE, "jensen_shannon"
            else:
                pvalue = chi2_contingency(table).pvalue
                drifted, tests[name] = pvalue < P_VALUE, "chi2_contingency"
            if drifted:
                flags.append(name)
        return Outcome(flags=flags, tests=tests)


class Evidently(Method):
    """Evidently's DataDriftPreset with the column types given; the reference Dataset is
    built once in ``prepare`` and reading results from the snapshot is not timed."""

    def prepare(self, reference: pd.DataFrame) -> dict[str, float]:
        from evidently import DataDefinition, Dataset

        self.definition = DataDefinition(
            numerical_columns=[*data.NUMERIC, data.PREDICTION],
            categorical_columns=list(data.CATEGORICAL),
        )
        self.reference = Dataset.from_pandas(reference, data_definition=self.definition)
        return {}

    def run(self, frame: pd.DataFrame, arrays: Arrays) -> Outcome:
        from evidently import Dataset, Report
        from evidently.presets import DataDriftPreset

        t0 = time.perf_counter()
        current = Dataset.from_pandas(frame, data_definition=self.definition)
        snapshot = Report([DataDriftPreset()], include_tests=True).run(current, self.reference)
        seconds = time.perf_counter() - t0
        flags, tests = evidently_columns(snapshot.dict())
        return Outcome(flags=flags, tests=tests, extra={"timed_seconds": seconds})


def evidently_columns(snapshot: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Flagged columns (their ValueDrift test failed) and the method chosen per column."""
    tests: dict[str, str] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            tests[config["column"]] = str(config.get("method"))
    flags = []
    for test in snapshot["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and test["status"] == "FAIL":
            flags.append(params["column"])
    return flags, tests


def make_method(name: str) -> Method:
    factories: dict[str, Callable[[], Method]] = {
        "driftline": Driftline,
        "scipy_ks": lambda: ScipyLoop(effect_size=False),
        "scipy_wjs": lambda: ScipyLoop(effect_size=True),
        "evidently": Evidently,
    }
    return factories[name]()


# -- memory -----------------------------------------------------------------------------


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


@contextlib.contextmanager
def peak_rss() -> Iterator[dict[str, Any]]:
    """Peak resident memory above the starting point while the block runs.

    Frees what it can first (gc, malloc_trim), resets the kernel's high-water mark
    (``/proc/self/clear_refs``), then reads ``VmHWM`` at the end: native allocations count,
    unlike tracemalloc. Where the reset is refused it falls back to ``ru_maxrss``, which
    cannot see below an earlier peak.
    """
    import resource

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    out: dict[str, Any] = {}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    if reset:
        out["how"] = "VmHWM after clear_refs"
        start = _status_kib("VmRSS")
        yield out
        out["peak_bytes"] = (_status_kib("VmHWM") - start) * 1024
    else:
        out["how"] = "ru_maxrss delta"
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        yield out
        out["peak_bytes"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) * 1024


# -- the worker (one method, one window size, in its own process) -----------------------


def worker(method_name: str, rows: int, repeats: int, scenarios: Sequence[str]) -> None:
    """Run one method on one window size; one JSON line per result on stdout."""

    def emit(record: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    method = make_method(method_name)
    reference = data.reference()
    setup = method.prepare(reference)
    # Warm-up: lazy imports, caches, first-call costs stay out of the figures.
    warm = data.window(2_000, "no_drift", seed=99)
    method.run(warm, arrays_of(warm))
    emit({"kind": "setup", **setup})
    for scenario in scenarios:
        frame = data.window(rows, scenario, seed=window_seed(rows, scenario))
        arrays = arrays_of(frame)
        n = repeats if scenario == "no_drift" else 1
        seconds: list[float] = []
        memory: dict[str, Any] = {}
        outcome: Outcome | None = None
        for i in range(n):
            measure: contextlib.AbstractContextManager[dict[str, Any]] = (
                peak_rss() if i == 0 else contextlib.nullcontext({})
            )
            with measure as mem:
                t0 = time.perf_counter()
                attempt = method.run(frame, arrays)
                elapsed = time.perf_counter() - t0
            if i == 0:
                memory = mem
            seconds.append(attempt.extra.get("timed_seconds", elapsed))
            if seconds[-1] == min(seconds):
                outcome = attempt  # the breakdown shown is the fastest run's
        assert outcome is not None
        emit(
            {
                "kind": "run",
                "scenario": scenario,
                "rows": rows,
                "seconds": seconds,
                "window_bytes": sum(a.nbytes for a in arrays.values()),
                "peak_bytes": memory.get("peak_bytes"),
                "memory_how": memory.get("how"),
                "flags": outcome.flags,
                "tests": outcome.tests,
                "quality": outcome.quality,
                "extra": outcome.extra,
            }
        )
        del frame, arrays


def arrays_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columnar numpy arrays, the form the agent's decoder hands the sketch."""
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def cprofile(method_name: str, rows: int) -> None:
    """Where one method's time goes on a no-drift window (top functions by own time)."""
    import cProfile
    import pstats

    method = make_method(method_name)
    method.prepare(data.reference())
    warm = data.window(2_000, "no_drift", seed=99)
    method.run(warm, arrays_of(warm))
    frame = data.window(rows, "no_drift", seed=window_seed(rows, "no_drift"))
    arrays = arrays_of(frame)
    prof = cProfile.Profile()
    prof.enable()
    method.run(frame, arrays)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


# -- the parent: run workers, collect, render -------------------------------------------


@dataclass
class Cell:
    """One method at one window size: its setup line and its runs by scenario."""

    method: str
    rows: int
    setup: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    over_budget: list[str] = field(default_factory=list)
    error: str | None = None


def run_worker(method: str, rows: int, scenarios: Sequence[str], budget_s: float) -> Cell:
    """Start a worker and collect its lines; a line that takes longer than ``budget_s``
    stops the worker and marks what is left as over budget."""
    cell = Cell(method, rows)
    cmd = [
        sys.executable,
        "-m",
        "bench.detectors_bench",
        "--worker",
        method,
        str(rows),
        "--repeats",
        str(repeats_for(rows)),
        "--scenarios",
        ",".join(scenarios),
    ]
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            cmd, cwd=root, stdout=subprocess.PIPE, stderr=errors, text=True, bufsize=1
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        pending = list(scenarios)
        while True:
            try:
                line = lines.get(timeout=budget_s)
            except queue.Empty:
                proc.kill()
                proc.wait()
                cell.over_budget = pending
                return cell
            if line is None:
                break
            record = json.loads(line)
            if record.pop("kind") == "setup":
                cell.setup = record
            else:
                cell.runs[record["scenario"]] = record
                pending.remove(record["scenario"])
        proc.wait()
        if proc.returncode != 0:
            errors.seek(0)
            last = errors.read().strip().splitlines()[-1:]
            cell.error = last[0] if last else f"exit status {proc.returncode}"
    return cell


@dataclass
class TableData:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    if b < 1024**2:
        return f"{b / 1024:.0f} KiB"
    return f"{b / 1024**2:.0f} MiB"


def best(cell: Cell | None) -> float | None:
    if cell is None or "no_drift" not in cell.runs:
        return None
    return min(cell.runs["no_drift"]["seconds"])


def speed_table(cells: dict[tuple[str, int], Cell], sizes: Sequence[int], budget_s: float):
    rows: list[list[str]] = []
    for size in sizes:
        base = best(cells.get(("driftline", size)))
        for method in METHODS:
            cell = cells.get((method, size))
            if cell is None:
                continue
            run = cell.runs.get("no_drift")
            if run is None:
                why = f"> budget ({budget_s:.0f} s)" if cell.over_budget else (cell.error or "—")
                rows.append([f"{size:,}", METHOD_TITLES[method], why, "—", "—", "—", "—"])
                continue
            t = min(run["seconds"])
            ratio = "1×" if method == "driftline" else (f"{t / base:.1f}×" if base else "—")
            held = f"{fmt_bytes(run['window_bytes'])} (whole window)"
            detail = ""
            if method == "driftline":
                batch = run["window_bytes"] * min(1.0, BATCH_ROWS / size)
                held = f"{fmt_bytes(batch)} (one batch)"
                e = run["extra"]
                detail = (
                    f"update {fmt_seconds(e['update_seconds'])} + tests "
                    f"{fmt_seconds(e['evaluate_seconds'])}; sketch {fmt_bytes(e['sketch_bytes'])}"
                )
            rows.append(
                [
                    f"{size:,}",
                    METHOD_TITLES[method],
                    f"{fmt_seconds(t)} (best of {len(run['seconds'])})",
                    ratio,
                    fmt_bytes(run["peak_bytes"]),
                    held,
                    detail,
                ]
            )
    how = next(
        (c.runs["no_drift"]["memory_how"] for c in cells.values() if "no_drift" in c.runs), "?"
    )
    notes = [
        "Time: wall clock of one no-drift window against the 100k-row reference; the "
        "ratio is the method's time over driftline's at the same size, measured in this run.",
        f"Peak RSS: resident memory above what the process held before the run ({how}), "
        "each method in a fresh subprocess holding the reference and the window.",
        "Input resident: the window's own arrays (8 bytes a cell; text cells as pointers), "
        "not in the peak RSS column. The scipy loop and Evidently take the whole window at "
        f"once; the agent hands driftline's sketch {BATCH_ROWS:,}-row batches as they arrive.",
        "Sketch: bytes held by the window sketch's arrays after the window (histograms, "
        "counts and the 1,024-row reservoir).",
    ]
    return TableData(
        "Speed and memory (no-drift window)",
        [
            "window rows",
            "method",
            "time",
            "× driftline",
            "peak RSS",
            "input resident",
            "driftline detail",
        ],
        rows,
        notes,
    )


def judge(flags: Sequence[str], expected: frozenset[str]) -> str:
    """'hits/expected' plus the columns missed and the columns flagged without cause."""
    got = set(flags)
    missed = sorted(expected - got, key=list(SHORT).index)
    extra = sorted(got - expected, key=list(SHORT).index)
    head = f"{len(expected & got)}/{len(expected)}" if expected else "0 flagged"
    if not expected and extra:
        head = f"{len(extra)} flagged"
    parts = [head + (" ✓" if not missed and not extra else "")]
    if missed:
        parts.append("missed " + " ".join(SHORT[c] for c in missed))
    if extra:
        parts.append("extra " + " ".join(SHORT[c] for c in extra))
    return "; ".join(parts)


def quality_cell(breaches: Sequence[str], expected: frozenset[str]) -> str:
    if not breaches:
        return "none" + (" ✓" if not expected else f" (missed {len(expected)})")
    by_check: dict[str, list[str]] = {}
    for b in breaches:
        column, check = b.split(":")
        by_check.setdefault(check, []).append(SHORT.get(column, column))
    return "; ".join(f"{check}: {' '.join(cols)}" for check, cols in sorted(by_check.items()))


def agreement_table(cells: dict[tuple[str, int], Cell], size: int, budget_s: float) -> TableData:
    scenarios = [s for s in data.SCENARIOS if any(s in c.runs for c in cells.values())]
    methods = [m for m in METHODS if (m, size) in cells]
    headers = ["scenario", "truly drifted"]
    for m in methods:
        headers.append(METHOD_TITLES[m])
        if m == "driftline":
            headers.append("driftline quality")
    rows = []
    for name in scenarios:
        sc = data.SCENARIOS[name]
        if not any(name in cells[(m, size)].runs for m in methods):
            continue
        truth = " ".join(SHORT[c] for c in SHORT if c in sc.drift) or "none"
        row = [name, truth]
        for m in methods:
            cell = cells[(m, size)]
            run = cell.runs.get(name)
            if run is None:
                row.append(f"> budget ({budget_s:.0f} s)" if name in cell.over_budget else "—")
            else:
                row.append(judge(run["flags"], sc.drift))
            if m == "driftline":
                row.append(quality_cell(run["quality"], sc.quality) if run else "—")
        rows.append(row)
    notes = [
        "Each cell: columns flagged among the truly drifted ones (hits/expected), then the "
        "truly drifted columns a method missed and the columns it flagged without cause.",
        "driftline quality: its data-quality breaches (a rate above the reference rate + "
        "threshold), by check; the drift columns count only drift tests.",
    ]
    return TableData(f"Agreement at {size:,} rows", headers, rows, notes)


def tests_table(cells: dict[tuple[str, int], Cell], sizes: Sequence[int]) -> TableData:
    """Which test each method ran on each column of the no-drift window (sizes that chose
    the same tests share a row)."""
    rows = []
    for m in METHODS:
        seen: dict[str, list[int]] = {}
        for size in sizes:
            cell = cells.get((m, size))
            if cell is None or "no_drift" not in cell.runs:
                continue
            by_test: dict[str, list[str]] = {}
            for column, test in cell.runs["no_drift"]["tests"].items():
                by_test.setdefault(test, []).append(SHORT[column])
            text = "; ".join(f"{t}: {len(c)} ({' '.join(c)})" for t, c in by_test.items())
            seen.setdefault(text, []).append(size)
        for text, at in seen.items():
            rows.append([METHOD_TITLES[m], ", ".join(f"{s:,}" for s in at), text])
    return TableData(
        "Test chosen per column (no-drift window)", ["method", "window rows", "tests"], rows
    )


def legend_table() -> TableData:
    rows = [[SHORT[c], c] for c in data.COLUMNS]
    half = (len(rows) + 1) // 2
    paired = [rows[i] + (rows[i + half] if i + half < len(rows) else ["", ""]) for i in range(half)]
    scen = [f"{s.name}: {s.description}" for s in data.SCENARIOS.values()]
    return TableData("Columns", ["id", "column", "id", "column"], paired, scen)


def targets_table(cells: dict[tuple[str, int], Cell], sizes: Sequence[int]) -> TableData:
    rows: list[list[str]] = []
    d100 = best(cells.get(("driftline", 100_000)))

    def speed(method: str, factor: float) -> None:
        other = best(cells.get((method, 100_000)))
        label = f"100k rows: ≥ {factor:.0f}× faster than {METHOD_TITLES[method]}"
        cell = cells.get((method, 100_000))
        if d100 is None or cell is None:
            rows.append([label, "not measured", "—"])
        elif other is None:
            met = "yes (baseline over budget)" if cell.over_budget else "—"
            rows.append([label, "baseline did not finish", met])
        else:
            ratio = other / d100
            rows.append([label, f"{ratio:.1f}×", "yes" if ratio >= factor else "NO"])

    speed("evidently", 20)
    speed("scipy_ks", 5)
    sk = {
        s: cells[("driftline", s)].runs["no_drift"]["extra"]["sketch_bytes"]
        for s in sizes
        if ("driftline", s) in cells and "no_drift" in cells[("driftline", s)].runs
    }
    if len(sk) >= 2:
        flat = max(sk.values()) == min(sk.values())
        shown = ", ".join(f"{s:,}: {fmt_bytes(b)}" for s, b in sk.items())
        rows.append(["sketch memory flat in window size", shown, "yes" if flat else "NO"])
    big = cells.get(("driftline", 1_000_000))
    label = "no false alarms on no-drift data at 1M rows"
    if big is None or "no_drift" not in big.runs:
        rows.append([label, "not measured (1M not in --sizes)", "—"])
    else:
        run = big.runs["no_drift"]
        got = len(run["flags"]) + len(run["quality"])
        rows.append(
            [label, f"{len(run['flags'])} drift, {len(run['quality'])} quality flags", _yn(not got)]
        )
    small = cells.get(("driftline", 10_000))
    label = "0.25-std shift found in every affected column at 10k rows"
    if small is None or "shift_0.25" not in small.runs:
        rows.append([label, "not measured", "—"])
    else:
        expected = data.SCENARIOS["shift_0.25"].drift
        hits = expected & set(small.runs["shift_0.25"]["flags"])
        rows.append([label, f"{len(hits)}/{len(expected)} columns", _yn(hits == expected)])
    return TableData("Targets", ["target", "measured", "met"], rows)


def _yn(ok: bool) -> str:
    return "yes" if ok else "NO"


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import scipy

    versions = {"numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__}
    try:
        import evidently

        versions["evidently"] = evidently.__version__
    except ImportError:
        versions["evidently"] = "not installed"
    return {
        "cpu": f"{model}, {len(os.sched_getaffinity(0))} cores available",
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def to_markdown(table: TableData) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = [f"#### {table.title}", ""]
    out.append("| " + " | ".join(esc(h) for h in table.headers) + " |")
    out.append("|" + "|".join(" --- " for _ in table.headers) + "|")
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        out.append("")
        out += [f"- {n}" for n in table.notes]
    return "\n".join(out) + "\n"


def print_rich(table: TableData) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(160, Console().width))
    t = Table(title=table.title, show_lines=True, title_justify="left")
    for h in table.headers:
        t.add_column(h, overflow="fold")
    for row in table.rows:
        t.add_row(*row)
    console.print(t)
    for n in table.notes:
        console.print(f"  [dim]{n}[/dim]")
    console.print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.detectors_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows only")
    parser.add_argument("--sizes", help="comma-separated window sizes (default 10k,100k,1M)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="seconds one window may take a method before it is reported as over budget",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown output file")
    parser.add_argument(
        "--cprofile",
        nargs=2,
        metavar=("METHOD", "ROWS"),
        help="profile one method on one no-drift window and print where the time goes",
    )
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", default="no_drift", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.repeats, args.scenarios.split(","))
        return 0
    if args.cprofile:
        cprofile(args.cprofile[0], int(args.cprofile[1]))
        return 0

    if args.sizes:
        sizes = tuple(int(float(s)) for s in args.sizes.split(","))
    else:
        sizes = SIZES_QUICK if args.quick else SIZES_FULL
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")

    info = machine()
    load_before = os.getloadavg()
    started = time.perf_counter()
    cells: dict[tuple[str, int], Cell] = {}
    for size in sizes:
        scenarios = list(data.SCENARIOS) if size <= AGREEMENT_MAX_ROWS else ["no_drift"]
        for method in methods:
            t0 = time.perf_counter()
            cell = run_worker(method, size, scenarios, args.budget)
            cells[(method, size)] = cell
            status = cell.error or ("over budget" if cell.over_budget else "ok")
            print(
                f"{METHOD_TITLES[method]:>20} {size:>9,} rows: {status} "
                f"({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
            )
    elapsed = time.perf_counter() - started

    profile_s = next(
        (c.setup["profile_seconds"] for c in cells.values() if "profile_seconds" in c.setup), None
    )
    tables = [speed_table(cells, sizes, args.budget), targets_table(cells, sizes)]
    tables += [
        agreement_table(cells, s, args.budget) for s in sizes if any(k[1] == s for k in cells)
    ]
    tables += [tests_table(cells, sizes), legend_table()]
    command = "python3 -m bench.detectors_bench" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    header = [
        f"- command: `{command}`",
        f"- machine: {info['cpu']}; Python {info['python']}; {info['versions']}",
        f"- date: {info['date']}; whole run {elapsed:.0f} s; load average before "
        f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (the cores are shared)",
        f"- reference: {data.REFERENCE_ROWS:,} rows; driftline profile build "
        f"{fmt_seconds(profile_s)} (once per reference, not in the window times)",
        f"- driftline feeds the sketch in batches of {BATCH_ROWS:,} rows; best of 3 runs for "
        "windows up to 100k rows, 1 run at 1M",
    ]
    for t in tables:
        print_rich(t)
    for line in header:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(header) + "\n\n" + "\n".join(to_markdown(t) for t in tables)
    args.out.write_text(body)
    raw = {
        "header": header,
        "cells": [
            {
                "method": c.method,
                "rows": c.rows,
                "setup": c.setup,
                "runs": c.runs,
                "over_budget": c.over_budget,
                "error": c.error,
            }
            for c in cells.values()
        ],
    }
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print(f"\nmarkdown written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
