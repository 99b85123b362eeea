"""Kolmogorov–Smirnov distributions without ``scipy.stats``: what ``kstwo.sf``,
``kstwobign.sf`` and ``kstwobign.isf`` return, bit for bit, on ``scipy.special`` alone.

``scipy.stats`` costs a process about 45 MiB beyond ``scipy.special`` (it loads
scipy.sparse, linalg, optimize, integrate and interpolate), and the agent evaluates these
three functions every window (docs/architecture.md, "Imports on the agent's path").
``kstwobign`` is ``scipy.special.kolmogorov``/``kolmogi`` behind scipy's support checks;
``kstwo`` is Simard and L'Ecuyer's algorithm, ported below from SciPy's
``scipy/stats/_ksstats.py`` (SciPy 1.17; BSD-3-Clause, Copyright (c) 2001-2002 Enthought,
Inc., 2003-2024 SciPy Developers) with only the survival function's path kept and the
arithmetic unchanged. ``tests/unit/test_kolmogorov.py`` holds both to scipy.stats with
exact equality.

References: Simard, R. and L'Ecuyer, P. (2011). Computing the two-sided
Kolmogorov–Smirnov distribution. Journal of Statistical Software 39(11). Marsaglia, G.,
Tsang, W. W. and Wang, J. (2003). Evaluating Kolmogorov's distribution. Journal of
Statistical Software 8(18). Pomeranz, J. (1974). Exact cumulative distribution of the
Kolmogorov–Smirnov statistic for small samples. CACM 17(12). Pelz, W. and Good, I. J.
(1976). Approximating the lower tail-areas of the Kolmogorov–Smirnov one-sample
statistic. JRSS B 38(2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import kolmogi, kolmogorov, smirnov

__all__ = ["kstwo_sf", "kstwobign_isf", "kstwobign_sf"]

_E128 = 128
_EP128 = np.ldexp(np.longdouble(1), _E128)
_EM128 = np.ldexp(np.longdouble(1), -_E128)

_SQRT2PI = np.sqrt(2 * np.pi)
_LOG_2PI = np.log(2 * np.pi)
_MIN_LOG = -708
_SQRT3 = np.sqrt(3)
_PI_SQUARED = np.pi**2
_PI_FOUR = np.pi**4
_PI_SIX = np.pi**6

# Stirling coefficients B_{2j}/(2j)/(2j-1) for j = 8, ..., 1 (B_m the Bernoulli numbers).
_STIRLING_COEFFS = [
    -2.955065359477124183e-2,
    6.4102564102564102564e-3,
    -1.9175269175269175269e-3,
    8.4175084175084175084e-4,
    -5.952380952380952381e-4,
    7.9365079365079365079e-4,
    -2.7777777777777777778e-3,
    8.3333333333333333333e-2,
]


def kstwo_sf(x: Any, n: Any) -> Any:
    """``scipy.stats.kstwo.sf(x, n)``: P(D_n > x) for the two-sided one-sample statistic."""
    x, n = np.asarray(x), np.asarray(n)
    dtyp = np.promote_types(x.dtype, np.float64)
    x = np.asarray(x / 1, dtype=dtyp)  # as scipy: (x - loc) / scale with loc 0, scale 1
    with np.errstate(divide="ignore"):
        lower = 0.5 / n
    ok = (n >= 1) & (n == np.round(n))
    with np.errstate(invalid="ignore"):
        inside = (lower < x) & (x < 1.0)
    below = ok & (x <= lower)
    good = ok & inside
    out = np.zeros(np.shape(good), dtyp)
    np.place(out, (1 - ok) + np.isnan(x), np.nan)
    np.place(out, below, 1.0)
    if np.any(good):
        xs, ns = (np.broadcast_to(a, good.shape)[good] for a in (x, n))
        np.place(out, good, _kolmogn_sf(ns, xs))
    return out[()] if out.ndim == 0 else out


def kstwobign_sf(x: Any) -> Any:
    """``scipy.stats.kstwobign.sf(x)``: Kolmogorov's limiting distribution's tail."""
    x = np.asarray(x)
    x = np.asarray(x / 1, dtype=np.promote_types(x.dtype, np.float64))
    with np.errstate(invalid="ignore"):
        inside = (x > 0.0) & (x < np.inf)
    out = np.zeros(np.shape(x), x.dtype)
    np.place(out, np.isnan(x), np.nan)
    np.place(out, x <= 0.0, 1.0)
    if np.any(inside):
        np.place(out, inside, kolmogorov(np.atleast_1d(x)[np.atleast_1d(inside)]))
    return out[()] if out.ndim == 0 else out


def kstwobign_isf(q: float) -> float:
    """``scipy.stats.kstwobign.isf(q)`` for one probability ``q``."""
    q = float(q)
    if 0.0 < q < 1.0:
        return float(kolmogi(np.atleast_1d(np.float64(q)))[0])
    if q == 1.0:
        return 0.0
    if q == 0.0:
        return float("inf")
    return float("nan")


def _kolmogn_sf(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """scipy's ``kolmogn(n, x, cdf=False)``: one value at a time, as scipy iterates."""
    it = np.nditer(
        [n, x, False, None],
        flags=["zerosize_ok"],
        op_dtypes=[None, np.float64, np.bool_, np.float64],
    )
    for _n, _x, _cdf, z in it:
        if np.isnan(_n):
            z[...] = _n
            continue
        if int(_n) != _n:
            raise ValueError(f"n is not integral: {_n}")
        z[...] = _kolmogn(int(_n), _x, cdf=_cdf)
    return it.operands[-1]


