"""Inputs that used to give a confident wrong answer: driftline's own records replayed as
flat rows, one stray string turning a numeric column categorical, an empty reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from detectors.profile import ProfileError, build_profile, load_profile
from detectors.schema import NUMERIC_PARSE_SHARE, Kind, infer_schema
from monitor.config.errors import ConfigError
from monitor.config.model import MonitorConfig
from monitor.runtime.replay import replay

ROWS = 4000


def frame(seed: int, shift: float = 0.0, n: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(100.0 + shift, 15.0, n),
            "country": rng.choice(["DE", "FR", "PL"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def write_records(path: Path, data: pd.DataFrame, *, batch: int = 0) -> None:
    """driftline's own record format: nested features, scalar prediction."""
    records = [
        {
            "request_id": f"r{i}",
            "timestamp": 1_700_000_000.0 + i * 0.01,
            "model_version": "v1",
            "features": {"amount": float(a), "country": str(c)},
            "prediction": 0.5,
        }
        for i, (a, c) in enumerate(zip(data["amount"], data["country"], strict=True))
    ]
    with path.open("wb") as fh:
        if batch:
            for k in range(0, len(records), batch):
                fh.write(orjson.dumps({"predictions": records[k : k + batch]}) + b"\n")
        else:
            for r in records:
                fh.write(orjson.dumps(r) + b"\n")


def write_flat(path: Path, data: pd.DataFrame) -> None:
    with path.open("wb") as fh:
        for i, (a, c) in enumerate(zip(data["amount"], data["country"], strict=True)):
            row = {"timestamp": 1_700_000_000.0 + i * 0.01, "amount": float(a), "country": c}
            fh.write(orjson.dumps(row) + b"\n")


def columns(path: Path, reference: Path) -> list[list[tuple[str, float | None, bool]]]:
    profile = load_profile(reference)
    cfg = MonitorConfig.for_replay(reference=reference, input_path=path, window_rows=1000)
    return [
        [(c.feature, c.statistic, c.drifted) for c in r.drift.columns]
        for r in replay(cfg, profile, path)
    ]


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return build_profile(frame(0)).save(tmp_path / "ref.json")


@pytest.mark.parametrize("batch", [0, 50])
def test_replay_without_a_config_decodes_driftline_records(
    tmp_path: Path, reference: Path, batch: int
) -> None:
    data = frame(1, shift=10.0)  # a shift of 2/3 std: every window drifts on amount
    nested, flat = tmp_path / "records.jsonl", tmp_path / "rows.jsonl"
    write_records(nested, data, batch=batch)
    write_flat(flat, data)
    got = columns(nested, reference)
    assert len(got) == ROWS // 1000
    for window in got:
        stats = {f: s for f, s, _ in window}
        assert stats["amount"] is not None and stats["country"] is not None
        assert ("amount", True) in {(f, d) for f, _, d in window}
    # the same rows, written flat, give the same answers
    assert got == columns(flat, reference)


def test_replay_without_a_config_finds_time_windows_in_records(
    tmp_path: Path, reference: Path
) -> None:
    path = tmp_path / "records.jsonl"
    write_records(path, frame(2))
    cfg = MonitorConfig.for_replay(reference=reference, input_path=path)
    assert cfg.record.features_field == "features"
    assert cfg.windows.rows is None and cfg.windows.size == 60.0


def test_replay_without_a_config_refuses_kserve_records(tmp_path: Path, reference: Path) -> None:
    path = tmp_path / "kserve.jsonl"
    tensor = {"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}
    path.write_bytes(orjson.dumps({"id": "a", "inputs": [tensor]}) + b"\n")
    with pytest.raises(ConfigError, match=r"KServe v2.*-c monitor\.yaml"):
        MonitorConfig.for_replay(reference=reference, input_path=path)


def test_one_stray_string_leaves_a_numeric_column_numeric() -> None:
    data = frame(3)
    amount = data["amount"].astype(object)
    amount.iloc[17] = "oops"
    data["amount"] = amount
    inferred = infer_schema(data)
    assert inferred.schema.column("amount").kind is Kind.NUMERIC
    reason = inferred.reasons["amount"]
    assert f"{ROWS - 1:,} of {ROWS:,}" in reason and "'oops'" in reason
    profile = build_profile(data)
    assert profile.numeric["amount"].missing == 1
    assert profile.numeric["amount"].count == ROWS - 1
    assert "'oops'" in profile.inference["amount"]


def test_the_parse_share_threshold_is_inclusive() -> None:
    n = 200
    strays = round(n * (1 - NUMERIC_PARSE_SHARE))
    values: list[object] = [float(v) for v in np.linspace(0.0, 1.0, n - strays)]
    at = pd.DataFrame({"x": pd.Series(values + ["n/a"] * strays, dtype=object)})
    below = pd.DataFrame({"x": pd.Series(values[:-1] + ["n/a"] * (strays + 1), dtype=object)})
    assert infer_schema(at).schema.column("x").kind is Kind.NUMERIC
    inferred = infer_schema(below)
    assert inferred.schema.column("x").kind is Kind.CATEGORICAL
    assert "numeric needs 95%" in inferred.reasons["x"]


def test_text_columns_stay_categorical() -> None:
    data = pd.DataFrame({"city": ["Berlin", "Paris", "1", "Rome"] * 50})
    assert infer_schema(data).schema.column("city").kind is Kind.CATEGORICAL


@pytest.mark.parametrize(
    "empty",
    [
        pd.DataFrame({"amount": pd.Series([], dtype=float), "country": pd.Series([], dtype=str)}),
        pd.DataFrame(),
    ],
    ids=["header-only", "no-columns"],
)
def test_an_empty_reference_is_refused(empty: pd.DataFrame) -> None:
    with pytest.raises(ProfileError, match="no rows"):
        build_profile(empty)
