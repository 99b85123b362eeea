"""Online kernel MMD: a sliding window of the most recent rows against the reference,
checked after every row, with thresholds calibrated to an expected run time.

Cobb, Van Looveren and Klaise, "Sequential Multivariate Change Detection with Calibrated
and Memoryless False Detection Rates", AISTATS 2022. The statistic at step ``t`` is the
unbiased MMD² between the reference set ``R`` and the last ``W`` rows; successive
statistics share ``W - 1`` rows, so a fixed threshold would give a false-alarm rate that
depends on the past. Instead the thresholds are calibrated by simulation on the
reference itself: ``simulations`` streams of rows drawn without replacement from a
held-out part of the reference (disjoint from ``R``) run through the detector, and at each
step the threshold is the ``1 - 1/ERT`` quantile of the statistic among the streams that
have not yet fired. Every step then has the same false-alarm probability ``1/ERT`` given
no alarm so far, so the run length without a change is geometric with mean ``ERT``
(steps, counted from the first full window). After ``3W`` calibrated steps the window
has turned over three times and the thresholds have settled; the last one is kept from
then on.

The update is O(|R| + W) per row: the row's mean kernel value against ``R`` and against
the window. Batches are processed at once: the within-window kernel sums of every
position come from box sums over the cumulative sums of one Gram matrix.

Example::

    >>> rng = np.random.default_rng(0)
    >>> det = OnlineMMD(rng.normal(size=(2000, 3)), window=50, expected_run_time=200,
    ...                 simulations=1000, seed=0)
    >>> det.update(rng.normal(size=(100, 3)) + [1.5, 0, 0]) is not None
    True
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.multivariate.mmd import DEFAULT_SCALES, gaussian_kernel, median_bandwidth

# Steps calibrated one by one, in windows: by then the window has turned over this many
# times and the thresholds have settled (the last one is kept from then on).
CALIBRATED_WINDOWS = 3
# Largest number of rows processed as one block in ``update`` (Gram matrix of
# (window + block)² floats).
MAX_BLOCK = 1024


@dataclass(frozen=True)
class Detection:
    """Where the detector fired: ``step`` counts rows since the run began (0-based),
    ``index`` is the position within the batch given to ``update``."""

    step: int
    index: int
    statistic: float
    threshold: float


def _kernel(a: np.ndarray, b: np.ndarray, sigma: float, scales: Sequence[float]) -> np.ndarray:
    sa, sb = (a * a).sum(1), (b * b).sum(1)
    d = np.maximum(sa[:, None] + sb[None, :] - 2.0 * a @ b.T, 0.0)
    return np.mean([np.exp(-d / (2.0 * (sigma * s) ** 2)) for s in scales], axis=0)


class OnlineMMD:
    """Sliding-window MMD² against a reference, calibrated to an expected run time."""

    def __init__(
        self,
        reference: np.ndarray,
        *,
        window: int = 100,
        expected_run_time: int = 2000,
        simulations: int | None = None,
        reference_share: float = 0.5,
        scales: Sequence[float] = DEFAULT_SCALES,
        seed: int = 0,
    ) -> None:
        reference = np.asarray(reference, dtype=np.float64)
        if window < 2:
            raise ValueError(f"window must be at least 2 rows, got {window}")
        if expected_run_time < 2:
            raise ValueError(f"expected_run_time must be at least 2, got {expected_run_time}")
        sims = simulations if simulations is not None else max(1000, 2 * expected_run_time)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(reference))
        n_ref = int(len(reference) * reference_share)
        pool = reference[order[n_ref:]]
        if n_ref < 2 or len(pool) < 2 * window:
            raise ValueError(
                f"a reference of {len(reference)} rows is too small for a window of {window} "
                f"(needs {int(np.ceil(2 * window / (1 - reference_share)))} rows or more)"
            )
        self.window = int(window)
        self.expected_run_time = int(expected_run_time)
        self.reference = reference[order[:n_ref]]
        self.scales = tuple(float(s) for s in scales)
        self.sigma = median_bandwidth(reference, seed=seed)
        k_rr = gaussian_kernel(self.reference, self.reference, self.sigma, self.scales)
        self._c_rr = float((k_rr.sum() - np.trace(k_rr)) / (n_ref * (n_ref - 1)))
        self.thresholds = self._calibrate(pool, sims, rng)
        self.reset()

    # -- calibration -----------------------------------------------------------------------

    def _calibrate(self, pool: np.ndarray, sims: int, rng: np.random.Generator) -> np.ndarray:
        """Per-step thresholds over the first ``3W`` full windows (see the module docstring)."""
        w = self.window
        k_pp = _kernel(pool, pool, self.sigma, self.scales)
        cross = _kernel(pool, self.reference, self.sigma, self.scales).mean(1)
        steps = CALIBRATED_WINDOWS * w
        length = w + steps - 1
        streams = np.argsort(rng.random((sims, len(pool))), axis=1)[:, :length]
        win = streams[:, :w]
        # Flat float32 gathers (summed in float64) are several times faster than 2-d ones.
        flat = k_pp.astype(np.float32).ravel()
        width = len(pool)
        # within-window kernel sum over ordered pairs i != j (in chunks of streams: the
        # gather is sims × W × W), and the cross-term sum
        within = np.empty(sims)
        chunk = max(1, 2**22 // (w * w))
        for a in range(0, sims, chunk):
            wa = win[a : a + chunk]
            pairs = np.take(flat, wa[:, :, None] * width + wa[:, None, :])
            within[a : a + chunk] = pairs.sum((1, 2), dtype=np.float64) - w
        cross_sum = cross[win].sum(1)
        q = 1.0 - 1.0 / self.expected_run_time
        alive = np.ones(sims, dtype=bool)
        thresholds = np.empty(steps)
        for t in range(steps):
            if t:
                old, new = streams[:, t - 1], streams[:, w + t - 1]
                kept = streams[:, t : w + t - 1]  # the W-1 rows that stay
                gain = np.take(flat, new[:, None] * width + kept).sum(1, dtype=np.float64)
                loss = np.take(flat, old[:, None] * width + kept).sum(1, dtype=np.float64)
                within += 2.0 * (gain - loss)
                cross_sum += cross[new] - cross[old]
            stat = self._statistic(within, cross_sum)
            live = stat[alive]
            if len(live) < max(20, 2 * self.expected_run_time / 100):
                thresholds[t:] = thresholds[t - 1] if t else np.quantile(stat, q)
                break
            thresholds[t] = np.quantile(live, q)
            alive &= stat <= thresholds[t]
        return thresholds

    def _statistic(self, within: np.ndarray, cross_sum: np.ndarray) -> np.ndarray:
        w = self.window
        return self._c_rr + within / (w * (w - 1)) - 2.0 * cross_sum / w

    # -- the stream ------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new run (after a detection, or when the reference changes)."""
        self.steps = 0
        self._rows = np.empty((0, self.reference.shape[1]))
        self._cross = np.empty(0)
        self.statistic: float | None = None

    def copy(self) -> OnlineMMD:
        """A detector with the same reference and thresholds, at the start of a run
        (calibration is the costly part; each stream gets its own copy)."""
        out = copy.copy(self)
        out.reset()
        return out

    def state(self) -> dict[str, object]:
        """The run so far (the last ``W - 1`` rows, their reference terms, the step) as
        plain values, for a checkpoint: a restart goes on with the same run instead of
        waiting ``W`` rows for a full window and restarting its calibrated steps."""
        return {
            "window": self.window,
            "expected_run_time": self.expected_run_time,
            "dims": int(self.reference.shape[1]),
            "steps": int(self.steps),
            "rows": self._rows.tolist(),
            "cross": self._cross.tolist(),
            "statistic": self.statistic,
        }

    def restore(self, state: dict[str, object]) -> None:
        """Go on with a run saved by :meth:`state`; ``ValueError`` when it comes from a
        detector of another window, run time or width (its steps would mean other
        thresholds), and this detector then stays at the start of a run."""
        same = (state.get("window"), state.get("expected_run_time"), state.get("dims"))
        if same != (self.window, self.expected_run_time, int(self.reference.shape[1])):
            raise ValueError(f"online MMD state of another detector {same}")
        rows = np.asarray(state["rows"], dtype=np.float64).reshape(-1, self.reference.shape[1])
        cross = np.asarray(state["cross"], dtype=np.float64)
        steps = int(state["steps"])  # type: ignore[call-overload]
        if len(rows) != len(cross) or len(rows) > self.window - 1 or len(rows) > steps:
            raise ValueError("online MMD state whose rows do not match its step")
        statistic = state.get("statistic")
        self.reset()
        self.steps, self._rows, self._cross = steps, rows, cross
        self.statistic = None if statistic is None else float(statistic)  # type: ignore[arg-type]

    def threshold_at(self, step: int) -> float:
        """Threshold of the check at ``step`` (the first full window is step ``W - 1``)."""
        return float(self.thresholds[min(step - (self.window - 1), len(self.thresholds) - 1)])

    def update(self, rows: np.ndarray) -> Detection | None:
        """Add rows in arrival order; the first detection among them, if any (the run then
        restarts after the detecting row: rows after it begin the next window)."""
        rows = np.asarray(rows, dtype=np.float64)
        for start in range(0, len(rows), MAX_BLOCK):
            hit = self._update_block(rows[start : start + MAX_BLOCK])
            if hit is not None:
                detection = Detection(hit.step, start + hit.index, hit.statistic, hit.threshold)
                self.reset()
                rest = rows[start + hit.index + 1 :]
                if len(rest):
                    self._drain(rest)
                return detection
        return None

    def _drain(self, rows: np.ndarray) -> None:
        """Continue the new run with ``rows``, ignoring any further detection in them."""
        for start in range(0, len(rows), MAX_BLOCK):
            if self._update_block(rows[start : start + MAX_BLOCK]) is not None:
                self.reset()

    def _update_block(self, block: np.ndarray) -> Detection | None:
        w = self.window
        b = len(block)
        if not b:
            return None
        cross_new = _kernel(block, self.reference, self.sigma, self.scales).mean(1)
        seq = np.concatenate([self._rows, block])
        cross = np.concatenate([self._cross, cross_new])
        prior = len(self._rows)
        gram = _kernel(seq, seq, self.sigma, self.scales)
        np.fill_diagonal(gram, 0.0)
        # positions p (in seq) of the new rows whose window [p-W+1, p] is full
        ends = np.arange(prior, prior + b) + 1
        full = ends >= w
        found = None
        if full.any():
            e = ends[full]
            s = e - w
            c = np.zeros((len(seq) + 1, len(seq) + 1))
            c[1:, 1:] = gram.cumsum(0).cumsum(1)
            within = c[e, e] - c[s, e] - c[e, s] + c[s, s]
            cc = np.concatenate([[0.0], np.cumsum(cross)])
            stat = self._statistic(within, cc[e] - cc[s])
            steps = self.steps + np.flatnonzero(full)
            thr = self.thresholds[np.minimum(steps - (w - 1), len(self.thresholds) - 1)]
            over = np.flatnonzero(stat > thr)
            self.statistic = float(stat[-1])
            if len(over):
                i = int(over[0])
                idx = int(np.flatnonzero(full)[i])
                found = Detection(int(steps[i]), idx, float(stat[i]), float(thr[i]))
        keep = min(len(seq), w - 1)
        self._rows, self._cross = seq[len(seq) - keep :], cross[len(seq) - keep :]
        self.steps += b
        return found