def _log_nfactorial_div_n_pow_n(n: Any) -> Any:
    # log(n! / n**n) by Stirling, with n*log(n) removed up front (no cancellation)
    rn = 1.0 / n
    return np.log(n) / 2 - n + _LOG_2PI / 2 + rn * np.polyval(_STIRLING_COEFFS, rn / n)


def _clip_prob(p: Any) -> Any:
    return np.clip(p, 0.0, 1.0)


def _select_and_clip_prob(cdfprob: Any, sfprob: Any, cdf: Any = True) -> Any:
    p = np.where(cdf, cdfprob, sfprob)
    return _clip_prob(p)


def _kolmogn_dmtw(n: int, d: Any, cdf: Any = True) -> Any:
    """Pr(D_n <= d) by Durbin's matrix, as Marsaglia, Tsang and Wang compute it."""
    if d >= 1.0:
        return _select_and_clip_prob(1.0, 0.0, cdf)
    nd = n * d
    if nd <= 0.5:
        return _select_and_clip_prob(0.0, 1.0, cdf)
    k = int(np.ceil(nd))
    h = k - nd
    m = 2 * k - 1

    H = np.zeros([m, m])

    intm = np.arange(1, m + 1)
    v = 1.0 - h**intm
    w = np.empty(m)
    fac = 1.0
    for j in intm:
        w[j - 1] = fac
        fac /= j  # may underflow, harmlessly
        v[j - 1] *= fac
    tt = max(2 * h - 1.0, 0) ** m - 2 * h**m
    v[-1] = (1.0 + tt) * fac

    for i in range(1, m):
        H[i - 1 :, i] = w[: m - i + 1]
    H[:, 0] = v
    H[-1, :] = np.flip(v, axis=0)

    Hpwr = np.eye(np.shape(H)[0])
    nn = n
    expnt = 0
    Hexpnt = 0
    while nn > 0:
        if nn % 2:
            Hpwr = np.matmul(Hpwr, H)
            expnt += Hexpnt
        H = np.matmul(H, H)
        Hexpnt *= 2
        if np.abs(H[k - 1, k - 1]) > _EP128:
            H /= _EP128
            Hexpnt += _E128
        nn = nn // 2

    p = Hpwr[k - 1, k - 1]

    for i in range(1, n + 1):  # times n! / n^n
        p = i * p / n
        if np.abs(p) < _EM128:
            p *= _EP128
            expnt -= _E128

    if expnt != 0:
        p = np.ldexp(p, expnt)

    return _select_and_clip_prob(p, 1.0 - p, cdf)


