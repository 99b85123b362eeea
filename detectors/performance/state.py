"""The bounded, exactly mergeable performance state of one window (or pane), and the
functions that turn it into the report's ``performance`` block.

Everything is a sum, so ``merge(state(A), state(B)) == state(A ∪ B)``:

- predictions (every row, labelled or not): their count; for CBPE the expected
  confusion matrix Σ over rows of the calibrated class probabilities, by predicted class,
  and per class a histogram over the reference's score quantiles of the rows and of
  their calibrated probabilities; for DLE the sums of the predicted per-row losses;
- labelled rows: the confusion matrix, the sums (and sums of squares) of log loss and
  Brier terms, the calibration bins (count, confidence, hits), for regression the sums
  of |e|, e², e⁴ and the percentage errors; and a bottom-k sample of (score, label)
  by row key for the rank metrics (ROC AUC, PR AUC): exactly the window's rows while
  they number at most ``sample_size``, a uniform sample of them beyond;
- KPIs: count, sums, sums of squares and cross products with the prediction, and the
  KPI's count and sum in each reference decile of the prediction.

Memory per window: O(classes² + classes × 256 + sample_size × (classes + 2)) numbers,
whatever the traffic.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from detectors.performance import metrics as m
from detectors.performance.reference import SCORE_BINS, PerformanceReference, Predictions
from detectors.performance.results import (
    EstimatedMetric,
    KpiResult,
    PerformanceResult,
    RealizedMetric,
)

DEFAULT_SAMPLE_SIZE = 20_000
ECE_BINS = 10
_KEY_SCALE = 1.0 / (1 << 53)
_WIRE = struct.Struct("<4sI")  # magic, JSON header length
_WIRE_MAGIC = b"DLPS"


class PerformanceState:
    """Sums of one window's predictions, labels and KPIs (see the module docstring)."""

    def __init__(self, ref: PerformanceReference, sample_size: int = DEFAULT_SAMPLE_SIZE):
        self.ref = ref
        self.sample_size = int(sample_size)
        self.sums: dict[str, np.ndarray] = {}
        width = len(ref.score_columns)
        self.sample_keys = np.empty(0)
        self.sample_scores = np.empty((0, width))
        self.sample_y = np.empty(0, dtype=np.int64)

    # -- updates -------------------------------------------------------------------------

    def _add(self, key: str, value: np.ndarray | float) -> None:
        v = np.asarray(value, dtype=np.float64)
        cur = self.sums.get(key)
        self.sums[key] = v.copy() if cur is None else cur + v

    def get(self, key: str, shape: tuple[int, ...] | int = 1) -> np.ndarray:
        v = self.sums.get(key)
        return np.zeros(shape) if v is None else v

    def add_predictions(self, p: Predictions, columns: dict[str, Any] | None = None) -> None:
        """Count a batch of predictions and add what the estimators need of them."""
        ok = p.valid
        if not ok.any():
            return
        ref = self.ref
        self._add("rows", float(ok.sum()))
        scores, predicted = p.scores[ok], p.predicted[ok]
        if ref.classification:
            k = ref.n_classes
            probs = ref.calibrated(scores)
            conf = np.zeros((k, k))
            for j in range(k):  # expected[i, j]: true class i, predicted j
                conf[:, j] = probs[predicted == j].sum(axis=0)
            self._add("e.confusion", conf)
            edges = ref.score_edges
            counts = np.zeros((edges.shape[0], SCORE_BINS))
            psums = np.zeros((edges.shape[0], SCORE_BINS))
            for c in range(edges.shape[0]):
                cls = 1 if ref.task == "binary" else c
                b = np.searchsorted(edges[c], scores[:, c], side="left")
                counts[c] = np.bincount(b, minlength=SCORE_BINS)
                psums[c] = np.bincount(b, weights=probs[:, cls], minlength=SCORE_BINS)
            self._add("e.hist_rows", counts)
            self._add("e.hist_pos", psums)
        elif ref.dle is not None:
            sub = {name: np.asarray(v)[ok] for name, v in (columns or {}).items()}
            losses = ref.dle.predict(sub, scores[:, 0])
            self._add("e.loss", np.array([losses[name].sum() for name in ("mae", "rmse", "mape")]))

    def add_labels(self, keys: np.ndarray, p: Predictions, y: np.ndarray) -> None:
        """Add labelled rows: ``y`` class indices (or values) aligned with ``p``."""
        ok = p.valid
        if not ok.any():
            return
        scores, predicted, y = p.scores[ok], p.predicted[ok], np.asarray(y)[ok]
        n = float(len(y))
        self._add("r.n", n)
        if not self.ref.classification:
            pred = scores[:, 0]
            yy = y.astype(np.float64)
            e = np.abs(yy - pred)
            ape = e / np.maximum(np.abs(yy), m.EPS)
            self._add(
                "r.reg",
                np.array(
                    [e.sum(), (e**2).sum(), (e**4).sum(), ape.sum(), (ape**2).sum()],
                ),
            )
            return
        ref = self.ref
        k = ref.n_classes
        y = y.astype(np.int64)
        self._add("r.confusion", np.bincount(y * k + predicted, minlength=k * k).reshape(k, k))
        if ref.task == "binary":
            s = np.clip(scores[:, 0], 0.0, 1.0)
            p_true = np.where(y == 1, s, 1.0 - s)
            brier = (s - y) ** 2
            conf, hit = s, (y == 1).astype(np.float64)
        else:
            probs = np.clip(scores, 0.0, None)
            probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), m.EPS)
            p_true = probs[np.arange(len(y)), y]
            onehot = np.eye(k)[y]
            brier = ((probs - onehot) ** 2).sum(axis=1)
            conf = probs.max(axis=1)
            hit = (np.argmax(probs, axis=1) == y).astype(np.float64)
        ll = -np.log(np.clip(p_true, m.EPS, 1.0 - m.EPS))
        self._add("r.loss", np.array([ll.sum(), (ll**2).sum(), brier.sum(), (brier**2).sum()]))
        self._add("r.ece", np.vstack(m.ece_bins(conf, hit, ECE_BINS)))
        self._sample(keys[ok], scores, y)

    def add_kpi(self, name: str, values: np.ndarray, p: Predictions) -> None:
        """Add a KPI's values, each with the prediction of its row."""
        kv = np.asarray(values, dtype=np.float64)
        s = p.value()
        ok = p.valid & np.isfinite(kv) & np.isfinite(s)
        if not ok.any():
            return
        kv, s = kv[ok], s[ok]
        self._add(
            f"k.{name}",
            np.array([len(kv), kv.sum(), (kv**2).sum(), s.sum(), (s**2).sum(), (kv * s).sum()]),
        )
        d = np.searchsorted(self.ref.decile_edges, s, side="left")
        self._add(
            f"k.{name}.decile",
            np.vstack([np.bincount(d, minlength=10), np.bincount(d, weights=kv, minlength=10)]),
        )

    def _sample(self, keys: np.ndarray, scores: np.ndarray, y: np.ndarray) -> None:
        u = (np.asarray(keys, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * _KEY_SCALE
        self._keep(
            np.concatenate([self.sample_keys, u]),
            np.concatenate([self.sample_scores, scores]),
            np.concatenate([self.sample_y, y]),
        )

    def _keep(self, keys: np.ndarray, scores: np.ndarray, y: np.ndarray) -> None:
        if len(keys) > self.sample_size:
            idx = np.argpartition(keys, self.sample_size - 1)[: self.sample_size]
            keys, scores, y = keys[idx], scores[idx], y[idx]
        self.sample_keys, self.sample_scores, self.sample_y = keys, scores, y

    # -- merge and serialisation ---------------------------------------------------------

    def merge(self, other: PerformanceState) -> PerformanceState:
        """The state of both windows' rows. The sample is the bottom-k of both by row key,
        k the smaller sample size: each side holds its own bottom-k (or all its rows), so
        that is a uniform sample of the union (exactly one agent's, with equal sizes)."""
        out = PerformanceState(self.ref, min(self.sample_size, other.sample_size))
        for src in (self, other):
            for key, v in src.sums.items():
                out._add(key, v)
        out._keep(
            np.concatenate([self.sample_keys, other.sample_keys]),
            np.concatenate([self.sample_scores, other.sample_scores]),
            np.concatenate([self.sample_y, other.sample_y]),
        )
        return out

    def with_sample_size(self, size: int) -> PerformanceState:
        """The same sums with the bottom-``size`` of the sample by row key (still a
        uniform sample of the labelled rows): a state cut to fit a message."""
        out = PerformanceState(self.ref, min(int(size), self.sample_size))
        out.sums = {k: v.copy() for k, v in self.sums.items()}
        out._keep(self.sample_keys, self.sample_scores, self.sample_y)
        return out

    @property
    def rows(self) -> int:
        return int(self.get("rows")[()]) if "rows" in self.sums else 0

    @property
    def labeled(self) -> int:
        return int(self.get("r.n")[()]) if "r.n" in self.sums else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_size": self.sample_size,
            "sums": {k: v.tolist() for k, v in self.sums.items()},
            "sample_keys": self.sample_keys.tolist(),
            "sample_scores": self.sample_scores.tolist(),
            "sample_y": self.sample_y.tolist(),
        }

    @classmethod
    def from_dict(cls, ref: PerformanceReference, d: dict[str, Any]) -> PerformanceState:
        out = cls(ref, int(d["sample_size"]))
        out.sums = {k: np.asarray(v, dtype=np.float64) for k, v in d["sums"].items()}
        out.sample_keys = np.asarray(d["sample_keys"], dtype=np.float64)
        out.sample_scores = np.asarray(d["sample_scores"], dtype=np.float64).reshape(
            len(out.sample_keys), len(ref.score_columns)
        )
        out.sample_y = np.asarray(d["sample_y"], dtype=np.int64)
        return out

    def to_bytes(self) -> bytes:
        """Compact binary form (a JSON header of shapes, then little-endian float64 and
        int64 arrays): what a partial carries to the aggregator; exact, as ``to_dict``."""
        keys = sorted(self.sums)
        head = {
            "sample_size": self.sample_size,
            "sums": [[k, list(self.sums[k].shape)] for k in keys],
            "sample": len(self.sample_keys),
            "width": int(self.sample_scores.shape[1]),
        }
        raw = json.dumps(head, separators=(",", ":")).encode()
        parts = [_WIRE.pack(_WIRE_MAGIC, len(raw)), raw]
        parts += [np.ascontiguousarray(self.sums[k], dtype="<f8").tobytes() for k in keys]
        parts.append(np.ascontiguousarray(self.sample_keys, dtype="<f8").tobytes())
        parts.append(np.ascontiguousarray(self.sample_scores, dtype="<f8").tobytes())
        parts.append(np.ascontiguousarray(self.sample_y, dtype="<i8").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, ref: PerformanceReference, data: bytes) -> PerformanceState:
        """Read :meth:`to_bytes`; ``ValueError`` when the bytes are not such a state or do
        not fit ``ref`` (another number of score columns)."""
        if len(data) < _WIRE.size or data[:4] != _WIRE_MAGIC:
            raise ValueError("not a performance state")
        (n,) = struct.unpack_from("<I", data, 4)
        try:
            head = json.loads(data[_WIRE.size : _WIRE.size + n])
            width, rows = int(head["width"]), int(head["sample"])
            if width != len(ref.score_columns):
                have = len(ref.score_columns)
                raise ValueError(f"{width} score columns, the reference has {have}")
            pos = _WIRE.size + n
            out = cls(ref, int(head["sample_size"]))

            def take(shape: tuple[int, ...], dtype: str) -> np.ndarray:
                nonlocal pos
                count = int(np.prod(shape, dtype=np.int64))
                arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
                pos += 8 * count
                return arr.reshape(shape).astype(dtype[1:], copy=True)

            for key, shape in head["sums"]:
                out.sums[str(key)] = take(tuple(int(s) for s in shape), "<f8")
            out.sample_keys = take((rows,), "<f8")
            out.sample_scores = take((rows, width), "<f8")
            out.sample_y = take((rows,), "<i8")
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"corrupt performance state: {type(exc).__name__}") from exc
        if pos != len(data):
            raise ValueError("corrupt performance state: wrong length")
        return out


