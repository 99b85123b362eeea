"""Attributions logged in the prediction records (``explain.source: record``): read by
every decoder, sampled with the window, judged like a model file's, with no model file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

shap = pytest.importorskip("shap")
sio = pytest.importorskip("skops.io")
from sklearn.ensemble import GradientBoostingRegressor  # noqa: E402

from detectors.profile import build_profile, load_profile  # noqa: E402
from detectors.results import WindowReport  # noqa: E402
from detectors.settings import DriftSettings  # noqa: E402
from detectors.sketch import WindowSketch  # noqa: E402
from monitor.cli import main  # noqa: E402
from monitor.config.model import MonitorConfig  # noqa: E402
from monitor.explain.logged import with_logged_reference  # noqa: E402
from monitor.explain.window import ExplainSettings, with_reference_attributions  # noqa: E402
from monitor.outputs.exporter import Exporter  # noqa: E402
from monitor.runtime.replay import replay  # noqa: E402

FEATURES = ["x0", "x1", "x2", "x3", "x4"]  # the model reads x0, x1, x2
WINDOW = 1500  # rows per window, more than the 1024-row reservoir


def _data(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    x = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    for f, d in (shift or {}).items():
        x[f] += d
    return x


def _setup(d: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x = _data(rng, 3000)
    y = 1.5 * x.x0 + 1.0 * x.x1 - 0.5 * x.x2**2 + rng.normal(0, 0.2, len(x))
    model = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=seed).fit(x, y)
    sio.dump(model, d / "model.skops")
    explainer = shap.TreeExplainer(model)
    ref = x.assign(prediction=model.predict(x))
    phi = explainer.shap_values(x)
    ref_logged = ref.assign(
        attributions=[dict(zip(FEATURES, r, strict=True)) for r in phi.tolist()]
    )
    # three windows: unchanged, a shift in x1 (read), a shift in x3 (ignored)
    live = pd.concat(
        [_data(rng, WINDOW), _data(rng, WINDOW, {"x1": 0.5}), _data(rng, WINDOW, {"x3": 1.0})],
        ignore_index=True,
    )
    live_phi = explainer.shap_values(live)
    with (d / "live.jsonl").open("w") as fh:
        for i, (row, p, a) in enumerate(
            zip(live.to_dict("records"), model.predict(live), live_phi.tolist(), strict=True)
        ):
            # half the records log an object, half an array in the profile's feature order
            logged = dict(zip(FEATURES, a, strict=True)) if i % 2 else a
            fh.write(
                json.dumps(
                    {
                        "request_id": f"r{i}",
                        "features": row,
                        "prediction": p,
                        "attributions": logged,
                    }
                )
                + "\n"
            )
    return {"ref": ref, "ref_logged": ref_logged, "model": d / "model.skops", "live": live}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("logged")
    out = _setup(d, seed=3)
    out["dir"] = d
    return out


def _replay(profile_path: Path, live: Path, exporter: Exporter | None = None, **explain):
    cfg = MonitorConfig.for_replay(reference=profile_path, input_path=live, window_rows=WINDOW)
    explain_cfg = type(cfg.explain).model_validate(explain)
    cfg = cfg.model_copy(update={"explain": explain_cfg})
    profile = load_profile(profile_path)
    return list(replay(cfg, profile, live, exporter=exporter))


def test_logged_reference_equals_the_model_files(case: dict) -> None:
    profile = build_profile(case["ref"], prediction=["prediction"], sample_rows=5000)
    by_model = with_reference_attributions(
        profile, ExplainSettings(model=str(case["model"]), device="cpu")
    ).attribution
    by_record = with_logged_reference(profile, case["ref_logged"], "attributions").attribution
    assert by_model is not None and by_record is not None
    assert by_record.features == by_model.features and by_record.rows == by_model.rows == 3000
    for name in ("mean_abs", "abs_std", "mean"):
        # the same values summed in another row order: equal up to rounding
        np.testing.assert_allclose(
            getattr(by_record, name), getattr(by_model, name), rtol=1e-12, atol=1e-12
        )
    for f in FEATURES:
        # the same values in another row order: edges equal up to rounding
        np.testing.assert_allclose(
            by_record.distributions[f].edges, by_model.distributions[f].edges, rtol=1e-12
        )
        np.testing.assert_array_equal(
            by_record.distributions[f].counts, by_model.distributions[f].counts
        )
    assert by_record.method == "logged" and by_record.ranking[:3] == by_model.ranking[:3]


def test_record_field_gives_the_model_files_attribution_block(case: dict) -> None:
    d = case["dir"]
    profile = build_profile(case["ref"], prediction=["prediction"], sample_rows=5000)
    profile = with_reference_attributions(
        profile, ExplainSettings(model=str(case["model"]), device="cpu")
    )
    path = d / "ref_model.json"
    profile.save(path)
    live = d / "live.jsonl"
    by_model = _replay(path, live, model=case["model"], device="cpu")
    by_record = _replay(path, live, source="record", record_field="attributions")
    assert len(by_model) == len(by_record) == 3
    for m, r in zip(by_model, by_record, strict=True):
        a, b = m.attribution, r.attribution
        assert a is not None and b is not None
        assert b.rows == a.rows == 1024  # the reservoir's rows, logged or explained
        assert b.ndcg == pytest.approx(a.ndcg, rel=1e-12)
        assert b.drifted == a.drifted and b.prediction_drivers == a.prediction_drivers
        for ca, cb in zip(a.columns, b.columns, strict=True):
            assert cb.drifted == ca.drifted
            for key in ("window_mean_abs", "change_low", "change_high", "mean_shift"):
                assert getattr(cb, key) == pytest.approx(getattr(ca, key), rel=1e-9, abs=1e-12)
            # a tree model's SHAP values are few distinct numbers, many on the reference's
            # bin edges; computed in another order (1e-15 apart) they stay in their bin
            assert cb.statistic == pytest.approx(ca.statistic, rel=1e-9, abs=1e-12)
        assert [i.feature for i in b.impact] == [i.feature for i in a.impact]
        assert [i.score for i in b.impact] == pytest.approx([i.score for i in a.impact])
    same, read, ignored = (r.attribution for r in by_record)
    assert same is not None and read is not None and ignored is not None
    assert not same.drifted and same.ndcg > 0.9
    assert [c.feature for c in read.columns if c.drifted] == ["x1"]
    assert read.prediction_drivers == ("x1",) and read.impact[0].feature == "x1"
    assert by_record[2].drift.column("x3").drifted  # feature drift, no attribution drift
    assert not any(c.drifted for c in ignored.columns)


@pytest.mark.parametrize("seed", [21, 22])
def test_shift_in_a_read_feature_is_attribution_drift_unchanged_is_not(
    tmp_path: Path, seed: int
) -> None:
    c = _setup(tmp_path, seed)
    profile = build_profile(c["ref"], prediction=["prediction"])
    profile = with_logged_reference(profile, c["ref_logged"], "attributions")
    path = tmp_path / "ref.json"
    profile.save(path)
    reports = _replay(path, tmp_path / "live.jsonl", source="record")
    same, read, ignored = (r.attribution for r in reports)
    assert same is not None and read is not None and ignored is not None
    assert not same.drifted and not any(x.drifted for x in reports[0].drift.columns)
    assert read.drifted and read.column("x1").drifted
    assert not ignored.drifted and reports[2].drift.column("x3").drifted


def test_bad_attributions_are_counted_by_reason_and_the_records_kept(case: dict) -> None:
    d = case["dir"]
    profile = build_profile(case["ref"], prediction=["prediction"])
    profile = with_logged_reference(profile, case["ref_logged"], "attributions")
    path = d / "ref_logged.json"
    profile.save(path)
    good = [0.1, -0.2, 0.3, 0.0, 0.01]
    bad = {
        "missing": None,
        "bad_type": "0.1,0.2",
        "wrong_length": [0.1, 0.2],
        "missing_feature": {"x0": 0.1, "x1": 0.2},
        "not_numeric": {**dict(zip(FEATURES, good, strict=True)), "x2": "0.3"},
    }
    rng = np.random.default_rng(5)
    lines = []
    for i in range(200):
        reason = list(bad)[i % len(bad)] if i % 4 == 0 else None
        rec: dict = {
            "request_id": f"q{i}",
            "features": {f: float(rng.normal()) for f in FEATURES},
            "prediction": 0.5,
        }
        if reason is None:
            rec["attributions"] = good
        elif reason != "missing":
            rec["attributions"] = bad[reason]
        lines.append(json.dumps(rec))
    live = d / "bad.jsonl"
    live.write_text("\n".join(lines) + "\n")
    exporter = Exporter(model="m", window_label="200rows", reference_hash="abc")
    cfg = MonitorConfig.for_replay(reference=path, input_path=live, window_rows=200)
    cfg = cfg.model_copy(
        update={"explain": type(cfg.explain).model_validate({"source": "record", "min_rows": 10})}
    )
    (report,) = replay(cfg, profile, live, exporter=exporter)
    assert report.rows == 200  # every record counts for feature drift
    assert report.attribution is not None and report.attribution.rows == 150
    reg = exporter.registry
    for reason in bad:
        got = reg.get_sample_value(
            "driftline_attribution_records_invalid_total", {"model": "m", "reason": reason}
        )
        assert got == 10.0, reason
    decoded = reg.get_sample_value(
        "driftline_records_total", {"model": "m", "model_version": "unknown", "outcome": "decoded"}
    )
    assert decoded == 200.0


def test_cli_builds_from_logged_columns_and_replays_without_a_model(case: dict, capsys) -> None:
    d = case["dir"]
    # the training data as CSV with one column per feature's attribution
    phi = np.array([[r[f] for f in FEATURES] for r in case["ref_logged"]["attributions"]])
    table = case["ref"].assign(**{f"shap_{f}": phi[:, j] for j, f in enumerate(FEATURES)})
    table.to_csv(d / "ref.csv", index=False)
    out = d / "cli_ref.json"
    base = ["reference", "build", "--data", str(d / "ref.csv"), "--prediction", "prediction"]
    assert main([*base, "-o", str(out), "--attributions", "shap_*"]) == 0
    profile = load_profile(out)
    assert [c.name for c in profile.schema.features()] == FEATURES  # shap_* are no features
    assert profile.attribution is not None and profile.attribution.features == tuple(FEATURES)
    capsys.readouterr()
    rep = ["replay", "--reference", str(out), "--input", str(d / "live.jsonl")]
    assert main([*rep, "--window", str(WINDOW), "--attributions", "attributions"]) == 0
    reports = [WindowReport.from_json(x) for x in capsys.readouterr().out.splitlines()]
    assert [r.attribution is not None and r.attribution.drifted for r in reports] == [
        False,
        True,
        False,
    ]
    # errors: exit 2, the flag or key named with the fix, no traceback
    assert main([*rep, "--attributions", "a", "--model", str(case["model"])]) == 2
    assert "pass one" in capsys.readouterr().err
    assert main([*base, "-o", str(d / "x.json"), "--attributions", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no column 'nope'" in err and "Traceback" not in err
    plain = d / "plain.json"
    assert main([*base, "-o", str(plain)]) == 0
    capsys.readouterr()
    assert main(["replay", "--reference", str(plain), "--input", str(d / "live.jsonl"),
                 "--attributions", "attributions"]) == 2  # fmt: skip
    assert "--attributions COLUMN" in capsys.readouterr().err
    yaml = d / "monitor.yaml"
    yaml.write_text(
        f"model: m\nreference: {plain}\nsource:\n  kind: file\n  file:\n"
        f"    path: {d / 'live.jsonl'}\nexplain:\n  source: record\n"
    )
    assert main(["config", "check", "-c", str(yaml)]) == 2
    err = capsys.readouterr().err
    assert "explain.source" in err and "--attributions COLUMN" in err and "Traceback" not in err


def test_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    from monitor.config.errors import ConfigError
    from monitor.config.loader import load_config

    head = (
        "model: m\nreference: ref.json\nsource:\n  kind: file\n  file:\n"
        "    path: live.jsonl\nexplain:\n"
    )
    cases = {
        "source: record\n  model: m.json": ("explain.model", "remove explain.model"),
        "source: record\n  record_field: a..b": ("explain.record_field", "dotted path"),
        "source: logs": ("explain.source", "record"),
    }
    path = tmp_path / "monitor.yaml"
    for body, (key, fix) in cases.items():
        path.write_text(f"{head}  {body}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        text = str(info.value)
        assert str(path) in text and key in text and fix in text, text
    path.write_text(f"{head}  source: record\n")
    cfg = load_config(path)
    assert cfg.explain.enabled and cfg.explain.to_settings().record_field == "attributions"
    assert cfg.explain.to_settings().source == "record"


def test_sketch_sample_merges_and_checkpoints_like_the_reservoir(case: dict) -> None:
    profile = build_profile(case["ref"], prediction=["prediction"])
    profile = with_logged_reference(profile, case["ref_logged"], "attributions")
    rng = np.random.default_rng(9)
    x = _data(rng, 3000).assign(prediction=0.0)
    phi = rng.normal(size=(3000, 5))
    phi[::7] = np.nan  # rows without attributions never enter the sample
    keys = rng.integers(0, 2**63, size=3000, dtype=np.uint64)
    whole = WindowSketch(profile, reservoir_size=256)
    whole.update(x, row_keys=keys, attributions=phi)
    a, b = WindowSketch(profile, reservoir_size=256), WindowSketch(profile, reservoir_size=256)
    a.update(x.iloc[:1200], row_keys=keys[:1200], attributions=phi[:1200])
    b.update(x.iloc[1200:], row_keys=keys[1200:], attributions=phi[1200:])
    merged = a.merge(b)
    assert merged.attribution is not None and merged.attribution.equal(whole.attribution)
    assert merged.attribution.rows == 3000 - len(range(0, 3000, 7))
    assert np.isfinite(merged.attribution.values).all() and len(merged.attribution.values) == 256
    back = WindowSketch.from_bytes(profile, merged.to_bytes())
    assert back.state_equal(merged) and back.attribution is not None
    # a sketch without logged attributions carries no sample and round-trips as before
    plain = WindowSketch(profile, reservoir_size=256)
    plain.update(x, row_keys=keys)
    assert plain.attribution is None
    assert WindowSketch.from_bytes(profile, plain.to_bytes()).attribution is None
    assert plain.merge(a).attribution is not None


# -- decoding: the columnar path, the general reader and KServe carry the same values --------


def _schema():
    from detectors.schema import Schema

    return Schema.build(numeric=FEATURES, prediction_numeric=["prediction"])


def _field(path: str = "attributions"):
    from monitor.ingest.attributions import AttributionField

    return AttributionField(path, tuple(FEATURES))


def _decode(values: list[bytes], columnar: bool, path: str = "attributions", **record):
    from monitor.config.record import RecordConfig
    from monitor.ingest.batch import RawMessage
    from monitor.ingest.decoder import Decoder

    dec = Decoder(RecordConfig(**record), _schema(), columnar=columnar, attributions=_field(path))
    msgs = [RawMessage(value=v, offset=i) for i, v in enumerate(values)]
    return dec.decode(msgs, now=1.7e9)


def test_columnar_and_general_readers_carry_the_same_attributions() -> None:
    from monitor.ingest.attributions import ATTRIBUTION_FAILURE_REASONS, reason_counts

    rng = np.random.default_rng(1)
    logged: list = []
    for i in range(60):
        phi = [float(v) for v in rng.normal(size=5)]
        logged.append(
            [
                phi,
                dict(zip(FEATURES, phi, strict=True)),
                {**dict(zip(FEATURES, phi, strict=True)), "bias": 0.3},  # other keys are ignored
                None,
                "x",
                phi[:3],
                {"x0": 1.0},
                [*phi[:4], "1"],
                [*phi[:4], True],
                [*phi[:4], None],
            ][i % 10]
        )
    values = []
    for i, a in enumerate(logged):
        rec = {"request_id": f"r{i}", "features": {"x0": float(i)}, "prediction": 0.5}
        if a is not None:
            rec["attributions"] = a
        values.append(json.dumps(rec).encode())
    values.append(b"{not json")  # a bad record is set aside as before, the rest decoded
    fast, general = _decode(values, True), _decode(values, False)
    assert fast.rows == general.rows == 60
    np.testing.assert_array_equal(fast.attributions, general.attributions)
    np.testing.assert_array_equal(fast.attribution_codes, general.attribution_codes)
    counts = reason_counts(fast.attribution_codes)
    assert counts == {
        "missing": 6,
        "bad_type": 6,
        "wrong_length": 6,
        "missing_feature": 6,
        "not_numeric": 18,
    }
    assert set(counts) <= set(ATTRIBUTION_FAILURE_REASONS)
    ok = np.isfinite(fast.attributions).all(axis=1)
    assert ok.sum() == 18 and np.isnan(fast.attributions[~ok]).all()
    np.testing.assert_array_equal(fast.attributions[0], logged[0])  # an array
    np.testing.assert_array_equal(fast.attributions[1], [logged[1][f] for f in FEATURES])
    np.testing.assert_array_equal(fast.attributions[2], [logged[2][f] for f in FEATURES])
    # a batch envelope and a dotted path: read per prediction
    item = {"features": {"x0": 1.0}, "prediction": 0.1, "explanation": {"shap": [1, 2, 3, 4, 5]}}
    batch = _decode(
        [json.dumps({"predictions": [item, {**item, "explanation": None}]}).encode()],
        True,
        "explanation.shap",
    )
    assert batch.rows == 2
    np.testing.assert_array_equal(batch.attributions[0], [1, 2, 3, 4, 5])
    assert reason_counts(batch.attribution_codes) == {"missing": 1}


def test_kserve_response_tensor_of_attributions() -> None:
    from monitor.config.record import RecordConfig
    from monitor.ingest.attributions import reason_counts
    from monitor.ingest.batch import RawMessage
    from monitor.ingest.decoder import Decoder

    dec = Decoder(RecordConfig(format="kserve_v2"), _schema(), attributions=_field())
    request = {
        "inputs": [
            {"name": f, "shape": [2, 1], "datatype": "FP64", "data": [1.0, 2.0]} for f in FEATURES
        ]
    }
    response = {
        "outputs": [
            {"name": "prediction", "shape": [2, 1], "datatype": "FP64", "data": [0.1, 0.2]},
            {
                "name": "attributions",
                "shape": [2, 5],
                "datatype": "FP64",
                "data": [[0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4, 5]],
            },
        ]
    }
    msgs = [
        RawMessage(
            value=json.dumps(request).encode(),
            headers=ce_headers("a", "org.kubeflow.serving.inference.request"),
        ),
        RawMessage(
            value=json.dumps(response).encode(),
            headers=ce_headers("a", "org.kubeflow.serving.inference.response"),
            offset=1,
        ),
    ]
    batch = dec.decode(msgs, now=1.7e9)
    assert batch.rows == 2 and not batch.failures
    np.testing.assert_array_equal(batch.attributions, [[0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(batch.columns["prediction"], [0.1, 0.2])
    # a response without the tensor: the rows are kept, their attributions missing
    response["outputs"] = response["outputs"][:1]
    msgs[0] = RawMessage(msgs[0].value, headers=ce_headers("b", CE_REQUEST))
    msgs[1] = RawMessage(json.dumps(response).encode(), headers=ce_headers("b", CE_RESPONSE))
    batch = dec.decode(msgs, now=1.7e9)
    assert batch.rows == 2 and batch.attribution_codes is not None
    assert reason_counts(batch.attribution_codes) == {"missing": 2}


CE_REQUEST = "org.kubeflow.serving.inference.request"
CE_RESPONSE = "org.kubeflow.serving.inference.response"


def ce_headers(ce_id: str, ce_type: str) -> tuple[tuple[str, bytes], ...]:
    """Binary-mode CloudEvent headers as KServe's logger sends them."""
    attrs = {
        "ce_specversion": "1.0",
        "ce_id": ce_id,
        "ce_type": ce_type,
        "ce_source": "http://localhost:9081/",
        "ce_time": "2024-06-10T08:00:00Z",
        "content-type": "application/json",
    }
    return tuple((k, v.encode()) for k, v in attrs.items())


