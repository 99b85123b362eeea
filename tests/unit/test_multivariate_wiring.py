"""Multivariate drift end to end: ``driftline replay`` on a generated file whose second
window has a correlation change that no per-column test sees, the report block's JSON
round trip, the metrics, the config section and the skipped-window accounting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from detectors.multivariate.detector import MultivariateDetector
from detectors.multivariate.result import MultivariateResult, MultivariateTest, OnlineVerdict
from detectors.multivariate.settings import MultivariateSettings
from detectors.profile import build_profile
from detectors.results import WindowReport
from detectors.sketch import WindowSketch
from monitor.config.errors import ConfigError
from monitor.config.model import MonitorConfig

FEATURES = [f"f{i}" for i in range(6)]
WINDOW = 1500


def _frame(n: int, seed: int, rho: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(FEATURES)))
    z[:, 2] = rho * z[:, 1] + np.sqrt(1 - rho**2) * z[:, 2]
    frame = pd.DataFrame(z, columns=FEATURES)
    frame["segment"] = rng.choice(["a", "b", "c"], n)
    return frame


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("mv")
    build_profile(_frame(4000, 0), sample_rows=3000).save(tmp / "ref.json.gz")
    data = pd.concat([_frame(WINDOW, 1), _frame(WINDOW, 2, rho=0.8)], ignore_index=True)
    data.to_csv(tmp / "input.csv", index=False)
    config = {
        "model": "corr",
        "reference": "ref.json.gz",
        "source": {"kind": "file", "file": {"path": "input.csv"}},
        "record": {"features_field": ""},
        "windows": {"rows": WINDOW, "reservoir_size": WINDOW},
        "multivariate": {
            "enabled": True,
            "test": "both",
            "permutations": 200,
            "device": "numpy",
        },
    }
    (tmp / "monitor.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "replay",
            "-c",
            "monitor.yaml",
            "--input",
            "input.csv",
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_replay_flags_the_correlation_change_and_names_its_features(replayed) -> None:
    """``driftline replay -c monitor.yaml``: window 1 unchanged, window 2 with f1 and f2
    correlated at 0.8 (marginals unchanged): only window 2 is flagged, by both tests, and
    the two features are named."""
    assert len(replayed) == 2
    first, second = (r["multivariate"] for r in replayed)
    # every marginal is unchanged: the per-column tests see nothing in either window
    assert not any(
        c["drifted"]
        for r in replayed
        for c in r["drift"]["columns"]
        if c["feature"] in ("f1", "f2")
    )
    assert first["test"] == "both" and first["rows_window"] == WINDOW
    assert first["rows_reference"] == 3000 and first["device"] == "numpy"
    assert not first["drifted"] and first["features"] == []
    assert second["drifted"] and second["p_value"] < 0.01
    assert set(second["features"][:2]) == {"f1", "f2"}, second["features"]
    assert {t["test"] for t in second["tests"]} == {"mmd", "classifier"}
    assert replayed[1]["multivariate_skipped_reason"] is None


def test_online_detector_fires_in_the_changed_window_at_a_row_offset(tmp_path: Path) -> None:
    """In-process replay: 1000 unchanged rows, then 1000 with f0 shifted by one standard
    deviation. A fifth of the rows feed the online MMD (window 50, a false alarm every 3000
    sampled rows on average, so about 150 checks in the first window: quiet with
    probability about 0.95); it fires in the second window, at a row offset past the
    change."""
    from monitor.runtime.replay import replay

    build_profile(_frame(4000, 0), sample_rows=3000).save(tmp_path / "ref.json.gz")
    shifted = _frame(1000, 4)
    shifted["f0"] += 1.0
    pd.concat([_frame(1000, 3), shifted], ignore_index=True).to_csv(
        tmp_path / "input.csv", index=False
    )
    cfg = MonitorConfig.for_replay(
        tmp_path / "ref.json.gz", tmp_path / "input.csv", window_rows=1000
    )
    online = {
        "enabled": True,
        "window": 50,
        "expected_run_time": 3000,
        "simulations": 6000,
        "sample_fraction": 0.2,
        "reference_rows": 1000,
    }
    mv = type(cfg.multivariate).model_validate(
        {"enabled": True, "test": "mmd", "permutations": 100, "device": "numpy", "online": online}
    )
    cfg = cfg.model_copy(update={"multivariate": mv})
    profile = __import__("detectors.profile", fromlist=["load_profile"]).load_profile(
        tmp_path / "ref.json.gz"
    )
    reports = list(replay(cfg, profile, tmp_path / "input.csv"))
    assert len(reports) == 2
    first, second = (r.multivariate for r in reports)
    assert first is not None and first.sequential is None
    assert second is not None and second.sequential is not None and second.drifted
    assert second.sequential.statistic > second.sequential.threshold
    assert second.sequential.detected_at is not None
    assert 1000 <= second.sequential.detected_at < 2000


def test_report_block_round_trips() -> None:
    block = MultivariateResult(
        test="both",
        statistic=0.01,
        p_value=0.002,
        threshold=0.004,
        drifted=True,
        device="torch-cpu",
        seconds=0.5,
        rows_window=900,
        rows_reference=5000,
        features=("a", "b"),
        tests=(
            MultivariateTest("mmd", 0.01, 0.002, 0.004, True, ("a",)),
            MultivariateTest("classifier", 0.6, 0.01, 0.55, True, ("a", "b")),
        ),
        sequential=OnlineVerdict(0.02, 0.015, 1234.0),
    )
    assert MultivariateResult.from_dict(json.loads(json.dumps(block.to_dict()))) == block


def _profile_and_sketch(rows: int, rho: float):
    profile = build_profile(_frame(3000, 0), sample_rows=2000)
    sketch = WindowSketch(profile, reservoir_size=rows, seed=1)
    sketch.update(_frame(rows, 5, rho=rho))
    return profile, sketch


def test_both_tests_combine_by_bonferroni_even_at_p_zero() -> None:
    from detectors.multivariate.detector import bonferroni

    assert bonferroni([0.01, 0.2]) == pytest.approx(0.02)
    assert bonferroni([0.0, 0.3]) == 0.0  # an underflowed p-value is the smallest, not 1
    assert bonferroni([0.7, 0.9]) == 1.0
    assert bonferroni([0.004]) == pytest.approx(0.004)
    assert bonferroni([None, 0.01]) == pytest.approx(0.02)
    assert bonferroni([None]) is None


def test_windows_too_small_or_over_budget_are_skipped_with_a_reason() -> None:
    profile, sketch = _profile_and_sketch(50, 0.0)
    det = MultivariateDetector(profile, MultivariateSettings(enabled=True, device="numpy"))
    outcome = det.evaluate(sketch)
    assert outcome.result is None and outcome.reason_code == "too_few_rows"
    assert "fewer than min_rows=100" in (outcome.skipped_reason or "")
    profile, sketch = _profile_and_sketch(800, 0.8)
    det = MultivariateDetector(
        profile, MultivariateSettings(enabled=True, device="numpy", budget_seconds=1e-9)
    )
    outcome = det.evaluate(sketch)
    assert outcome.result is None and outcome.reason_code == "budget"
    assert "time budget" in (outcome.skipped_reason or "")


def test_exporter_publishes_the_block(replayed) -> None:
    from monitor.outputs.exporter import Exporter

    exporter = Exporter(model="corr", window_label="1500rows", reference_hash="abc")
    exporter.observe_report(WindowReport.from_dict(replayed[1]), 0.1)
    exporter.count_multivariate_skipped("budget")
    text = __import__("prometheus_client").generate_latest(exporter.registry).decode()
    assert 'driftline_multivariate_drifted{model="corr"' in text
    assert 'detector="classifier"' in text and 'detector="mmd"' in text
    assert 'driftline_multivariate_windows_skipped_total{model="corr",reason="budget"} 1.0' in text


def test_config_section_validates_and_names_bad_keys(tmp_path: Path) -> None:
    base = {
        "model": "m",
        "reference": "r.json",
        "source": {"kind": "file", "file": {"path": "x.csv"}},
    }
    cfg = MonitorConfig.model_validate(
        {**base, "multivariate": {"enabled": True, "time_budget": "2s", "test": "mmd"}}
    )
    s = cfg.multivariate.to_settings()
    assert s.enabled and s.budget_seconds == 2.0 and s.test == "mmd"
    assert MonitorConfig.model_validate(base).multivariate.enabled is False
    with pytest.raises(ConfigError, match=r"multivariate\.test"):
        MonitorConfig.model_validate({**base, "multivariate": {"test": "energy"}})
    with pytest.raises(ConfigError, match=r"multivariate\.online\.sample_fraction"):
        MonitorConfig.model_validate({**base, "multivariate": {"online": {"sample_fraction": 0}}})


def test_html_report_shows_the_block_and_the_separating_pair(replayed) -> None:
    from dataclasses import replace

    from monitor.report.html import render_report

    profile, sketch = _profile_and_sketch(800, 0.8)
    outcome = MultivariateDetector(
        profile, MultivariateSettings(enabled=True, device="numpy", permutations=100)
    ).evaluate(sketch)
    assert outcome.result is not None and outcome.result.drifted
    report = replace(
        WindowReport.from_dict(replayed[1]),
        reference_hash=profile.content_hash,
        multivariate=outcome.result,
    )
    page = render_report(report, profile, sketch=sketch, evidently=False)
    assert '<section id="multivariate"' in page and "multivariate drift</span>" in page
    assert "<h3>f1 against f2</h3>" in page or "<h3>f2 against f1</h3>" in page
    assert page.count("<circle") > 500  # reference and window points
    skipped = replace(report, multivariate=None, multivariate_skipped_reason="time budget")
    page = render_report(skipped, profile, sketch=sketch, evidently=False)
    assert "skipped this window: time budget" in page


def test_the_agents_checkpoint_carries_the_online_run_and_its_pending_verdict() -> None:
    """The online MMD's run and a verdict not yet on a report survive a restart (the
    agent's checkpoint ``extra``, through JSON): the restored monitor fires on the same
    row as the uninterrupted one, and hands the earlier verdict to its window."""
    from monitor.ingest.batch import DecodedBatch
    from monitor.runtime.multivariate import MultivariateMonitor

    profile = build_profile(_frame(3000, 0), sample_rows=2000)
    from detectors.multivariate.settings import OnlineSettings

    online = OnlineSettings(
        enabled=True,
        window=40,
        expected_run_time=2000,
        simulations=4000,
        sample_fraction=1.0,
        reference_rows=1000,
    )
    settings = MultivariateSettings(enabled=True, test="mmd", device="numpy", online=online)

    def batch(frame: pd.DataFrame, first: int) -> DecodedBatch:
        n = len(frame)
        return DecodedBatch(
            columns={c: frame[c].to_numpy() for c in frame.columns},
            event_time=np.arange(first, first + n, dtype=np.float64),
            request_id=np.array([None] * n, dtype=object),
            row_key=np.arange(first, first + n, dtype=np.uint64),
            model_version=np.array(["v1"] * n, dtype=object),
            traceparent=np.array([None] * n, dtype=object),
            partition=np.zeros(n, dtype=np.int32),
            offset=np.arange(first, first + n, dtype=np.int64),
        )

    quiet, changed = _frame(60, 5), _frame(400, 6, rho=0.95)
    changed["f0"] += 1.5
    fired: list[tuple[float | None, bool]] = []
    whole = MultivariateMonitor(
        profile, settings, on_online=lambda v, s, t, hit: fired.append((s, hit))
    )
    whole.observe(batch(quiet, 0))
    whole.observe(batch(changed, 60))
    want = whole.snapshot()["pending"]
    assert want, "the uninterrupted run fires on the changed rows"

    first = MultivariateMonitor(profile, settings)
    first.observe(batch(quiet, 0))
    saved = json.loads(json.dumps(first.snapshot()))
    again = MultivariateMonitor(profile, settings)
    again.restore(saved)
    again.observe(batch(changed, 60))
    assert again.snapshot()["pending"] == want

    # a pending verdict itself is carried: restored, it reaches the window holding it
    carried = MultivariateMonitor(profile, settings)
    carried.restore(json.loads(json.dumps(whole.snapshot())))
    assert carried.snapshot()["pending"] == want
