"""Copy the generated alert rules and dashboards into the chart, or check the copies.

Helm reads only files inside the chart directory (``.Files.Get``), and a symlink that
points outside it breaks every helm command while its target does not exist; so the
chart carries copies of what ``alert_rules/generate.py`` and the dashboard generator
write, and this script is the only thing that writes them::

    python3 helm/sync_generated.py          # copy (the generators call this)
    python3 helm/sync_generated.py --check  # exit 1 and list the stale copies

The copies are byte-for-byte; the chart tests also compare what the chart renders with
the generated files themselves.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART_FILES = ROOT / "helm" / "driftline" / "files"

# Generated file -> its copy in the chart.
RULE_FILES = {
    ROOT / "alert_rules" / "prometheusrule.yaml": CHART_FILES / "prometheusrule.yaml",
    ROOT / "alert_rules" / "driftline.rules.yaml": CHART_FILES / "driftline.rules.yaml",
}
DASHBOARD_SOURCE = ROOT / "dashboards" / "json"
DASHBOARD_COPIES = CHART_FILES / "dashboards"


@dataclass(frozen=True)
class Difference:
    """One copy that does not match its source: ``stale``, ``missing`` or ``orphan``
    (a copy whose source is gone)."""

    kind: str
    copy: Path
    source: Path | None

    def __str__(self) -> str:
        where = self.copy.relative_to(ROOT)
        if self.kind == "orphan":
            return f"{where}: its source no longer exists"
        assert self.source is not None
        return f"{where}: {self.kind} (source {self.source.relative_to(ROOT)})"


def pairs() -> list[tuple[Path, Path]]:
    """(source, copy) for every generated file the chart uses."""
    out = [(src, dst) for src, dst in RULE_FILES.items() if src.is_file()]
    if DASHBOARD_SOURCE.is_dir():
        out += [
            (src, DASHBOARD_COPIES / src.name) for src in sorted(DASHBOARD_SOURCE.glob("*.json"))
        ]
    return out


def differences() -> list[Difference]:
    """What a sync would change."""
    found: list[Difference] = []
    expected = pairs()
    for src, dst in expected:
        if not dst.is_file():
            found.append(Difference("missing", dst, src))
        elif dst.read_bytes() != src.read_bytes():
            found.append(Difference("stale", dst, src))
    copies = {dst for _, dst in expected}
    if DASHBOARD_COPIES.is_dir():
        for dst in sorted(DASHBOARD_COPIES.glob("*.json")):
            if dst not in copies:
                found.append(Difference("orphan", dst, None))
    for src, dst in RULE_FILES.items():
        if not src.is_file() and dst.is_file():
            found.append(Difference("orphan", dst, None))
    return found


def sync() -> list[Difference]:
    """Make the copies equal to their sources; returns what was changed."""
    changed = differences()
    for diff in changed:
        if diff.kind == "orphan":
            diff.copy.unlink()
        else:
            assert diff.source is not None
            diff.copy.parent.mkdir(parents=True, exist_ok=True)
            diff.copy.write_bytes(diff.source.read_bytes())
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale copies, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        diffs = differences()
        for diff in diffs:
            print(diff, file=sys.stderr)
        if diffs:
            print("run: python3 helm/sync_generated.py", file=sys.stderr)
        return 1 if diffs else 0
    for diff in sync():
        print(f"updated {diff.copy.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
