"""False alarms and power of one window judged alone: driftline's defaults against fixed
thresholds, on the same windows.

27 columns of mixed shapes (8 normal, 4 Student t₃, 4 lognormal(1.2), 3 Poisson(1.5), 3
integers 0..4, 5 categorical with 100 Zipf-distributed categories) and a 200 000-row
reference. On windows of unchanged data of 1k, 10k and 100k rows it counts the windows in
which any column was flagged:

* ``driftline``: the defaults (``window_false_alarm_rate`` 1%: a Holm family of KS and
  chi-square p-values up to 1000 rows, Wasserstein / Jensen–Shannon confidence intervals
  against their margins above);
* ``fixed``: the same statistics judged one column at a time with fixed thresholds, as
  before the family-wise defaults (p < 0.05; Wasserstein and Jensen–Shannon ≥ 0.1).

Then the power: every numeric column moved by 0.1 (and 0.02) reference standard deviations
in 100k-row windows, the share of (window, column) pairs flagged by each rule. Last,
1000-row windows against a reference of only 1000 rows (every test exact).

Run: ``python3 -m bench.verdicts_bench`` (``--quick``: fewer windows). Prints tables and
writes their markdown to ``bench/results/verdicts.md`` (not committed).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from detectors.evaluate import evaluate_window
from detectors.profile import Profile, build_profile
from detectors.results import TestResult
from detectors.schema import Schema
from detectors.sketch import WindowSketch

CATEGORIES = np.array([f"c{i:03d}" for i in range(100)], dtype=object)
ZIPF = (1.0 / np.arange(1, 101)) / (1.0 / np.arange(1, 101)).sum()
SHAPES = (
    [("normal", i) for i in range(8)]
    + [("t3", i) for i in range(4)]
    + [("lognormal", i) for i in range(4)]
    + [("poisson", i) for i in range(3)]
    + [("int5", i) for i in range(3)]
)
NUMERIC = [f"{kind}_{i}" for kind, i in SHAPES]
CATEGORICAL = [f"zipf_{i}" for i in range(5)]
FIXED = {"ks": 0.05, "chi_square": 0.05, "wasserstein": 0.1, "jensen_shannon": 0.1}


def generate(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for kind, i in SHAPES:
        name = f"{kind}_{i}"
        if kind == "normal":
            out[name] = rng.normal(i, 1.0 + i, n)
        elif kind == "t3":
            out[name] = rng.standard_t(3, n)
        elif kind == "lognormal":
            out[name] = rng.lognormal(0.0, 1.2, n)
        elif kind == "poisson":
            out[name] = rng.poisson(1.5, n).astype(np.float64)
        else:
            out[name] = rng.integers(0, 5, n).astype(np.float64)
    for name in CATEGORICAL:
        out[name] = CATEGORIES[rng.choice(100, n, p=ZIPF)]
    return out


def fixed_flag(col: TestResult) -> bool:
    """The column's verdict under fixed per-column thresholds."""
    if col.p_value is not None:
        return col.p_value < FIXED[col.test]
    return bool(col.statistic >= FIXED[col.test])


def judge(profile: Profile, data: dict[str, np.ndarray]) -> list[TestResult]:
    sketch = WindowSketch(profile)
    sketch.update(data)
    features, _, _ = evaluate_window(profile, sketch)
    return list(features.columns)


def upper(hits: int, trials: int) -> float:
    """One-sided 95% upper confidence bound of a binomial rate (Clopper–Pearson)."""
    return 1.0 if hits >= trials else float(stats.beta.ppf(0.95, hits + 1, trials - hits))


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def share(hits: int, trials: int) -> str:
    return f"{hits} of {trials} ({pct(hits / trials)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows")
    parser.add_argument("--out", default="bench/results/verdicts.md")
    args = parser.parse_args()
    scale = 4 if args.quick else 1
    windows = {1000: 2000 // scale, 10_000: 1000 // scale, 100_000: 200 // scale}
    power_windows = 100 // scale
    small_windows = 500 // scale

    rng = np.random.default_rng(20_261_204)
    started = time.perf_counter()
    reference = pd.DataFrame(generate(rng, 200_000))
    profile = build_profile(reference, Schema.build(numeric=NUMERIC, categorical=CATEGORICAL))
    lines = [
        f"machine: {platform.machine()}, {platform.python_version()}; "
        f"reference 200 000 rows, {len(NUMERIC) + len(CATEGORICAL)} columns",
        "",
        "### Unchanged data: windows with any column flagged",
        "",
        "| window rows | windows | tests | driftline (defaults) | 95% upper bound | fixed "
        "thresholds | columns flagged, driftline / fixed | ratio fixed / driftline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rows, count in windows.items():
        ours = theirs = cols_ours = cols_theirs = 0
        tests: set[str] = set()
        for _ in range(count):
            columns = judge(profile, generate(rng, rows))
            tests |= {c.test for c in columns}
            flags = [c.drifted for c in columns]
            fixed = [fixed_flag(c) for c in columns]
            ours += any(flags)
            theirs += any(fixed)
            cols_ours += sum(flags)
            cols_theirs += sum(fixed)
        ratio = "∞" if ours == 0 and theirs else (f"{theirs / ours:.0f}×" if ours else "—")
        lines.append(
            f"| {rows:,} | {count} | {', '.join(sorted(tests))} | {share(ours, count)} "
            f"| {pct(upper(ours, count))} | {share(theirs, count)} "
            f"| {cols_ours} / {cols_theirs} | {ratio} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "### Power at 100 000 rows: every numeric column moved by δ standard deviations",
        "",
        "| δ (std) | windows × columns | driftline flagged | fixed 0.1 flagged "
        "| driftline median `low` … `high` | median statistic |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for shift in (0.1, 0.02):
        ours = theirs = total = 0
        lows, highs, statistics = [], [], []
        for _ in range(power_windows):
            data = generate(rng, 100_000)
            for name in NUMERIC:
                data[name] = data[name] + shift * profile.numeric[name].std
            for col in judge(profile, data):
                if col.feature not in profile.numeric:
                    continue
                total += 1
                ours += col.drifted
                theirs += fixed_flag(col)
                assert col.effect is not None
                lows.append(col.effect.low)
                highs.append(col.effect.high)
                statistics.append(col.statistic)
        lines.append(
            f"| {shift} | {total} | {share(ours, total)} | {share(theirs, total)} "
            f"| {np.median(lows):.4f} … {np.median(highs):.4f} | {np.median(statistics):.4f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "### 1000-row windows against a 1000-row reference (27 columns)",
        "",
        "| windows | driftline (Holm at 1%) | each column at p < 0.05 | columns flagged per "
        "window, driftline / per column |",
        "| --- | --- | --- | --- |",
    ]
    small = build_profile(
        pd.DataFrame(generate(rng, 1000)), Schema.build(numeric=NUMERIC, categorical=CATEGORICAL)
    )
    count = small_windows
    ours = theirs = cols_ours = cols_theirs = 0
    for _ in range(count):
        columns = judge(small, generate(rng, 1000))
        flags = [c.drifted for c in columns]
        fixed = [fixed_flag(c) for c in columns]
        ours += any(flags)
        theirs += any(fixed)
        cols_ours += sum(flags)
        cols_theirs += sum(fixed)
    lines.append(
        f"| {count} | {share(ours, count)} | {share(theirs, count)} "
        f"| {cols_ours / count:.3f} / {cols_theirs / count:.2f} |"
    )
    print(lines[-1], flush=True)
    lines += ["", f"total {time.perf_counter() - started:.0f} s"]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