def _pomeranz_compute_j1j2(i: int, n: int, ll: int, ceilf: int, roundf: int) -> tuple[int, int]:
    """The endpoints of the interval of row ``i``."""
    if i == 0:
        j1, j2 = -ll - ceilf - 1, ll + ceilf - 1
    else:
        ip1div2, ip1mod2 = divmod(i + 1, 2)
        if ip1mod2 == 0:  # i is odd
            if ip1div2 == n + 1:
                j1, j2 = n - ll - ceilf - 1, n + ll + ceilf - 1
            else:
                j1, j2 = ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1
        else:
            j1, j2 = ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1

    return max(j1 + 2, 0), min(j2, n)


def _kolmogn_pomeranz(n: int, x: Any, cdf: Any = True) -> Any:
    """Pr(D_n <= x) by Pomeranz's recursion."""
    t = n * x
    ll = int(np.floor(t))
    f = 1.0 * (t - ll)
    g = min(f, 1.0 - f)
    ceilf = 1 if f > 0 else 0
    roundf = 1 if f > 0.5 else 0
    npwrs = 2 * (ll + 1)
    gpower = np.empty(npwrs)
    twogpower = np.empty(npwrs)
    onem2gpower = np.empty(npwrs)

    gpower[0] = 1.0
    twogpower[0] = 1.0
    onem2gpower[0] = 1.0
    expnt = 0
    g_over_n, two_g_over_n, one_minus_two_g_over_n = g / n, 2 * g / n, (1 - 2 * g) / n
    for m in range(1, npwrs):
        gpower[m] = gpower[m - 1] * g_over_n / m
        twogpower[m] = twogpower[m - 1] * two_g_over_n / m
        onem2gpower[m] = onem2gpower[m - 1] * one_minus_two_g_over_n / m

    V0 = np.zeros([npwrs])
    V1 = np.zeros([npwrs])
    V1[0] = 1
    V0s, V1s = 0, 0

    j1, j2 = _pomeranz_compute_j1j2(0, n, ll, ceilf, roundf)
    for i in range(1, 2 * n + 2):
        k1 = j1
        V0, V1 = V1, V0
        V0s, V1s = V1s, V0s
        V1.fill(0.0)
        j1, j2 = _pomeranz_compute_j1j2(i, n, ll, ceilf, roundf)
        pwrs = gpower if i == 1 or i == 2 * n + 1 else twogpower if i % 2 else onem2gpower
        ln2 = j2 - k1 + 1
        if ln2 > 0:
            conv = np.convolve(V0[k1 - V0s : k1 - V0s + ln2], pwrs[:ln2])
            conv_start = j1 - k1
            conv_len = j2 - j1 + 1
            V1[:conv_len] = conv[conv_start : conv_start + conv_len]
            if 0 < np.max(V1) < _EM128:
                V1 *= _EP128
                expnt -= _E128
            V1s = V0s + j1 - k1

    ans = V1[n - V1s]
    for m in range(1, n + 1):  # times n!
        if np.abs(ans) > _EP128:
            ans *= _EM128
            expnt += _E128
        ans *= m

    if expnt != 0:
        ans = np.ldexp(ans, expnt)
    return _select_and_clip_prob(ans, 1.0 - ans, cdf)


