"""Runs NannyML's CBPE or DLE on the files ``bench/performance_bench.py`` wrote, in the
Python that has NannyML (it pins libraries that cannot share driftline's environment),
and prints per-chunk estimates and timings as JSON. Not imported by driftline.

    python bench/nannyml_runner.py SPEC.json
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings


def main(spec_path: str) -> None:
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no analytics calls
    import nannyml as nml
    import pandas as pd

    warnings.filterwarnings("ignore")
    with open(spec_path) as fh:
        spec = json.load(fh)
    reference = pd.read_parquet(spec["reference"])
    analysis = pd.read_parquet(spec["analysis"]).drop(columns=[spec["y_true"]])
    for name in spec.get("categorical", []):
        reference[name] = reference[name].astype("category")
        analysis[name] = analysis[name].astype("category")
    if spec["method"] == "cbpe":
        est = nml.CBPE(
            y_pred_proba=spec["y_pred_proba"],
            y_pred=spec["y_pred"],
            y_true=spec["y_true"],
            metrics=spec["metrics"],
            chunk_size=spec["chunk_size"],
            problem_type=spec["problem_type"],
        )
    else:
        est = nml.DLE(
            feature_column_names=spec["features"],
            y_pred=spec["y_pred"],
            y_true=spec["y_true"],
            metrics=spec["metrics"],
            chunk_size=spec["chunk_size"],
        )
    started = time.perf_counter()
    est.fit(reference)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = est.estimate(analysis)
    estimate_seconds = time.perf_counter() - started
    frame = result.filter(period="analysis").to_df()
    out = {
        "fit_seconds": fit_seconds,
        "estimate_seconds": estimate_seconds,
        "estimates": {m: frame[(m, "value")].tolist() for m in spec["metrics"]},
        "version": nml.__version__,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
