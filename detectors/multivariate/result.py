"""The ``multivariate`` block of a WindowReport: what the row-level tests concluded.

Small frozen values that serialise to the report's JSON (``to_dict``/``from_dict``);
``detectors/results.py`` holds them on the WindowReport.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def _num(v: float | None) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return float(v)


def _float(v: Any) -> float:
    return float("nan") if v is None else float(v)


@dataclass(frozen=True)
class MultivariateTest:
    """One row-level test: ``mmd`` (statistic MMD², threshold the permutation null's
    ``1 - alpha`` quantile) or ``classifier`` (statistic the held-out AUC, threshold the
    AUC needed for ``p < alpha``)."""

    __test__ = False  # not a pytest test class

    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    features: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "statistic": _num(self.statistic),
            "p_value": _num(self.p_value),
            "threshold": _num(self.threshold),
            "drifted": self.drifted,
            "features": list(self.features),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultivariateTest:
        return cls(
            test=str(d["test"]),
            statistic=_float(d.get("statistic")),
            p_value=None if d.get("p_value") is None else float(d["p_value"]),
            threshold=_float(d.get("threshold")),
            drifted=bool(d["drifted"]),
            features=tuple(d.get("features", ())),
        )


@dataclass(frozen=True)
class OnlineVerdict:
    """The online MMD detector in the window where it fired: its statistic and threshold
    at the detecting row, and ``detected_at``: that row's event time (agent) or row
    offset (replay without times)."""

    statistic: float
    threshold: float
    detected_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": _num(self.statistic),
            "threshold": _num(self.threshold),
            "detected_at": self.detected_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OnlineVerdict:
        at = d.get("detected_at")
        return cls(
            statistic=_float(d.get("statistic")),
            threshold=_float(d.get("threshold")),
            detected_at=None if at is None else float(at),
        )


@dataclass(frozen=True)
class MultivariateResult:
    """The window's rows against the reference's rows.

    ``test`` is ``mmd``, ``classifier``, ``both`` (then ``p_value`` is the Bonferroni
    combination ``min(1, 2·min p)``, ``statistic``/``threshold`` those of the test with
    the smaller p-value, and ``tests`` holds each) or ``online_mmd`` (only the online
    detector ran). ``features`` name the features that separate the window from the
    reference, strongest first (empty when not drifted). ``device``: ``numpy``,
    ``torch-cpu`` or ``cuda``. ``sequential`` is set when the online detector fired since
    the previous window, and then ``drifted`` is true.
    """

    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    device: str
    seconds: float
    rows_window: int
    rows_reference: int
    features: tuple[str, ...] = ()
    tests: tuple[MultivariateTest, ...] = ()
    sequential: OnlineVerdict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "statistic": _num(self.statistic),
            "p_value": _num(self.p_value),
            "threshold": _num(self.threshold),
            "drifted": self.drifted,
            "device": self.device,
            "seconds": _num(self.seconds),
            "rows_window": self.rows_window,
            "rows_reference": self.rows_reference,
            "features": list(self.features),
            "tests": [t.to_dict() for t in self.tests],
            "sequential": None if self.sequential is None else self.sequential.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultivariateResult:
        seq = d.get("sequential")
        return cls(
            test=str(d["test"]),
            statistic=_float(d.get("statistic")),
            p_value=None if d.get("p_value") is None else float(d["p_value"]),
            threshold=_float(d.get("threshold")),
            drifted=bool(d["drifted"]),
            device=str(d.get("device", "")),
            seconds=_float(d.get("seconds")),
            rows_window=int(d.get("rows_window", 0)),
            rows_reference=int(d.get("rows_reference", 0)),
            features=tuple(d.get("features", ())),
            tests=tuple(MultivariateTest.from_dict(t) for t in d.get("tests", ())),
            sequential=None if seq is None else OnlineVerdict.from_dict(seq),
        )
