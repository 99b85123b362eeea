"""The layout that docs/architecture.md describes, checked: no import cycles (imports made
only for type checking included), packages import only what their layer may, and no
module grows past a size a newcomer can read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("detectors", "monitor", "dashboards", "alert_rules")
MAX_LINES = 600
# Modules allowed past MAX_LINES, each with the reason it is one piece.
LONG_MODULES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (a package's submodule or the package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """Every project module ``module`` imports, anywhere in the file (top level, inside
    functions, under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                out.add(target)
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles() == []


@pytest.mark.parametrize(
    ("package", "may_not_import"),
    [
        ("detectors", ("monitor", "dashboards", "alert_rules")),
        ("monitor", ("dashboards", "alert_rules")),
    ],
)
def test_layers_import_only_below_them(package: str, may_not_import: tuple[str, ...]) -> None:
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if m.split(".")[0] == package
        for t in targets
        if t.split(".")[0] in may_not_import
    )
    assert wrong == []


def test_generators_read_only_metric_names_from_the_agent() -> None:
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if m.split(".")[0] in ("dashboards", "alert_rules")
        for t in targets
        # the metrics package: its modules hold only metric definitions
        if t.startswith("monitor")
        and t != "monitor.outputs.metrics"
        and not t.startswith("monitor.outputs.metrics.")
    )
    assert wrong == []


def test_modules_stay_readable() -> None:
    long = {
        m: n
        for m, p in MODULES.items()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and m not in LONG_MODULES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by their base name (the test folders are not
    packages): two files of one name make the whole run stop at collection."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        other = seen.setdefault(path.name, path)
        assert other == path, f"{path.relative_to(ROOT)} and {other.relative_to(ROOT)}"
