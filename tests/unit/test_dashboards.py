"""The generated Grafana dashboards: up to date, readable by the SDK, and wired to real metrics.

The checks read the checked-in JSON (what Grafana imports), not the builders, so they
catch a file that was edited by hand or not regenerated as well as a builder bug.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as prom_models
from prometheus_client import generate_latest

from dashboards import build, frame, style
from dashboards import queries as q
from monitor.outputs import metrics as m
from monitor.outputs.exporter import new_registry

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ALERT_RULES = ROOT / "alert_rules" / "driftline.rules.yaml"
DOCS = ROOT / "docs" / "dashboards.md"

UIDS = {
    "driftline-fleet.json": frame.FLEET_UID,
    "driftline-model.json": frame.MODEL_UID,
    "driftline-agent.json": frame.AGENT_UID,
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTINS = {"$__rate_interval", "$__interval", "$__range"}
# Families whose series carry a `baseline` label: drift against the reference or a version.
BASELINE_FAMILIES = {d.name for d in m.ALL_METRICS if "baseline" in d.labels}
VERSION_BASELINE = f'baseline=~"{q.VERSION_BASELINE_PREFIX}.+"'
REFERENCE_BASELINE = f'baseline="{q.REFERENCE_BASELINE}"'


def _load(name: str) -> dict[str, Any]:
    return json.loads((build.JSON_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return {name: _load(name) for name in UIDS}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _exprs(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panels, variables, annotations."""
    out = [t["expr"] for p in _panels(board) for t in p["targets"]]
    out += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    out += [a["expr"] for a in board["annotations"].get("list", [])]
    return out


def _family(token: str) -> str:
    """The metric family a series name belongs to (a histogram's _bucket, _sum, _count)."""
    for suffix in q.HISTOGRAM_SUFFIXES:
        base = token.removesuffix(suffix)
        if base != token and base in m.BY_NAME and m.BY_NAME[base].kind == "histogram":
            return base
    return token


def _all_exprs(boards: dict[str, dict[str, Any]]) -> list[str]:
    return [e for b in boards.values() for e in _exprs(b)]


# -- regeneration -----------------------------------------------------------------------------


def test_checked_in_json_is_what_the_builders_write() -> None:
    rendered = build.render()
    assert set(rendered) == set(UIDS)
    for name, text in rendered.items():
        assert (build.JSON_DIR / name).read_bytes() == text.encode("utf-8"), (
            f"{name} is out of date; run python3 -m dashboards.build"
        )
    assert build.main(["--check"]) == 0


def test_output_is_deterministic_and_ends_with_a_newline() -> None:
    first, second = build.render(), build.render()
    assert first == second
    for name, text in first.items():
        assert text.endswith("}\n") and not text.endswith("\n\n")
        data = json.loads(text)
        assert data["uid"] == UIDS[name]
        # keys are sorted at every level
        assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_check_flags_a_stale_file_and_regeneration_fixes_it(tmp_path: Path) -> None:
    for name in UIDS:
        shutil.copy(build.JSON_DIR / name, tmp_path / name)
    stale = tmp_path / "driftline-model.json"
    stale.write_text(stale.read_text().replace("Dataset drift share", "Drift"))
    before = stale.read_bytes()
    assert build.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert stale.read_bytes() == before  # --check never writes
    assert build.main(["--output-dir", str(tmp_path)]) == 0
    assert build.main(["--check", "--output-dir", str(tmp_path)]) == 0
    assert stale.read_bytes() == (build.JSON_DIR / stale.name).read_bytes()


def test_runbook_base_url_can_be_overridden(tmp_path: Path) -> None:
    base = "https://git.example.com/driftline/blob/main/docs/runbooks.md"
    assert build.main(["--output-dir", str(tmp_path), "--runbook-base-url", base]) == 0
    text = (tmp_path / "driftline-fleet.json").read_text()
    assert base + "#driftlinedatasetdrift" in text
    assert build.runbook_base_url() not in text


def test_runbook_links_share_the_alert_rules_base_url() -> None:
    from alert_rules.generate import load_thresholds

    base = build.runbook_base_url()
    assert base == load_thresholds().runbook_base_url
    rules = yaml.safe_load(ALERT_RULES.read_text())
    urls = [r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]]
    assert urls and all(u.startswith(base + "#") for u in urls)


