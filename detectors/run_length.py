"""How long an unchanged stream runs before a CUSUM raises a false alarm, as measured on
the reference: the curve that turns an expected run time into a threshold.

For a CUSUM ``S_t = max(0, S_{t-1} + x_t)`` with i.i.d. increments of negative mean, the
chance that one excursion from 0 reaches ``h`` falls like ``C·exp(−θ h)``, where ``θ > 0``
solves ``E[exp(θ x)] = 1`` (Cramér–Lundberg; Siegmund 1985, *Sequential Analysis*,
ch. X). The false-alarm rate per window, ``1/ARL0``, therefore follows

    log(rate) = intercept − slope · h

for large ``h``. ``detectors.sequential_calibration`` measures ``slope`` from the
simulated increments and ``intercept`` from simulated run lengths, per column and
channel, once, at ``driftline reference build``; a threshold for any expected run time is
then ``h = (intercept + log ARL0) / slope`` without simulating again.

This module holds only the stored values (the profile file carries them); it imports
nothing from the rest of ``detectors`` so the profile can.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Version of the stored calibration: a profile with another version is recalibrated.
SEQUENTIAL_CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class RunLengthCurve:
    """``log(false alarms per window) = intercept − slope · threshold`` for one channel."""

    intercept: float
    slope: float

    def threshold(self, expected_run_windows: float) -> float:
        """The threshold whose expected run length between false alarms is
        ``expected_run_windows`` windows (never below 0)."""
        if expected_run_windows <= 1:
            return 0.0
        return max(0.0, (self.intercept + math.log(expected_run_windows)) / self.slope)

    def expected_run_windows(self, threshold: float) -> float:
        return math.exp(self.slope * threshold - self.intercept)

    def to_list(self) -> list[float]:
        return [self.intercept, self.slope]

    @classmethod
    def from_list(cls, value: Any) -> RunLengthCurve:
        intercept, slope = (float(v) for v in value)
        if not (math.isfinite(intercept) and math.isfinite(slope) and slope > 0):
            raise ValueError(f"run-length curve {value!r}: needs a finite intercept and slope > 0")
        return cls(intercept, slope)


@dataclass(frozen=True)
class SequentialCalibration:
    """The run-length curves of one profile's sequential detectors.

    ``columns[name][channel]`` for every column (numeric: ``location_up``,
    ``location_down``, ``scale_up``, ``scale_down``; categorical: ``shape``);
    ``dataset[role]`` for the dataset-level detector of the features and of the
    predictions. ``unseen_rate[name]`` is the rate of categories never seen in the
    reference that unchanged data still produces (Good–Turing: the share of reference
    rows whose category occurs once), which the ``unseen`` channel takes as its no-change
    rate. ``dataset_scale[role]`` normalises the dataset statistic (the correlation of
    the columns' scores measured on the reference sample). Measured with panes of
    ``pane_rows`` rows, ``panes`` simulated windows, allowance ``allowance`` and the
    margins of ``min_effect``.
    """

    pane_rows: int
    panes: int
    allowance: float
    seed: int
    columns: dict[str, dict[str, RunLengthCurve]]
    dataset: dict[str, RunLengthCurve] = field(default_factory=dict)
    min_effect: float = 0.0
    dataset_scale: dict[str, float] = field(default_factory=dict)
    unseen_rate: dict[str, float] = field(default_factory=dict)
    version: int = SEQUENTIAL_CALIBRATION_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "pane_rows": self.pane_rows,
            "panes": self.panes,
            "allowance": self.allowance,
            "min_effect": self.min_effect,
            "seed": self.seed,
            "columns": {
                c: {ch: curve.to_list() for ch, curve in chans.items()}
                for c, chans in self.columns.items()
            },
            "dataset": {r: curve.to_list() for r, curve in self.dataset.items()},
            "dataset_scale": dict(self.dataset_scale),
            "unseen_rate": dict(self.unseen_rate),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SequentialCalibration:
        return cls(
            version=int(d.get("version", SEQUENTIAL_CALIBRATION_VERSION)),
            pane_rows=int(d["pane_rows"]),
            panes=int(d["panes"]),
            allowance=float(d["allowance"]),
            min_effect=float(d.get("min_effect", 0.0)),
            seed=int(d.get("seed", 0)),
            columns={
                str(c): {str(ch): RunLengthCurve.from_list(v) for ch, v in chans.items()}
                for c, chans in d["columns"].items()
            },
            dataset={str(r): RunLengthCurve.from_list(v) for r, v in d.get("dataset", {}).items()},
            dataset_scale={str(r): float(v) for r, v in d.get("dataset_scale", {}).items()},
            unseen_rate={str(c): float(v) for c, v in d.get("unseen_rate", {}).items()},
        )
