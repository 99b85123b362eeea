"""What the README, the example configuration and the agent's docs tell a user to run
must work as written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from monitor.demo.broker import TansuBroker

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_readme_does_not_install_from_an_index_it_is_not_on() -> None:
    assert not re.search(r"pip install driftline(\s|$|\[)", README)
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for spec in re.findall(r"pip install '[^']*\[([a-z,]+)\]'", README):
        assert set(spec.split(",")) <= extras, spec


def test_the_readme_wheel_is_what_the_build_makes(tmp_path: Path) -> None:
    version = PYPROJECT["project"]["version"]
    name = f"driftline-{version}-py3-none-any.whl"
    assert f"dist/{name}" in README
    source = tmp_path / "src"  # build from a copy: the checkout stays untouched
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        folder = package.rstrip("*")
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    dist = tmp_path / "dist"
    # the README's command, offline (the build backend is already installed here)
    command = ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
    result = subprocess.run(
        [sys.executable, "-m", *command, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(dist / name) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"driftline-{version}.dist-info/entry_points.txt").decode()
    assert "monitor/cli.py" in names and "detectors/profile.py" in names
    assert "driftline = monitor.cli:main" in entry_points


def test_the_example_configurations_check_command_works() -> None:
    text = (ROOT / "examples" / "monitor.yaml").read_text()
    (command,) = re.findall(r"^#\s+(driftline config check .*)$", text, flags=re.MULTILINE)
    args = shlex.split(command)[1:]
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "model: fraud-scorer" in result.stdout


def test_the_documented_broker_command_is_the_one_the_demo_runs() -> None:
    doc = (ROOT / "docs" / "agent.md").read_text()
    section = doc[doc.index("## A broker for `driftline run`") :]
    block = section[section.index("```sh") : section.index("```", section.index("```sh") + 5)]
    line = " ".join(block.replace("\\\n", " ").splitlines()[2:])
    documented = shlex.split(line)[1:]  # after "$TANSU"
    ours = TansuBroker(port=9092).command()[1:]
    i = ours.index("--cluster-id")
    del ours[i : i + 2]  # the demo names its cluster; a user's broker need not
    assert documented == ours
    assert 'bootstrap_servers: "127.0.0.1:9092"' in section


@pytest.mark.parametrize("doc", ["agent.md", "kubernetes.md"])
def test_the_docs_show_readyz_answers_the_agent_gives(doc: str) -> None:
    from monitor.runtime.health import Health

    text = (ROOT / "docs" / doc).read_text()
    shown = set(re.findall(r'"ready": (?:true|false), "reason": "([^"]*)"', text))
    given = {
        Health(reference_loaded=r, consuming=c).ready()[1]
        for r in (False, True)
        for c in (False, True)
    }
    assert shown and shown <= given, shown - given
