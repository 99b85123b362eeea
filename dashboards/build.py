"""Build driftline's Grafana dashboards with grafana-foundation-sdk and write their JSON.

    python3 -m dashboards.build            # rewrite dashboards/json/*.json
    python3 -m dashboards.build --check    # exit 1 when that would change them
    python3 -m dashboards.build --thresholds my.yaml --output-dir out/
                                           # runbook links to your runbook_base_url

Three dashboards, one module each: the fleet overview (:mod:`dashboards.fleet`, every
model and version at a glance), the model detail (:mod:`dashboards.model`, one version's
drift, canary comparison, quality and rollbacks; its drift rows in
:mod:`dashboards.model_drift`) and the agent's health (:mod:`dashboards.agent`). They are
built from the panel builders of :mod:`dashboards.panels`, the shared frame of
:mod:`dashboards.frame` and the look of :mod:`dashboards.style`; the PromQL comes from
:mod:`dashboards.queries`, built from the metric definitions of
:mod:`monitor.outputs.metrics`. This module only writes the files.

The runbook links point at ``runbook_base_url`` of ``alert_rules/thresholds.yaml`` (or of
a ``--thresholds`` file merged over it, or ``--runbook-base-url``), the value the alert
rules' ``runbook_url`` annotations use, so a dashboard's links and an alert's link agree.

The output is deterministic (fixed uids and panel ids, sorted keys, two-space indent, a
trailing newline), which is what lets ``--check`` and its unit test catch a checked-in
file that no longer matches the code. docs/dashboards.md describes every dashboard and
how to provision them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.agent import agent_health
from dashboards.fleet import fleet
from dashboards.model import model_detail

JSON_DIR = Path(__file__).resolve().parent / "json"
# Read as data, not imported: the alert rules' thresholds, whose runbook_base_url the
# dashboards share (docs/architecture.md: dashboards import only the metric names).
THRESHOLDS_FILE = Path(__file__).resolve().parents[1] / "alert_rules" / "thresholds.yaml"
RUNBOOK_KEY = "runbook_base_url"

BUILDERS: dict[str, Callable[[str], dashboard.Dashboard]] = {
    "driftline-fleet.json": fleet,
    "driftline-model.json": model_detail,
    "driftline-agent.json": agent_health,
}


class BuildError(Exception):
    """A build option that cannot be used; the message names the file and the fix."""


def runbook_base_url(thresholds: Path | None = None) -> str:
    """``runbook_base_url`` of ``thresholds`` when it sets one, else of
    alert_rules/thresholds.yaml (the same merge as ``alert_rules.generate --thresholds``)."""
    value: object = None
    for path in (thresholds, THRESHOLDS_FILE):
        if path is None:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BuildError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise BuildError(f"{path}: a mapping of thresholds is expected")
        if RUNBOOK_KEY in data:
            value = data[RUNBOOK_KEY]
            if not isinstance(value, str) or not value:
                raise BuildError(
                    f"{path}: {RUNBOOK_KEY} must be a non-empty URL, e.g. "
                    "https://git.example.com/ml/driftline/blob/main/docs/runbooks.md"
                )
            return value
    raise BuildError(f"{THRESHOLDS_FILE}: no {RUNBOOK_KEY}; set it to where runbooks.md is served")


def to_json(board: dashboard.Dashboard | dm.Dashboard) -> str:
    """The dashboard's JSON as it is checked in: sorted keys, two-space indent, final newline."""
    model = board.build() if isinstance(board, dashboard.Dashboard) else board
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(runbook_base: str | None = None) -> dict[str, str]:
    """File name -> JSON text of every dashboard (runbook links to ``runbook_base``, by
    default :func:`runbook_base_url`)."""
    base = runbook_base_url() if runbook_base is None else runbook_base
    return {name: to_json(build(base)) for name, build in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m dashboards.build", description="build driftline's Grafana dashboards"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files in the output directory differ from what would be written",
    )
    parser.add_argument("--output-dir", type=Path, default=JSON_DIR)
    parser.add_argument(
        "--thresholds",
        type=Path,
        help=f"YAML merged over alert_rules/thresholds.yaml; its {RUNBOOK_KEY} is where the "
        "runbook links point (as for the alert rules)",
    )
    parser.add_argument(
        "--runbook-base-url",
        help=f"where docs/runbooks.md is served; overrides {RUNBOOK_KEY} of the thresholds",
    )
    args = parser.parse_args(argv)
    try:
        base = args.runbook_base_url or runbook_base_url(args.thresholds)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, text in render(base).items():
        path = args.output_dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        for path in stale:
            print(f"{path} is out of date; run python3 -m dashboards.build", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
