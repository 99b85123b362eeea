"""``driftline reference build --model`` and ``driftline replay --model`` end to end, and the
attribution metrics the exporter makes of the reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

xgb = pytest.importorskip("xgboost")

from detectors.profile import load_profile  # noqa: E402
from detectors.results import WindowReport  # noqa: E402
from monitor.cli import main  # noqa: E402
from monitor.outputs.exporter import Exporter  # noqa: E402

FEATURES = ["x0", "x1", "x2", "x3"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("explain_cli")
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({f: rng.normal(size=6000) for f in FEATURES})
    y = 2.0 * ref.x0 + ref.x1 + rng.normal(0, 0.2, len(ref))  # x2, x3 carry no signal
    model = xgb.XGBRegressor(n_estimators=40, max_depth=3).fit(ref, y)
    model.save_model(d / "model.json")
    ref["prediction"] = model.predict(ref[FEATURES])
    ref.to_csv(d / "ref.csv", index=False)
    live = pd.DataFrame({f: rng.normal(size=3000) for f in FEATURES})
    live.loc[1000:1999, "x1"] += 1.0  # window 2: a feature the model reads
    live.loc[2000:, "x3"] += 1.5  # window 3: a feature it ignores
    live["prediction"] = model.predict(live[FEATURES])
    live.to_csv(d / "live.csv", index=False)
    xgb.XGBRegressor(n_estimators=3).fit(ref[FEATURES], y).save_model(d / "other.json")
    return {
        "dir": d,
        "model": d / "model.json",
        "other": d / "other.json",
        "ref": d / "ref.csv",
        "live": d / "live.csv",
    }


def _build(files: dict[str, Path], out: Path, *extra: str) -> int:
    return main(
        [
            "reference",
            "build",
            "--data",
            str(files["ref"]),
            "--prediction",
            "prediction",
            "-o",
            str(out),
            *extra,
        ]
    )


def test_reference_build_and_replay_with_model(files, tmp_path: Path, capsysbinary) -> None:
    profile_path = tmp_path / "ref.json"
    assert _build(files, profile_path, "--model", str(files["model"])) == 0
    profile = load_profile(profile_path)
    assert profile.attribution is not None
    assert profile.attribution.ranking[:2] == ("x0", "x1")
    capsysbinary.readouterr()
    args = ["replay", "--reference", str(profile_path), "--input", str(files["live"])]
    assert main([*args, "--window", "1000", "--model", str(files["model"])]) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    reports = [WindowReport.from_json(line) for line in lines]
    assert len(reports) == 3
    assert all(r.attribution is not None for r in reports)
    same, read, ignored = (r.attribution for r in reports)
    assert same is not None and read is not None and ignored is not None
    assert not same.drifted
    assert [c.feature for c in read.columns if c.drifted] == ["x1"]
    assert read.impact[0].feature == "x1"
    assert reports[2].drift.column("x3").drifted
    assert not any(c.drifted for c in ignored.columns)
    assert json.loads(lines[1])["attribution"]["prediction_drivers"] == ["x1"]


def test_model_errors_exit_2_with_the_file_named(files, tmp_path: Path, capsys) -> None:
    plain = tmp_path / "plain.json"
    assert _build(files, plain) == 0
    capsys.readouterr()
    base = ["replay", "--reference", str(plain), "--input", str(files["live"]), "--window", "1000"]
    # a profile without attributions
    assert main([*base, "--model", str(files["model"])]) == 2
    assert "rebuild it with" in capsys.readouterr().err
    # a model file that does not exist
    assert _build(files, tmp_path / "x.json", "--model", str(tmp_path / "nope.json")) == 2
    assert "nope.json: no such model file" in capsys.readouterr().err
    # a pickle without --trust-pickle
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04N.")
    assert _build(files, tmp_path / "y.json", "--model", str(tmp_path / "m.pkl")) == 2
    err = capsys.readouterr().err
    assert "runs code" in err and "Traceback" not in err
    # another model than the reference attributions were computed with
    with_model = tmp_path / "with.json"
    assert _build(files, with_model, "--model", str(files["model"])) == 0
    capsys.readouterr()
    args = ["replay", "--reference", str(with_model), "--input", str(files["live"])]
    assert main([*args, "--window", "1000", "--model", str(files["other"])]) == 2
    assert "not the model the reference attributions" in capsys.readouterr().err


def test_exporter_publishes_attribution_metrics(files, tmp_path: Path, capsysbinary) -> None:
    profile_path = tmp_path / "ref.json"
    assert _build(files, profile_path, "--model", str(files["model"])) == 0
    capsysbinary.readouterr()
    args = ["replay", "--reference", str(profile_path), "--input", str(files["live"])]
    assert main([*args, "--window", "1000", "--model", str(files["model"])]) == 0
    reports = [WindowReport.from_json(x) for x in capsysbinary.readouterr().out.splitlines()]
    exporter = Exporter(model="m", window_label="1000rows", reference_hash="abc")
    exporter.observe_report(reports[1], 0.1)
    reg = exporter.registry
    labels = {"model": "m", "model_version": reports[1].model_version, "window": "1000rows"}
    read = reports[1].attribution
    assert read is not None
    assert reg.get_sample_value("driftline_attribution_ndcg", labels) == pytest.approx(read.ndcg)
    assert reg.get_sample_value("driftline_attribution_drifted", labels) == 1.0
    x1 = {**labels, "feature": "x1"}
    assert reg.get_sample_value("driftline_feature_attribution_drifted", x1) == 1.0
    assert reg.get_sample_value("driftline_feature_drift_impact_score", x1) == pytest.approx(
        read.impact[0].score
    )
    assert reg.get_sample_value(
        "driftline_feature_attribution_reference_mean_abs", x1
    ) == pytest.approx(read.column("x1").reference_mean_abs)
    # the next window has no impact for x1: its series goes away
    exporter.observe_report(reports[0], 0.1)
    assert reg.get_sample_value("driftline_feature_drift_impact_score", x1) is None
    exporter.count_attribution_skipped("budget")
    skipped = {"model": "m", "reason": "budget"}
    assert reg.get_sample_value("driftline_attribution_windows_skipped_total", skipped) == 1.0
