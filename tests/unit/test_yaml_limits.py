"""monitor.yaml (and the injector's YAML) cannot expand into billions of values: nested
aliases are refused before anything walks them."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml

from monitor.config.errors import ConfigError
from monitor.config.loader import load_config
from monitor.config.safe_yaml import MAX_NODES, YAMLLimitError, load_yaml
from monitor.inject.prepare import PrepareError, write_config

ROOT = Path(__file__).resolve().parents[2]


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic: each level a list of ``width`` aliases of the level below."""
    lines = ["model: m", "reference: ref.json", 'l0: &l0 ["lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"l{i}: &l{i} [{refs}]")
    lines.append(f"drift: {{columns: {{x: {{extra: *l{levels}}}}}}}")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_monitor_yaml_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(billion_laughs())  # 3 * 9**9 ≈ 1.2 billion values, 1 kB of YAML
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"monitor\.yaml: refused: .*more than 100,000"):
            load_config(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20  # refused while composing, not after building the values


def test_config_check_refuses_it_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "monitor.yaml").write_text(billion_laughs())
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "config", "check", "-c", "monitor.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "billion laughs" in result.stderr


def test_the_injector_refuses_it_too() -> None:
    with pytest.raises(PrepareError, match="refused"):
        write_config(billion_laughs(), Path("/nonexistent"))


def test_expansion_is_counted_per_reference_not_per_node() -> None:
    # 60 distinct nodes, but 2**20 values once expanded: refused
    doc = "a0: &a0 [1, 2]\n" + "".join(
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 20)
    )
    with pytest.raises(YAMLLimitError, match="more than"):
        load_yaml(doc)
    assert load_yaml(doc, max_nodes=10 << 20)["a3"] == [[[[1, 2]] * 2] * 2] * 2


def test_recursive_aliases_too_many_aliases_and_deep_nesting_are_refused() -> None:
    with pytest.raises(YAMLLimitError, match="recursive"):
        load_yaml("a: &a [1, *a]")
    many = "x: &x 1\ny: [" + ", ".join(["*x"] * 1001) + "]\n"
    with pytest.raises(YAMLLimitError, match="aliases"):
        load_yaml(many)
    with pytest.raises(YAMLLimitError, match="nested too deeply"):
        load_yaml("[" * 3000 + "]" * 3000)


@pytest.mark.parametrize("name", ["monitor.yaml", "kserve-monitor.yaml"])
def test_ordinary_documents_load_as_safe_load_reads_them(name: str) -> None:
    text = (ROOT / "examples" / name).read_text()
    assert load_yaml(text) == yaml.safe_load(text)
    anchors = "base: &b {timeout: 5s, retries: 3}\na: {<<: *b, url: x}\nb: [*b, *b]\n"
    assert load_yaml(anchors) == yaml.safe_load(anchors)
    assert load_yaml("") is None
    assert MAX_NODES >= 10_000
