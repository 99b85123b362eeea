"""Attributions logged in the records (``explain.source: record``) against a model file:
what reading them costs the decoder, what judging a window costs, and whether the
verdicts agree.

1. Decoding: records of 20 numeric features and a prediction, each also logging its 20
   attributions (an object, or an array), decoded by the agent's decoder with
   ``explain.source: record``; the baseline is the same messages decoded without it
   (the field is then skipped). Rows per CPU second of the decoding thread (process
   time: on a shared machine, wall time mostly measures the neighbours), best of
   ``--repeat``.
2. A window's attribution block: from the logged sample (no explainer) against the model
   file's path (XGBoost TreeSHAP of a 100-tree model on the window's 1,024 reservoir
   rows, one thread), seconds per window.
3. Agreement over ``--seeds`` (a new model and reference each): windows unchanged, with a
   read feature shifted (x1 +0.5 sd), and with an ignored one shifted (x3 +1 sd), judged
   from records logging XGBoost's own attributions and from the model file: how often the
   block's verdict and the drifted features are the same.

    python3 -m bench.logged_attributions_bench
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_FEATURES = 20


def _messages(n: int, form: str, rng: np.random.Generator) -> list:
    from monitor.ingest.batch import RawMessage

    names = [f"f{j}" for j in range(N_FEATURES)]
    x = rng.normal(size=(n, N_FEATURES)).round(6)
    phi = rng.normal(scale=0.1, size=(n, N_FEATURES)).round(6)
    out = []
    for i in range(n):
        rec: dict = {
            "request_id": f"r{i}",
            "timestamp": 1.7e9 + i,
            "features": dict(zip(names, x[i].tolist(), strict=True)),
            "prediction": float(x[i, 0]),
        }
        if form == "object":
            rec["attributions"] = dict(zip(names, phi[i].tolist(), strict=True))
        elif form == "array":
            rec["attributions"] = phi[i].tolist()
        out.append(RawMessage(value=json.dumps(rec).encode(), offset=i))
    return out


def decode_rates(rows: int, repeat: int) -> list[tuple[str, float]]:
    from detectors.schema import Schema
    from monitor.config.record import RecordConfig
    from monitor.ingest.attributions import AttributionField
    from monitor.ingest.decoder import Decoder

    names = [f"f{j}" for j in range(N_FEATURES)]
    schema = Schema.build(numeric=names, prediction_numeric=["prediction"])
    field = AttributionField("attributions", tuple(names))
    rng = np.random.default_rng(0)
    cases = [
        ("no attributions in the records, not read", "none", None),
        ("object logged, not read (baseline)", "object", None),
        ("object logged, read", "object", field),
        ("array logged, not read (baseline)", "array", None),
        ("array logged, read", "array", field),
    ]
    out = []
    for label, form, attributions in cases:
        messages = _messages(rows, form, rng)
        decoder = Decoder(RecordConfig(), schema, attributions=attributions)
        best = np.inf
        for _ in range(repeat):
            t0 = time.process_time()
            for i in range(0, rows, 5000):
                batch = decoder.decode(messages[i : i + 5000], now=1.7e9)
            best = min(best, time.process_time() - t0)
        assert batch.rows == min(5000, rows)
        out.append((label, rows / best))
    return out


def _data(rng: np.random.Generator, n: int, shift: dict[str, float]) -> pd.DataFrame:
    x = pd.DataFrame({f: rng.normal(size=n) for f in ("x0", "x1", "x2", "x3", "x4")})
    for f, d in shift.items():
        x[f] += d
    return x


def agreement(seeds: int, work: Path) -> tuple[dict[str, list[bool]], list[float], list[float]]:
    import xgboost as xgb

    from detectors.evaluate import evaluate_window
    from detectors.profile import build_profile
    from detectors.settings import DriftSettings
    from detectors.sketch import WindowSketch
    from monitor.explain.logged import LoggedAttributor
    from monitor.explain.window import (
        ExplainSettings,
        WindowAttributor,
        with_reference_attributions,
    )
    from monitor.ingest.values import row_keys

    drift = DriftSettings()
    cases = {"unchanged": {}, "x1 (read) +0.5 sd": {"x1": 0.5}, "x3 (ignored) +1 sd": {"x3": 1.0}}
    same: dict[str, list[bool]] = {c: [] for c in cases}
    t_logged: list[float] = []
    t_model: list[float] = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ref = _data(rng, 6000, {})
        y = 1.5 * ref.x0 + ref.x1 - 0.5 * ref.x2**2 + rng.normal(0, 0.2, len(ref))
        model = xgb.XGBRegressor(n_estimators=100, max_depth=6, random_state=seed, n_jobs=1)
        model.fit(ref, y)
        path = work / f"m{seed}.json"
        model.save_model(path)
        settings = ExplainSettings(model=str(path), device="cpu", threads=1)
        profile = with_reference_attributions(
            build_profile(ref.assign(prediction=model.predict(ref)), prediction=["prediction"]),
            settings,
        )
        by_model = WindowAttributor.from_settings(profile, settings)
        by_record = LoggedAttributor(profile, ExplainSettings(source="record"))
        booster = model.get_booster()
        for name, shift in cases.items():
            x = _data(rng, 4096, shift)
            logged = booster.predict(xgb.DMatrix(x), pred_contribs=True)[:, :-1]
            sketch = WindowSketch(profile, reservoir_size=1024)
            keys = row_keys([f"{seed}-{name}-{i}" for i in range(len(x))])
            sketch.update(x.assign(prediction=model.predict(x)), keys, attributions=logged)
            features, _, _ = evaluate_window(profile, sketch, drift)
            t0 = time.perf_counter()
            a = by_model.evaluate(sketch, drift, features)
            t_model.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = by_record.evaluate(sketch, drift, features)
            t_logged.append(time.perf_counter() - t0)
            assert a is not None and b is not None
            same[name].append(
                a.drifted == b.drifted
                and [c.feature for c in a.columns if c.drifted]
                == [c.feature for c in b.columns if c.drifted]
            )
    return same, t_logged, t_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.logged_attributions_bench")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args(argv)

    rates = decode_rates(args.rows, args.repeat)
    base = dict(rates)
    print(f"# decoding {args.rows:,} records of {N_FEATURES} features, best of {args.repeat}")
    print()
    print("| records | rows per CPU second | vs. the same records, not read |")
    print("| --- | ---: | ---: |")
    for label, rate in rates:
        if "read" in label and "not read" not in label:
            form = label.split()[0]
            ref = base[f"{form} logged, not read (baseline)"]
            print(f"| {label} | {rate:,.0f} | {rate / ref:.2f}x |")
        else:
            print(f"| {label} | {rate:,.0f} | |")

    if not args.seeds:
        return 0
    work = Path(tempfile.mkdtemp(prefix="logged_bench_"))
    same, t_logged, t_model = agreement(args.seeds, work)
    print()
    print(f"# one 1,024-row window's attribution block, {args.seeds} seeds × 3 windows")
    print()
    print("| path | median seconds | vs. model file |")
    print("| --- | ---: | ---: |")
    m, lg = float(np.median(t_model)), float(np.median(t_logged))
    print(f"| model file (XGBoost TreeSHAP, 100 trees of depth 6, 1 thread) | {m:.4f} | 1.00x |")
    print(f"| logged in the records | {lg:.4f} | {lg / m:.2f}x |")
    print()
    print("| window | same verdict and drifted features, logged vs model file |")
    print("| --- | ---: |")
    for name, flags in same.items():
        print(f"| {name} | {sum(flags)}/{len(flags)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
