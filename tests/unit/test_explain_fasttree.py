"""driftline's TreeSHAP kernel (monitor/explain/fasttree.py) gives shap's exact values for
every model family it runs on: XGBoost, LightGBM and scikit-learn tree ensembles, with
missing values, repeated features on a path, several outputs, tabulated and per-row
leaves, any number of threads; and the explainer falls back to the library's own TreeSHAP
where the kernel would disagree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

shap = pytest.importorskip("shap")
xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
sio = pytest.importorskip("skops.io")
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    RandomForestClassifier,
)

from monitor.explain import fasttree  # noqa: E402
from monitor.explain.explainers import make_explainer  # noqa: E402
from monitor.explain.loader import ModelLoadError, load_model  # noqa: E402

FEATURES = [f"x{i}" for i in range(8)]


def _data(seed: int, n: int, missing: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    # interactions and repeated splits on the same features down a path
    y = 2 * x.x0 + x.x1 * x.x2 - np.abs(x.x3) + np.sin(3 * x.x0) + rng.normal(0, 0.2, n)
    if missing:
        x.loc[rng.random(n) < missing, "x3"] = np.nan
    return x, y.to_numpy()


def _shap_kernel(model: object, rows: np.ndarray) -> np.ndarray:
    """shap's own C++ TreeSHAP on its parse of ``model``; for boosters shap would otherwise
    hand the work to the library."""
    explainer = shap.TreeExplainer(model)
    explainer.model.model_type = "internal"
    return np.asarray(explainer.shap_values(rows, check_additivity=False))


def test_xgboost_depth_6_with_missing_values_equals_shaps_kernel_and_xgboosts(
    tmp_path: Path,
) -> None:
    x, y = _data(0, 3000, missing=0.1)
    model = xgb.XGBRegressor(n_estimators=40, max_depth=6).fit(x, y)
    model.save_model(tmp_path / "m.json")
    explainer = make_explainer(load_model(tmp_path / "m.json"), x, device="cpu")
    assert explainer.engine == "fasttree"
    rows, _ = _data(1, 400, missing=0.1)
    ours = explainer.explain(rows)
    # XGBoost reads float32: shap's kernel on the same float32 rows, in float64
    exact = _shap_kernel(model.get_booster(), rows.to_numpy(np.float32))
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-9)
    native = model.get_booster().predict(xgb.DMatrix(rows), pred_contribs=True)
    np.testing.assert_allclose(ours, native[:, :-1], rtol=0, atol=1e-5)  # float32 sums
    assert explainer.expected_value == pytest.approx(float(native[0, -1]), abs=1e-6)
    margin = model.predict(rows, output_margin=True)
    np.testing.assert_allclose(ours.sum(axis=1) + explainer.expected_value, margin, atol=1e-4)


@pytest.mark.parametrize("classes", [2, 3])
def test_xgboost_classifiers_every_output_equals_xgboosts(tmp_path: Path, classes: int) -> None:
    x, y = _data(2, 2000, missing=0.05)
    labels = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))
    model = xgb.XGBClassifier(n_estimators=20, max_depth=5).fit(x, labels)
    model.save_model(tmp_path / "m.json")
    rows = x.head(300)
    native = model.get_booster().predict(xgb.DMatrix(rows), pred_contribs=True)
    for output in range(classes if classes > 2 else 1):
        explainer = make_explainer(
            load_model(tmp_path / "m.json"), x, device="cpu", output=output if classes > 2 else None
        )
        assert explainer.engine == "fasttree"
        theirs = native[:, output, :] if classes > 2 else native
        np.testing.assert_allclose(explainer.explain(rows), theirs[:, :-1], rtol=0, atol=1e-5)
        assert explainer.expected_value == pytest.approx(float(theirs[0, -1]), abs=1e-6)


def test_lightgbm_deep_leafwise_trees_equal_lightgbms_tabulated_or_per_row(
    tmp_path: Path,
) -> None:
    x, y = _data(3, 4000, missing=0.1)
    model = lgb.LGBMRegressor(n_estimators=30, num_leaves=63, verbose=-1).fit(x, y)
    model.booster_.save_model(tmp_path / "m.txt")
    explainer = make_explainer(load_model(tmp_path / "m.txt"), x)
    assert explainer.engine == "fasttree"
    rows, _ = _data(4, 300, missing=0.1)
    native = model.booster_.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(explainer.explain(rows), native[:, :-1], rtol=0, atol=1e-9)
    assert explainer.expected_value == pytest.approx(float(native[0, -1]), abs=1e-12)
    # paths longer than the table cap are integrated per row: same values
    ensemble = shap.TreeExplainer(model.booster_).model
    full = fasttree.build(ensemble, 0, len(FEATURES))
    mixed = fasttree.build(ensemble, 0, len(FEATURES), table_values=2000)
    none = fasttree.build(ensemble, 0, len(FEATURES), table_values=0)
    assert full is not None and mixed is not None and none is not None
    assert int(full.leaf_d.max()) > 6  # leaf-wise growth: long paths
    assert full.tabulated_leaves == len(full.leaf_d)
    # sibling leaves looked up together, under a split on a new feature and on one already
    # on the path (the wider table); other leaves alone
    pairs = full.unit_sib >= 0
    assert pairs.any() and (~pairs).any()
    assert np.any(pairs & (full.unit_bit < 0)) and np.any(pairs & (full.unit_bit >= 0))
    assert 0 < mixed.tabulated_leaves < len(mixed.leaf_d) and none.tabulated_leaves == 0
    values = rows.to_numpy()
    for trees in (full, mixed, none):
        np.testing.assert_allclose(trees.shap_values(values, 1), native[:, :-1], rtol=0, atol=1e-9)


def test_lightgbm_missing_value_where_training_had_none_is_lightgbms(tmp_path: Path) -> None:
    x, y = _data(5, 3000)  # no missing values in training: LightGBM reads NaN as 0
    model = lgb.LGBMRegressor(n_estimators=20, num_leaves=15, verbose=-1).fit(x, y)
    model.booster_.save_model(tmp_path / "m.txt")
    rows, _ = _data(6, 200, missing=0.3)
    # the load-time check is made on the reference rows without missing values
    explainer = make_explainer(load_model(tmp_path / "m.txt"), rows)
    assert explainer.engine == "fasttree"
    native = model.booster_.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(explainer.explain(rows), native[:, :-1], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=15, max_depth=7, random_state=0),
        GradientBoostingRegressor(n_estimators=25, max_depth=4, random_state=0),
        ExtraTreesRegressor(n_estimators=10, max_depth=9, random_state=0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_sklearn_ensembles_equal_shap(tmp_path: Path, estimator) -> None:
    x, y = _data(7, 1500)
    classifier = isinstance(estimator, RandomForestClassifier)
    target = (y > np.median(y)).astype(int) if classifier else y
    estimator.fit(x, target)
    sio.dump(estimator, tmp_path / "m.skops")
    explainer = make_explainer(load_model(tmp_path / "m.skops"), x)
    assert explainer.engine == "fasttree"
    rows, _ = _data(8, 200)
    theirs = shap.TreeExplainer(estimator)
    values = np.asarray(theirs.shap_values(rows, check_additivity=False))
    expected = np.atleast_1d(theirs.expected_value)
    if values.ndim == 3:  # a classifier's probability of the positive class
        values, expected = values[:, :, 1], expected[1:]
    np.testing.assert_allclose(explainer.explain(rows), values, rtol=0, atol=1e-10)
    assert explainer.expected_value == pytest.approx(float(expected[0]), abs=1e-10)


def test_threads_split_rows_and_change_nothing(tmp_path: Path) -> None:
    x, y = _data(9, 2000, missing=0.1)
    model = xgb.XGBRegressor(n_estimators=20, max_depth=6).fit(x, y)
    model.save_model(tmp_path / "m.json")
    loaded = load_model(tmp_path / "m.json")
    rows, _ = _data(10, 500, missing=0.1)
    one = make_explainer(loaded, x, device="cpu", threads=1).explain(rows)
    three = make_explainer(loaded, x, device="cpu", threads=3).explain(rows)
    np.testing.assert_array_equal(one, three)


def test_a_kernel_that_disagrees_with_the_booster_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _data(11, 1000)
    xgb.XGBRegressor(n_estimators=10, max_depth=4).fit(x, y).save_model(tmp_path / "m.json")
    build = fasttree.build

    def off_by_a_tenth(*args, **kwargs):
        trees = build(*args, **kwargs)
        return dataclasses.replace(trees, tables=trees.tables * 1.1)

    monkeypatch.setattr(fasttree, "build", off_by_a_tenth)
    explainer = make_explainer(load_model(tmp_path / "m.json"), x, device="cpu")
    assert explainer.engine == "xgboost"
    native = xgb.Booster(model_file=str(tmp_path / "m.json"))
    theirs = native.predict(xgb.DMatrix(x.head(50)), pred_contribs=True)
    np.testing.assert_allclose(explainer.explain(x.head(50)), theirs[:, :-1], atol=1e-6)


def test_without_a_writable_cache_the_kernel_compiles_uncached_and_without_numba_the_library_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numba

    x, y = _data(12, 1000)
    model = xgb.XGBRegressor(n_estimators=10, max_depth=4).fit(x, y)
    model.save_model(tmp_path / "m.json")
    native = model.get_booster().predict(xgb.DMatrix(x.head(100)), pred_contribs=True)[:, :-1]
    njit = numba.njit

    def read_only_filesystem(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function '_rows': no locator available")
        return njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", read_only_filesystem)
    monkeypatch.setattr(fasttree, "_COMPILED", [])
    explainer = make_explainer(load_model(tmp_path / "m.json"), x, device="cpu")
    assert explainer.engine == "fasttree"
    np.testing.assert_allclose(explainer.explain(x.head(100)), native, rtol=0, atol=1e-5)

    def no_numba() -> None:
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(fasttree, "_kernel", no_numba)
    explainer = make_explainer(load_model(tmp_path / "m.json"), x, device="cpu")
    assert explainer.engine == "xgboost"
    np.testing.assert_allclose(explainer.explain(x.head(100)), native, rtol=0, atol=1e-6)


def test_xgboost_categorical_splits_stay_with_xgboost(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    x = pd.DataFrame({"a": rng.normal(size=2000), "c": pd.Categorical(rng.integers(0, 5, 2000))})
    y = x.a + 2.0 * (x.c.cat.codes == 2)
    model = xgb.XGBRegressor(n_estimators=10, max_depth=3, enable_categorical=True)
    model.fit(x, y).save_model(tmp_path / "m.json")
    codes = pd.DataFrame({"a": x.a, "c": x.c.cat.codes.astype(float)})
    explainer = make_explainer(load_model(tmp_path / "m.json"), codes, device="cpu")
    assert explainer.engine == "xgboost"
    native = model.get_booster().predict(
        xgb.DMatrix(x.head(50), enable_categorical=True), pred_contribs=True
    )
    np.testing.assert_allclose(explainer.explain(codes.head(50)), native[:, :-1], atol=1e-6)


def test_tree_kernel_library_keeps_a_booster_to_its_own_treeshap_without_shap_or_numba(
    tmp_path: Path,
) -> None:
    """``explain.tree_kernel: library``: XGBoost's own TreeSHAP, the same values, and
    neither shap nor numba imported (the memory the kernel costs, docs/explainability.md)."""
    import subprocess
    import sys

    x, y = _data(5, 1500, missing=0.0)
    model = xgb.XGBRegressor(n_estimators=20, max_depth=4).fit(x, y)
    model.save_model(tmp_path / "m.json")
    x.head(200).to_csv(tmp_path / "rows.csv", index=False)
    lib = make_explainer(load_model(tmp_path / "m.json"), x, device="cpu", tree_kernel="library")
    ours = make_explainer(load_model(tmp_path / "m.json"), x, device="cpu")
    assert (lib.engine, ours.engine) == ("xgboost", "fasttree")
    rows = x.head(200)
    np.testing.assert_allclose(lib.explain(rows), ours.explain(rows), rtol=0, atol=1e-5)
    with pytest.raises(ModelLoadError, match="tree_kernel"):
        make_explainer(load_model(tmp_path / "m.json"), x, tree_kernel="fast")
    script = (
        "import sys, pandas as pd\n"
        "from monitor.explain.explainers import make_explainer\n"
        "from monitor.explain.loader import load_model\n"
        f"rows = pd.read_csv({str(tmp_path / 'rows.csv')!r})\n"
        f"e = make_explainer(load_model({str(tmp_path / 'm.json')!r}), rows, device='cpu', "
        "tree_kernel='library')\n"
        "e.explain(rows)\n"
        "print(sorted(m for m in ('shap', 'numba') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
