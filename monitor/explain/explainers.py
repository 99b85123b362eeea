"""SHAP values of a loaded model on a frame of rows: one matrix, rows × model features.

The method follows the model (``explain.explainer: auto``):

- tree models: path-dependent TreeSHAP, exact. On the CPU driftline's own kernel
  (monitor/explain/fasttree.py: the same values in O(trees × leaves × depth) per row instead
  of TreeSHAP's O(trees × leaves × depth²), several times less CPU at depth 6, on
  ``threads`` cores) for XGBoost, LightGBM and scikit-learn tree ensembles alike, on the
  trees as shap parses them. Its values are checked at load against the library's own
  TreeSHAP on reference rows (``pred_contribs`` / ``pred_contrib``; ``shap.TreeExplainer``
  for scikit-learn), which is used instead if they disagree, if shap cannot parse the
  model or if it has categorical splits. XGBoost runs on the GPU (GPUTreeShap) when
  ``explain.device`` is ``cuda``, or ``auto`` and XGBoost was built with CUDA and a GPU is
  present;
- linear scikit-learn models: ``shap.LinearExplainer`` (exact, interventional, against a
  background drawn from the reference sample);
- anything else (pipelines, other estimators): ``shap.PermutationExplainer`` (or
  ``kernel``: ``shap.KernelExplainer``) on the model's prediction function, against the
  same background. These cost many model calls per row; the window's time budget
  (monitor/explain/window.py) bounds them.

Classifiers are explained on one output: the positive class of a binary model (the
margin, log-odds, for boosters; the probability for scikit-learn ensembles and
model-agnostic explainers), or ``explain.output`` for more classes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitor.explain import fasttree
from monitor.explain.loader import LoadedModel, ModelLoadError

METHODS = ("auto", "tree", "linear", "permutation", "kernel")
DEVICES = ("auto", "cpu", "cuda")
TREE_KERNELS = ("auto", "library")
# Rows of the reference sample the interventional explainers integrate over.
DEFAULT_BACKGROUND_ROWS = 100
# Reference rows on which the fast kernel must agree with a booster's own TreeSHAP, and by
# how much (relative to the largest attribution: boosters compute in float32).
_CHECK_ROWS = 64
_CHECK_RTOL = 1e-4

log = logging.getLogger(__name__)


@dataclass
class Explainer:
    """Computes attributions; ``explain(frame)`` returns (rows × features) float64."""

    method: str
    device: str
    features: tuple[str, ...]
    compute: Callable[[pd.DataFrame], tuple[np.ndarray, float]]
    expected_value: float = float("nan")
    output: int | None = None
    # what computes the values: "fasttree" (monitor/explain/fasttree.py), "xgboost",
    # "lightgbm" (their own TreeSHAP) or "shap"
    engine: str = "shap"

    def explain(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 0:
            return np.empty((0, len(self.features)))
        values, base = self.compute(frame[list(self.features)])
        self.expected_value = base
        return values


def gpu_available() -> bool:
    """An NVIDIA driver with at least one GPU is visible to this process."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def make_explainer(
    loaded: LoadedModel,
    background: pd.DataFrame,
    *,
    method: str = "auto",
    device: str = "auto",
    output: int | None = None,
    max_evals: int | None = None,
    threads: int | None = None,
    tree_kernel: str = "auto",
) -> Explainer:
    """The explainer for ``loaded`` (module docstring); ``background`` holds reference rows
    with the model's features (linear and model-agnostic explainers integrate over it;
    the tree kernel is checked on it). ``threads`` caps TreeSHAP's threads, the kernel's
    and XGBoost's and LightGBM's own (None: every core). ``tree_kernel`` "library" keeps
    to the library's own TreeSHAP: no shap or numba for a booster, less memory."""
    if method not in METHODS:
        raise ModelLoadError(f"explain.explainer: {method!r} is not one of {list(METHODS)}")
    if tree_kernel not in TREE_KERNELS:
        raise ModelLoadError(
            f"explain.tree_kernel: {tree_kernel!r} is not one of {list(TREE_KERNELS)}"
        )
    if device not in DEVICES:
        raise ModelLoadError(f"explain.device: {device!r} is not one of {list(DEVICES)}")
    chosen = {"tree": "tree", "linear": "linear"}.get(loaded.kind, "permutation")
    if method != "auto":
        if method == "tree" and loaded.kind != "tree":
            raise ModelLoadError(
                f"{loaded.path}: explain.explainer is tree, but a {type(loaded.model).__name__} "
                "is not a tree model; use auto, permutation or kernel"
            )
        if method == "linear" and loaded.kind != "linear":
            raise ModelLoadError(
                f"{loaded.path}: explain.explainer is linear, but a "
                f"{type(loaded.model).__name__} is not a linear model; use auto, permutation "
                "or kernel"
            )
        chosen = method
    if device == "cuda" and not (chosen == "tree" and loaded.library == "xgboost"):
        raise ModelLoadError(
            f"{loaded.path}: explain.device cuda needs an XGBoost model explained by TreeSHAP "
            f"(this is {loaded.library}, {chosen}); use device auto or cpu"
        )
    features = loaded.features
    bg = background[list(features)].head(DEFAULT_BACKGROUND_ROWS)

    def fast(native: Explainer) -> Explainer:
        if tree_kernel == "library":
            return native
        return _fast(loaded, bg, output, threads, native) or native

    if chosen == "tree" and loaded.library == "xgboost":
        native = _xgboost(loaded, device, output, threads)
        if native.device == "cuda":
            return native
        return fast(native)
    if chosen == "tree" and loaded.library == "lightgbm":
        contribs = _lightgbm(loaded, output, threads)
        native = Explainer("tree", "cpu", features, contribs, output=output, engine="lightgbm")
        return fast(native)
    shap = _shap(loaded.path)
    if chosen == "tree":
        explainer = shap.TreeExplainer(loaded.model)

        def tree(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
            values = explainer.shap_values(frame, check_additivity=False)
            return _one_output(values, output, loaded), _base(explainer.expected_value, output)

        native = Explainer("tree", "cpu", features, tree, output=output, engine="shap")
        return fast(native)
    if chosen == "linear":
        linear = shap.LinearExplainer(loaded.model, _numeric(bg, loaded))

        def lin(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
            values = linear.shap_values(_numeric(frame, loaded))
            return _one_output(values, output, loaded), _base(linear.expected_value, output)

        return Explainer("linear", "cpu", features, lin, output=output)
    codes = _Codes(bg)
    predict = _predict_fn(loaded, output, codes)
    if chosen == "kernel":
        kernel = shap.KernelExplainer(predict, codes.encode(bg))

        def ker(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
            nsamples = max_evals if max_evals is not None else "auto"
            values = kernel.shap_values(codes.encode(frame), nsamples=nsamples, silent=True)
            return np.asarray(values, dtype=np.float64), _base(kernel.expected_value, None)

        return Explainer("kernel", "cpu", features, ker, output=output)
    masker = shap.maskers.Independent(codes.encode(bg), max_samples=len(bg))
    perm = shap.PermutationExplainer(predict, masker)
    evals = max(max_evals or 0, 2 * len(features) + 1)

    def permutation(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
        result = perm(codes.encode(frame), max_evals=evals, silent=True)
        base = float(np.mean(result.base_values))
        return np.asarray(result.values, dtype=np.float64), base

    return Explainer("permutation", "cpu", features, permutation, output=output)


# -- libraries' own TreeSHAP ---------------------------------------------------------------


def _xgboost(
    loaded: LoadedModel, device: str, output: int | None, threads: int | None
) -> Explainer:
    xgb = importlib.import_module("xgboost")
    booster = loaded.model
    use_cuda = device == "cuda" or (
        device == "auto" and bool(xgb.build_info().get("USE_CUDA")) and gpu_available()
    )
    booster.set_param({"device": "cuda" if use_cuda else "cpu"})
    if threads is not None:
        booster.set_param({"nthread": threads})

    def contribs(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
        dm = xgb.DMatrix(_numeric(frame, loaded), feature_names=list(loaded.features))
        raw = booster.predict(dm, pred_contribs=True)  # (n, d+1) or (n, classes, d+1)
        if raw.ndim == 3:
            raw = raw[:, _class_index(raw.shape[1], output, loaded), :]
        return raw[:, :-1].astype(np.float64), float(raw[0, -1])

    return Explainer(
        "tree", "cuda" if use_cuda else "cpu", loaded.features, contribs, engine="xgboost"
    )


def _fast(
    loaded: LoadedModel,
    background: pd.DataFrame,
    output: int | None,
    threads: int | None,
    native: Explainer,
) -> Explainer | None:
    """driftline's TreeSHAP kernel (monitor/explain/fasttree.py) on the trees as shap parses
    them, or None where it does not apply: shap cannot parse the model, it has categorical
    splits, or the two disagree with ``native`` (the library's own TreeSHAP, shap's for
    scikit-learn) on reference rows. The expected value is ``native``'s (a booster's
    intercept is not in shap's parse of every version)."""
    if "c" in (getattr(loaded.model, "feature_types", None) or ()):
        return None  # XGBoost's categorical splits: shap's parse reads them as thresholds
    try:
        shap = importlib.import_module("shap")
        ensemble = shap.TreeExplainer(loaded.model).model
        outputs = int(ensemble.num_outputs)
        column = 0 if outputs == 1 else _class_index(outputs, output, loaded)
        # XGBoost compares float32 inputs with float32 thresholds
        dtype = np.float32 if loaded.library == "xgboost" else None
        trees = fasttree.build(ensemble, column, len(loaded.features), input_dtype=dtype)
        if trees is not None:
            fasttree.warm_up(trees)
    except ModelLoadError:
        raise
    except Exception as exc:  # shap's parser or numba: the library's own path still works
        log.info("%s: fast TreeSHAP unavailable (%s); using %s's", loaded.path, exc, native.engine)
        return None
    if trees is None:
        return None
    rows = background
    if loaded.library == "lightgbm":  # rows with missing values go to LightGBM (below)
        rows = rows.dropna()
    rows = rows.head(_CHECK_ROWS)
    if len(rows) == 0:
        rows = pd.DataFrame(np.zeros((1, len(loaded.features))), columns=loaded.features)
    theirs, base = native.compute(rows)
    ours = trees.shap_values(_numeric(rows, loaded), threads)
    scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
    if not np.allclose(ours, theirs, rtol=0.0, atol=_CHECK_RTOL * scale):
        log.warning(
            "%s: fast TreeSHAP disagrees with %s's TreeSHAP by %.3g; using %s's",
            loaded.path,
            native.engine,
            float(np.abs(ours - theirs).max()),
            native.engine,
        )
        return None
    # LightGBM reads a missing value as 0 where the split saw none in training, which
    # shap's parse does not record: rows with missing values go to LightGBM itself
    nan_native = native if loaded.library == "lightgbm" else None

    def compute(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
        x = _numeric(frame, loaded)
        if nan_native is not None and np.isnan(x).any():
            return nan_native.compute(frame)
        return trees.shap_values(x, threads), base

    return Explainer("tree", "cpu", loaded.features, compute, output=output, engine="fasttree")


def _lightgbm(
    loaded: LoadedModel, output: int | None, threads: int | None
) -> Callable[[pd.DataFrame], tuple[np.ndarray, float]]:
    booster = loaded.model
    d = len(loaded.features)
    extra = {} if threads is None else {"num_threads": threads}

    def contribs(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
        raw = np.asarray(booster.predict(_numeric(frame, loaded), pred_contrib=True, **extra))
        if raw.shape[1] != d + 1:  # multiclass: classes blocks of d + 1
            blocks = raw.reshape(len(raw), -1, d + 1)
            raw = blocks[:, _class_index(blocks.shape[1], output, loaded), :]
        return raw[:, :-1].astype(np.float64), float(raw[0, -1])

    return contribs


# -- helpers -------------------------------------------------------------------------------


def _shap(path: Path) -> Any:
    try:
        return importlib.import_module("shap")
    except ImportError as exc:
        raise ModelLoadError(
            f"{path}: explaining this model needs shap, which is not installed; "
            "pip install 'driftline[shap]'"
        ) from exc


def _numeric(frame: pd.DataFrame, loaded: LoadedModel) -> np.ndarray:
    try:
        return frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"{loaded.path}: a {loaded.library} model explained by {loaded.kind} SHAP takes "
            f"numeric inputs, and some of {list(loaded.features)} are categorical; wrap the "
            "encoding and the model in a scikit-learn pipeline saved with skops"
        ) from exc


def _class_index(classes: int, output: int | None, loaded: LoadedModel) -> int:
    if output is not None:
        if not 0 <= output < classes:
            raise ModelLoadError(
                f"{loaded.path}: explain.output {output} is not a class index (0..{classes - 1})"
            )
        return output
    if classes == 1:
        return 0
    if classes == 2:
        return 1
    raise ModelLoadError(
        f"{loaded.path}: the model has {classes} outputs; set explain.output to the index "
        "of the class whose attributions to monitor"
    )


def _one_output(values: Any, output: int | None, loaded: LoadedModel) -> np.ndarray:
    if isinstance(values, list):  # older shap: one array per class
        values = np.stack(values, axis=-1)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[:, :, _class_index(arr.shape[2], output, loaded)]
    return arr


def _base(expected: Any, output: int | None) -> float:
    arr = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    if len(arr) == 1:
        return float(arr[0])
    return float(arr[output if output is not None else (1 if len(arr) == 2 else 0)])


class _Codes:
    """Categorical columns as numbers for shap's maskers (which compare values with
    ``np.isclose``), and back for the model: each category gets a code the first time it is
    seen (background first, then each window's new ones)."""

    def __init__(self, background: pd.DataFrame) -> None:
        self.features = list(background.columns)
        self.categorical = [c for c in self.features if background[c].dtype == object]
        self.codes: dict[str, dict[object, float]] = {c: {} for c in self.categorical}
        self.values: dict[str, list[object]] = {c: [] for c in self.categorical}
        self.encode(background)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, c in enumerate(self.features):
            if c not in self.codes:
                out[:, j] = pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64)
                continue
            codes, values = self.codes[c], self.values[c]
            column = [None if pd.isna(v) else v for v in frame[c].tolist()]
            for v in column:
                if v not in codes:
                    codes[v] = float(len(values))
                    values.append(v)
            out[:, j] = [codes[v] for v in column]
        return out

    def decode(self, x: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(x, columns=self.features)
        for c in self.categorical:
            values = np.array(self.values[c], dtype=object)
            frame[c] = values[frame[c].to_numpy().astype(np.int64)]
        return frame


def _predict_fn(
    loaded: LoadedModel, output: int | None, codes: _Codes
) -> Callable[[np.ndarray], np.ndarray]:
    model = loaded.model
    proba = loaded.classifier and hasattr(model, "predict_proba")

    def predict(x: np.ndarray) -> np.ndarray:
        frame = codes.decode(x)
        if proba:
            p = np.asarray(model.predict_proba(frame))
            return p[:, _class_index(p.shape[1], output, loaded)]
        return np.asarray(model.predict(frame), dtype=np.float64)

    return predict
