"""`driftline replay` as a user runs it: its summary counts each kind of finding, it writes
window sketches when asked (so `driftline report` plots the window), and with a config
that names the input it needs no --input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from detectors.profile import build_profile
from detectors.schema import Schema
from monitor.cli import main
from monitor.commands.replay import replay_summary
from monitor.report.verdict import FEATURE_DRIFT, PREDICTION_DRIFT, QUALITY_BREACH

ROWS = 1000


def frame(seed: int, n: int, *, shift_prediction: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(100.0, 15.0, n),
            "country": rng.choice(["DE", "FR", "PL"], n),
            "score": rng.beta(2.0, 5.0 if not shift_prediction else 1.5, n),
        }
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    schema = Schema.build(numeric=["amount"], categorical=["country"], prediction_numeric=["score"])
    build_profile(frame(0, 20_000), schema).save(tmp_path / "ref.json")
    # two clean windows, then two whose predictions drifted (the features did not)
    data = pd.concat(
        [frame(1, 2 * ROWS), frame(2, 2 * ROWS, shift_prediction=True)], ignore_index=True
    )
    data.to_parquet(tmp_path / "traffic.parquet")
    return tmp_path


def replay(files: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[list[str], str]:
    rc = main(["replay", *args])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out.splitlines(), " ".join(captured.err.split())


def test_the_summary_counts_each_kind_of_finding(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, data = str(files / "ref.json"), str(files / "traffic.parquet")
    lines, err = replay(files, capsys, "--reference", ref, "--input", data, "--window", "1000")
    assert len(lines) == 4
    # predictions drifted in the last two windows (and went out of the reference's range)
    assert "4 windows: 0 with feature drift, 2 with prediction drift, 2 with a data-quality" in err
    assert "with drift" not in err.replace("feature drift", "").replace("prediction drift", "")


def test_replay_summary_wording() -> None:
    found = {FEATURE_DRIFT: 3, QUALITY_BREACH: 1}
    assert replay_summary(12, found) == (
        "12 windows: 3 with feature drift, 0 with prediction drift, 1 with a data-quality breach"
    )
    assert "multivariate" in replay_summary(2, {PREDICTION_DRIFT: 1, "multivariate drift": 1})


def test_sketches_written_by_replay_make_the_report_plot_the_window(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, data = str(files / "ref.json"), str(files / "traffic.parquet")
    sketches = files / "sketches"
    lines, _ = replay(
        files, capsys, "--reference", ref, "--input", data, "--window", "1000",
        "--sketches", str(sketches),
    )  # fmt: skip
    (files / "reports.jsonl").write_text("\n".join(lines) + "\n")
    assert len(list(sketches.rglob("*.sketch"))) == 4
    page = files / "page.html"
    rc = main(
        [
            "report", "--reference", ref, "--reports", str(files / "reports.jsonl"),
            "--sketches", str(sketches), "--index", "3", "--no-evidently", "-o", str(page),
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    html = page.read_text(encoding="utf-8")
    assert "No window sketch was given" not in html
    assert "it may belong to another window" not in html  # the sketch's rows match
    # without sketches the same page says its plots show the reference alone
    rc = main(
        [
            "report", "--reference", ref, "--reports", str(files / "reports.jsonl"),
            "--index", "3", "--no-evidently", "-o", str(page),
        ]
    )  # fmt: skip
    assert rc == 0 and "No window sketch was given" in page.read_text(encoding="utf-8")


def test_a_missing_sketch_is_a_clear_error(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, data = str(files / "ref.json"), str(files / "traffic.parquet")
    lines, _ = replay(files, capsys, "--reference", ref, "--input", data, "--window", "1000")
    (files / "reports.jsonl").write_text("\n".join(lines) + "\n")
    (files / "empty").mkdir()
    rc = main(
        [
            "report", "--reference", ref, "--reports", str(files / "reports.jsonl"),
            "--sketches", str(files / "empty"), "-o", str(files / "p.html"),
        ]
    )  # fmt: skip
    assert rc == 2 and "replay the file with --sketches DIR" in capsys.readouterr().err


def test_replay_with_a_config_reads_the_file_it_names(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "model": "scorer",
        "reference": "ref.json",
        "source": {"kind": "file", "file": {"path": "traffic.parquet"}},
        "windows": {"rows": 1000},
    }
    (files / "monitor.yaml").write_text(yaml.safe_dump(config))
    lines, err = replay(files, capsys, "-c", str(files / "monitor.yaml"))
    assert len(lines) == 4 and "4 windows" in err
    # without a config, --input is still needed, and the error says so
    rc = main(["replay", "--reference", str(files / "ref.json")])
    assert rc == 2 and "--input is required" in capsys.readouterr().err
