"""Label-free performance estimation against NannyML, on generated data whose true
performance changes by known amounts.

    python3 -m bench.performance_bench [--nannyml-python /path/to/python] [--quick]

Three generated streams, each a labelled reference (20,000 rows) and an analysis period
cut into chunks of 5,000 rows (NannyML's chunks = driftline's windows):

- ``binary``: a miscalibrated logistic score; x1's mean drifts from 0 to -1.5 and back
  to +1 over 20 chunks, which moves accuracy, precision, recall and F1 by up to ~0.2;
- ``multiclass``: three classes from a softmax, x1 shifting the class balance;
- ``regression``: noise that grows with |x1| and with one category, x1 shifting.

For each chunk the realized metric is computed from the labels (scikit-learn); each
estimator (driftline's CBPE/DLE over its bounded window state, NannyML's CBPE/DLE on the
same rows) gives its estimate from the predictions alone. The tables show the mean and
largest absolute estimation error over the chunks, the time to learn from the reference,
and the time per chunk. NannyML runs in its own Python (``--nannyml-python``; it pins
lightgbm<4.6 and plotly<6, which driftline's environment cannot take) through
``bench/nannyml_runner.py``; without it, its rows read "not run".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn import metrics as skm

from detectors.performance import PerformanceState, learn_performance
from detectors.performance.state import estimate
from detectors.profile import build_profile

CHUNK = 5000
REFERENCE_ROWS = 20_000
console = Console(width=160)


def _binary(n: int, rng: np.random.Generator, shift: float) -> pd.DataFrame:
    x1, x2 = rng.normal(shift, 1, n), rng.normal(0, 1, n)
    logit = 1.5 * x1 - x2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    score = 1 / (1 + np.exp(-(0.8 * logit + 0.3)))
    return pd.DataFrame({"x1": x1, "x2": x2, "score": score, "pred": (score >= 0.5) * 1, "y": y})


def _multiclass(n: int, rng: np.random.Generator, shift: float) -> pd.DataFrame:
    x = rng.normal(0, 1, (n, 2))
    x[:, 0] += shift
    logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]]) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    q = np.exp(0.7 * logits) / np.exp(0.7 * logits).sum(axis=1, keepdims=True)
    names = np.array(["a", "b", "c"])
    return pd.DataFrame(
        {
            "x1": x[:, 0],
            "x2": x[:, 1],
            "p_a": q[:, 0],
            "p_b": q[:, 1],
            "p_c": q[:, 2],
            "pred": names[q.argmax(axis=1)],
            "y": names[y],
        }
    )


def _regression(n: int, rng: np.random.Generator, shift: float) -> pd.DataFrame:
    x1, x2 = rng.normal(shift, 1, n), rng.choice(["u", "v", "w"], n)
    y = 10 + 2 * x1 + rng.normal(0, 0.5 + np.abs(x1) + (x2 == "w"), n)
    return pd.DataFrame({"x1": x1, "x2": x2, "pred": 10 + 2 * x1, "y": y})


SHIFTS = np.r_[np.linspace(0, -1.5, 12), np.linspace(-1.0, 1.0, 8)]

CASES: dict[str, dict] = {
    "binary": {
        "make": _binary,
        "predictions": ["score"],
        "metrics": ["roc_auc", "accuracy", "precision", "recall", "f1"],
        "nannyml": {
            "method": "cbpe",
            "problem_type": "classification_binary",
            "y_pred_proba": "score",
            "y_pred": "pred",
        },
    },
    "multiclass": {
        "make": _multiclass,
        "predictions": ["p_a", "p_b", "p_c"],
        "metrics": ["roc_auc", "accuracy", "f1"],
        "nannyml": {
            "method": "cbpe",
            "problem_type": "classification_multiclass",
            "y_pred_proba": {"a": "p_a", "b": "p_b", "c": "p_c"},
            "y_pred": "pred",
        },
    },
    "regression": {
        "make": _regression,
        "predictions": ["pred"],
        "metrics": ["mae", "rmse"],
        "nannyml": {
            "method": "dle",
            "features": ["x1", "x2"],
            "y_pred": "pred",
            "categorical": ["x2"],
        },
    },
}


def realized(case: str, chunk: pd.DataFrame, metric: str) -> float:
    y = chunk["y"].to_numpy()
    if case == "regression":
        p = chunk["pred"].to_numpy()
        return float(
            skm.mean_absolute_error(y, p) if metric == "mae" else skm.root_mean_squared_error(y, p)
        )
    pred = chunk["pred"].to_numpy()
    if case == "binary":
        fns: dict[str, Callable[[], float]] = {
            "roc_auc": lambda: skm.roc_auc_score(y, chunk["score"]),
            "accuracy": lambda: skm.accuracy_score(y, pred),
            "precision": lambda: skm.precision_score(y, pred),
            "recall": lambda: skm.recall_score(y, pred),
            "f1": lambda: skm.f1_score(y, pred),
        }
    else:
        probs = chunk[["p_a", "p_b", "p_c"]].to_numpy()
        fns = {
            "roc_auc": lambda: skm.roc_auc_score(
                y, probs, multi_class="ovr", labels=["a", "b", "c"]
            ),
            "accuracy": lambda: skm.accuracy_score(y, pred),
            "f1": lambda: skm.f1_score(y, pred, average="macro"),
        }
    return float(fns[metric]())


def run_driftline(case: str, reference: pd.DataFrame, chunks: list[pd.DataFrame]) -> dict:
    spec = CASES[case]
    started = time.perf_counter()
    features = (
        reference.drop(columns=["y", "pred"])
        if case != "regression"
        else reference.drop(columns=["y"])
    )
    profile = build_profile(features, prediction=spec["predictions"])
    ref = learn_performance(profile, reference, "y")
    fit_seconds = time.perf_counter() - started
    estimates: dict[str, list[float]] = {m: [] for m in spec["metrics"]}
    started = time.perf_counter()
    for chunk in chunks:
        cols = {c: chunk[c].to_numpy() for c in chunk.columns if c != "y"}
        state = PerformanceState(ref)
        state.add_predictions(ref.predictions(cols), cols)
        values = estimate(ref, state)
        for m in spec["metrics"]:
            estimates[m].append(values[m])
    per_chunk = (time.perf_counter() - started) / len(chunks)
    return {"fit_seconds": fit_seconds, "per_chunk": per_chunk, "estimates": estimates}


def run_nannyml(
    case: str, reference: pd.DataFrame, chunks: list[pd.DataFrame], python: str
) -> dict | None:
    spec = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, ana_path = Path(tmp) / "reference.parquet", Path(tmp) / "analysis.parquet"
        reference.to_parquet(ref_path)
        pd.concat(chunks, ignore_index=True).to_parquet(ana_path)
        job = {
            **spec["nannyml"],
            "reference": str(ref_path),
            "analysis": str(ana_path),
            "y_true": "y",
            "metrics": spec["metrics"],
            "chunk_size": CHUNK,
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(job))
        runner = Path(__file__).with_name("nannyml_runner.py")
        proc = subprocess.run(
            [python, str(runner), str(spec_path)], capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        console.print(f"[red]NannyML failed for {case}[/]: {proc.stderr.strip()[-500:]}")
        return None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["per_chunk"] = out["estimate_seconds"] / len(chunks)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--nannyml-python",
        default=os.environ.get("NANNYML_PYTHON"),
        help="a Python with nannyml installed (default: $NANNYML_PYTHON)",
    )
    parser.add_argument("--quick", action="store_true", help="8 chunks instead of 20")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shifts = SHIFTS[:: 20 // 8] if args.quick else SHIFTS
    rows: list[dict] = []
    for case, spec in CASES.items():
        rng = np.random.default_rng(args.seed)
        reference = spec["make"](REFERENCE_ROWS, rng, 0.0)
        chunks = [spec["make"](CHUNK, rng, float(s)) for s in shifts]
        truth = {m: [realized(case, c, m) for c in chunks] for m in spec["metrics"]}
        results: dict[str, dict | None] = {"driftline": run_driftline(case, reference, chunks)}
        if args.nannyml_python:
            results["nannyml"] = run_nannyml(case, reference, chunks, args.nannyml_python)
        for method, res in results.items():
            for m in spec["metrics"]:
                row = {
                    "case": case,
                    "metric": m,
                    "method": method,
                    "range": max(truth[m]) - min(truth[m]),
                }
                if res is None:
                    rows.append({**row, "mae": None})
                    continue
                err = np.abs(np.asarray(res["estimates"][m]) - np.asarray(truth[m]))
                rows.append(
                    {
                        **row,
                        "mae": float(err.mean()),
                        "max": float(err.max()),
                        "fit": res["fit_seconds"],
                        "per_chunk": res["per_chunk"],
                    }
                )
    table = Table(
        title="Estimation error against realized performance "
        f"({len(shifts)} chunks of {CHUNK:,} rows)"
    )
    for col in (
        "case",
        "metric",
        "realized range",
        "method",
        "mean |error|",
        "max |error|",
        "learn (s)",
        "per chunk (ms)",
        "error / NannyML's",
        "NannyML's time / ours",
    ):
        table.add_column(col, justify="left" if col in ("case", "metric", "method") else "right")
    by_key = {(r["case"], r["metric"], r["method"]): r for r in rows}
    for r in rows:
        if r["mae"] is None:
            table.add_row(r["case"], r["metric"], f"{r['range']:.3f}", r["method"], "not run")
            continue
        base = by_key.get((r["case"], r["metric"], "nannyml"))
        if r["method"] == "nannyml":
            error_ratio = speed = "baseline"
        elif base and base["mae"] is not None:
            error_ratio = f"{r['mae'] / base['mae']:.2f}x"
            speed = f"{base['per_chunk'] / r['per_chunk']:.1f}x"
        else:
            error_ratio = speed = ""
        table.add_row(
            r["case"],
            r["metric"],
            f"{r['range']:.3f}",
            r["method"],
            f"{r['mae']:.4f}",
            f"{r['max']:.4f}",
            f"{r['fit']:.2f}",
            f"{r['per_chunk'] * 1000:.1f}",
            error_ratio,
            speed,
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
