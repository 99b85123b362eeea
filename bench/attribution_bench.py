"""Attribution drift on generated data: how often each verdict comes out, over seeds.

A regressor (XGBoost, 60 trees of depth 3) reads ``x0`` (strongly), ``x1`` and ``x2`` and
has no signal in ``x3``, ``x4`` (still inputs, so the trees may split on their noise).
For each seed a new model and reference (6000 rows) are built; windows of 1024 rows are
then drawn unchanged, with ``x1`` (read) shifted, and with ``x3`` (ignored) shifted, by
each of ``--shifts`` standard deviations. The table counts, over the seeds, the windows
where the feature drifted (feature drift block), where its attributions drifted, where
the attribution block as a whole drifted, and gives the mean nDCG and the shifted
feature's mean impact score and importance.

    python3 -m bench.attribution_bench --seeds 20
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ["x0", "x1", "x2", "x3", "x4"]


def _data(rng: np.random.Generator, n: int, shift: dict[str, float]) -> pd.DataFrame:
    x = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    for f, d in shift.items():
        x[f] += d
    return x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.attribution_bench")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--shifts", default="0.25,0.5,1.0")
    args = parser.parse_args(argv)
    shifts = [float(s) for s in args.shifts.split(",")]

    import xgboost as xgb

    from detectors.evaluate import evaluate_window
    from detectors.profile import build_profile
    from detectors.settings import DriftSettings
    from detectors.sketch import WindowSketch
    from monitor.explain.window import (
        ExplainSettings,
        WindowAttributor,
        with_reference_attributions,
    )

    cases = [("unchanged", "x1", 0.0)]
    cases += [(f"x1 (read) +{s:g} sd", "x1", s) for s in shifts]
    cases += [(f"x3 (ignored) +{s:g} sd", "x3", s) for s in shifts]
    tally: dict[str, dict[str, list[float]]] = {c[0]: {} for c in cases}
    drift = DriftSettings()
    work = Path(tempfile.mkdtemp(prefix="attribution_bench_"))
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        ref = _data(rng, 6000, {})
        y = 1.5 * ref.x0 + ref.x1 - 0.5 * ref.x2**2 + rng.normal(0, 0.2, len(ref))
        model = xgb.XGBRegressor(n_estimators=60, max_depth=3, random_state=seed, n_jobs=1)
        model.fit(ref, y)
        path = work / f"m{seed}.json"
        model.save_model(path)
        settings = ExplainSettings(model=str(path), device="cpu")
        profile = with_reference_attributions(
            build_profile(ref.assign(prediction=model.predict(ref)), prediction=["prediction"]),
            settings,
        )
        attributor = WindowAttributor.from_settings(profile, settings)
        assert profile.attribution is not None
        importance = dict(
            zip(profile.attribution.features, profile.attribution.importance, strict=True)
        )
        for name, feature, shift in cases:
            x = _data(rng, 1024, {feature: shift} if shift else {})
            sketch = WindowSketch(profile, reservoir_size=1024, seed=seed)
            sketch.update(x.assign(prediction=model.predict(x)))
            features, _, _ = evaluate_window(profile, sketch, drift)
            result = attributor.evaluate(sketch, drift, features)
            assert result is not None
            impact = {i.feature: i.score for i in result.impact}
            row = tally[name]
            for key, value in (
                ("feature drifted", float(features.column(feature).drifted)),
                ("attribution drifted", float(result.column(feature).drifted)),
                (
                    "other attribution drifted",
                    float(any(c.drifted for c in result.columns if c.feature != feature)),
                ),
                ("block drifted", float(result.drifted)),
                ("ndcg", result.ndcg),
                ("impact", impact.get(feature, 0.0)),
                ("importance", float(importance[feature])),
            ):
                row.setdefault(key, []).append(value)

    n = args.seeds
    print(f"# attribution drift on generated data: {n} seeds, windows of 1024 rows")
    print()
    print(
        "| window | feature drift | its attribution drift | another's attribution drift "
        "| block drifted | mean nDCG | mean impact | importance |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, _, _ in cases:
        r = tally[name]

        def count(key: str, r: dict[str, list[float]] = r) -> str:
            return f"{int(sum(r[key]))}/{n}"

        print(
            f"| {name} | {count('feature drifted')} | {count('attribution drifted')} "
            f"| {count('other attribution drifted')} | {count('block drifted')} "
            f"| {np.mean(r['ndcg']):.4f} | {np.mean(r['impact']):.3f} "
            f"| {np.mean(r['importance']):.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
