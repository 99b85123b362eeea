"""Prometheus exposition under a flood of model versions, bounded and not.

Each of VERSIONS versions (20 features) has its records counted and one window exported,
as the pipeline does; the table compares the default limit (exporter.max_model_versions)
with a limit no flood reaches (one series set per version, as before the limit existed).

    python3 -m bench.version_cardinality
"""

from __future__ import annotations

import argparse
import time

from prometheus_client import generate_latest

from detectors.results import DriftResult, QualityCheck, QualityResult, TestResult, WindowReport
from monitor.outputs.exporter import Exporter

FEATURES = [f"f{i}" for i in range(20)]


def report(version: str) -> WindowReport:
    columns = tuple(TestResult(f, "ks", 0.1, 0.2, 0.05, False) for f in FEATURES)
    checks = tuple(
        QualityCheck(f, c, 0.0, 0.0, 0.05, False)
        for f in FEATURES
        for c in ("missing", "out_of_range", "type_error")
    )
    none = DriftResult(
        0.0, 0, 1, 0.5, False, "none", (TestResult("score", "psi", 0.01, None, 0.2, False),)
    )
    return WindowReport(
        model="fraud",
        model_version=version,
        window_start=1_700_000_000.0,
        window_end=1_700_000_060.0,
        reference_hash="abc",
        rows=1000,
        drift=DriftResult(0.0, 0, len(columns), 0.5, False, "none", columns),
        prediction_drift=none,
        quality=QualityResult(rows=1000, checks=checks),
        evaluated_at=1_700_000_061.0,
    )


def run(limit: int, versions: int) -> tuple[int, int, float]:
    exporter = Exporter("fraud", "60s", "abc", max_model_versions=limit)
    for i in range(versions):
        exporter.count_records("decoded", 100, model_version=f"v{i}")
        exporter.observe_report(report(f"v{i}"), 0.01)
    start = time.perf_counter()
    body = generate_latest(exporter.registry)
    seconds = time.perf_counter() - start
    lines = sum(1 for line in body.splitlines() if line.startswith(b"driftline_"))
    return lines, len(body), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", type=int, default=3000)
    args = parser.parse_args()
    bounded = run(5, args.versions)
    unbounded = run(10 * args.versions, args.versions)
    print(f"{args.versions:,} model versions, 20 features each")
    print(f"{'limit':>22} {'series':>10} {'/metrics MB':>12} {'render ms':>10}")
    for name, (series, size, seconds) in (
        ("max_model_versions=5", bounded),
        ("one set per version", unbounded),
    ):
        print(f"{name:>22} {series:>10,} {size / 1e6:>12.2f} {seconds * 1000:>10.0f}")
    print(
        f"{'ratio':>22} {unbounded[0] / bounded[0]:>10.0f}x {unbounded[1] / bounded[1]:>11.0f}x "
        f"{unbounded[2] / bounded[2]:>9.0f}x"
    )


if __name__ == "__main__":
    main()
