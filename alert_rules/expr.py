"""Building blocks of the generated rules: PromQL read from the metric definitions,
durations, per-window lookbacks, and the Alert every rule group returns."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from alert_rules.thresholds import (
    Thresholds,
)
from monitor.outputs import metrics as m

SEVERITIES = ("critical", "warning", "info")


def duration(seconds: int) -> str:
    """PromQL duration: the largest of h, m, s that says ``seconds`` exactly."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _labels(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


def _others(defn: m.MetricDef, other: m.MetricDef) -> list[str]:
    """``defn``'s labels that ``other`` lacks: what to ignore, or sum away, to match them."""
    return [label for label in defn.labels if label not in other.labels]


def _label(defn: m.MetricDef, name: str) -> str:
    """``name``, after checking that ``defn`` has that label (so a rule cannot use one it lacks)."""
    if name not in defn.labels:
        raise ValueError(f"{defn.name} has no label {name!r} (labels: {defn.labels})")
    return name


def _selector(defn: m.MetricDef | None = None, **matchers: str) -> str:
    """``{k="v", ...}``; with ``defn``, every ``k`` must be one of its labels."""
    if not matchers:
        return ""
    if defn is not None:
        for key in matchers:
            _label(defn, key)
    return "{" + ", ".join(f'{k}="{v}"' for k, v in matchers.items()) + "}"


def per_window(t: Thresholds, build: Callable[[str, int], str]) -> str:
    """``build(label, period)`` for every window of thresholds.yaml, joined with ``or``."""
    parts = [build(label, period) for label, period in sorted(t.windows.items())]
    if len(parts) == 1:
        return parts[0]
    return "\nor\n".join(
        "(\n" + "\n".join("  " + line for line in part.splitlines()) + "\n)" for part in parts
    )


def _any_of(values: Iterable[str]) -> str:
    """A PromQL string literal holding a regex that matches exactly ``values``."""
    alternatives = "|".join(re.escape(v) for v in sorted(values))
    return '"' + alternatives.replace("\\", "\\\\") + '"'


def persisted(
    value: m.MetricDef,
    flag: m.MetricDef,
    windows: int,
    t: Thresholds,
    **matchers: str,
) -> str:
    """``value`` where the 0/1 gauge ``flag`` held 1 for ``windows`` consecutive windows.

    ``min_over_time(flag[N·P]) == 1``: no sample of the last N close periods saw the flag
    at 0. ``changes(last window close[N·P]) >= N-1``: the agent really closed windows
    meanwhile, so these are N windows and not one stale verdict. The close timestamp has
    fewer labels than the flag; ``ignoring`` the difference matches the flag's series to
    their agent, version and window (the target labels stay in the match).
    """
    close = m.LAST_WINDOW_CLOSE
    if value.labels != flag.labels:
        raise ValueError(f"{value.name} and {flag.name} must have the same labels")
    if not set(close.labels) <= set(flag.labels):
        raise ValueError(f"{close.name} has labels that {flag.name} lacks")

    def build(label: str, period: int) -> str:
        sel = _selector(flag, **matchers, window=label)
        if windows == 1:
            return f"{value.name}{sel}\n  and {flag.name}{sel} == 1"
        lookback = duration(windows * period)
        return (
            f"{value.name}{sel}\n"
            f"  and min_over_time({flag.name}{sel}[{lookback}]) == 1\n"
            f"  and ignoring ({_labels(_others(flag, close))})\n"
            f"  changes({close.name}{_selector(close, window=label)}[{lookback}]) >= {windows - 1}"
        )

    return per_window(t, build)


@dataclass(frozen=True)
class Alert:
    """One alerting rule; ``for_seconds`` 0 means no ``for:`` (the expression persists)."""

    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_seconds: int = 0
    # Drift and quality alerts are about one model version's windows, whose newest HTML
    # page has a fixed URL: they link it when thresholds.yaml sets report_base_url.
    links_report: bool = False

    def rule(self, runbook_base_url: str, report_base_url: str | None = None) -> dict[str, Any]:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.name}: severity {self.severity!r} not in {SEVERITIES}")
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_seconds:
            rule["for"] = duration(self.for_seconds)
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{runbook_base_url}#{runbook_anchor(self.name)}",
        }
        if self.links_report and report_base_url:
            rule["annotations"]["report_url"] = latest_report_url(report_base_url)
        return rule


def latest_report_url(base_url: str) -> str:
    """The newest HTML page of the alert's model version, as the agent lays pages out
    (monitor/report/store.py: ``<html_dir>/<model>/<version>/latest.html``)."""
    labels = "{{ $labels.model }}/{{ $labels.model_version }}"
    return f"{base_url.rstrip('/')}/{labels}/latest.html"


def runbook_anchor(alert_name: str) -> str:
    """The anchor of the alert's section in docs/runbooks.md (its heading is the name)."""
    return alert_name.lower()


_MV = "{{ $labels.model }} {{ $labels.model_version }}"