def merge_all(ref: PerformanceReference, states: Iterable[PerformanceState]) -> PerformanceState:
    out: PerformanceState | None = None
    for s in states:
        out = s if out is None else out.merge(s)
    return out if out is not None else PerformanceState(ref)


# -- realized ----------------------------------------------------------------------------


def realize(ref: PerformanceReference, state: PerformanceState) -> list[RealizedMetric]:
    """The realized metrics of the labelled rows, each with its 95 % interval."""
    n = state.labeled
    if n == 0:
        return []
    if not ref.classification:
        ae, se, e4, ape, ape2 = state.get("r.reg", 5)
        mse_lo, mse_hi = m.mean_interval(se, e4, n)
        return [
            RealizedMetric("mae", ae / n, *m.mean_interval(ae, se, n)),
            RealizedMetric(
                "rmse", math.sqrt(se / n), math.sqrt(max(mse_lo, 0.0)), math.sqrt(mse_hi)
            ),
            RealizedMetric("mape", ape / n, *m.mean_interval(ape, ape2, n)),
        ]
    k = ref.n_classes
    cm = state.get("r.confusion", (k, k))
    out = [RealizedMetric("accuracy", np.trace(cm) / n, *m.wilson(np.trace(cm), n))]
    out += _confusion_metrics(ref, cm, n)
    out += _rank_metrics(ref, state.sample_scores, state.sample_y)
    ll, ll2, br, br2 = state.get("r.loss", 4)
    out.append(RealizedMetric("log_loss", ll / n, *m.mean_interval(ll, ll2, n)))
    out.append(RealizedMetric("brier", br / n, *m.mean_interval(br, br2, n)))
    count, conf, hit = state.get("r.ece", (3, ECE_BINS))
    out.append(RealizedMetric("ece", *m.ece_from_bins(count, conf, hit)))
    return out


