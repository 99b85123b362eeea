"""The sequential detectors on a running stream (monitor/runtime/sequential.py): window
feeding, the checkpoint round trip, resets on a new reference and on acknowledgement, the
HTTP acknowledgement, the metrics, and ``driftline replay`` end to end."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import generate_latest

from detectors.evaluate import evaluate_window
from detectors.profile import Profile, build_profile
from detectors.results import QualityResult, WindowReport
from detectors.sequential import SequentialSettings
from detectors.sequential_calibration import calibrate_sequential
from detectors.sketch import WindowSketch
from monitor.outputs.exporter import Exporter
from monitor.outputs.sequential_routes import reset_handler
from monitor.outputs.server import HTTPError, Request, require_bearer_token
from monitor.runtime.checkpoint import Checkpoint, decode, encode
from monitor.runtime.sequential import SequentialMonitor
from monitor.runtime.windows import ClosedWindow

ROWS = 100


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=20_000),
            "c": np.array([f"k{i}" for i in rng.integers(0, 8, 20_000)], dtype=object),
        }
    )
    p = build_profile(frame)
    return p.with_sequential(calibrate_sequential(p, frame, pane_rows=ROWS, panes=5000))


def _windows(
    profile: Profile, n: int, shift_from: int, seed: int, kind: str = "rows"
) -> list[ClosedWindow]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        sketch = WindowSketch(profile)
        sketch.update(
            {
                "x": rng.normal(0.5 if i >= shift_from else 0.0, size=ROWS),
                "c": np.array([f"k{j}" for j in rng.integers(0, 8, ROWS)], dtype=object),
            }
        )
        start = float(i * ROWS) if kind == "rows" else float(i * 60)
        end = start + (ROWS if kind == "rows" else 60)
        out.append(ClosedWindow("v1", start, end, sketch, ROWS, 0, 0, [], kind))  # type: ignore[arg-type]
    return out


def _run(monitor: SequentialMonitor, profile: Profile, windows: list[ClosedWindow]) -> list:
    out = []
    for w in windows:
        features, predictions, _ = evaluate_window(profile, w.sketch)
        features, _ = monitor.observe(w, features, predictions)
        out.append(features)
    return out


def _fired(results: list) -> list[tuple[int, str]]:
    return [
        (i, c.feature)
        for i, r in enumerate(results)
        for c in r.columns
        if c.sequential is not None and c.sequential.fired
    ]


def test_drifted_follows_the_detector_and_detected_at_is_the_window_end(profile: Profile) -> None:
    monitor = SequentialMonitor(profile, SequentialSettings())
    results = _run(monitor, profile, _windows(profile, 60, shift_from=30, seed=1))
    fired = _fired(results)
    assert fired and fired[0][1] == "x" and 30 <= fired[0][0] <= 36
    first = results[fired[0][0]].column("x")
    assert first.drifted and first.sequential.detected_at == (fired[0][0] + 1) * ROWS
    # before the change no column drifted, whatever the window's own test said
    assert not any(c.drifted for r in results[:30] for c in r.columns)
    assert all(c.sequential is not None for r in results for c in r.columns)
    # a change that persists fires again after each restart; the alarm keeps the last
    again = [i for i, name in fired if name == "x"]
    assert len(again) > 1
    assert monitor.alarms()["v1"]["x"] == (again[-1] + 1) * ROWS


def test_checkpoint_round_trip_continues_exactly(profile: Profile) -> None:
    windows = _windows(profile, 50, shift_from=25, seed=2)
    straight = SequentialMonitor(profile, SequentialSettings())
    expected = _run(straight, profile, windows)
    first = SequentialMonitor(profile, SequentialSettings())
    _run(first, profile, windows[:28])
    # through the checkpoint file format (JSON, no NaN allowed)
    blob = encode(Checkpoint({}, b"", profile.content_hash, 0.0, {"sequential": first.snapshot()}))
    restored = SequentialMonitor(profile, SequentialSettings())
    assert restored.restore(decode(blob).extra["sequential"])
    got = _run(restored, profile, windows[28:])
    for a, b in zip(got, expected[28:], strict=True):
        assert [c.sequential for c in a.columns] == [c.sequential for c in b.columns]
        assert a.sequential == b.sequential


def test_state_from_another_reference_starts_at_zero(profile: Profile) -> None:
    monitor = SequentialMonitor(profile, SequentialSettings())
    _run(monitor, profile, _windows(profile, 40, shift_from=10, seed=3))
    snapshot = monitor.snapshot()
    assert snapshot["states"]["v1"]["windows"] == 40 and snapshot["states"]["v1"]["fired"]
    other = SequentialMonitor(profile, SequentialSettings())
    assert not other.restore({**snapshot, "reference": "0" * 64})
    assert other.snapshot()["states"] == {}
    assert not other.restore({**snapshot, "format": 99})
    bad = json.loads(json.dumps(snapshot))
    bad["states"]["v1"]["numeric"] = [[1.0, 2.0]]
    assert not other.restore(bad)


def test_acknowledgement_resets_the_column_and_clears_its_alarm(profile: Profile) -> None:
    monitor = SequentialMonitor(profile, SequentialSettings())
    _run(monitor, profile, _windows(profile, 45, shift_from=20, seed=4))
    assert "x" in monitor.alarms()["v1"]
    assert monitor.reset("v1", "x") == 1
    assert "x" not in monitor.alarms().get("v1", {})
    state = monitor.snapshot()["states"]["v1"]
    assert state["numeric"][0] == [0.0] * 8
    assert monitor.reset("v9") == 0
    assert monitor.reset() == 1 and monitor.alarms() == {}


def test_sliding_windows_feed_only_the_non_overlapping_ones(profile: Profile) -> None:
    monitor = SequentialMonitor(profile, SequentialSettings(), window_size=300.0, window_slide=60.0)
    windows = _windows(profile, 10, shift_from=99, seed=5, kind="time")
    fed = [w.start for w in windows if monitor.feeds(w)]
    assert fed == [0.0, 300.0]
    _run(monitor, profile, windows)
    assert monitor.snapshot()["states"]["v1"]["windows"] == 2


def test_old_profile_is_calibrated_at_load(profile: Profile) -> None:
    bare = Profile.from_dict({**profile.to_dict(), "sequential": None})
    monitor = SequentialMonitor(bare, SequentialSettings())
    assert monitor.detector.calibration.columns.keys() == {"x", "c"}


def test_another_allowance_is_calibrated_at_start_up(profile: Profile) -> None:
    monitor = SequentialMonitor(profile, SequentialSettings(allowance=0.8))
    cal = monitor.detector.calibration
    assert cal.allowance == 0.8 and cal.pane_rows == ROWS
    assert cal.unseen_rate == profile.sequential.unseen_rate
    # a larger allowance: a steeper run-length curve (Siegmund: slope 2k)
    assert cal.columns["x"]["location_up"].slope > (
        profile.sequential.columns["x"]["location_up"].slope
    )


def test_reset_endpoint_needs_the_token_and_validates_the_body(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQ_TOKEN", "s3cret")
    monitor = SequentialMonitor(profile, SequentialSettings())
    _run(monitor, profile, _windows(profile, 45, shift_from=20, seed=6))
    calls: list[tuple[str | None, str | None]] = []
    handler = require_bearer_token("SEQ_TOKEN")(
        reset_handler(monitor, lambda v, f: calls.append((v, f)))
    )

    def post(body: object, token: str | None = "s3cret"):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        try:
            return handler(Request("POST", "/v1/sequential/reset", headers=headers, body=data))
        except HTTPError as exc:
            return exc.response()

    assert post({}, token=None).status == 401
    assert post({}, token="wrong").status == 401
    assert post(b"[1]").status == 400
    assert post({"feature": 3}).status == 400
    assert post({"colour": "x"}).status == 400
    assert post({"feature": "nope"}).status == 404
    assert calls == [] and "x" in monitor.alarms()["v1"]
    ok = post({"model_version": "v1", "feature": "x"})
    assert ok.status == 200 and orjson.loads(ok.body)["reset"] == 1
    assert calls == [("v1", "x")] and "x" not in monitor.alarms().get("v1", {})
    assert post(b"").status == 200 and calls[-1] == (None, None)


def test_metrics_statistic_threshold_alarm_and_counter(profile: Profile) -> None:
    monitor = SequentialMonitor(profile, SequentialSettings())
    exporter = Exporter(model="m", window_label="100rows", reference_hash=profile.content_hash)
    windows = _windows(profile, 45, shift_from=20, seed=7)
    results = _run(monitor, profile, windows)
    fired_x = sum(1 for _, name in _fired(results) if name == "x")
    for w, features in zip(windows, results, strict=True):
        _, predictions, _ = evaluate_window(profile, w.sketch)
        report = WindowReport(
            "m",
            "v1",
            w.start,
            w.end,
            profile.content_hash,
            w.rows,
            features,
            predictions,
            QualityResult(rows=w.rows),
            window_kind="rows",
        )
        exporter.observe_report(report, 0.01)
    text = generate_latest(exporter.registry).decode()
    labels = 'feature="x",model="m",model_version="v1",window="100rows"'
    assert f"driftline_sequential_alarm{{{labels}}} 1.0" in text
    assert fired_x > 1
    assert f"driftline_sequential_alarms_total{{{labels}}} {float(fired_x)}" in text
    assert "driftline_sequential_threshold{" in text and "driftline_sequential_statistic{" in text
    assert "driftline_dataset_sequential_threshold{" in text
    exporter.clear_sequential_alarms("v1", "x")
    text = generate_latest(exporter.registry).decode()
    assert f"driftline_sequential_alarm{{{labels}}} 0.0" in text
    exporter.set_sequential_alarms({"v1": ["x", "features"]})
    text = generate_latest(exporter.registry).decode()
    assert f"driftline_sequential_alarm{{{labels}}} 1.0" in text
    assert (
        'driftline_dataset_sequential_alarm{model="m",model_version="v1",window="100rows"} 1.0'
        in text
    )


def test_replay_end_to_end_detects_the_shift_near_its_row(tmp_path, capsysbinary) -> None:
    """``driftline reference build`` then ``driftline replay --window 100`` over a file with
    a 0.3-std shift of ``x`` at row 30 000: the first alarm of ``x`` comes within 2 000 rows
    after it (expected about 700), none before it."""
    from monitor.cli import main

    rng = np.random.default_rng(9)
    pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000)}).to_csv(
        tmp_path / "ref.csv", index=False
    )
    x = rng.normal(size=40_000)
    x[30_000:] += 0.3
    pd.DataFrame({"x": x, "y": rng.normal(size=40_000)}).to_csv(tmp_path / "in.csv", index=False)
    assert (
        main(
            [
                "reference",
                "build",
                "--data",
                str(tmp_path / "ref.csv"),
                "-o",
                str(tmp_path / "ref.json"),
                "--sequential-panes",
                "5000",
            ]
        )
        == 0
    )
    capsysbinary.readouterr()
    assert (
        main(
            [
                "replay",
                "--reference",
                str(tmp_path / "ref.json"),
                "--input",
                str(tmp_path / "in.csv"),
                "--window",
                "100",
            ]
        )
        == 0
    )
    reports = [json.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert len(reports) == 400
    alarms = [
        (c["sequential"]["detected_at"], c["feature"])
        for r in reports
        for c in r["drift"]["columns"]
        if c["sequential"] and c["sequential"]["detected_at"] is not None
    ]
    assert alarms, "no alarm"
    first_at, feature = min(alarms)
    assert feature == "x" and 30_000 < first_at <= 32_000
    assert not [a for a in alarms if a[1] == "y"]