def test_a_restart_from_the_checkpoint_judges_the_same_attributions(case: dict) -> None:
    from monitor.ingest.files import iter_messages
    from monitor.runtime.pipeline import Pipeline
    from monitor.runtime.windows import WindowManager

    d = case["dir"]
    profile = build_profile(case["ref"], prediction=["prediction"])
    profile = with_logged_reference(profile, case["ref_logged"], "attributions")
    path = d / "ref_restart.json"
    profile.save(path)
    live = d / "live.jsonl"
    cfg = MonitorConfig.for_replay(reference=path, input_path=live, window_rows=WINDOW)
    cfg = cfg.model_copy(update={"explain": type(cfg.explain).model_validate({"source": "record"})})
    messages = [m for batch in iter_messages(live, batch_lines=500) for m in batch]

    def run(restart_at: int | None) -> list:
        exporter = Exporter(model="m", window_label="w", reference_hash="a")
        pipe = Pipeline(cfg, profile, exporter)
        closed = []
        for start in range(0, len(messages), 500):
            if start == restart_at:  # a new agent from the last checkpoint
                snapshot = pipe.windows.snapshot()
                pipe = Pipeline(cfg, profile, exporter)
                pipe.windows = WindowManager.restore(profile, snapshot, config=cfg.windows)
            closed += pipe.ingest_messages(messages[start : start + 500], now=0.0)
        return [r.report.attribution for r in pipe.evaluator.evaluate(closed)]

    straight, restarted = run(None), run(2000)  # the restart falls inside window 2
    assert len(straight) == len(restarted) == 3
    for a, b in zip(straight, restarted, strict=True):
        assert a is not None and b is not None
        assert b.rows == a.rows and b.ndcg == a.ndcg
        assert [c.window_mean_abs for c in b.columns] == [c.window_mean_abs for c in a.columns]


