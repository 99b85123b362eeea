"""Kernel maximum mean discrepancy two-sample test with a permutation p-value.

Tests whether rows ``x`` (the reference) and ``y`` (the window) come from the same
distribution, whatever the shape of the difference: a correlation appearing between
features whose marginals stay put moves the kernel mean embedding even though every
per-column test passes.

Statistic: the unbiased estimate of MMD² (Gretton et al., "A Kernel Two-Sample Test",
JMLR 13, 2012, eq. 3) with a Gaussian kernel ``k(a, b) = exp(-|a - b|² / (2σ²))``, or
the average of several such kernels at ``σ·scales`` (a small mixture is less sensitive to
the choice of σ). σ is the median heuristic: the median distance between pooled rows.

p-value: permutations of the pooled rows' labels. With ``A`` the (N × P) matrix of 0/1
labels (column ``p`` marks the rows that permutation ``p`` calls reference), every
permutation's statistic follows from ``diag(AᵀKA)`` and ``Aᵀ(K1)``:

    Sxx = aᵀKa - m,   Sxy = aᵀK1 - aᵀKa,   Syy = 1ᵀK1 - 2aᵀK1 + aᵀKa - n
    MMD²_u = Sxx / (m(m-1)) + Syy / (n(n-1)) - 2 Sxy / (mn)

so all permutations cost one pass over K, as matrix products ``K_IJ @ A_J`` on blocks
``I ≤ J`` of rows (K is symmetric): the N × N kernel matrix never exists in memory, only
one block of it (``block`` × ``block``). Kernel blocks are float32; the sums across blocks
are float64. The observed labels ride along as column 0 of ``A``.

Which features separate the samples: ``relevance[j] = ∂MMD²/∂ℓ_j`` at ``ℓ = 1`` for the
kernel ``exp(-Σ_j ℓ_j (a_j - b_j)² / (2σ²))`` — the first-order change of MMD² when
feature ``j`` is weighted more, about what removing it would cost. Noise features score
below zero, features that carry the difference (alone or jointly) above.

Example::

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(300, 3))
    >>> y = rng.normal(size=(300, 3)) + [0.5, 0.0, 0.0]
    >>> result = mmd_test(x, y, permutations=200, seed=1)
    >>> result.p_value < 0.01
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.multivariate.backend import Deadline, Ops, device_label

DEFAULT_PERMUTATIONS = 500
DEFAULT_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)
# Rows drawn (without replacement) from the pooled sample for the median heuristic.
MEDIAN_ROWS = 1000
BLOCK = {"numpy": 2048, "cpu": 2048, "cuda": 16384}


@dataclass(frozen=True)
class MMDResult:
    """One MMD test: ``statistic`` is MMD²_u, ``null`` the permutations' statistics,
    ``threshold`` their ``1 - alpha`` quantile; ``relevance`` is per input column."""

    statistic: float
    p_value: float
    threshold: float
    null: np.ndarray
    bandwidth: float
    scales: tuple[float, ...]
    relevance: np.ndarray
    device: str

    @property
    def permutations(self) -> int:
        return len(self.null)


def median_bandwidth(z: np.ndarray, max_rows: int = MEDIAN_ROWS, seed: int = 0) -> float:
    """Median Euclidean distance between distinct rows of (a subsample of) ``z``.

    Falls back to 1.0 when every sampled row is the same point.
    """
    z = np.asarray(z, dtype=np.float64)
    if len(z) > max_rows:
        z = z[np.random.default_rng(seed).choice(len(z), size=max_rows, replace=False)]
    sq = (z * z).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    upper = d[np.triu_indices(len(z), k=1)]
    positive = upper[upper > 0]
    return float(np.sqrt(np.median(positive))) if len(positive) else 1.0


def gaussian_kernel(
    a: np.ndarray,
    b: np.ndarray,
    sigma: float,
    scales: Sequence[float] = DEFAULT_SCALES,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The (mixture) Gaussian kernel matrix in float64, directly: the reference the
    blocked computation is tested against. ``weights`` scale each feature's squared
    difference (all 1 by default)."""
    w = np.ones(a.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    diff2 = ((a[:, None, :] - b[None, :, :]) ** 2 * w).sum(-1)
    return np.mean([np.exp(-diff2 / (2.0 * (sigma * s) ** 2)) for s in scales], axis=0)


def mmd2_unbiased(
    x: np.ndarray,
    y: np.ndarray,
    sigma: float,
    scales: Sequence[float] = DEFAULT_SCALES,
    weights: np.ndarray | None = None,
) -> float:
    """MMD²_u computed directly from the three full kernel matrices (O(n²) memory)."""
    m, n = len(x), len(y)
    kxx = gaussian_kernel(x, x, sigma, scales, weights)
    kyy = gaussian_kernel(y, y, sigma, scales, weights)
    kxy = gaussian_kernel(x, y, sigma, scales, weights)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def permutation_labels(n_total: int, m: int, permutations: int, seed: int) -> np.ndarray:
    """(N × P) bool: column ``p`` is True on the ``m`` rows permutation ``p`` calls
    reference; uniform over the ``C(N, m)`` splits, independently per column."""
    rng = np.random.default_rng(seed)
    order = rng.permuted(np.tile(np.arange(n_total), (permutations, 1)), axis=1)
    labels = np.zeros((n_total, permutations), dtype=bool)
    labels[order[:, :m].T, np.arange(permutations)] = True
    return labels


def _device_labels(ops: Ops, n_total: int, m: int, permutations: int, seed: int) -> Any:
    """The same kind of label matrix, drawn on the device (no host round trip for the
    GPU's large N); float32 with the observed split as column 0."""
    if ops.is_numpy:
        a = np.zeros((n_total, permutations + 1), dtype=np.float32)
        a[:m, 0] = 1.0
        a[:, 1:] = permutation_labels(n_total, m, permutations, seed)
        return a
    torch = ops.torch
    gen = torch.Generator(device=ops.device).manual_seed(seed)
    keys = torch.rand((permutations, n_total), generator=gen, device=ops.device)
    chosen = torch.argsort(keys, dim=1)[:, :m]
    a = torch.zeros((n_total, permutations + 1), dtype=torch.float32, device=ops.device)
    a[:m, 0] = 1.0
    cols = torch.arange(1, permutations + 1, device=ops.device).expand(m, permutations)
    a[chosen.T, cols] = 1.0
    return a


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    alpha: float = 0.05,
    scales: Sequence[float] = DEFAULT_SCALES,
    bandwidth: float | None = None,
    seed: int = 0,
    device: str = "numpy",
    block: int | None = None,
    labels: np.ndarray | None = None,
    relevance: bool = True,
    budget_seconds: float | None = None,
) -> MMDResult:
    """MMD² of ``x`` against ``y`` with a permutation p-value (see the module docstring).

    ``labels`` (N × P bool, see ``permutation_labels``) replaces the random permutations,
    so two devices can be compared on the same ones. ``budget_seconds`` abandons the test
    between blocks with ``BudgetExceeded``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be 2-d with equal columns, got {x.shape} and {y.shape}")
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"each sample needs at least 2 rows, got {m} and {n}")
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {tuple(scales)}")
    deadline = Deadline(budget_seconds)
    ops = Ops(device)
    z_host = np.concatenate([x, y])
    sigma = median_bandwidth(z_host, seed=seed) if bandwidth is None else float(bandwidth)
    big_n = m + n
    if labels is not None:
        labels = np.asarray(labels, dtype=bool)
        if labels.shape[0] != big_n or not (labels.sum(0) == m).all():
            raise ValueError(f"labels must be ({big_n} × P) with {m} True per column")
        a_host = np.zeros((big_n, labels.shape[1] + 1), dtype=np.float32)
        a_host[:m, 0] = 1.0
        a_host[:, 1:] = labels
        a = ops.array(a_host)
    else:
        a = _device_labels(ops, big_n, m, permutations, seed)
    z = ops.array(z_host)
    coef = [1.0 / (2.0 * (sigma * s) ** 2) for s in scales]
    sums = _blocked_sums(ops, z, a, m, coef, block or BLOCK[ops.device], relevance, deadline)
    v, k1, rel_r, rel_q = sums
    ops.synchronize()
    u = ops.numpy(ops.f64(a).T @ k1)  # aᵀK1 per column
    v = ops.numpy(v)
    s = float(ops.numpy(k1).sum())
    sxx = v - m
    sxy = u - v
    syy = s - 2.0 * u + v - n
    stats = sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * sxy / (m * n)
    observed, null = float(stats[0]), stats[1:]
    if relevance:
        z2 = z_host * z_host
        rel = -(2.0 * (ops.numpy(rel_r) @ z2) - 2.0 * ops.numpy(rel_q))
    else:
        rel = np.full(x.shape[1], np.nan)
    p_value = float((1 + np.sum(null >= observed)) / (1 + len(null))) if len(null) else 1.0
    threshold = float(np.quantile(null, 1.0 - alpha)) if len(null) else float("nan")
    return MMDResult(
        statistic=observed,
        p_value=p_value,
        threshold=threshold,
        null=null,
        bandwidth=sigma,
        scales=tuple(float(s) for s in scales),
        relevance=rel,
        device=device_label(ops.device),
    )


def _blocked_sums(
    ops: Ops,
    z: Any,
    a: Any,
    m: int,
    coef: list[float],
    block: int,
    relevance: bool,
    deadline: Deadline,
) -> tuple[Any, Any, Any, Any]:
    """One pass over the kernel matrix in blocks ``I ≤ J``.

    Returns ``v = diag(AᵀKA)`` (float64, per column of ``a``), ``K1`` (float64 row sums)
    and, for the observed split, ``r = M1`` and ``q_j = Σ_ii' M_ii' z_ij z_i'j`` with
    ``M = W ∘ Σ_s c_s K_s / S`` (W the MMD²_u weights of each pair), from which the
    relevance follows.
    """
    big_n, dim = z.shape
    n = big_n - m
    sq = ops.sqnorms(z)
    v = ops.zeros((a.shape[1],))
    k1 = ops.zeros((big_n,))
    rel_r = ops.zeros((big_n,))
    rel_q = ops.zeros((dim,))
    cx, cy, cxy = 1.0 / (m * (m - 1)), 1.0 / (n * (n - 1)), 1.0 / (m * n)
    obs = a[:, :1]
    # [o, 1-o, z∘o, z∘(1-o)]: one product with the derivative kernel gives, per row, its
    # kernel mass towards each side and the side-weighted feature sums (for M1 and q).
    sides: Any = ops.cat([obs, 1.0 - obs, z * obs, z * (1.0 - obs)]) if relevance else None
    scale = 1.0 / len(coef)
    starts = list(range(0, big_n, block))
    for bi, i0 in enumerate(starts):
        i1 = min(i0 + block, big_n)
        zi, si, ai = z[i0:i1], sq[i0:i1], a[i0:i1]
        for j0 in starts[bi:]:
            deadline.check()
            j1 = min(j0 + block, big_n)
            diag = i0 == j0
            d = ops.sqdist(zi, z[j0:j1], si, sq[j0:j1])
            if diag:
                ops.fill_diagonal(d, 0.0)
            k: Any = None
            kd: Any = None
            for c in coef:
                e = ops.exp_(d * (-c))
                k = e * scale if k is None else k + e * scale
                if relevance:
                    kd = e * (c * scale) if kd is None else kd + e * (c * scale)
            t = k @ a[j0:j1]  # (block_i × P+1): the permutations as one matrix product
            contrib = ops.sum64(ai * t, 0)
            v += contrib if diag else 2.0 * contrib
            k1[i0:i1] += ops.sum64(k, 1)
            if not diag:
                k1[j0:j1] += ops.sum64(k, 0)
            if relevance:
                r, q = _relevance_terms(ops, kd @ sides[j0:j1], sides[i0:i1], dim, cx, cy, cxy)
                rel_r[i0:i1] += r
                if diag:
                    rel_q += q
                else:
                    r, _ = _relevance_terms(
                        ops, kd.T @ sides[i0:i1], sides[j0:j1], dim, cx, cy, cxy
                    )
                    rel_r[j0:j1] += r
                    rel_q += 2.0 * q
    return v, k1, rel_r, rel_q


def _relevance_terms(
    ops: Ops, u: Any, own: Any, dim: int, cx: float, cy: float, cxy: float
) -> tuple[Any, Any]:
    """Row sums of ``M`` and the block's part of ``q`` from ``u = Kd_IJ @ sides_J``."""
    o, o_not = own[:, 0], own[:, 1]
    to_x, to_y = u[:, 0], u[:, 1]
    r = o * (cx * to_x - cxy * to_y) + o_not * (cy * to_y - cxy * to_x)
    zx, zy = own[:, 2 : 2 + dim], own[:, 2 + dim :]
    ux, uy = u[:, 2 : 2 + dim], u[:, 2 + dim :]
    q = ops.sum64(zx * (cx * ux - cxy * uy) + zy * (cy * uy - cxy * ux), 0)
    return ops.f64(r), q
