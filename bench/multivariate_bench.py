"""Speed of the multivariate tests: kernel MMD with 500 permutations and the classifier
two-sample test, n reference rows against n window rows × 30 features.

MMD implementations, on the same rows:

* ``straightforward numpy``: what a direct implementation does (and what the
  permutation loops of common drift libraries do): the full N × N float64 kernel matrix,
  then for each permutation the three sub-matrix sums of the permuted matrix. Its memory
  is 8·N² bytes, so it runs only where that fits; its per-permutation time is measured on
  ``--baseline-permutations`` permutations and the 500-permutation time projected as
  ``kernel + 500 × per permutation`` (the permutations are independent and equal work);
* ``driftline numpy``: ``detectors.multivariate.mmd.mmd_test`` on numpy (float32 kernel
  blocks, every permutation in one matrix product per block, float64 sums);
* ``driftline torch-cpu`` / ``driftline cuda``: the same code on torch tensors.

The classifier test (``classifier_test``: 100 depth-2 boosted trees on 32-bin features,
held-out AUC, permutation importances) is timed against scikit-learn's
``HistGradientBoostingClassifier`` with the same trees, depth and bins where scikit-learn
is installed (fit and predict only, no importances: a lower bound on its cost).

Run: ``python3 -m bench.multivariate_bench`` (5k and 20k per side; ``--sizes 5000,20000,
100000`` adds 100k, which needs a GPU to finish in seconds; ``--devices numpy,cpu,cuda``).
It prints a table and writes its markdown to ``bench/results/multivariate.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np

from detectors.multivariate.backend import cuda_available, torch_available
from detectors.multivariate.classifier import classifier_test
from detectors.multivariate.mmd import DEFAULT_SCALES, median_bandwidth, mmd_test

FEATURES = 30
PERMUTATIONS = 500
RESULTS = Path(__file__).parent / "results" / "multivariate.md"
# The straightforward baseline's kernel matrix may use at most this share of free memory.
MEMORY_SHARE = 0.5


def rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n reference and n window rows; the window has two features correlated at 0.8."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES))
    y = rng.normal(size=(n, FEATURES))
    y[:, 1] = 0.8 * y[:, 0] + 0.6 * y[:, 1]
    return x, y


def straightforward_mmd(
    x: np.ndarray, y: np.ndarray, permutations: int, seed: int
) -> tuple[float, float, float]:
    """(kernel seconds, seconds per permutation, observed MMD²) of the direct method."""
    z = np.concatenate([x, y])
    m, big_n = len(x), len(z)
    sigma = median_bandwidth(z, seed=seed)
    started = time.perf_counter()
    sq = (z * z).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    k = np.mean([np.exp(-d / (2.0 * (sigma * s) ** 2)) for s in DEFAULT_SCALES], axis=0)
    del d
    kernel_s = time.perf_counter() - started

    def stat(idx: np.ndarray) -> float:
        kp = k[np.ix_(idx, idx)]
        kxx, kyy, kxy = kp[:m, :m], kp[m:, m:], kp[:m, m:]
        n = big_n - m
        return float(
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2.0 * kxy.mean()
        )

    observed = stat(np.arange(big_n))
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(permutations):
        stat(rng.permutation(big_n))
    return kernel_s, (time.perf_counter() - started) / permutations, observed


def free_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def sklearn_classifier(x: np.ndarray, y: np.ndarray, seed: int) -> float | None:
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:
        return None
    z = np.concatenate([x, y])
    t = np.r_[np.zeros(len(x)), np.ones(len(y))]
    idx = np.random.default_rng(seed).permutation(len(z))
    half = len(z) // 2
    model = HistGradientBoostingClassifier(
        max_iter=100,
        max_depth=2,
        max_bins=32,
        learning_rate=0.2,
        early_stopping=False,
        random_state=seed,
    )
    started = time.perf_counter()
    model.fit(z[idx[half:]], t[idx[half:]])
    model.predict_proba(z[idx[:half]])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,20000", help="rows per side, comma-separated")
    parser.add_argument("--devices", default="numpy,cpu,cuda")
    parser.add_argument("--baseline-permutations", type=int, default=20)
    parser.add_argument("--skip", default="", help="comma-separated: baseline,classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown table file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    devices = [d for d in args.devices.split(",") if d]
    skip = set(args.skip.split(","))
    if not torch_available():
        devices = [d for d in devices if d == "numpy"]
    if not cuda_available():
        devices = [d for d in devices if d != "cuda"]
    header = (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, numpy {np.__version__}"
    )
    if torch_available():
        import torch

        header += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
        if cuda_available():
            header += f", GPU {torch.cuda.get_device_name(0)}"
        else:
            header += ", no GPU"
    print(header, flush=True)
    lines = [
        f"MMD² with {PERMUTATIONS} permutations, Gaussian mixture kernel, {FEATURES} features; "
        "seconds (ratio: straightforward numpy ÷ this)",
        "",
        "| rows per side | straightforward numpy | "
        + " | ".join(f"driftline {d}" for d in devices)
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in devices) + " |",
    ]
    clf_lines = [
        "",
        "Classifier test (100 depth-2 trees, held-out AUC, importances); seconds",
        "",
        "| rows per side | driftline (numpy) | scikit-learn HistGradientBoosting fit+predict |",
        "| --- | --- | --- |",
    ]
    for n in sizes:
        x, y = rows(n, args.seed)
        big_n = 2 * n
        need = 8 * big_n * big_n * 2  # the matrix and one temporary of its size
        if "baseline" in skip:
            base_cell, base_total = "skipped", None
        elif need > MEMORY_SHARE * free_memory():
            base_cell, base_total = f"out of memory ({need / 2**30:.0f} GiB)", None
        else:
            kernel_s, per_perm, _ = straightforward_mmd(x, y, args.baseline_permutations, args.seed)
            base_total = kernel_s + PERMUTATIONS * per_perm
            base_cell = (
                f"{base_total:.1f} (projected: kernel {kernel_s:.1f} + 500 × {per_perm:.3f})"
            )
        print(f"n={n}: straightforward {base_cell}", flush=True)
        cells = []
        for device in devices:
            mmd_test(x[:200], y[:200], permutations=10, device=device)  # warm-up
            started = time.perf_counter()
            r = mmd_test(x, y, permutations=PERMUTATIONS, device=device, seed=1)
            seconds = time.perf_counter() - started
            ratio = f" ({base_total / seconds:.0f}×)" if base_total else ""
            cells.append(f"{seconds:.2f}{ratio}")
            print(f"n={n}: {device} {seconds:.2f}s p={r.p_value:.4f}", flush=True)
        lines.append(f"| {n:,} | {base_cell} | " + " | ".join(cells) + " |")
        if "classifier" not in skip:
            started = time.perf_counter()
            c = classifier_test(x, y, seed=1)
            seconds = time.perf_counter() - started
            sk = sklearn_classifier(x, y, args.seed)
            sk_cell = "not installed" if sk is None else f"{sk:.2f}"
            clf_lines.append(f"| {n:,} | {seconds:.2f} (AUC {c.statistic:.3f}) | {sk_cell} |")
            print(f"n={n}: classifier {seconds:.2f}s auc={c.statistic:.3f} sklearn={sk_cell}")
    text = "\n".join([header, "", *lines, *clf_lines, ""])
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
