"""driftline's Prometheus alerting rules: generated from the metric definitions in
:mod:`monitor.outputs.metrics` and the thresholds in ``thresholds.yaml``, so a renamed metric or a
changed threshold reaches every rule by running ``python3 -m alert_rules.generate``.

The paths below are where the generator writes and where tests, the Helm chart and
integration tests read. :func:`alertmanager_config` loads the example Alertmanager
configuration with the receiver's address and timings replaced, for tests that run a real
Alertmanager against an agent on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
THRESHOLDS_FILE = HERE / "thresholds.yaml"
RULES_FILE = HERE / "driftline.rules.yaml"
PROMETHEUS_RULE_FILE = HERE / "prometheusrule.yaml"
ALERTMANAGER_FILE = HERE / "alertmanager.yml"
TESTS_DIR = HERE / "tests"

# Notification timings for tests only: a webhook within about a second of a rule firing,
# and repeats soon enough to observe. Never use them in production (see alertmanager.yml).
FAST_TIMINGS: dict[str, str] = {
    "group_wait": "0s",
    "group_interval": "1s",
    "repeat_interval": "1m",
}

AGENT_RECEIVER = "driftline-agent"


def alertmanager_config(
    webhook_url: str | None = None,
    credentials_file: str | None = None,
    timings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The example Alertmanager configuration, with overrides applied.

    ``webhook_url`` and ``credentials_file`` replace the agent receiver's URL and bearer
    token file; ``timings`` (e.g. :data:`FAST_TIMINGS`) replace ``group_wait``,
    ``group_interval`` and ``repeat_interval`` on the top route and on every child route
    that sets them. The result is a plain dict, ready for ``yaml.safe_dump``.
    """
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_FILE.read_text())
    for receiver in config["receivers"]:
        if receiver["name"] != AGENT_RECEIVER:
            continue
        for webhook in receiver["webhook_configs"]:
            if webhook_url is not None:
                webhook["url"] = webhook_url
            if credentials_file is not None:
                webhook["http_config"]["authorization"]["credentials_file"] = credentials_file
    if timings:
        unknown = set(timings) - set(FAST_TIMINGS)
        if unknown:
            raise ValueError(f"unknown route timings {sorted(unknown)}; use {sorted(FAST_TIMINGS)}")
        routes = [config["route"]]
        while routes:
            route = routes.pop()
            for key, value in timings.items():
                if route is config["route"] or key in route:
                    route[key] = value
            routes.extend(route.get("routes", []))
    return config
