"""Time to explain one window: SHAP values of a 100-tree model on 1k and 10k rows.

For each depth (``--depths``) and model library, a regressor of 100 trees (20 numeric
features) is trained on generated rows, saved as a model file, loaded and explained the
way the agent explains a window (``monitor.explain``: driftline's Fast TreeSHAP kernel,
monitor/explain/fasttree.py), against the path driftline took before on the same model in
the same run, the baseline:

* ``xgboost``: ``XGBRegressor(max_depth=depth)``; baseline XGBoost's own TreeSHAP
  (``DMatrix`` + ``pred_contribs``, what ``shap.TreeExplainer`` also calls for XGBoost);
* ``lightgbm``: ``LGBMRegressor(max_depth=depth, num_leaves=2**depth)``; baseline
  LightGBM's own TreeSHAP (``pred_contrib``);
* ``sklearn``: ``GradientBoostingRegressor(max_depth=depth)`` (trained on 5,000 rows);
  baseline ``shap.TreeExplainer`` (shap's C++ TreeSHAP);

plus, per depth, the attribution-drift statistics on the window's SHAP matrix (nDCG,
binned SHAP distribution tests, bootstrap intervals) without the SHAP values themselves.

Each cell is the median of ``--repeat`` runs after a warm-up, in CPU seconds of the
process (all threads: what one idle core takes with one thread; robust to other load on
the machine) and in wall seconds; the ratio is the baseline's CPU time over driftline's.
``--threads`` sets every path's threads (1 by default: one core of the sidecar); ``load
s`` is the one-off cost of loading the explainer (shap's parse of the trees, the tables,
the check against the baseline on 64 rows). ``--gpu`` adds XGBoost's GPU TreeSHAP where
XGBoost was built with CUDA and a GPU is visible. Run it as ``python3 -m bench.shap_bench``;
nothing is asserted, the tables are the result.
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
from typing import Any

import numpy as np
import pandas as pd

FEATURES = [f"f{i}" for i in range(20)]
TREES = 100


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


def _time(
    fn: Callable[[pd.DataFrame], object], frame: pd.DataFrame, repeat: int
) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``repeat`` calls on ``frame`` after a warm-up
    on its first 200 rows. On a shared machine the CPU time (this process's, all threads)
    is the figure an idle core would show as wall time with one thread."""
    fn(frame.head(200))  # first-call allocations and lazy initialisation
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(frame)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _models(
    depth: int, threads: int, train: pd.DataFrame, y: np.ndarray, work: Path
) -> dict[str, tuple[Path, Any]]:
    """Each library's model of depth ``depth``, saved as the agent would load it."""
    import lightgbm as lgb
    import skops.io as sio
    import xgboost as xgb
    from sklearn.ensemble import GradientBoostingRegressor

    out: dict[str, tuple[Path, Any]] = {}
    booster = xgb.XGBRegressor(n_estimators=TREES, max_depth=depth, n_jobs=threads).fit(train, y)
    booster.save_model(work / f"xgb{depth}.json")
    out["xgboost"] = (work / f"xgb{depth}.json", booster.get_booster())
    lgbm = lgb.LGBMRegressor(
        n_estimators=TREES, max_depth=depth, num_leaves=2**depth, n_jobs=threads, verbose=-1
    ).fit(train, y)
    lgbm.booster_.save_model(work / f"lgb{depth}.txt")
    out["lightgbm"] = (work / f"lgb{depth}.txt", lgbm.booster_)
    gbr = GradientBoostingRegressor(n_estimators=TREES, max_depth=depth, random_state=0)
    gbr.fit(train.head(5000), y[:5000])
    sio.dump(gbr, work / f"gbr{depth}.skops")
    out["sklearn"] = (work / f"gbr{depth}.skops", gbr)
    return out


def _baseline(
    library: str, model: Any, threads: int
) -> tuple[str, Callable[[pd.DataFrame], object]]:
    import shap
    import xgboost as xgb

    if library == "xgboost":
        model.set_param({"nthread": threads})
        return "XGBoost pred_contribs", lambda f: model.predict(
            xgb.DMatrix(f.to_numpy(np.float64), feature_names=FEATURES), pred_contribs=True
        )
    if library == "lightgbm":
        return "LightGBM pred_contrib", lambda f: model.predict(
            f.to_numpy(np.float64), pred_contrib=True, num_threads=threads
        )
    explainer = shap.TreeExplainer(model)
    return "shap.TreeExplainer", lambda f: explainer.shap_values(f, check_additivity=False)


