"""Time to explain one window: SHAP values of a 100-tree model on 1k and 10k rows.

A regressor of 100 trees (depth ``--depth``, 6 by default as in XGBoost; 20 numeric
features, trained on 20k generated rows) is
saved as a model file and explained the way the agent explains a window
(``monitor.explain``), against ``shap.TreeExplainer`` on the same model as the baseline:

* ``xgboost``: XGBoost's own TreeSHAP (``pred_contribs``), what ``explainer: auto`` runs;
  on the GPU too when XGBoost was built with CUDA and a GPU is present (``--gpu``);
* ``lightgbm``: a LightGBM model of 100 trees (2^depth − 1 leaves), its own TreeSHAP;
* ``shap.TreeExplainer``: shap's C++ TreeSHAP on the XGBoost model (the baseline);
* ``attribution drift``: the statistics on the window's SHAP matrix (nDCG, binned SHAP
  distribution tests, bootstrap intervals), without the SHAP values themselves.

Each cell is the median of ``--repeat`` runs after one warm-up, in CPU seconds of the
process (what one idle core takes with one thread; robust to other load on the machine)
and in wall seconds. ``--threads`` sets the
model libraries' threads (1 by default: one core of the sidecar). Run it as
``python3 -m bench.shap_bench``; nothing is asserted, the table is the result.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = [f"f{i}" for i in range(20)]


def _data(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    x = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    y = (
        2.0 * x.f0
        + x.f1 * x.f2
        - np.abs(x.f3)
        + 0.5 * np.sin(3 * x.f4)
        + 0.2 * x[FEATURES[5:10]].sum(axis=1)
        + rng.normal(0, 0.3, n)
    )
    return x, y.to_numpy()


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``repeat`` calls after one warm-up. On a
    shared machine the CPU time (this process's, all threads) is the figure an idle core
    would show as wall time with one thread."""
    fn()  # warm-up: first-call allocations and lazy initialisation
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.shap_bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="also XGBoost's GPU TreeSHAP")
    parser.add_argument("--depth", type=int, default=6, help="XGBoost max_depth (its default)")
    parser.add_argument("--sizes", default="1000,10000", help="window rows, comma-separated")
    args = parser.parse_args(argv)
    # before the libraries start OpenMP: the model file loaded by the agent's loader gets
    # no thread setting of its own
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import lightgbm as lgb
    import shap
    import xgboost as xgb

    from detectors.attribution import attribution_drift
    from detectors.profile import build_profile
    from detectors.settings import DriftSettings
    from monitor.explain.explainers import gpu_available
    from monitor.explain.window import ExplainSettings, load_for_profile
    from monitor.explain.window import with_reference_attributions as attach

    rng = np.random.default_rng(0)
    train, y = _data(rng, 20_000)
    sizes = [int(v) for v in args.sizes.split(",")]
    window, _ = _data(rng, max(sizes))
    work = Path(tempfile.mkdtemp(prefix="shap_bench_"))
    xgb_model = xgb.XGBRegressor(n_estimators=100, max_depth=args.depth, n_jobs=args.threads)
    xgb_model.fit(train, y)
    xgb_model.save_model(work / "model.json")
    lgb_model = lgb.LGBMRegressor(
        n_estimators=100, num_leaves=2**args.depth - 1, n_jobs=args.threads, verbose=-1
    ).fit(train, y)
    lgb_model.booster_.save_model(work / "model.txt")

    profile = build_profile(train.head(5000))
    settings = ExplainSettings(model=str(work / "model.json"), device="cpu")
    profile = attach(profile, settings)
    _, xgb_explainer = load_for_profile(settings, profile)
    tree = shap.TreeExplainer(xgb_model)

    methods: dict[str, Callable[[pd.DataFrame], object]] = {
        "xgboost TreeSHAP (driftline, cpu)": xgb_explainer.explain,
        "lightgbm TreeSHAP (driftline)": lambda f: lgb_model.booster_.predict(
            f.to_numpy(), pred_contrib=True, num_threads=args.threads
        ),
        "shap.TreeExplainer (baseline)": lambda f: tree.shap_values(f.to_numpy()),
    }
    gpu_note = "GPU: not available here (no NVIDIA driver visible)"
    if args.gpu or gpu_available():
        if gpu_available() and xgb.build_info().get("USE_CUDA"):
            cuda = ExplainSettings(model=str(work / "model.json"), device="cuda")
            _, gpu_explainer = load_for_profile(cuda, profile)
            methods["xgboost GPUTreeShap (driftline, cuda)"] = gpu_explainer.explain
            gpu_note = "GPU: XGBoost GPUTreeShap measured"
        else:
            gpu_note = "GPU: asked for, but no CUDA-enabled XGBoost and visible GPU here"

    drift = DriftSettings()
    reference = profile.attribution
    assert reference is not None
    rows_out: list[tuple[str, int, float, float]] = []
    for n in sizes:
        frame = window.head(n)
        for name, fn in methods.items():
            rows_out.append((name, n, *_time(functools.partial(fn, frame), args.repeat)))
        phi = xgb_explainer.explain(frame)
        stats = functools.partial(attribution_drift, reference, phi, drift, floor_key="bench")
        rows_out.append(("attribution drift statistics (no SHAP)", n, *_time(stats, args.repeat)))

    print(
        f"# SHAP per window: 100 trees of depth {args.depth} (LightGBM: {2**args.depth - 1} "
        f"leaves), {len(FEATURES)} features; {args.threads} thread(s); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"xgboost {xgb.__version__}, lightgbm {lgb.__version__}, shap {shap.__version__}"
    )
    print(f"# {gpu_note}; load average {os.getloadavg()[0]:.1f} during the run")
    print()
    print(
        "| method | rows | CPU s (median) | wall s (median) | rows/s (CPU) "
        "| speed vs shap.TreeExplainer |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    baseline = {n: c for name, n, _, c in rows_out if name.startswith("shap.TreeExplainer")}
    for name, n, wall, cpu in rows_out:
        ratio = f"{baseline[n] / cpu:.2f}×" if "SHAP)" not in name else "—"
        print(f"| {name} | {n:,} | {cpu:.4f} | {wall:.4f} | {n / cpu:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