def _confusion_metrics(ref: PerformanceReference, cm: np.ndarray, n: float) -> list:
    if ref.task == "binary":
        tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
        prec = tp / (tp + fp) if tp + fp > 0 else 0.0
        rec = tp / (tp + fn) if tp + fn > 0 else 0.0
        f1, lo, hi = m.f1_with_interval(tp, fp, fn, n)
        return [
            RealizedMetric("precision", prec, *m.wilson(tp, tp + fp)),
            RealizedMetric("recall", rec, *m.wilson(tp, tp + fn)),
            RealizedMetric("f1", 0.0 if math.isnan(f1) else f1, lo, hi),
        ]
    # macro averages over the classes present in the labels or the predictions
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    tp = np.diag(cm)[present]
    pred_pos = cm.sum(axis=0)[present]
    true_pos = cm.sum(axis=1)[present]
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(pred_pos > 0, tp / pred_pos, 0.0)
        rec = np.where(true_pos > 0, tp / true_pos, 0.0)
        f1 = np.where(pred_pos + true_pos > 0, 2 * tp / (pred_pos + true_pos), 0.0)
    kk = len(tp)

    def macro(values: np.ndarray, denom: np.ndarray) -> tuple[float, float, float]:
        v = float(values.mean())
        var = float(np.sum(values * (1 - values) / np.maximum(denom, 1))) / kk**2
        half = m.Z95 * math.sqrt(var)
        return v, max(0.0, v - half), min(1.0, v + half)

    return [
        RealizedMetric("precision", *macro(prec, pred_pos)),
        RealizedMetric("recall", *macro(rec, true_pos)),
        RealizedMetric("f1", *macro(f1, (pred_pos + true_pos) / 2)),
    ]


