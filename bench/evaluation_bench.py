"""What window evaluation costs an agent: start-up, the first window and the steady state.

The agent judges consecutive windows whose row counts differ every time (time windows),
so this bench feeds the real ``WindowEvaluator`` (sequential detectors on) six
consecutive windows of about 10k and about 100k rows each (98,731, 101,204, ... rows;
27 columns of ``bench/data.py``; no drift, then a 0.1-std shift), each run in a fresh
process, and times the evaluator's start-up, its first window and the windows after it.
Two profiles: one from ``build_profile`` alone (nothing simulated ahead: what an
embedded use or an old profile file gets) and one as ``reference build`` writes it
(the sequential calibration and, where the code stores it, the Wasserstein bridge law).

``--baseline COMMIT`` runs the same measurements on the code of ``COMMIT`` checked out
with ``git worktree add`` in a temporary directory, in the same run, and checks that both
give the same statistics, thresholds, intervals and verdicts in every window::

    python3 -m bench.evaluation_bench --baseline HEAD~3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (10_000, 100_000)
# Consecutive windows as an agent sees them: a different row count every time.
FACTORS = (0.98731, 1.01204, 0.99517, 1.00833, 0.97702, 1.02311)

# Runs inside the tree under test (its own modules), so it names only what every version
# of the evaluator has.
WORKER = r"""
import hashlib, json, sys, time
from dataclasses import asdict
from types import SimpleNamespace
from bench import data
from detectors.profile import build_profile
from detectors.sketch import WindowSketch
from detectors.settings import DriftSettings, QualitySettings
from detectors.sequential_calibration import calibrate_sequential
from monitor.config.sequential import SequentialConfig
from monitor.runtime.evaluation import WindowEvaluator
from monitor.runtime.sequential import SequentialMonitor
from monitor.runtime.windows import ClosedWindow

spec = json.loads(sys.argv[1])
profile = build_profile(data.reference(), schema=data.schema())
stored = []
if spec["built"]:
    profile = profile.with_sequential(calibrate_sequential(profile, data.reference()))
    stored.append("sequential")
    if hasattr(profile, "with_bridge_law"):
        from detectors.reference_laws import simulate_bridge_law
        profile = profile.with_bridge_law(simulate_bridge_law(profile))
        stored.append("bridge law")
windows = []
for i, rows in enumerate(spec["rows"]):
    frame = data.window(rows, "no_drift" if i < 3 else "shift_0.1", seed=100 + i)
    sketch = WindowSketch(profile, seed=i)
    sketch.update({c: frame[c].to_numpy() for c in frame.columns})
    windows.append(ClosedWindow("v1", 10.0 * i, 10.0 * (i + 1), sketch, rows, 0, 0, [], "time"))
t0 = time.perf_counter()
seq = SequentialMonitor(profile, SequentialConfig().to_settings(
    SimpleNamespace(size=10.0, slide=None, rows=None)), window_size=10.0)
evaluator = WindowEvaluator(profile, "bench", DriftSettings(), QualitySettings(), sequential=seq)
start_up = time.perf_counter() - t0
seconds, digests = [], []
for w in windows:
    t0 = time.perf_counter()
    report = evaluator.evaluate([w])[0].report
    seconds.append(time.perf_counter() - t0)
    cols = [asdict(c) for c in (*report.drift.columns, *report.prediction_drift.columns)]
    digests.append(hashlib.sha256(json.dumps(cols, sort_keys=True).encode()).hexdigest()[:16])
print(json.dumps({"start_up": start_up, "seconds": seconds, "digests": digests,
                  "stored": stored}))
"""


def measure(tree: Path, built: bool, rows: Sequence[int]) -> dict[str, Any]:
    """One fresh process on the code of ``tree``."""
    spec = json.dumps({"built": built, "rows": list(rows)})
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, spec],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker on {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _ms(s: float) -> str:
    return f"{s * 1e3:,.1f} ms" if s < 1 else f"{s:,.2f} s"


def table(results: dict[tuple[str, str, int], dict[str, Any]]) -> list[str]:
    head = (
        "| code | profile | window rows | start-up | first window | later windows (median) "
        "| µs/record, first | µs/record, later | µs/record, all six |"
    )
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (code, profile, size), r in results.items():
        rows = [round(size * f) for f in FACTORS]
        s = r["seconds"]
        later = statistics.median(s[1:])
        lines.append(
            f"| {code} | {profile} | {rows[0]:,}, {rows[1]:,}, … | {_ms(r['start_up'])} "
            f"| {_ms(s[0])} | {_ms(later)} | {s[0] / rows[0] * 1e6:.2f} "
            f"| {later / statistics.median(rows[1:]) * 1e6:.3f} "
            f"| {sum(s) / sum(rows) * 1e6:.3f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="COMMIT", help="also measure this commit's code")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="window sizes")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    trees: list[tuple[str, Path]] = []
    tmp = None
    if args.baseline:
        tmp = tempfile.mkdtemp(prefix="driftline-baseline-")
        subprocess.run(
            ["git", "worktree", "add", "--detach", tmp, args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        trees.append((f"before ({args.baseline})", Path(tmp)))
    trees.append(("this tree", ROOT))
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    try:
        for size in sizes:
            rows = [round(size * f) for f in FACTORS]
            for built, label in ((False, "build_profile only"), (True, "reference build")):
                for code, tree in trees:
                    r = measure(tree, built, rows)
                    name = label + (f" (stores {', '.join(r['stored'])})" if r["stored"] else "")
                    results[(code, name, size)] = r
                    print(f"{code:>24} {name:>52} {size:>9,}: first {_ms(r['seconds'][0])}",
                          file=sys.stderr)  # fmt: skip
    finally:
        if tmp is not None:
            subprocess.run(["git", "worktree", "remove", "--force", tmp], cwd=ROOT, check=False)
    lines = table(results)
    if args.baseline:
        pairs = [
            (results[a]["digests"], r["digests"])
            for (code, p, s), r in results.items()
            if code == trees[1][0]
            for a in results
            if a[0] == trees[0][0] and a[2] == s and a[1].split(" (")[0] == p.split(" (")[0]
        ]
        same = all(x == y for x, y in pairs)
        lines.append("")
        lines.append(
            "Every window's statistics, thresholds, intervals and verdicts identical before "
            f"and after: {'yes' if same else 'NO'} ({len(pairs)} runs of 6 windows compared)."
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