def test_thresholds_file_sets_the_runbook_base_url(tmp_path: Path) -> None:
    base = "https://runbooks.example.org/driftline/runbooks.md"
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"runbook_base_url: {base}\nconsumer_lag_records: 5\n")
    out = tmp_path / "out"
    assert build.main(["--output-dir", str(out), "--thresholds", str(mine)]) == 0
    text = (out / "driftline-agent.json").read_text()
    assert base + "#driftlinesourcedown" in text
    assert build.runbook_base_url() not in text
    # a file without the key keeps the shipped base URL (merged over thresholds.yaml)
    other = tmp_path / "other.yaml"
    other.write_text("consumer_lag_records: 5\n")
    assert build.runbook_base_url(other) == build.runbook_base_url()
    # the command-line URL wins over the file's
    flag = "https://flag.example/runbooks.md"
    args = ["--output-dir", str(out), "--thresholds", str(mine), "--runbook-base-url", flag]
    assert build.main(args) == 0
    assert flag + "#driftlinesourcedown" in (out / "driftline-agent.json").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [("runbook_base_url: 3\n", "runbook_base_url must be"), ("- a list\n", "mapping")],
)
def test_bad_thresholds_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    out = tmp_path / "out"
    assert build.main(["--output-dir", str(out), "--thresholds", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err
    assert not out.exists()  # nothing written
    missing = tmp_path / "missing.yaml"
    assert build.main(["--output-dir", str(out), "--thresholds", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


# -- the SDK's model --------------------------------------------------------------------------


def test_json_round_trips_through_the_sdk_model(boards: dict[str, dict[str, Any]]) -> None:
    register_default_plugins()  # decode panel options and queries into their typed models
    for name, data in boards.items():
        model = dm.Dashboard.from_json(data)
        assert build.to_json(model) == (build.JSON_DIR / name).read_text(encoding="utf-8")
        panels = [p for p in model.panels or [] if isinstance(p, dm.Panel)]
        assert panels
        for panel in panels:
            # typed, not passed through as unknown data
            assert not isinstance(panel.options, dict), panel.title
            for t in panel.targets or []:
                assert isinstance(t, prom_models.Dataquery), panel.title


# -- panels -----------------------------------------------------------------------------------


def test_every_panel_says_what_to_conclude_and_uses_the_datasource_variable(
    boards: dict[str, dict[str, Any]],
) -> None:
    for name, board in boards.items():
        for panel in _panels(board):
            where = f"{name}: {panel['title']}"
            assert len(panel.get("description", "")) >= 60, where
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"], where
            for t in panel["targets"]:
                assert t["datasource"] == DATASOURCE, where
                assert t["expr"].strip(), where


def test_every_panel_has_a_unit_and_thresholds(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        for panel in _panels(board):
            defaults = panel["fieldConfig"]["defaults"]
            where = f"{name}: {panel['title']}"
            assert defaults.get("unit"), where
            steps = defaults["thresholds"]["steps"]
            assert steps[0]["value"] is None, where
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values), where


def test_ratio_and_time_panels_use_matching_units(boards: dict[str, dict[str, Any]]) -> None:
    units = {d.name: d.unit for d in m.ALL_METRICS}
    for board in boards.values():
        for panel in _panels(board):
            exprs = [t["expr"] for t in panel["targets"]]
            names = {_family(n) for e in exprs for n in re.findall(r"\bdriftline_[a-z_]+", e)}
            unit = panel["fieldConfig"]["defaults"]["unit"]
            if panel["type"] == "table" or len(names) != 1:
                continue
            (name,) = names
            if units.get(name) == "ratio" and not any("count(" in e for e in exprs):
                assert unit == style.RATIO, panel["title"]
            if units.get(name) == "seconds":
                assert unit == style.SECONDS, panel["title"]


def test_panel_ids_and_titles_are_unique_and_fit_the_grid(
    boards: dict[str, dict[str, Any]],
) -> None:
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        titles = [p["title"] for p in _panels(board)]
        assert len(ids) == len(set(ids)), name
        assert len(titles) == len(set(titles)), name
        for p in board["panels"]:
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, (name, p["title"])
        refs = [[t["refId"] for t in p["targets"]] for p in _panels(board)]
        assert all(len(r) == len(set(r)) for r in refs), name


# -- queries ----------------------------------------------------------------------------------


def test_every_metric_in_every_query_is_defined(boards: dict[str, dict[str, Any]]) -> None:
    used = set()
    for expr in _all_exprs(boards):
        for token in re.findall(r"\bdriftline_[a-z_]+", expr):
            name = _family(token)
            assert name in m.BY_NAME, f"{token} is not in monitor.outputs.metrics: {expr}"
            used.add(name)
    # the dashboards cover the families a reader needs, not a handful
    assert len(used) >= 20, sorted(used)


def test_selectors_match_only_labels_the_family_has(boards: dict[str, dict[str, Any]]) -> None:
    selector = re.compile(r"\b(driftline_[a-z_]+)\{([^}]*)\}")
    matcher = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"')
    for expr in _all_exprs(boards):
        for name, body in selector.findall(expr):
            base = _family(name)
            labels = {lb for lb, _ in matcher.findall(body)}
            assert labels <= {*m.BY_NAME[base].labels, "le"}, (name, labels, expr)


def test_drift_queries_say_which_baseline(boards: dict[str, dict[str, Any]]) -> None:
    """Drift families mix two comparisons; every query picks one, the canary panels the other."""
    for board in boards.values():
        for panel in _panels(board):
            for t in panel["targets"]:
                for name in set(re.findall(r"\bdriftline_[a-z_]+", t["expr"])) & BASELINE_FAMILIES:
                    sel = re.search(rf"\b{name}\{{[^}}]*\}}", t["expr"])
                    assert sel, (panel["title"], t["expr"])
                    if "Canary" in panel["title"]:
                        assert VERSION_BASELINE in sel.group(0), panel["title"]
                    else:
                        assert REFERENCE_BASELINE in sel.group(0), (panel["title"], t["expr"])
    canary = [
        t["expr"]
        for p in _panels(boards["driftline-model.json"])
        if "Canary" in p["title"]
        for t in p["targets"]
    ]
    assert len(canary) >= 3


def test_queries_use_only_defined_variables(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        defined = {"$" + v["name"] for v in board["templating"]["list"]} | GRAFANA_BUILTINS
        for expr in _exprs(board):
            used = set(re.findall(r"\$\w+", expr))
            assert used <= defined, (name, used - defined, expr)


def test_process_metrics_are_what_the_agent_exposes() -> None:
    exposed = generate_latest(new_registry()).decode()
    names = {line.split()[2] for line in exposed.splitlines() if line.startswith("# TYPE")}
    counters = {n + "_total" for n in names}
    assert q.PROCESS_RESIDENT_MEMORY in names
    assert q.PROCESS_CPU_SECONDS in names | counters


def test_alerts_query_matches_the_alert_rules() -> None:
    rules = yaml.safe_load(ALERT_RULES.read_text())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    assert all(a.startswith(q.ALERT_NAME_PREFIX) for a in alerts)
    assert f'alertname=~"{q.ALERT_NAME_PREFIX}.*"' in q.firing_alerts(q.regex(q.MODEL))


def test_every_query_parses(boards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """promtool parses each expression (variables substituted) as a recording rule."""
    values = {
        "$model": "credit",
        "$version": "v2",
        "$feature": "age|income",
        "$__rate_interval": "1m",
        "$__interval": "15s",
        "$__range": "1h",
    }
    rules = []
    for i, expr in enumerate(_all_exprs(boards)):
        if expr.startswith("label_values("):
            expr = re.fullmatch(r"label_values\((.+), \w+\)", expr).group(1)
        for var in sorted(values, key=len, reverse=True):
            expr = expr.replace(var, values[var])
        rules.append({"record": f"dashboard:query_{i}:check", "expr": expr})
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


# -- the query helpers ------------------------------------------------------------------------


def test_series_refuses_labels_and_suffixes_a_family_lacks() -> None:
    with pytest.raises(ValueError, match="no label 'feature'"):
        q.series(m.RECORDS, feature="age")
    with pytest.raises(ValueError, match="no label"):
        q.by(m.CONSUMER_LAG, "model_version")
    with pytest.raises(ValueError, match="no '_bucket' series"):
        q.series(m.WINDOW_ROWS, "_bucket")
    with pytest.raises(ValueError, match="needs a counter"):
        q.rate(m.WINDOW_ROWS)
    with pytest.raises(ValueError, match="not a record outcome"):
        q.outcomes("dropped")
    assert q.series(m.WINDOW_EVALUATION_SECONDS, "_bucket", le="+Inf").startswith(
        m.WINDOW_EVALUATION_SECONDS.name + "_bucket{"
    )


def test_series_quotes_values_and_escapes_literal_alternatives() -> None:
    sel = q.series(m.RECORDS, model='a"b', outcome=q.any_of("late", "dup.licate"))
    assert sel == (m.RECORDS.name + r'{model="a\"b", outcome=~"late|dup\\.licate"}')
    assert q.series(m.SOURCE_UP) == m.SOURCE_UP.name


# -- variables and links ----------------------------------------------------------------------


def test_template_variables(boards: dict[str, dict[str, Any]]) -> None:
    expected = {
        "driftline-fleet.json": ["datasource", "model"],
        "driftline-model.json": ["datasource", "model", "version", "feature"],
        "driftline-agent.json": ["datasource", "model"],
    }
    labels = {"model": "model", "version": "model_version", "feature": "feature"}
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert list(variables) == expected[name]
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in list(variables.values())[1:]:
            assert var["type"] == "query"
            assert var["datasource"] == DATASOURCE
            match = re.fullmatch(
                r"label_values\((driftline_[a-z_]+)(\{.*\})?, (\w+)\)", var["query"]
            )
            assert match, var["query"]
            assert match.group(3) == labels[var["name"]]
            assert match.group(3) in m.get(match.group(1)).labels
    assert boards["driftline-fleet.json"]["templating"]["list"][1]["multi"] is True
    assert boards["driftline-model.json"]["templating"]["list"][1]["multi"] is False


def _runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+\s+(.+?)\s*$", RUNBOOKS.read_text(), flags=re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_runbook_links_point_at_sections_of_the_runbooks(
    boards: dict[str, dict[str, Any]],
) -> None:
    anchors = _runbook_anchors()
    linked = 0
    for name, board in boards.items():
        assert any(
            lk["url"] == build.runbook_base_url() and lk["type"] == "link" for lk in board["links"]
        ), name
        for panel in _panels(board):
            for lk in panel.get("links", []):
                base, _, anchor = lk["url"].partition("#")
                assert base == build.runbook_base_url(), lk
                assert anchor in anchors, (name, panel["title"], anchor)
                linked += 1
    assert linked >= 20


def test_fleet_links_open_the_model_dashboard_with_its_variables(
    boards: dict[str, dict[str, Any]],
) -> None:
    model_vars = {v["name"] for v in boards["driftline-model.json"]["templating"]["list"]}
    links = [
        lk
        for p in _panels(boards["driftline-fleet.json"])
        for lk in p["fieldConfig"]["defaults"].get("links", [])
    ]
    assert len(links) >= 3
    for lk in links:
        assert lk["url"].startswith(f"/d/{frame.MODEL_UID}?")
        params = dict(
            part.split("=", 1) for part in lk["url"].split("?", 1)[1].split("&") if "=" in part
        )
        assert {"var-model", "var-version"} <= set(params)
        assert {k.removeprefix("var-") for k in params if k.startswith("var-")} <= model_vars
        assert "${datasource:queryparam}" in lk["url"] and "${__url_time_range}" in lk["url"]


def test_rollback_annotation_is_a_prometheus_query() -> None:
    board = _load("driftline-model.json")
    (annotation,) = board["annotations"]["list"]
    assert annotation["datasource"] == DATASOURCE
    assert m.ROLLBACK_DECISIONS.name in annotation["expr"]
    assert "offset $__rate_interval" in annotation["expr"]  # first decisions are marked too


def test_docs_describe_the_dashboards() -> None:
    text = DOCS.read_text()
    for name in UIDS:
        assert f"dashboards/json/{name}" in text
    assert build.runbook_base_url() in text
    assert "python3 -m dashboards.build" in text
    assert 'grafana_dashboard: "1"' in text