def _rank_metrics(ref: PerformanceReference, scores: np.ndarray, y: np.ndarray) -> list:
    if not len(y):
        return []
    columns = [(0, y == 1)] if ref.task == "binary" else [(c, y == c) for c in range(ref.n_classes)]
    aucs, auc_var, aps, ap_var = [], [], [], []
    for col, target in columns:
        pos, neg = int(target.sum()), int((~target).sum())
        if pos == 0 or neg == 0:
            continue
        auc = m.roc_auc(target, scores[:, col])
        ap = m.average_precision(target, scores[:, col])
        aucs.append(auc)
        lo, hi = m.auc_interval(auc, pos, neg)
        auc_var.append(((hi - lo) / (2 * m.Z95)) ** 2)
        aps.append(ap)
        lo, hi = m.ap_interval(ap, pos)
        ap_var.append(((hi - lo) / (2 * m.Z95)) ** 2)
    if not aucs:
        return []
    out = []
    for name, vals, var in (("roc_auc", aucs, auc_var), ("pr_auc", aps, ap_var)):
        v = float(np.mean(vals))
        half = m.Z95 * math.sqrt(sum(var)) / len(vals)
        if len(vals) == 1:  # the metric's own (possibly asymmetric) interval
            lo, hi = (
                m.auc_interval(v, int(columns[0][1].sum()), int((~columns[0][1]).sum()))
                if name == "roc_auc"
                else m.ap_interval(v, int(columns[0][1].sum()))
            )
        else:
            lo, hi = max(0.0, v - half), min(1.0, v + half)
        out.append(RealizedMetric(name, v, lo, hi))
    return out


# -- estimated ---------------------------------------------------------------------------


