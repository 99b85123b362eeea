"""Performance state across agents: what a partial's performance state costs, and how far
the aggregator's merged block is from one agent's on the same rows.

A binary model; each window's labelled rows spread over 4 partitions. Per window size:
the bytes of one partition's state (``PerformanceState.to_bytes``, the partial's
share), CPU to encode it, CPU for the aggregator to decode and merge the 4 states, CPU to
evaluate the block, against the baseline of one agent evaluating its own state of the
same rows; and the largest difference between the two blocks' metrics.

``python3 -m bench.aggregated_performance_bench`` (``--sizes 4000,100000``: labelled rows
per window).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from detectors.performance import PerformanceState, evaluate_performance, learn_performance
from detectors.profile import build_profile
from monitor.ingest.values import row_keys

PARTS = 4
REPEATS = 20


def _rows(n: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    x1, x2 = r.normal(0, 1, n), r.normal(0, 1, n)
    logit = 1.5 * x1 - x2
    y = (r.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {"x1": x1, "x2": x2, "score": 1 / (1 + np.exp(-(0.8 * logit + 0.3))), "y": y}
    )


def _cpu(fn, repeats: int = REPEATS) -> float:
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3


def _state(ref, frame: pd.DataFrame, keys: np.ndarray, idx: np.ndarray, size: int):
    s = PerformanceState(ref, size)
    cols = {c: frame[c].to_numpy()[idx] for c in ("x1", "x2", "score")}
    p = ref.predictions(cols)
    s.add_predictions(p, cols)
    y, _ = ref.encode_labels(frame["y"].to_numpy()[idx])
    s.add_labels(keys[idx], p, y)
    return s


def _merge(ref, blobs: list[bytes]) -> PerformanceState:
    states = [PerformanceState.from_bytes(ref, b) for b in blobs]
    out = states[0]
    for s in states[1:]:
        out = out.merge(s)
    return out


def _row(ref, n: int, size: int) -> str:
    """One table row: ``n`` labelled rows over the partitions, against one agent."""
    frame = _rows(n, 1)
    keys = row_keys([f"r{i}" for i in range(n)])
    part = np.random.default_rng(2).integers(0, PARTS, n)
    lone = _state(ref, frame, keys, np.arange(n), size)
    pieces = [_state(ref, frame, keys, np.flatnonzero(part == p), size) for p in range(PARTS)]
    blobs = [s.to_bytes() for s in pieces]
    merged = _merge(ref, blobs)
    encode_ms = _cpu(lambda: [s.to_bytes() for s in pieces]) / PARTS
    merge_ms = _cpu(lambda: _merge(ref, blobs))
    eval_ms = _cpu(lambda: evaluate_performance(ref, merged, window_rows=n))
    lone_ms = _cpu(lambda: evaluate_performance(ref, lone, window_rows=n))
    a = evaluate_performance(ref, merged, window_rows=n)
    b = evaluate_performance(ref, lone, window_rows=n)
    diffs = [abs(x.value - y.value) for x, y in zip(a.realized, b.realized, strict=True)]
    diffs += [abs(x.value - y.value) for x, y in zip(a.estimated, b.estimated, strict=True)]
    ratio = (merge_ms + eval_ms) / lone_ms
    return (
        f"| {n:,} | {max(len(x) for x in blobs):,} | {encode_ms:.2f} | {merge_ms:.2f} "
        f"| {eval_ms:.2f} | {lone_ms:.2f} | {ratio:.1f}× | {max(diffs):.1e} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4000,100000", help="labelled rows per window")
    parser.add_argument("--sample-size", type=int, default=20_000)
    args = parser.parse_args(argv)
    ref_frame = _rows(5000, 0)
    profile = build_profile(ref_frame.drop(columns="y"), prediction=["score"])
    ref = learn_performance(profile, ref_frame, "y")
    print(f"binary model, {PARTS} partitions, labels.sample_size {args.sample_size}")
    print()
    print(
        "| labelled rows | state bytes per partial | encode ms | decode + merge ms "
        "| evaluate ms | lone agent evaluate ms | aggregator / lone | largest metric difference |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in (int(s) for s in args.sizes.split(",")):
        print(_row(ref, n, args.sample_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
