"""Loading the model file that attributions are computed from.

Formats, by extension or, failing that, by content:

- XGBoost: JSON (``.json``) or Universal Binary JSON (``.ubj``) from ``save_model``;
- LightGBM: the text format of ``Booster.save_model`` (``.txt``, ``.lgb``);
- scikit-learn estimators and pipelines: skops (``.skops``), which loads no code: types
  outside skops's default trusted set and scikit-learn's tree structures
  (``SKLEARN_TREE_TYPES``) are refused unless ``trusted_types`` names them;
- joblib / pickle (``.joblib``, ``.pkl``, ``.pickle``): only with ``trust_pickle``, because
  unpickling runs whatever code the file holds.

Model libraries are imported here, when a model is loaded, never by the base install.
Every problem is a ``ModelLoadError`` whose message names the file and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("auto", "xgboost", "lightgbm", "skops", "joblib")
# scikit-learn's own tree structures, which skops leaves out of its default trust only
# because they are compiled types: they hold node arrays, no callables. Trusted here by
# name, explicitly; anything else must be listed in explain.trusted_types.
SKLEARN_TREE_TYPES = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
_EXTRA = {"xgboost": "xgboost", "lightgbm": "lightgbm", "skops": "shap", "joblib": "shap"}


class ModelLoadError(ValueError):
    """A model file that cannot be used for attributions; the message says why and the fix."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to explain.

    ``library`` is "xgboost", "lightgbm" or "sklearn"; ``kind`` is "tree" (TreeSHAP
    applies), "linear" (exact linear SHAP) or "other" (a model-agnostic explainer);
    ``features`` the input columns in the order the model takes them; ``classifier`` says
    whether the explained output is a class score.
    """

    path: Path
    library: str
    model: Any
    features: tuple[str, ...]
    sha256: str
    kind: str
    classifier: bool = False


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(
    path: str | Path,
    *,
    format: str = "auto",
    trust_pickle: bool = False,
    trusted_types: Sequence[str] = (),
    features: Sequence[str] | None = None,
) -> LoadedModel:
    """Load ``path`` (see the module docstring). ``features`` names the input columns of a
    model saved without names (trained on a bare array); with names saved, they must agree.
    """
    path = Path(path)
    if format not in FORMATS:
        raise ModelLoadError(f"explain.format: {format!r} is not one of {list(FORMATS)}")
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file (explain.model or --model)")
    fmt = format if format != "auto" else _detect(path)
    loaders = {
        "xgboost": _load_xgboost,
        "lightgbm": _load_lightgbm,
        "skops": lambda p: _load_skops(p, trusted_types),
        "joblib": lambda p: _load_pickle(p, trust_pickle),
    }
    library, model, saved_names, kind, classifier = loaders[fmt](path)
    names = _feature_names(path, saved_names, features)
    expected = _n_features(library, model)
    if expected is not None and expected != len(names):
        raise ModelLoadError(
            f"{path}: the model takes {expected} inputs, explain.features lists {len(names)}; "
            "list every input column, in the order the model was trained on"
        )
    return LoadedModel(path, library, model, names, file_sha256(path), kind, classifier)


def check_features(loaded: LoadedModel, available: Sequence[str]) -> None:
    """Every input the model takes must be a feature of the reference profile."""
    missing = [f for f in loaded.features if f not in set(available)]
    if missing:
        raise ModelLoadError(
            f"{loaded.path}: the model takes {missing}, which the reference profile has no "
            f"feature for (it has {list(available)}); rebuild the profile from data with "
            "those columns, or set explain.features to the columns the model was trained on"
        )


# -- detection ------------------------------------------------------------------------------


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".json", ".ubj"):
        return "xgboost"
    if suffix in (".txt", ".lgb"):
        return "lightgbm"
    if suffix == ".skops":
        return "skops"
    if suffix in _PICKLE_SUFFIXES:
        return "joblib"
    head = path.open("rb").read(16)
    if head.startswith(b"PK"):
        return "skops"
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        return "lightgbm"
    if head.startswith(b"{"):
        return "xgboost"
    if head[:1] == b"\x80":
        return "joblib"
    raise ModelLoadError(
        f"{path}: unrecognised model file; save XGBoost models with save_model('m.json' or "
        "'m.ubj'), LightGBM with save_model('m.txt'), scikit-learn with skops.io.dump "
        "('m.skops'), or set explain.format"
    )


def _import(module: str, fmt: str, path: Path) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"{path}: reading this model needs {module}, which is not installed; "
            f"pip install 'driftline[{_EXTRA[fmt]}]'"
        ) from exc


# -- per library ----------------------------------------------------------------------------


def _load_xgboost(path: Path) -> tuple[str, Any, list[str] | None, str, bool]:
    xgb = _import("xgboost", "xgboost", path)
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelLoadError(
                f"{path}: not an XGBoost JSON model (invalid JSON: {exc}); LightGBM models "
                "are text files (.txt), scikit-learn models .skops files"
            ) from exc
        if not isinstance(doc, dict) or "learner" not in doc:
            raise ModelLoadError(
                f"{path}: a JSON file but not an XGBoost model (no 'learner' section); "
                "save the model with Booster.save_model('model.json')"
            )
        saved = tuple(int(v) for v in doc.get("version", ())[:2])
        have = tuple(int(v) for v in xgb.__version__.split(".")[:2])
        if saved and saved > have:
            raise ModelLoadError(
                f"{path}: saved by XGBoost {'.'.join(map(str, saved))}, newer than the "
                f"installed {xgb.__version__}; install xgboost>={'.'.join(map(str, saved))}"
            )
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise ModelLoadError(
            f"{path}: XGBoost cannot read this model: {str(exc).splitlines()[0]}; save it "
            "with save_model('model.json' or 'model.ubj') from a compatible XGBoost"
        ) from exc
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    classifier = objective.startswith(("binary:", "multi:"))
    return "xgboost", booster, booster.feature_names, "tree", classifier


def _load_lightgbm(path: Path) -> tuple[str, Any, list[str] | None, str, bool]:
    lgb = _import("lightgbm", "lightgbm", path)
    head = path.open("rb").read(5)
    if head != b"tree\n" and not head.startswith(b"tree\r"):
        raise ModelLoadError(
            f"{path}: not a LightGBM text model (it starts with {head!r}, not 'tree'); save "
            "it with Booster.save_model('model.txt')"
        )
    try:
        booster = lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as exc:
        raise ModelLoadError(
            f"{path}: LightGBM {lgb.__version__} cannot read this model ({exc}); save it "
            "again with a compatible LightGBM"
        ) from exc
    names = booster.feature_name()
    generic = all(n == f"Column_{i}" for i, n in enumerate(names))
    objective = str(booster.params.get("objective", booster.dump_model().get("objective", "")))
    classifier = objective.startswith(("binary", "multiclass", "cross_entropy"))
    return "lightgbm", booster, None if generic else names, "tree", classifier


def _load_skops(path: Path, trusted_types: Sequence[str]) -> tuple[str, Any, Any, str, bool]:
    sio = _import("skops.io", "skops", path)
    try:
        untrusted = sio.get_untrusted_types(file=str(path))
    except Exception as exc:  # zipfile.BadZipFile, KeyError, json errors: not a skops file
        raise ModelLoadError(
            f"{path}: not a skops file ({exc}); save scikit-learn models with "
            "skops.io.dump(model, 'model.skops')"
        ) from exc
    refused = sorted(set(untrusted) - set(trusted_types) - set(SKLEARN_TREE_TYPES))
    if refused:
        raise ModelLoadError(
            f"{path}: holds types skops does not trust by default: {refused}; review them "
            "and list the ones you trust under explain.trusted_types"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = sio.load(str(path), trusted=list(untrusted))
        except Exception as exc:
            raise ModelLoadError(f"{path}: skops cannot load this model: {exc}") from exc
    _check_sklearn_version(path, caught)
    return _sklearn(model)


def _load_pickle(path: Path, trust_pickle: bool) -> tuple[str, Any, Any, str, bool]:
    if not trust_pickle:
        raise ModelLoadError(
            f"{path}: a pickle/joblib file, which runs code when loaded, so it is not loaded "
            "unless you trust its source: set explain.trust_pickle: true (or pass "
            "--trust-pickle), or save the model with skops.io.dump(model, 'model.skops')"
        )
    joblib = _import("joblib", "joblib", path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = joblib.load(path)
        except Exception as exc:
            raise ModelLoadError(f"{path}: cannot unpickle this model: {exc!r}") from exc
    _check_sklearn_version(path, caught)
    if _is_xgboost(model):
        booster = model.get_booster()
        return "xgboost", booster, booster.feature_names, "tree", hasattr(model, "classes_")
    if type(model).__module__.startswith("lightgbm"):
        booster = model.booster_
        names = booster.feature_name()
        return "lightgbm", booster, names, "tree", hasattr(model, "classes_")
    return _sklearn(model)


def _n_features(library: str, model: Any) -> int | None:
    if library == "xgboost":
        return int(model.num_features())
    if library == "lightgbm":
        return int(model.num_feature())
    n = getattr(model, "n_features_in_", None)
    return None if n is None else int(n)


def _is_xgboost(model: Any) -> bool:
    return type(model).__module__.startswith("xgboost") and hasattr(model, "get_booster")


def _check_sklearn_version(path: Path, caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        if type(w.message).__name__ == "InconsistentVersionWarning":
            msg = w.message
            saved = getattr(msg, "original_sklearn_version", "?")
            have = getattr(msg, "current_sklearn_version", "?")
            raise ModelLoadError(
                f"{path}: saved by scikit-learn {saved}, loaded with {have}; an estimator "
                f"can behave differently across versions: install scikit-learn=={saved} in "
                "the agent's image, or save the model again with the installed version"
            )


def _sklearn(model: Any) -> tuple[str, Any, Any, str, bool]:
    if not hasattr(model, "predict"):
        raise ModelLoadError(f"a {type(model).__name__} is not a fitted model (no predict)")
    names = getattr(model, "feature_names_in_", None)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    kind = "other"
    if final is model:
        kind = _sklearn_kind(model)
    classifier = hasattr(final, "classes_")
    return "sklearn", model, None if names is None else list(names), kind, classifier


def _sklearn_kind(model: Any) -> str:
    from sklearn import ensemble, linear_model, tree

    trees = (
        tree.BaseDecisionTree,
        ensemble.RandomForestRegressor,
        ensemble.RandomForestClassifier,
        ensemble.ExtraTreesRegressor,
        ensemble.ExtraTreesClassifier,
        ensemble.GradientBoostingRegressor,
        ensemble.GradientBoostingClassifier,
        ensemble.IsolationForest,
    )
    if isinstance(model, trees):
        return "tree"
    if type(model).__module__.startswith(linear_model.__name__) and hasattr(model, "coef_"):
        return "linear"
    return "other"


def _feature_names(
    path: Path, saved: Sequence[str] | None, configured: Sequence[str] | None
) -> tuple[str, ...]:
    if saved is not None and configured is not None and list(saved) != list(configured):
        raise ModelLoadError(
            f"{path}: the model was trained on columns {list(saved)}, but explain.features "
            f"says {list(configured)}; remove explain.features or make it match"
        )
    names = saved if saved is not None else configured
    if names is None:
        raise ModelLoadError(
            f"{path}: the model was saved without feature names (trained on an array); "
            "list its input columns in order under explain.features"
        )
    return tuple(str(n) for n in names)
