"""Data quality of a window: is the data broken, before asking whether it drifted?

Per column, each rate is a share of the window's rows, compared with the same rate in
the reference so that a column that was always 30% missing does not alarm at 30%:

- ``missing`` (both kinds): null, NaN, or the column absent from the record; reference
  rate: the reference's missing share.
- ``out_of_range`` (numeric): below the reference minimum or above its maximum; 0.
- ``non_finite`` (numeric): +inf or -inf; reference rate: the reference's share.
- ``type_error`` (numeric): a value that is not a number (a string); 0.
- ``unseen`` (categorical): a category the reference never had; 0.

A check is breached when ``rate > reference_rate + threshold`` and the window has at
least ``min_rows`` rows. Columns absent from every row of a non-empty window are
reported as missing columns (always a breach); columns the schema does not know are
reported as extra columns (informational).
"""

from __future__ import annotations

import numpy as np

from detectors.profile import Profile
from detectors.results import QualityCheck, QualityResult
from detectors.settings import QualitySettings
from detectors.sketch import WindowSketch


def _checks(
    names: list[str],
    check: str,
    counts: np.ndarray,
    reference_rates: np.ndarray,
    rows: int,
    settings: QualitySettings,
) -> list[QualityCheck]:
    """One check for every column of a kind, computed on whole arrays."""
    counts = np.asarray(counts, dtype=np.int64)
    rates = counts / rows if rows else np.zeros(len(names))
    thresholds = np.array([settings.threshold(n, check) for n in names], dtype=np.float64)
    breached = (rates > reference_rates + thresholds) & (rows >= settings.min_rows) & (rows > 0)
    return [
        QualityCheck(
            feature=name,
            check=check,
            rate=float(rates[i]),
            reference_rate=float(reference_rates[i]),
            threshold=float(thresholds[i]),
            breached=bool(breached[i]),
            count=int(counts[i]),
        )
        for i, name in enumerate(names)
    ]


def assess_quality(
    profile: Profile, sketch: WindowSketch, settings: QualitySettings
) -> QualityResult:
    """Rates of missing, out-of-range, non-finite, mistyped and unseen values per column
    (features and predictions), against the reference's own rates."""
    rows = sketch.rows
    num = profile.numeric_names
    cat = profile.categorical_names
    nps = [profile.numeric[n] for n in num]
    cps = [profile.categorical[n] for n in cat]
    zeros_n, zeros_c = np.zeros(len(num)), np.zeros(len(cat))

    def share(part: list[int], whole: list[int]) -> np.ndarray:
        w = np.asarray(whole, dtype=np.float64)
        return np.divide(part, w, out=np.zeros(len(w)), where=w > 0)

    by_check: dict[str, list[QualityCheck]] = {}
    by_check["num_missing"] = _checks(
        num,
        "missing",
        sketch.num_missing,
        share([p.missing for p in nps], [p.rows for p in nps]),
        rows,
        settings,
    )
    by_check["out_of_range"] = _checks(
        num, "out_of_range", sketch.num_below + sketch.num_above, zeros_n, rows, settings
    )
    by_check["non_finite"] = _checks(
        num,
        "non_finite",
        sketch.num_non_finite,
        share([p.non_finite for p in nps], [p.rows for p in nps]),
        rows,
        settings,
    )
    by_check["type_error"] = _checks(
        num, "type_error", sketch.num_type_error, zeros_n, rows, settings
    )
    by_check["cat_missing"] = _checks(
        cat,
        "missing",
        sketch.cat_missing,
        share([p.missing for p in cps], [p.rows for p in cps]),
        rows,
        settings,
    )
    by_check["unseen"] = _checks(cat, "unseen", sketch.cat_unseen, zeros_c, rows, settings)

    # Report in schema order, a column's checks together.
    per_column: dict[str, list[QualityCheck]] = {n: [] for n in profile.schema.names}
    for checks in by_check.values():
        for c in checks:
            per_column[c.feature].append(c)
    ordered = tuple(c for n in profile.schema.names for c in per_column[n])

    absent_everywhere = (sketch.absent == rows) & (rows > 0)
    missing_columns = tuple(
        n for n, gone in zip(profile.schema.names, absent_everywhere, strict=True) if gone
    )
    return QualityResult(
        rows=rows,
        checks=ordered,
        missing_columns=missing_columns,
        extra_columns=tuple(sorted(sketch.extra_columns)),
    )