def _statistics(
    drift: Callable[..., object],
    reference: Any,
    phi: np.ndarray,
    settings: Any,
    frame: pd.DataFrame,
) -> object:
    """The attribution-drift statistics of the SHAP matrix (``frame`` unused: the timer's)."""
    return drift(reference, phi, settings, floor_key="bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.shap_bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="also XGBoost's GPU TreeSHAP")
    parser.add_argument("--depths", default="3,4,6", help="tree depths, comma-separated")
    parser.add_argument("--libraries", default="xgboost,lightgbm,sklearn")
    parser.add_argument("--sizes", default="1000,10000", help="window rows, comma-separated")
    args = parser.parse_args(argv)
    # before the libraries start OpenMP: the model file loaded by the agent's loader gets
    # no thread setting of its own
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import lightgbm as lgb
    import shap
    import sklearn
    import xgboost as xgb

    from detectors.attribution import attribution_drift
    from detectors.profile import build_profile
    from detectors.settings import DriftSettings
    from monitor.explain.explainers import gpu_available, make_explainer
    from monitor.explain.loader import load_model
    from monitor.explain.window import ExplainSettings
    from monitor.explain.window import with_reference_attributions as attach

    rng = np.random.default_rng(0)
    train, y = _data(rng, 20_000)
    sizes = [int(v) for v in args.sizes.split(",")]
    libraries = args.libraries.split(",")
    window, _ = _data(rng, max(sizes))
    work = Path(tempfile.mkdtemp(prefix="shap_bench_"))
    gpu = args.gpu and gpu_available() and bool(xgb.build_info().get("USE_CUDA"))
    print(
        f"# SHAP per window: {TREES} trees, {len(FEATURES)} features; {args.threads} thread(s); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; xgboost "
        f"{xgb.__version__}, lightgbm {lgb.__version__}, scikit-learn {sklearn.__version__}, "
        f"shap {shap.__version__}"
    )
    print(
        "# GPU: "
        + (
            "XGBoost GPUTreeShap measured"
            if gpu
            else "not measured (no CUDA-enabled XGBoost with a visible GPU here)"
        )
    )
    for depth in (int(v) for v in args.depths.split(",")):
        models = _models(depth, args.threads, train, y, work)
        for library in libraries:
            path, model = models[library]
            t0 = time.perf_counter()
            explainer = make_explainer(
                load_model(path), train.head(5000), device="cpu", threads=args.threads
            )
            load = time.perf_counter() - t0
            base_name, baseline = _baseline(library, model, args.threads)
            methods: dict[str, Callable[[pd.DataFrame], object]] = {
                f"driftline ({explainer.engine})": explainer.explain,
                f"{base_name} (baseline)": baseline,
            }
            if gpu and library == "xgboost":
                cuda = make_explainer(load_model(path), train.head(5000), device="cuda")
                methods["XGBoost GPUTreeShap (cuda)"] = cuda.explain
            print()
            print(f"## {library}, depth {depth}: load {load:.2f} s")
            print()
            print("| method | rows | CPU s | wall s | rows/s (CPU) | CPU vs baseline |")
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            for n in sizes:
                cells = {
                    name: _time(fn, window.head(n), args.repeat) for name, fn in methods.items()
                }
                base_cpu = cells[f"{base_name} (baseline)"][1]
                for name, (wall, cpu) in cells.items():
                    print(
                        f"| {name} | {n:,} | {cpu:.4f} | {wall:.4f} | {n / cpu:,.0f} "
                        f"| {base_cpu / cpu:.2f}× |"
                    )
        profile = attach(
            build_profile(train.head(5000)),
            ExplainSettings(model=str(models["xgboost"][0]), device="cpu"),
        )
        reference = profile.attribution
        assert reference is not None
        explainer = make_explainer(load_model(models["xgboost"][0]), train.head(5000), device="cpu")
        print()
        print(f"attribution drift statistics on the SHAP matrix (no SHAP), depth {depth}:", end="")
        for n in sizes:
            phi = explainer.explain(window.head(n))
            stats = functools.partial(
                _statistics, attribution_drift, reference, phi, DriftSettings()
            )
            wall, cpu = _time(stats, window.head(n), args.repeat)
            print(f" {n:,} rows {cpu:.4f} CPU s ({wall:.4f} wall);", end="")
        print()
    print(f"\n# load average {os.getloadavg()[0]:.1f} at the end of the run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