def test_the_aggregator_judges_the_merged_partials_as_one_agent(case: dict) -> None:
    from monitor.explain.logged import LoggedAttributor
    from monitor.runtime.aggregator import merge_window
    from monitor.runtime.merging import DueWindow
    from monitor.runtime.partials import Partial

    profile = build_profile(case["ref"], prediction=["prediction"])
    profile = with_logged_reference(profile, case["ref_logged"], "attributions")
    rng = np.random.default_rng(4)
    x = _data(rng, 3000, {"x1": 0.5}).assign(prediction=0.0)
    phi = np.array([[r[f] for f in FEATURES] for r in case["ref_logged"]["attributions"]])
    phi = phi + rng.normal(0, 0.01, phi.shape)
    keys = rng.integers(0, 2**63, size=3000, dtype=np.uint64)
    alone = WindowSketch(profile)
    alone.update(x, row_keys=keys, attributions=phi)
    parts = []
    for agent, rows in (("a", slice(0, 1300)), ("b", slice(1300, 3000))):  # two partitions
        sk = WindowSketch(profile)
        sk.update(x.iloc[rows], row_keys=keys[rows], attributions=phi[rows])
        p = Partial(
            kind="window",
            model="m",
            agent_id=agent,
            epoch=1,
            generation=1,
            reference_hash=profile.content_hash,
            window=(0.0, 60.0),
            model_version="v1",
            rows=sk.rows,
            sketch=sk.to_bytes(),
        )
        parts.append(Partial.from_bytes(p.to_bytes()))  # as it travels on the topic
    due = DueWindow((0.0, 60.0), tuple(parts), None, True, False, 0.0)  # type: ignore[arg-type]
    (merged,) = merge_window(profile, due)
    judge = LoggedAttributor(profile, ExplainSettings(source="record"))
    drift = DriftSettings()
    a, b = judge.evaluate(alone, drift, None), judge.evaluate(merged.sketch, drift, None)
    assert a is not None and b is not None and b.rows == a.rows == 1024
    assert b.ndcg == a.ndcg and b.drifted == a.drifted
    assert [c.window_mean_abs for c in b.columns] == [c.window_mean_abs for c in a.columns]
