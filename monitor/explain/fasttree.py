"""Exact path-dependent TreeSHAP in O(trees × leaves × depth) per row: Fast TreeSHAP v2.

``shap.TreeExplainer`` and XGBoost's and LightGBM's own ``pred_contribs`` run Lundberg's
TreeSHAP, O(T·L·D²) per row: at XGBoost's default depth 6 a 100-tree model costs about
0.8 s of CPU per 1,000 rows, four times the per-window target of docs/explainability.md.
This module computes the same values (Yang 2021, "Fast TreeSHAP", algorithm v2) with the
D² moved out of the per-row work.

Why it works: a leaf ``l`` with value ``v`` and the distinct features ``k = 1..d`` split on
its path contributes to the attribution of feature ``k``

    φ_k += v · (o_k − z_k) · ∫₀¹ Π_{j≠k} (z_j (1 − t) + o_j t) dt

where ``z_j`` is the product of the cover fractions of the path's splits on feature ``j``
and ``o_j`` is 1 when the row satisfies every one of them (the Shapley weights
s!(d−s−1)!/d! are the Beta integrals ∫ t^s (1−t)^(d−s−1) dt). The contribution depends on
the row only through the bit pattern ``o``, so every (leaf, pattern) pair is tabulated once
when the model is loaded (Gauss–Legendre quadrature, exact for these polynomials), and a
row costs one pass over the tree's nodes to find each leaf's pattern plus ``d`` table
reads per leaf. Two sibling leaves share one table (their patterns differ only in the
parent's bit), which halves the lookups of a full tree; rows go in blocks of 64, table by
table, so that each table stays in cache across the block. Leaves whose 2^d table would
not fit the memory cap are integrated per row by the same quadrature instead (O(d²), like
TreeSHAP).

The trees come from shap's own parse of the model (``shap.TreeExplainer(model).model``:
thresholds, missing-value directions, covers, leaf values), so the values are shap's; the
row loop is compiled with numba (a dependency of shap) and releases the GIL, so
``threads`` row chunks run in parallel. Models with categorical splits, or that shap
cannot parse (vector leaves), are left to the library's own TreeSHAP (``build`` returns
None; monitor/explain/explainers.py).
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

# Largest table, in float64 values, tabulated for one model (64 MiB); leaves beyond it
# are integrated per row.
DEFAULT_TABLE_VALUES = 8 << 20
# Rows per thread below which more threads cost more than they save.
_MIN_ROWS_PER_THREAD = 64


@dataclass(frozen=True)
class FastTrees:
    """One model output of a tree ensemble, flattened for the row kernel."""

    n_features: int
    input_dtype: Any
    expected_value: float
    internal: np.ndarray  # internal nodes, parents before children (global ids)
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    default: np.ndarray
    bit: np.ndarray  # the node's feature's bit in the patterns of the leaves below it
    leaf_node: np.ndarray
    leaf_d: np.ndarray
    leaf_off: np.ndarray  # into leaf_feat / leaf_z
    leaf_feat: np.ndarray
    leaf_z: np.ndarray
    leaf_value: np.ndarray
    # what the kernel looks up: a leaf, or two sibling leaves at once (``unit_sib``, the
    # second leaf's node; ``unit_bit``: see _pair_siblings), by one table entry
    unit_leaf: np.ndarray  # index of the (first) leaf
    unit_sib: np.ndarray  # -1: one leaf
    unit_bit: np.ndarray
    unit_table: np.ndarray  # offset into tables; -1: integrated per row
    tables: np.ndarray
    quad_t: np.ndarray  # Gauss–Legendre nodes and weights on [0, 1] for the per-row leaves
    quad_w: np.ndarray

    @property
    def tabulated_leaves(self) -> int:
        tabulated = self.unit_table >= 0
        return int(np.count_nonzero(tabulated) + np.count_nonzero(self.unit_sib[tabulated] >= 0))

    def shap_values(self, x: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(rows × features) attributions of ``x`` (rows × features, model order)."""
        x = np.ascontiguousarray(np.asarray(x).astype(self.input_dtype).astype(np.float64))
        out = np.zeros((len(x), self.n_features))
        workers = threads if threads is not None else len(os.sched_getaffinity(0))
        workers = max(1, min(workers, len(x) // _MIN_ROWS_PER_THREAD))
        kernel = _kernel()
        args = (
            self.internal,
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.default,
            self.bit,
            self.leaf_node,
            self.leaf_d,
            self.leaf_off,
            self.leaf_feat,
            self.leaf_z,
            self.leaf_value,
            self.unit_leaf,
            self.unit_sib,
            self.unit_bit,
            self.unit_table,
            self.tables,
            self.quad_t,
            self.quad_w,
        )
        if workers == 1:
            kernel(x, out, *args)
            return out
        bounds = np.linspace(0, len(x), workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            jobs = [
                pool.submit(kernel, x[a:b], out[a:b], *args) for a, b in itertools.pairwise(bounds)
            ]
            for job in jobs:
                job.result()
        return out


def build(
    ensemble: Any,
    output: int,
    n_features: int,
    *,
    input_dtype: Any = None,
    table_values: int = DEFAULT_TABLE_VALUES,
) -> FastTrees | None:
    """Flatten output ``output`` of ``ensemble`` (a ``shap`` TreeEnsemble), or None when it
    holds splits this kernel does not evaluate (categorical ones)."""
    splits = np.asarray(ensemble.children_left) >= 0
    if np.any(np.asarray(ensemble.threshold_types)[splits] != 0):
        return None
    left_all = np.asarray(ensemble.children_left)
    right_all = np.asarray(ensemble.children_right)
    default_all = np.asarray(ensemble.children_default)
    features_all = np.asarray(ensemble.features)
    thresholds_all = np.asarray(ensemble.thresholds, dtype=np.float64)
    values_all = np.asarray(ensemble.values, dtype=np.float64)[:, :, output]
    weights_all = np.asarray(ensemble.node_sample_weight, dtype=np.float64)
    max_nodes = left_all.shape[1]
    internal: list[int] = []
    leaves: list[tuple[int, list[int], list[float], float]] = []
    siblings: list[tuple[int, int, int, bool]] = []  # two leaves under one parent (_pair_siblings)
    bits = np.zeros(left_all.size, dtype=np.int64)
    expected = float(np.asarray(ensemble.base_offset, dtype=np.float64).reshape(-1)[output])
    for t in range(left_all.shape[0]):
        if not np.any(values_all[t]):
            continue  # a tree of another output (multiclass boosters)
        base = t * max_nodes
        # depth-first from the root: (node, path features, their cover fractions)
        stack: list[tuple[int, list[int], list[float]]] = [(0, [], [])]
        while stack:
            node, feats, zs = stack.pop()
            if left_all[t, node] < 0:
                value = float(values_all[t, node])
                expected += value * math.prod(zs)
                if feats:
                    leaves.append((base + node, feats, zs, value))
                continue
            internal.append(base + node)
            f = int(features_all[t, node])
            k = feats.index(f) if f in feats else len(feats)
            bits[base + node] = k
            lo, hi = int(left_all[t, node]), int(right_all[t, node])
            if left_all[t, lo] < 0 and left_all[t, hi] < 0:
                siblings.append((base + lo, base + hi, k, k == len(feats)))
            parent_w = weights_all[t, node]
            for child in (left_all[t, node], right_all[t, node]):
                z = weights_all[t, child] / parent_w if parent_w > 0 else 0.0
                if k == len(feats):
                    stack.append((int(child), [*feats, f], [*zs, z]))
                else:
                    zs_child = list(zs)
                    zs_child[k] *= z
                    stack.append((int(child), list(feats), zs_child))
    # the kernel visits internal nodes in list order: a parent before its children (DFS)
    if any(len(feats) >= 62 for _, feats, _, _ in leaves):
        return None
    leaf_d = np.array([len(f) for _, f, _, _ in leaves], dtype=np.int64)
    cap = _table_cap(leaf_d, table_values)
    leaf_off = np.concatenate([[0], np.cumsum(leaf_d)[:-1]]).astype(np.int64)
    leaf_feat = np.array([f for _, fs, _, _ in leaves for f in fs], dtype=np.int64)
    leaf_z = np.array([z for _, _, zs, _ in leaves for z in zs], dtype=np.float64)
    leaf_value = np.array([v for _, _, _, v in leaves], dtype=np.float64)
    table_off = np.full(len(leaves), -1, dtype=np.int64)
    sizes = np.where(leaf_d <= cap, leaf_d << leaf_d, 0)
    table_off[leaf_d <= cap] = (np.cumsum(sizes) - sizes)[leaf_d <= cap]
    tables = np.zeros(int(sizes.sum()))
    for d in np.unique(leaf_d[leaf_d <= cap]):
        _tabulate(
            int(d), np.flatnonzero(leaf_d == d), leaf_off, leaf_z, leaf_value, table_off, tables
        )
    leaf_node = np.array([n for n, _, _, _ in leaves], dtype=np.int64)
    units = _pair_siblings(siblings, leaf_node, leaf_d, table_off, tables)
    deepest = int(leaf_d.max()) if len(leaf_d) else 1
    quad_t, quad_w = _quadrature(deepest)
    return FastTrees(
        n_features=n_features,
        input_dtype=input_dtype or getattr(ensemble, "input_dtype", np.float64),
        expected_value=expected,
        internal=np.array(internal, dtype=np.int64),
        feature=features_all.reshape(-1).astype(np.int64),
        threshold=thresholds_all.reshape(-1),
        left=_global(left_all, max_nodes),
        right=_global(right_all, max_nodes),
        default=_global(default_all, max_nodes),
        bit=bits,
        leaf_node=leaf_node,
        leaf_d=leaf_d,
        leaf_off=leaf_off,
        leaf_feat=leaf_feat,
        leaf_z=leaf_z,
        leaf_value=leaf_value,
        unit_leaf=units[0],
        unit_sib=units[1],
        unit_bit=units[2],
        unit_table=units[3],
        tables=units[4],
        quad_t=quad_t,
        quad_w=quad_w,
    )


def _pair_siblings(
    siblings: list[tuple[int, int, int, bool]],
    leaf_node: np.ndarray,
    leaf_d: np.ndarray,
    table_off: np.ndarray,
    tables: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's lookups. Two sibling leaves (``siblings``: left node, right node, their
    parent's feature bit, whether that feature is new on the path) share their path's
    features, and a row's patterns for them differ only in the parent's bit, so one table
    holds both leaves' sum: one lookup of d values instead of two. Under a new feature the
    row satisfies exactly one of the two splits, so the left leaf's pattern says it all
    (2^d entries); under a feature already on the path both can fail, and the right leaf's
    bit goes above it (bit d, 2^(d+1) entries; ``unit_bit`` says which bit, -1 for the
    others). Other leaves keep their own tables, or none (integrated per row)."""
    index = {int(n): i for i, n in enumerate(leaf_node)}
    pairs = []
    for lo, hi, bit, new in siblings:
        first, second = index.get(lo, -1), index.get(hi, -1)
        if min(first, second) >= 0 and min(table_off[first], table_off[second]) >= 0:
            pairs.append((first, second, bit, new))
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    pair_bit = np.array([p[2] for p in pairs], dtype=np.int64)
    wide = np.array([not p[3] for p in pairs], dtype=bool)
    paired = np.zeros(len(leaf_node), dtype=bool)
    paired[a] = paired[b] = True
    single = np.flatnonzero(~paired)
    unit_leaf = np.concatenate([a, single])
    unit_sib = np.concatenate([leaf_node[b], np.full(len(single), -1, dtype=np.int64)])
    unit_bit = np.concatenate([np.where(wide, pair_bit, -1), np.full(len(single), -1)])
    d_unit = leaf_d[unit_leaf]
    sizes = np.where(table_off[unit_leaf] >= 0, d_unit << (d_unit + (unit_bit >= 0)), 0)
    unit_table = np.where(table_off[unit_leaf] >= 0, np.cumsum(sizes) - sizes, -1)
    out = np.zeros(int(sizes.sum()))
    for u in np.flatnonzero((unit_sib < 0) & (unit_table >= 0)):
        n = int(sizes[u])
        start = table_off[unit_leaf[u]]
        out[unit_table[u] : unit_table[u] + n] = tables[start : start + n]
    for d in np.unique(leaf_d[a]):
        k = np.arange(d)
        for is_wide in (False, True):
            same = np.flatnonzero((leaf_d[a] == d) & (wide == is_wide))  # pairs come first
            idx = np.arange((2 if is_wide else 1) << d)
            p_first = idx & ((1 << d) - 1)
            step = max(1, (1 << 20) // (d * len(idx)))
            for chunk in range(0, len(same), step):
                units = same[chunk : chunk + step]
                flag = pair_bit[units][:, None]
                if is_wide:
                    p_second = (p_first & ~(1 << flag)) | ((idx >> d) << flag)
                else:
                    p_second = p_first ^ (1 << flag)
                mine = tables[table_off[a[units]][:, None, None] + p_first[None, :, None] * d + k]
                theirs = tables[table_off[b[units]][:, None, None] + p_second[:, :, None] * d + k]
                where = unit_table[units][:, None] + np.arange(d * len(idx))
                out[where] = (mine + theirs).reshape(len(units), -1)
    return unit_leaf, unit_sib, unit_bit, unit_table, out


def warm_up(trees: FastTrees) -> None:
    """Compile the row kernel now, on one thread (about a second the first time; numba
    caches it on disk), not inside the first window's time budget."""
    trees.shap_values(np.zeros((1, trees.n_features)), 1)


# -- tabulation -------------------------------------------------------------------------------


def _global(children: np.ndarray, max_nodes: int) -> np.ndarray:
    offsets = (np.arange(children.shape[0]) * max_nodes)[:, None]
    return np.where(children >= 0, children + offsets, -1).reshape(-1).astype(np.int64)


def _table_cap(leaf_d: np.ndarray, table_values: int) -> int:
    """The largest path length whose leaves all fit, with the shorter ones, in the cap."""
    cap = 0
    for d in range(1, 63):
        if int(np.sum(np.where(leaf_d <= d, leaf_d << np.minimum(leaf_d, 62), 0))) > table_values:
            break
        cap = d
        if d >= int(leaf_d.max(initial=0)):
            break
    return cap


def _quadrature(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre on [0, 1], exact for the degree d − 1 polynomials integrated here."""
    t, w = np.polynomial.legendre.leggauss(d // 2 + 1)
    return (t + 1) / 2, w / 2


def _tabulate(
    d: int,
    leaves: np.ndarray,
    leaf_off: np.ndarray,
    leaf_z: np.ndarray,
    leaf_value: np.ndarray,
    table_off: np.ndarray,
    tables: np.ndarray,
) -> None:
    """tables[off + p·d + k] = φ_k of the leaf for the pattern p of satisfied features.

    The integral for feature k depends on the other d − 1 bits of p only: their products
    are built for all 2^(d−1) patterns at once by doubling (a bit at a time, its factor
    z (1 − t) when unsatisfied, z (1 − t) + t when satisfied), for every quadrature node."""
    t, w = _quadrature(d)
    patterns = np.arange(1 << d)
    o = ((patterns[:, None] >> np.arange(d)) & 1).astype(np.float64)  # (2^d, d)
    chunk = max(1, (4 << 20) // ((1 << d) * len(t)))
    for start in range(0, len(leaves), chunk):
        part = leaves[start : start + chunk]
        z = leaf_z[leaf_off[part][:, None] + np.arange(d)]  # (m, d)
        unsatisfied = z[:, :, None] * (1 - t)  # (m, d, q)
        satisfied = unsatisfied + t
        phi = np.empty((len(part), 1 << d, d))
        for k in range(d):
            products = np.ones((len(part), 1, len(t)))
            for j in range(d):
                if j != k:
                    products = np.concatenate(
                        [products * unsatisfied[:, j, None], products * satisfied[:, j, None]],
                        axis=1,
                    )
            integral = products @ w  # (m, 2^(d−1)): bit i is the i-th feature other than k
            others = (patterns & ((1 << k) - 1)) | ((patterns >> (k + 1)) << k)
            phi[:, :, k] = (o[None, :, k] - z[:, k, None]) * integral[:, others]
        phi *= leaf_value[part][:, None, None]
        index = table_off[part][:, None] + np.arange(d << d)
        tables[index] = phi.reshape(len(part), -1)


# -- the row kernel -----------------------------------------------------------------------------

_COMPILED: list[Any] = []


def _kernel() -> Any:
    """The compiled row kernel, cached on disk where numba finds a writable place (next
    to this file, or its user cache directory); on a read-only filesystem it is compiled
    again at each start (about a second)."""
    if not _COMPILED:
        numba = importlib.import_module("numba")
        try:
            _COMPILED.append(numba.njit(nogil=True, cache=True)(_rows))
        except RuntimeError:  # "cannot cache function ...: no locator available"
            _COMPILED.append(numba.njit(nogil=True)(_rows))
    return _COMPILED[0]


def _rows(
    x: np.ndarray,
    out: np.ndarray,
    internal: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    default: np.ndarray,
    bit: np.ndarray,
    leaf_node: np.ndarray,
    leaf_d: np.ndarray,
    leaf_off: np.ndarray,
    leaf_feat: np.ndarray,
    leaf_z: np.ndarray,
    leaf_value: np.ndarray,
    unit_leaf: np.ndarray,
    unit_sib: np.ndarray,
    unit_bit: np.ndarray,
    unit_table: np.ndarray,
    tables: np.ndarray,
    quad_t: np.ndarray,
    quad_w: np.ndarray,
) -> None:  # pragma: no cover - compiled by numba; tested through FastTrees.shap_values
    """Rows in blocks: per row, each node's failed-feature bits (a child inherits its
    parent's and adds the split's feature bit when the row goes the other way), giving each
    lookup's pattern; then lookup by lookup, the block's table entries, so that a table
    stays in cache across the block's rows."""
    block = 64
    fail = np.zeros(len(feature), dtype=np.int64)
    patterns = np.empty((block, len(unit_leaf)), dtype=np.int64)
    deepest = 1
    for j in range(len(leaf_d)):
        deepest = max(deepest, leaf_d[j])
    prefix = np.empty(deepest + 1)
    for start in range(0, x.shape[0], block):
        stop = min(start + block, x.shape[0])
        for r in range(start, stop):
            row = x[r]
            for i in range(len(internal)):
                # without branches: which way a row goes is as good as random
                node = internal[i]
                value = row[feature[node]]
                lo, hi = left[node], right[node]
                missing = np.int64(value != value)
                goes_left = np.int64(value <= threshold[node]) | (
                    missing & np.int64(default[node] == lo)
                )
                here = fail[node]
                flag = np.int64(1) << bit[node]
                fail[lo] = here | (flag * (1 - goes_left))
                fail[hi] = here | (flag * goes_left)
            for u in range(len(unit_leaf)):
                j = unit_leaf[u]
                d = leaf_d[j]
                pattern = ~fail[leaf_node[j]] & ((np.int64(1) << d) - 1)
                if unit_bit[u] >= 0:  # the right sibling's bit, above the left's pattern
                    pattern |= ((~fail[unit_sib[u]] >> unit_bit[u]) & 1) << d
                patterns[r - start, u] = pattern
        for u in range(len(unit_leaf)):
            j = unit_leaf[u]
            d = leaf_d[j]
            off = leaf_off[j]
            if unit_table[u] >= 0:
                for r in range(start, stop):
                    base = unit_table[u] + patterns[r - start, u] * d
                    phi = out[r]
                    for k in range(d):
                        phi[leaf_feat[off + k]] += tables[base + k]
                continue
            # per row: the same integral by quadrature, products over j ≠ k from both ends
            v = leaf_value[j]
            for r in range(start, stop):
                pattern = patterns[r - start, u]
                phi = out[r]
                for q in range(len(quad_t)):
                    t = quad_t[q]
                    prefix[0] = 1.0
                    for k in range(d):
                        o = (pattern >> k) & 1
                        prefix[k + 1] = prefix[k] * (leaf_z[off + k] * (1 - t) + o * t)
                    suffix = 1.0
                    for k in range(d - 1, -1, -1):
                        o = (pattern >> k) & 1
                        z = leaf_z[off + k]
                        phi[leaf_feat[off + k]] += quad_w[q] * v * (o - z) * prefix[k] * suffix
                        suffix *= z * (1 - t) + o * t