def _kolmogn_pelz_good(n: int, x: Any, cdf: Any = True) -> Any:
    """Pr(D_n <= x) by Pelz and Good's approximation."""
    if x <= 0.0:
        return _select_and_clip_prob(0.0, 1.0, cdf=cdf)
    if x >= 1.0:
        return _select_and_clip_prob(1.0, 0.0, cdf=cdf)

    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z**2, z**3, z**4, z**6

    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:
        return _select_and_clip_prob(0.0, 1.0, cdf=cdf)

    q = np.exp(qlog)

    k1a = -zsquared
    k1b = _PI_SQUARED / 4

    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16

    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z**8

    K0to3 = np.zeros(4)
    maxk = int(np.ceil(16 * z / np.pi))
    for k in range(maxk, 0, -1):
        m = 2 * k - 1
        msquared, mfour, msix = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coeffs = np.array(
            [
                1.0,
                k1a + k1b * msquared,
                k2a + k2b * msquared + k2c * mfour,
                k3a + k3b * msquared + k3c * mfour + k3d * msix,
            ]
        )
        K0to3 *= qpower
        K0to3 += coeffs
    K0to3 *= q
    K0to3 *= _SQRT2PI
    K0to3 /= np.array([z, 6 * zfour, 72 * z**7, 6480 * z**10])

    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks**2
    sqrt3z = _SQRT3 * z
    kspi = np.pi * ks
    qpwers = q**ksquared
    k2extra = np.sum(ksquared * qpwers)
    k2extra *= _PI_SQUARED * _SQRT2PI / (-36 * zthree)
    K0to3[2] += k2extra
    k3extra = np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpwers)
    k3extra *= _PI_SQUARED * _SQRT2PI / (216 * zsix)
    K0to3[3] += k3extra
    powers_of_n = np.power(n * 1.0, np.arange(len(K0to3)) / 2.0)
    K0to3 /= powers_of_n

    if not cdf:
        K0to3 *= -1
        K0to3[0] += 1

    return sum(K0to3)


def _kolmogn(n: int, x: Any, cdf: Any = True) -> Any:
    """Pr(D_n <= x), or its complement, choosing the method as Simard and L'Ecuyer do."""
    if np.isnan(n):
        return n
    if int(n) != n or n <= 0:
        return np.nan
    if x >= 1.0:
        return _select_and_clip_prob(1.0, 0.0, cdf=cdf)
    if x <= 0.0:
        return _select_and_clip_prob(0.0, 1.0, cdf=cdf)
    t = n * x
    if t <= 1.0:  # Ruben-Gambino: 1/2n <= x <= 1/n
        if t <= 0.5:
            return _select_and_clip_prob(0.0, 1.0, cdf=cdf)
        if n <= 140:
            prob = np.prod(np.arange(1, n + 1) * (1.0 / n) * (2 * t - 1))
        else:
            prob = np.exp(_log_nfactorial_div_n_pow_n(n) + n * np.log(2 * t - 1))
        return _select_and_clip_prob(prob, 1.0 - prob, cdf=cdf)
    if t >= n - 1:  # Ruben-Gambino
        prob = 2 * (1.0 - x) ** n
        return _select_and_clip_prob(1 - prob, prob, cdf=cdf)
    if x >= 0.5:  # exact: 2 * smirnov
        prob = 2 * smirnov(n, x)
        return _select_and_clip_prob(1.0 - prob, prob, cdf=cdf)

    nxsquared = t * x
    if n <= 140:
        if nxsquared <= 0.754693:
            prob = _kolmogn_dmtw(n, x, cdf=True)
            return _select_and_clip_prob(prob, 1.0 - prob, cdf=cdf)
        if nxsquared <= 4:
            prob = _kolmogn_pomeranz(n, x, cdf=True)
            return _select_and_clip_prob(prob, 1.0 - prob, cdf=cdf)
        prob = 2 * smirnov(n, x)  # Miller's approximation
        return _select_and_clip_prob(1.0 - prob, prob, cdf=cdf)

    if not cdf:  # the survival function has its own cutoffs on n x^2
        if nxsquared >= 370.0:
            return 0.0
        if nxsquared >= 2.2:
            prob = 2 * smirnov(n, x)
            return _clip_prob(prob)
    if nxsquared >= 18.0:
        cdfprob = 1.0
    elif n <= 100000 and n * x**1.5 <= 1.4:
        cdfprob = _kolmogn_dmtw(n, x, cdf=True)
    else:
        cdfprob = _kolmogn_pelz_good(n, x, cdf=True)
    return _select_and_clip_prob(cdfprob, 1.0 - cdfprob, cdf=cdf)
