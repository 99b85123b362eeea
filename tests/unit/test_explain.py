"""Model files and SHAP attributions in the serving path (monitor/explain/): the loader's
errors, attributions against shap's own, and attribution drift on generated data."""

from __future__ import annotations

import itertools
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

shap = pytest.importorskip("shap")
xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
sio = pytest.importorskip("skops.io")
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeRegressor  # noqa: E402

from detectors.evaluate import evaluate_window  # noqa: E402
from detectors.profile import build_profile  # noqa: E402
from detectors.settings import DriftSettings  # noqa: E402
from detectors.sketch import WindowSketch  # noqa: E402
from monitor.explain.explainers import make_explainer  # noqa: E402
from monitor.explain.loader import ModelLoadError, check_features, load_model  # noqa: E402
from monitor.explain.window import (  # noqa: E402
    ExplainSettings,
    WindowAttributor,
    with_reference_attributions,
)

READ = ["x0", "x1", "x2"]
IGNORED = ["x3", "x4"]
FEATURES = READ + IGNORED


def _data(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    x = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    for f, d in (shift or {}).items():
        x[f] += d
    return x


def _target(x: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    # the model reads x0, x1 and x2 (not x3, x4: no signal in them)
    return 1.5 * x.x0 + 1.0 * x.x1 - 0.5 * x.x2**2 + rng.normal(0, 0.2, len(x))


# -- attributions equal shap's own ------------------------------------------------------


def test_xgboost_treeshap_equals_shap_and_adds_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = _data(rng, 2000)
    model = xgb.XGBRegressor(n_estimators=30, max_depth=3).fit(x, _target(x, rng))
    model.save_model(tmp_path / "m.json")
    loaded = load_model(tmp_path / "m.json")
    assert (loaded.library, loaded.kind, loaded.features) == ("xgboost", "tree", tuple(FEATURES))
    explainer = make_explainer(loaded, x, device="cpu")
    rows = x.head(300)
    ours = explainer.explain(rows)
    theirs = shap.TreeExplainer(model).shap_values(rows)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    margin = model.predict(rows, output_margin=True)
    np.testing.assert_allclose(ours.sum(axis=1) + explainer.expected_value, margin, atol=1e-4)


def test_lightgbm_treeshap_equals_shap(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = _data(rng, 2000)
    model = lgb.LGBMRegressor(n_estimators=30, num_leaves=8, verbose=-1).fit(x, _target(x, rng))
    model.booster_.save_model(tmp_path / "m.txt")
    loaded = load_model(tmp_path / "m.txt")
    assert loaded.library == "lightgbm" and loaded.features == tuple(FEATURES)
    explainer = make_explainer(loaded, x)
    rows = x.head(300)
    theirs = shap.TreeExplainer(model).shap_values(rows)
    np.testing.assert_allclose(explainer.explain(rows), theirs, atol=1e-8)


def _path_dependent_shapley(tree, x: np.ndarray) -> np.ndarray:
    """Exact Shapley values of one row by enumerating every coalition, with TreeSHAP's
    value function: E[f | x_S] following x on features in S and the training cover
    elsewhere (Lundberg et al. 2020, Algorithm 1), independent of shap's code."""
    t = tree.tree_
    d = len(x)

    def value(node: int, s: frozenset[int]) -> float:
        if t.children_left[node] < 0:
            return float(t.value[node][0][0])
        f, left, right = t.feature[node], t.children_left[node], t.children_right[node]
        if f in s:
            return value(left if x[f] <= t.threshold[node] else right, s)
        nl, nr = t.n_node_samples[left], t.n_node_samples[right]
        return (nl * value(left, s) + nr * value(right, s)) / (nl + nr)

    phi = np.zeros(d)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for k in range(d):
            for subset in itertools.combinations(others, k):
                s = frozenset(subset)
                weight = math.factorial(k) * math.factorial(d - k - 1) / math.factorial(d)
                phi[i] += weight * (value(0, s | {i}) - value(0, s))
    return phi


def test_sklearn_tree_attributions_equal_exact_shapley_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = _data(rng, 1500)[["x0", "x1", "x2"]]
    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, _target(_data(rng, 1500), rng))
    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(
        x, 1.5 * x.x0 + x.x1 - 0.5 * x.x2**2
    )
    sio.dump(tree, tmp_path / "tree.skops")
    loaded = load_model(tmp_path / "tree.skops")
    assert loaded.kind == "tree"
    explainer = make_explainer(loaded, x)
    rows = x.head(25)
    ours = explainer.explain(rows)
    np.testing.assert_allclose(ours, shap.TreeExplainer(tree).shap_values(rows), atol=1e-10)
    for r in range(len(rows)):
        exact = _path_dependent_shapley(tree, rows.to_numpy()[r])
        np.testing.assert_allclose(ours[r], exact, atol=1e-9)


def test_linear_attributions_equal_shap_and_the_closed_form(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = _data(rng, 1000)
    model = LinearRegression().fit(x, 2 * x.x0 - x.x1 + rng.normal(0, 0.1, len(x)))
    sio.dump(model, tmp_path / "lin.skops")
    loaded = load_model(tmp_path / "lin.skops")
    assert loaded.kind == "linear"
    background = x.head(100)
    explainer = make_explainer(loaded, background)
    assert explainer.method == "linear"
    rows = x.iloc[500:700]
    ours = explainer.explain(rows)
    theirs = shap.LinearExplainer(model, background.to_numpy()).shap_values(rows.to_numpy())
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    closed = model.coef_ * (rows.to_numpy() - background.to_numpy().mean(axis=0))
    np.testing.assert_allclose(ours, closed, atol=1e-10)


def test_pipeline_gets_the_model_agnostic_explainer_and_its_values_add_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = _data(rng, 800)
    y = (x.x0 + x.x1 > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    sio.dump(pipe, tmp_path / "pipe.skops")
    loaded = load_model(tmp_path / "pipe.skops")
    assert loaded.kind == "other" and loaded.classifier
    explainer = make_explainer(loaded, x)
    assert explainer.method == "permutation"
    rows = x.head(20)
    values = explainer.explain(rows)
    # Permutation SHAP is exactly additive: base + Σ φ = the positive-class probability.
    proba = pipe.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(values.sum(axis=1) + explainer.expected_value, proba, atol=1e-8)
    assert np.abs(values[:, 3:]).mean() < 0.1 * np.abs(values[:, :2]).mean()


# -- loading errors ---------------------------------------------------------------------


def test_loader_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = _data(rng, 300)
    model = xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(x, _target(x, rng))
    model.save_model(tmp_path / "m.json")

    with pytest.raises(ModelLoadError, match=r"no such model file"):
        load_model(tmp_path / "absent.json")

    (tmp_path / "other.json").write_text('{"not": "a model"}')
    with pytest.raises(ModelLoadError, match=r"other\.json: a JSON file but not an XGBoost model"):
        load_model(tmp_path / "other.json")

    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ModelLoadError, match=r"notes\.txt: not a LightGBM text model"):
        load_model(tmp_path / "notes.txt")

    (tmp_path / "blob.bin").write_bytes(b"\x00\x01garbage")
    with pytest.raises(
        ModelLoadError, match=r"blob\.bin: unrecognised model file.*explain\.format"
    ):
        load_model(tmp_path / "blob.bin")

    doc = json.loads((tmp_path / "m.json").read_text())
    doc["version"] = [99, 0, 0]
    (tmp_path / "future.json").write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match=r"saved by XGBoost 99\.0, newer than the installed"):
        load_model(tmp_path / "future.json")

    with pytest.raises(ModelLoadError, match=r"trained on columns .* explain\.features says"):
        load_model(tmp_path / "m.json", features=["a", "b", "c", "d", "e"])

    loaded = load_model(tmp_path / "m.json")
    with pytest.raises(ModelLoadError, match=r"takes \['x3', 'x4'\], which the reference profile"):
        check_features(loaded, ["x0", "x1", "x2"])


def test_unnamed_model_needs_explain_features_of_the_right_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    x = _data(rng, 300)
    booster = lgb.train(
        {"verbose": -1, "num_leaves": 4}, lgb.Dataset(x.to_numpy(), _target(x, rng)), 5
    )
    booster.save_model(tmp_path / "bare.txt")
    with pytest.raises(ModelLoadError, match=r"saved without feature names.*explain\.features"):
        load_model(tmp_path / "bare.txt")
    with pytest.raises(ModelLoadError, match=r"takes 5 inputs, explain\.features lists 2"):
        load_model(tmp_path / "bare.txt", features=["x0", "x1"])
    assert load_model(tmp_path / "bare.txt", features=FEATURES).features == tuple(FEATURES)


class _Trap:
    """Unpickling this writes a file: the proof that a pickle ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle ran"))


def test_no_pickle_is_loaded_without_the_opt_in(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.joblib"
    path.write_bytes(pickle.dumps(_Trap(str(marker))))
    with pytest.raises(ModelLoadError, match=r"runs code when loaded.*trust_pickle: true"):
        load_model(path)
    assert not marker.exists()
    with pytest.raises(ModelLoadError, match=r"runs code when loaded"):
        load_model(path, format="joblib")
    assert not marker.exists()
    # with the opt-in it is unpickled (and the code ran), then refused as not a model
    with pytest.raises(ModelLoadError):
        load_model(path, trust_pickle=True)
    assert marker.exists()


def test_trusted_pickle_of_an_estimator_loads(tmp_path: Path) -> None:
    import joblib

    rng = np.random.default_rng(7)
    x = _data(rng, 300)
    model = LinearRegression().fit(x, x.x0)
    joblib.dump(model, tmp_path / "lin.joblib")
    loaded = load_model(tmp_path / "lin.joblib", trust_pickle=True)
    assert loaded.kind == "linear" and loaded.features == tuple(FEATURES)


def _double(x):
    return 2 * x


def test_skops_types_outside_the_trusted_set_are_refused(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(8)
    x = _data(rng, 200)
    pipe = make_pipeline(FunctionTransformer(_double), LinearRegression()).fit(x, x.x0)
    sio.dump(pipe, tmp_path / "fn.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "fn.skops")
    assert untrusted
    with pytest.raises(ModelLoadError, match=r"types skops does not trust.*explain\.trusted_types"):
        load_model(tmp_path / "fn.skops")
    assert load_model(tmp_path / "fn.skops", trusted_types=untrusted).kind == "other"


def test_sklearn_version_mismatch_is_an_error(tmp_path: Path) -> None:
    import joblib
    import sklearn

    rng = np.random.default_rng(9)
    x = _data(rng, 200)
    joblib.dump(LinearRegression().fit(x, x.x0), tmp_path / "m.joblib")
    data = (tmp_path / "m.joblib").read_bytes()
    now = sklearn.__version__.encode()
    assert data.count(now) == 1
    # the same file as saved by another scikit-learn (same length: the pickle stays valid)
    other = (b"0" if now[:1] != b"0" else b"9") + now[1:]
    (tmp_path / "old.joblib").write_bytes(data.replace(now, other))
    with pytest.raises(ModelLoadError, match=rf"saved by scikit-learn {other.decode()}.*install"):
        load_model(tmp_path / "old.joblib", trust_pickle=True)


def test_base_install_imports_no_model_library() -> None:
    code = (
        "import sys, monitor.cli, monitor.runtime.pipeline, monitor.config.loader, "
        "monitor.explain.window, detectors.attribution\n"
        "print(sorted(m for m in ('shap','xgboost','lightgbm','sklearn','skops','joblib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- attribution drift on generated data ---------------------------------------------------


def _setup(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    x = _data(rng, 6000)
    model = xgb.XGBRegressor(n_estimators=60, max_depth=3, random_state=seed).fit(
        x, _target(x, rng)
    )
    path = tmp_path / f"m{seed}.json"
    model.save_model(path)
    ref = x.assign(prediction=model.predict(x))
    settings = ExplainSettings(model=str(path), device="cpu")
    profile = with_reference_attributions(build_profile(ref, prediction=["prediction"]), settings)
    return rng, model, profile, WindowAttributor.from_settings(profile, settings)


def _window(profile, model, rng, shift):
    x = _data(rng, 1024, shift)
    sketch = WindowSketch(profile, reservoir_size=1024, seed=0)
    sketch.update(x.assign(prediction=model.predict(x)))
    return sketch


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_read_feature_shift_is_attribution_drift_ignored_one_is_not(
    tmp_path: Path, seed: int
) -> None:
    rng, model, profile, attributor = _setup(tmp_path, seed)
    assert set(profile.attribution.ranking[:3]) == set(READ)
    drift = DriftSettings()
    cases = {"none": {}, "read": {"x1": 0.5}, "ignored": {"x3": 1.0}}
    out = {}
    for name, shift in cases.items():
        sketch = _window(profile, model, rng, shift)
        features, _, _ = evaluate_window(profile, sketch, drift)
        out[name] = (features, attributor.evaluate(sketch, drift, features))

    features, attribution = out["none"]
    assert not any(c.drifted for c in features.columns)
    assert not attribution.drifted and attribution.ndcg > 0.9
    assert attribution.impact == ()

    features, attribution = out["read"]
    assert features.column("x1").drifted
    assert attribution.column("x1").drifted
    assert [c.feature for c in attribution.columns if c.drifted] == ["x1"]
    assert attribution.prediction_drivers == ("x1",)
    assert attribution.impact[0].feature == "x1" and attribution.impact[0].importance > 0.1

    features, attribution = out["ignored"]
    assert features.column("x3").drifted  # feature drift...
    assert not any(c.drifted for c in attribution.columns)  # ...but not attribution drift
    assert attribution.ndcg > 0.9
    item = {i.feature: i for i in attribution.impact}["x3"]
    assert item.importance < 0.02 and item.score < 0.1 * out["read"][1].impact[0].score


def test_budget_and_failures_skip_windows_and_count_them(tmp_path: Path) -> None:
    rng, model, profile, _ = _setup(tmp_path, 14)
    now = [0.0]
    counted: list[str] = []
    settings = ExplainSettings(model=str(tmp_path / "m14.json"), budget_seconds=1.0, min_rows=200)
    attributor = WindowAttributor.from_settings(profile, settings, on_skip=counted.append)
    attributor.clock = lambda: now[0]
    inner = attributor.explainer.compute

    def slow(frame):  # every call takes 10 s on the fake clock: only the first chunk is done
        now[0] += 10.0
        return inner(frame)

    attributor.explainer.compute = slow
    sketch = _window(profile, model, rng, {})
    assert attributor.evaluate(sketch, DriftSettings(), None) is None
    attributor.explainer.compute = lambda frame: (_ for _ in ()).throw(RuntimeError("boom"))
    assert attributor.evaluate(sketch, DriftSettings(), None) is None
    small = WindowSketch(profile, reservoir_size=1024)
    small.update(_data(rng, 50).assign(prediction=0.0))
    assert attributor.evaluate(small, DriftSettings(), None) is None
    assert counted == ["budget", "error", "too_few_rows"]
    assert dict(attributor.skipped) == {"budget": 1, "error": 1, "too_few_rows": 1}


def test_a_different_model_file_than_the_references_is_refused(tmp_path: Path) -> None:
    _, _, profile, _ = _setup(tmp_path, 15)
    rng = np.random.default_rng(0)
    x = _data(rng, 500)
    xgb.XGBRegressor(n_estimators=5).fit(x, x.x0).save_model(tmp_path / "other.json")
    with pytest.raises(ModelLoadError, match=r"not the model the reference attributions"):
        WindowAttributor.from_settings(profile, ExplainSettings(model=str(tmp_path / "other.json")))


def test_gpu_treeshap_is_chosen_by_config_or_auto_and_cpu_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.explain.explainers as ex

    rng = np.random.default_rng(16)
    x = _data(rng, 300)
    xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(x, x.x0).save_model(tmp_path / "m.json")
    lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(x, x.x0).booster_.save_model(
        tmp_path / "m.txt"
    )

    def device_of(explainer_booster) -> str:
        return json.loads(explainer_booster.save_config())["learner"]["generic_param"]["device"]

    monkeypatch.setattr(ex, "gpu_available", lambda: False)
    loaded = load_model(tmp_path / "m.json")
    assert make_explainer(loaded, x).device == "cpu"
    assert device_of(loaded.model) == "cpu"
    cuda_build = bool(xgb.build_info().get("USE_CUDA"))
    monkeypatch.setattr(ex, "gpu_available", lambda: True)
    loaded = load_model(tmp_path / "m.json")
    # (without a GPU XGBoost itself falls back to the CPU, with a warning)
    assert make_explainer(loaded, x).device == ("cuda" if cuda_build else "cpu")
    loaded = load_model(tmp_path / "m.json")
    assert make_explainer(loaded, x, device="cpu").device == "cpu"
    assert make_explainer(loaded, x, device="cuda").device == "cuda"
    with pytest.raises(ModelLoadError, match=r"device cuda needs an XGBoost model"):
        make_explainer(load_model(tmp_path / "m.txt"), x, device="cuda")


def test_threads_cap_the_model_librarys_threads(tmp_path: Path) -> None:
    rng = np.random.default_rng(17)
    x = _data(rng, 300)
    model = xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(x, x.x0)
    model.save_model(tmp_path / "m.json")
    loaded = load_model(tmp_path / "m.json")
    explainer = make_explainer(loaded, x, device="cpu", threads=1)
    config = json.loads(loaded.model.save_config())["learner"]["generic_param"]
    assert config["nthread"] == "1"
    np.testing.assert_allclose(
        explainer.explain(x.head(50)), shap.TreeExplainer(model).shap_values(x.head(50)), atol=1e-5
    )


def test_pipeline_with_a_categorical_column_is_explained_on_its_categories(
    tmp_path: Path,
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(18)
    x = pd.DataFrame({"a": rng.normal(size=600), "c": rng.choice(["u", "v", "w"], 600)})
    x["c"] = x["c"].astype(object)  # as the reservoir and the profile sample hold them
    y = (x.a + 2.0 * (x.c == "u") > 0.5).astype(int)
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["c"]), remainder="passthrough"
    )
    pipe = make_pipeline(encode, LogisticRegression()).fit(x, y)
    sio.dump(pipe, tmp_path / "cat.skops")
    explainer = make_explainer(load_model(tmp_path / "cat.skops"), x)
    rows = x.iloc[100:120].copy()
    rows.iloc[0, 1] = "never-seen"  # a category the background lacks
    values = explainer.explain(rows)
    proba = pipe.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(values.sum(axis=1) + explainer.expected_value, proba, atol=1e-8)
    # rows of category "u" get a positive attribution for c, those of "v" and "w" a
    # negative one
    is_u = (rows.c == "u").to_numpy()
    known_other = rows.c.isin(["v", "w"]).to_numpy()
    assert (values[is_u, 1] > 0).all() and (values[known_other, 1] < 0).all()