def estimate(ref: PerformanceReference, state: PerformanceState) -> dict[str, float]:
    """Label-free estimates: CBPE for classifiers, DLE for regressors."""
    n = state.rows
    if n == 0:
        return {}
    if not ref.classification:
        if "e.loss" not in state.sums:
            return {}
        ae, se, ape = state.get("e.loss", 3)
        return {"mae": ae / n, "rmse": math.sqrt(se / n), "mape": ape / n}
    k = ref.n_classes
    e = state.get("e.confusion", (k, k))
    out = {"accuracy": float(np.trace(e) / n)}
    with np.errstate(invalid="ignore", divide="ignore"):
        if ref.task == "binary":
            tp, fp, fn = e[1, 1], e[0, 1], e[1, 0]
            out["precision"] = float(tp / (tp + fp)) if tp + fp > 0 else 0.0
            out["recall"] = float(tp / (tp + fn)) if tp + fn > 0 else 0.0
            out["f1"] = float(2 * tp / (2 * tp + fp + fn)) if tp > 0 else 0.0
        else:
            tp, pred_pos, true_pos = np.diag(e), e.sum(axis=0), e.sum(axis=1)
            out["precision"] = float(np.mean(np.where(pred_pos > 0, tp / pred_pos, 0.0)))
            out["recall"] = float(np.mean(np.where(true_pos > 0, tp / true_pos, 0.0)))
            f1 = np.where(pred_pos + true_pos > 0, 2 * tp / (pred_pos + true_pos), 0.0)
            out["f1"] = float(np.mean(f1))
    rows, pos = state.get("e.hist_rows"), state.get("e.hist_pos")
    aucs = [_expected_auc(rows[c], pos[c]) for c in range(rows.shape[0])] if rows.ndim == 2 else []
    aucs = [a for a in aucs if math.isfinite(a)]
    if aucs:
        out["roc_auc"] = float(np.mean(aucs))
    return out


def _expected_auc(rows: np.ndarray, pos: np.ndarray) -> float:
    """ROC AUC of a histogram with an expected number of positives per score bin (rows
    within a bin count as tied): Σ_b neg_b · (pos above b + pos_b / 2) / (P · N)."""
    neg = rows - pos
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return math.nan
    above = total_pos - np.cumsum(pos)
    return float(np.sum(neg * (above + pos / 2)) / (total_pos * total_neg))


def estimated_metrics(ref: PerformanceReference, state: PerformanceState) -> list[EstimatedMetric]:
    """Estimates with their 95 % band (the realized metric's sampling spread at this
    window size, from the reference chunks) and the alert threshold."""
    method = "cbpe" if ref.classification else "dle"
    n = state.rows
    out = []
    for metric, value in estimate(ref, state).items():
        sd = ref.sampling_std(metric, n)
        half = m.Z95 * sd if math.isfinite(sd) else math.nan
        threshold = ref.threshold_for(metric, n)
        if metric in ("mae", "rmse", "mape"):
            alert = math.isfinite(threshold) and value > threshold
            lo, hi = max(0.0, value - half), value + half
        else:
            alert = math.isfinite(threshold) and value < threshold
            lo, hi = max(0.0, value - half), min(1.0, value + half)
        out.append(EstimatedMetric(metric, method, value, lo, hi, threshold, alert))
    return out


# -- KPIs ---------------------------------------------------------------------------------


def kpi_results(state: PerformanceState, names: Iterable[str]) -> list[KpiResult]:
    out = []
    for name in names:
        s = state.sums.get(f"k.{name}")
        if s is None:
            out.append(KpiResult(name, math.nan, math.nan))
            continue
        n, sk, sk2, ss, ss2, sks = s.tolist()
        mean = sk / n
        cov = sks / n - mean * ss / n
        var_k = sk2 / n - mean**2
        var_s = ss2 / n - (ss / n) ** 2
        corr = cov / math.sqrt(var_k * var_s) if var_k > 0 and var_s > 0 else math.nan
        dec = state.get(f"k.{name}.decile", (2, 10))
        with np.errstate(invalid="ignore", divide="ignore"):
            by = np.where(dec[0] > 0, dec[1] / dec[0], np.nan)
        out.append(KpiResult(name, mean, corr, int(n), tuple(float(v) for v in by)))
    return out


def evaluate_performance(
    ref: PerformanceReference,
    state: PerformanceState,
    *,
    window_rows: int,
    kpis: Iterable[str] = (),
    revised: bool = False,
) -> PerformanceResult:
    """The ``performance`` block of a window from its merged state."""
    labeled = state.labeled
    coverage = labeled / window_rows if window_rows > 0 else math.nan
    return PerformanceResult(
        labeled_rows=labeled,
        coverage=min(coverage, 1.0) if math.isfinite(coverage) else coverage,
        revised=revised,
        realized=tuple(realize(ref, state)),
        estimated=tuple(estimated_metrics(ref, state)),
        kpis=tuple(kpi_results(state, kpis)),
        task=ref.task,
    )
