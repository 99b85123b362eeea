"""Reference profiles of data too big for one machine, built with Dask as exact merges of
per-partition pieces (docs/reference.md, "Profiles at scale").

A profile's numeric bin edges are quantiles of the *whole* column (``inverted_cdf``:
order statistics), which no merge of per-partition quantiles gives exactly. The build is
a radix select over the float64 values' bits, in passes whose per-partition results are
plain counts and therefore merge exactly:

1. per column: counts (rows, missing, non-finite), min, max, sum and squared deviations
   (Chan's parallel formula), category counts, partition lengths (for the sample), and a
   histogram of the top 16 bits of every finite value's order-preserving uint64 key;
   from it and the exact ranks of the wanted quantiles, each quantile's 16-bit prefix;
2. three more passes narrow every quantile's prefix by 16 bits, counting only values
   that share a wanted prefix: after them each quantile is an exact value of the data;
3. a last pass counts the rows per bin over the fixed edges (with the bin sums), and
   picks the sample rows by their global row numbers, as ``build_profile`` draws them.

Counts, edges, categories and the sample equal ``build_profile``'s on the same data;
means, standard deviations and bin means are sums in another order: equal within a
relative 1e-12 (tested). Why Dask: it runs on the machine's Python with no JVM (Spark
needs a JRE), reads Parquet/CSV in partitions with pandas, and its LocalCluster or a
remote scheduler run the same code; Ray would do too, with a heavier runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from detectors.categories import MISSING, category_strings
from detectors.column_profiles import (
    DEFAULT_BINS,
    DEFAULT_MAX_KNOWN_CATEGORIES,
    DEFAULT_TOP_K,
    CategoricalProfile,
    NumericProfile,
)
from detectors.profile import DEFAULT_SAMPLE_ROWS, Profile, ProfileError
from detectors.schema import Kind, Schema, SchemaError, as_float_array, infer_schema
from detectors.sequential_calibration import unseen_rate_of_counts

if TYPE_CHECKING:
    import dask.dataframe as dd

_SIGN = np.uint64(1 << 63)
_DIGIT = 16
_PASSES = 64 // _DIGIT


def sortable(x: np.ndarray) -> np.ndarray:
    """float64 → uint64 keys in the same order (negative values flipped)."""
    u = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    return np.where(u & _SIGN, ~u, u | _SIGN)


def unsortable(k: np.ndarray) -> np.ndarray:
    """The inverse of :func:`sortable`."""
    k = np.asarray(k, dtype=np.uint64)
    return np.where(k & _SIGN, k & ~_SIGN, ~k).view(np.float64)


def quantile_ranks(n: int, bins: int) -> np.ndarray:
    """0-based ranks of numpy's ``inverted_cdf`` quantiles at ``linspace(0, 1, bins+1)[1:-1]``
    over ``n`` sorted values (numpy's own arithmetic, so the same order statistics)."""
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    index = n * qs - 1
    previous = np.floor(index)
    rank = np.where(index - previous > 0, previous + 1, previous).astype(np.int64)
    return np.clip(rank, 0, n - 1)


def _finite(part: pd.DataFrame, name: str) -> np.ndarray:
    x = as_float_array(part[name].to_numpy())
    return x[np.isfinite(x)] + 0.0  # -0.0 as 0.0: one key for one value


# -- per-partition pieces (run on the workers) -------------------------------------------


def _stats(part: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> dict:
    out: dict[str, Any] = {"rows": len(part), "numeric": {}, "categorical": {}}
    for name in numeric:
        x = as_float_array(part[name].to_numpy())
        fin = x[np.isfinite(x)] + 0.0
        top = (sortable(fin) >> np.uint64(64 - _DIGIT)).astype(np.int64)
        mean = float(fin.mean()) if len(fin) else 0.0
        out["numeric"][name] = {
            "missing": int(np.isnan(x).sum()),
            "non_finite": int((~np.isfinite(x)).sum() - np.isnan(x).sum()),
            "count": len(fin),
            "min": float(fin.min()) if len(fin) else np.inf,
            "max": float(fin.max()) if len(fin) else -np.inf,
            "mean": mean,
            "m2": float(((fin - mean) ** 2).sum()) if len(fin) else 0.0,
            "top": np.bincount(top, minlength=1 << _DIGIT),
        }
    for name in categorical:
        strings, miss = category_strings(part[name].to_numpy())
        out["categorical"][name] = {
            "counts": pd.Series(strings[~miss]).value_counts(sort=False).to_dict(),
            "missing": int(miss.sum()),
        }
    return out


def _refine(part: pd.DataFrame, prefixes: dict[str, np.ndarray], shift: int) -> dict:
    """Per column and wanted prefix (the top ``64 - shift`` bits): counts of the next 16,
    sparse (cell, count): only values sharing a wanted prefix are counted."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, wanted in prefixes.items():
        keys = sortable(_finite(part, name))
        head = keys >> np.uint64(shift)
        which = np.searchsorted(wanted, head)
        which = np.minimum(which, len(wanted) - 1)
        hit = wanted[which] == head
        digit = ((keys[hit] >> np.uint64(shift - _DIGIT)) & np.uint64(0xFFFF)).astype(np.int64)
        out[name] = np.unique(which[hit] * (1 << _DIGIT) + digit, return_counts=True)
    return out


def _histograms(
    part: pd.DataFrame, edges: dict[str, np.ndarray], offset: int, take: np.ndarray, names: list
) -> dict:
    out: dict[str, Any] = {"hist": {}, "sample": {}}
    for name, e in edges.items():
        fin = _finite(part, name)
        slot = np.searchsorted(e, fin, side="left")
        out["hist"][name] = (
            np.bincount(slot, minlength=len(e) + 1),
            np.bincount(slot, weights=fin, minlength=len(e) + 1),
        )
    local = take[(take >= offset) & (take < offset + len(part))] - offset
    out["sample"] = {n: part[n].to_numpy()[local] for n in names}
    return out


# -- the driver ---------------------------------------------------------------------------


def build_profile_dask(data: dd.DataFrame, schema: Schema | None = None, **options: Any) -> Profile:
    """``build_profile`` over a Dask DataFrame, in five passes over its partitions; the
    options are :func:`profile_and_unseen_rates`'s."""
    return profile_and_unseen_rates(data, schema, **options)[0]


def reference_profile_dask(
    data: dd.DataFrame,
    schema: Schema | None = None,
    *,
    pane_rows: int,
    panes: int,
    **build: Any,
) -> Profile:
    """What ``reference build`` stores, built on Dask: the profile, its sequential
    calibration and the laws that depend on it alone, the same as a build in one process
    on the same data (the calibration needs the data only for its category counts, which
    the build merges exactly)."""
    from detectors.reference_laws import with_reference_laws
    from detectors.sequential_calibration import calibrate_sequential

    profile, rates = profile_and_unseen_rates(data, schema, **build)
    seq = calibrate_sequential(profile, pane_rows=pane_rows, panes=panes, unseen_rate=rates)
    return with_reference_laws(profile.with_sequential(seq))


def profile_and_unseen_rates(
    data: dd.DataFrame,
    schema: Schema | None = None,
    *,
    prediction: list[str] | None = None,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    max_known_categories: int = DEFAULT_MAX_KNOWN_CATEGORIES,
    seed: int = 0,
    compute: Callable[..., tuple[Any, ...]] | None = None,
) -> tuple[Profile, dict[str, float]]:
    """The profile of ``data`` built as ``build_profile`` builds it, in five passes over
    its partitions, and each categorical column's Good–Turing rate of unseen categories
    from its merged counts.

    Without ``schema`` it is inferred from the first partition. ``compute`` defaults to
    ``dask.compute`` (the current client's scheduler when one is set up).
    """
    import dask

    run = compute or dask.compute
    parts = data.to_delayed()
    if schema is None:
        first = parts[0].compute()
        schema = infer_schema(first, prediction=prediction).schema
    missing = [n for n in schema.names if n not in data.columns]
    if missing:
        raise SchemaError(f"schema columns {missing} are not in the reference data")
    numeric = [c.name for c in schema.numeric()]
    categorical = [c.name for c in schema.categorical()]

    stats = run(*[dask.delayed(_stats)(p, numeric, categorical) for p in parts])
    lengths = [s["rows"] for s in stats]
    n = sum(lengths)
    if n == 0:
        raise ProfileError("the reference data has no rows")
    merged = {name: _merge_numeric([s["numeric"][name] for s in stats]) for name in numeric}
    for name, m in merged.items():
        if m["count"] == 0:
            raise SchemaError(f"numeric column {name!r} has no finite values in the reference")

    # radix select: after each pass every wanted rank knows 16 more bits of its key
    ranks = {name: quantile_ranks(m["count"], bins) for name, m in merged.items()}
    prefix = {name: np.zeros(len(r), dtype=np.uint64) for name, r in ranks.items()}
    below = {name: np.zeros(len(r), dtype=np.int64) for name, r in ranks.items()}
    for name, m in merged.items():
        _descend(
            m["top"][None, :],
            np.zeros(len(ranks[name]), np.int64),
            ranks[name],
            prefix[name],
            below[name],
        )
    for step in range(1, _PASSES):
        shift = 64 - step * _DIGIT
        wanted = {name: np.unique(p) for name, p in prefix.items() if len(p)}
        pieces = run(*[dask.delayed(_refine)(p, wanted, shift) for p in parts])
        for name, w in wanted.items():
            counts = np.zeros(len(w) << _DIGIT, dtype=np.int64)
            for piece in pieces:
                np.add.at(counts, piece[name][0], piece[name][1])
            grid = counts.reshape(len(w), 1 << _DIGIT)
            row = np.searchsorted(w, prefix[name])
            prefix[name] = prefix[name] << np.uint64(_DIGIT)
            _descend(grid, row, ranks[name] - below[name], prefix[name], below[name])

    edges = {}
    for name, m in merged.items():
        lo, hi = m["min"], m["max"]
        inner = np.unique(unsortable(prefix[name]))
        inner = inner[(inner >= lo) & (inner < hi)]
        edges[name] = np.unique(np.concatenate([[np.nextafter(lo, -np.inf)], inner, [hi]]))

    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(n, size=min(n, sample_rows), replace=False))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    names = list(schema.names)
    final = run(
        *[
            dask.delayed(_histograms)(p, edges, int(o), take, names)
            for p, o in zip(parts, offsets, strict=True)
        ]
    )
    numeric_profiles = {}
    for name, m in merged.items():
        counts = sum(f["hist"][name][0] for f in final)
        sums = sum(f["hist"][name][1] for f in final)
        with np.errstate(invalid="ignore", divide="ignore"):
            bin_means = np.where(counts > 0, sums / counts, np.nan)
        numeric_profiles[name] = NumericProfile(
            name=name,
            edges=edges[name],
            counts=counts.astype(np.int64),
            count=m["count"],
            missing=m["missing"],
            non_finite=m["non_finite"],
            min=m["min"],
            max=m["max"],
            mean=m["mean"],
            std=float(np.sqrt(m["m2"] / (m["count"] - 1))) if m["count"] > 1 else 0.0,
            bin_means=bin_means,
        )
    category_counts = {
        name: _merge_counts([s["categorical"][name] for s in stats]) for name in categorical
    }
    categorical_profiles = {
        name: _categorical(name, merged, top_k, max_known_categories)
        for name, merged in category_counts.items()
    }
    rates = {
        name: rate
        for name, (freq, _) in category_counts.items()
        if (rate := unseen_rate_of_counts(freq, categorical_profiles[name].known)) is not None
    }
    sample: dict[str, np.ndarray] = {}
    for c in schema.columns:
        col = np.concatenate([f["sample"][c.name] for f in final])
        if c.kind is Kind.NUMERIC:
            sample[c.name] = as_float_array(col)
        else:
            strings, miss = category_strings(col)
            sample[c.name] = np.where(miss, MISSING, strings).astype(object)
    profile = Profile(
        schema=schema,
        numeric=numeric_profiles,
        categorical=categorical_profiles,
        rows=n,
        bins=bins,
        top_k=top_k,
        sample=sample,
        inference={},
    )
    return profile, rates


def _descend(
    counts: np.ndarray, row: np.ndarray, rank: np.ndarray, prefix: np.ndarray, below: np.ndarray
) -> None:
    """For each wanted rank: the next digit whose cumulative count passes it, in place."""
    cum = np.cumsum(counts, axis=1)
    for i in range(len(rank)):
        digit = int(np.searchsorted(cum[row[i]], rank[i], side="right"))
        prefix[i] |= np.uint64(digit)
        below[i] += int(cum[row[i], digit - 1]) if digit else 0


def _merge_numeric(pieces: list[dict]) -> dict:
    """Counts add; min/max; mean and squared deviations by Chan's parallel formula."""
    out = {"count": 0, "missing": 0, "non_finite": 0, "min": np.inf, "max": -np.inf}
    mean, m2 = 0.0, 0.0
    for p in pieces:
        n_a, n_b = out["count"], p["count"]
        if n_b:
            delta = p["mean"] - mean
            total = n_a + n_b
            mean += delta * n_b / total
            m2 += p["m2"] + delta * delta * n_a * n_b / total
        out["count"] = n_a + n_b
        out["missing"] += p["missing"]
        out["non_finite"] += p["non_finite"]
        out["min"], out["max"] = min(out["min"], p["min"]), max(out["max"], p["max"])
    out["mean"], out["m2"] = mean, m2
    out["top"] = sum(p["top"] for p in pieces)
    return out


def _merge_counts(pieces: list[dict]) -> tuple[dict[str, int], int]:
    """A categorical column's category counts and missing count over all partitions."""
    freq: dict[str, int] = {}
    for p in pieces:
        for k, v in p["counts"].items():
            freq[k] = freq.get(k, 0) + int(v)
    return freq, sum(p["missing"] for p in pieces)


def _categorical(
    name: str, merged: tuple[dict[str, int], int], top_k: int, max_known: int
) -> CategoricalProfile:
    freq, missing = merged
    order = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    other = int(sum(v for _, v in order[top_k:]))
    return CategoricalProfile(
        name=name,
        vocabulary=tuple(str(k) for k, _ in order[:top_k]),
        counts=np.array([*(int(v) for _, v in order[:top_k]), other, 0], dtype=np.int64),
        known=tuple(str(k) for k, _ in order[:max_known]),
        count=sum(freq.values()),
        missing=missing,
    )
