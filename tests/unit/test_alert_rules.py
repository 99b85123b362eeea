"""The generated alert rules: valid for Prometheus, tested by promtool, up to date, pointing
only at metrics that exist, and each with a runbook section.

promtool and amtool come from Debian's prometheus and prometheus-alertmanager packages
(tests/setup.sh installs them). Without them these tests fail, never skip: CI must not
pass with the rules unchecked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import alert_rules
from alert_rules import expr, generate
from detectors.settings import QUALITY_CHECKS
from monitor.outputs import metrics as m

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks.md"
TEST_FILES = sorted(alert_rules.TESTS_DIR.glob("*.yaml"))
# Labels Prometheus adds to every scraped series (and `le` of histogram buckets).
TARGET_LABELS = {"job", "instance"}
TEST_KINDS = ("fires", "healthy", "blip")


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH: install Debian's {package} package "
            f"(apt-get install -y --no-install-recommends {package}, or bash tests/setup.sh)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return _tool("amtool", "prometheus-alertmanager")


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(alert_rules.RULES_FILE)["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules()}


def _test_groups() -> list[dict[str, Any]]:
    return [group for path in TEST_FILES for group in _load(path)["tests"]]


# -- Prometheus accepts the rules -----------------------------------------------------------


def test_rules_file_passes_promtool_check(promtool: str) -> None:
    result = _run(promtool, "check", "rules", alert_rules.RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_prometheus_rule_manifest_carries_the_same_groups_and_passes_promtool(
    promtool: str, tmp_path: Path
) -> None:
    manifest = _load(alert_rules.PROMETHEUS_RULE_FILE)
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["name"]
    assert manifest["spec"] == _load(alert_rules.RULES_FILE)
    spec = tmp_path / "spec.rules.yaml"
    spec.write_text(yaml.safe_dump(manifest["spec"], sort_keys=False))
    result = _run(promtool, "check", "rules", spec)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_expression_fails_promtool_check(promtool: str, tmp_path: Path) -> None:
    """The check above can fail: promtool rejects an expression that does not parse."""
    rules = _load(alert_rules.RULES_FILE)
    rules["groups"][0]["rules"][0]["expr"] += " and ignoring("
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(yaml.safe_dump(rules, sort_keys=False))
    assert _run(promtool, "check", "rules", broken).returncode != 0


# -- promtool unit tests --------------------------------------------------------------------


def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert TEST_FILES, f"no promtool tests in {alert_rules.TESTS_DIR}"
    result = _run(promtool, "test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_load_the_generated_rules() -> None:
    for path in TEST_FILES:
        rule_files = [(path.parent / f).resolve() for f in _load(path)["rule_files"]]
        assert rule_files == [alert_rules.RULES_FILE], path


def _tested(kind: str | None) -> dict[str, list[list[dict[str, Any]]]]:
    """alert name -> the exp_alerts of every alert_rule_test in groups of ``kind``."""
    seen: dict[str, list[list[dict[str, Any]]]] = {}
    for group in _test_groups():
        if kind is not None and not group["name"].startswith(f"{kind}:"):
            continue
        for case in group.get("alert_rule_test", []):
            seen.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    return seen


def test_every_test_group_says_what_it_shows() -> None:
    for group in _test_groups():
        assert group["name"].split(":")[0] in TEST_KINDS, group["name"]


def test_every_alert_is_tested_firing_and_silent() -> None:
    tested = _tested(None)
    for name in _alerts():
        cases = tested.get(name, [])
        assert any(cases), f"{name}: no alert_rule_test expects it to fire"
        assert any(not c for c in cases), f"{name}: no alert_rule_test expects it silent"


def test_every_alert_fires_when_it_should_and_stays_silent_on_health_and_blips() -> None:
    fires, healthy, blip = (_tested(kind) for kind in TEST_KINDS)
    for name in _alerts():
        assert any(fires.get(name, [])), f"{name}: no 'fires:' group expects it to fire"
        for kind, cases in (("healthy", healthy), ("blip", blip)):
            assert cases.get(name), f"{name}: no '{kind}:' group tests it"
            assert not any(cases[name]), f"{name}: a '{kind}:' group expects it to fire"


def test_expected_alerts_carry_the_rule_severity_and_name_their_subject() -> None:
    """Each firing expectation has the rule's severity and every annotation, and the
    summary names the model, version and feature whenever the alert carries them."""
    alerts = _alerts()
    for name, cases in _tested("fires").items():
        rule = alerts[name]
        for expected in (e for case in cases for e in case):
            labels, annotations = expected["exp_labels"], expected["exp_annotations"]
            assert labels["severity"] == rule["labels"]["severity"], name
            assert set(annotations) == {"summary", "description", "runbook_url"}, name
            for label in ("model", "model_version", "feature"):
                if label in labels:
                    assert f"$labels.{label} }}}}" in rule["annotations"]["summary"], (
                        f"{name}: the summary does not name {label}"
                    )


def test_blip_tests_catch_rules_that_do_not_wait(promtool: str, tmp_path: Path) -> None:
    """With every persistence threshold at its minimum, every alert fires on its blip:
    the blip tests really exercise the waiting, each rule's silence is not an accident."""
    minimal = {
        "drift": {
            "dataset_windows": 1,
            "feature_windows": 1,
            "prediction_windows": 1,
            "sequential_for": "1s",
        },
        "quality": {"windows": 1},
        "performance": {"estimated_windows": 1, "realized_for": "1s", "coverage_low_for": "1s"},
        "pipeline": {
            "stalled_windows": 1,
            "not_covered_for": "1s",
            "no_records_for": "1m",
            "consumer_lag_for": "1s",
            "decode_errors_for": "1s",
            "late_records_for": "1s",
            "evaluation_slow_for": "1s",
            "evaluation_failed_for": "1s",
            "checkpoint_stale_after": "30s",
        },
        "availability": {
            "agent_down_for": "1s",
            "agent_absent_for": "1s",
            "source_down_for": "1s",
        },
    }
    overrides = tmp_path / "minimal.yaml"
    overrides.write_text(yaml.safe_dump(minimal))
    assert generate.main(["--thresholds", str(overrides), "--output-dir", str(tmp_path)]) == 0
    (tmp_path / "tests").mkdir()
    for path in TEST_FILES:
        shutil.copy(path, tmp_path / "tests" / path.name)
    result = _run(promtool, "test", "rules", *sorted((tmp_path / "tests").glob("*.yaml")))
    assert result.returncode != 0
    failed = set(re.findall(r"^\s*name: (.*),$", result.stdout + result.stderr, re.M))
    blips = {g["name"] for g in _test_groups() if g["name"].startswith("blip:")}
    assert blips, "no blip tests"
    assert blips <= failed, f"blip tests that still pass without waiting: {blips - failed}"


# -- generated files are up to date and deterministic ---------------------------------------


def test_checked_in_files_match_the_generator() -> None:
    result = _run(sys.executable, "-m", "alert_rules.generate", "--check")
    assert result.returncode == 0, result.stderr


def test_check_reports_a_stale_file(tmp_path: Path) -> None:
    assert generate.main(["--output-dir", str(tmp_path)]) == 0
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 0
    stale = tmp_path / alert_rules.RULES_FILE.name
    stale.write_text(stale.read_text().replace("severity: critical", "severity: info", 1))
    result = _run(sys.executable, "-m", "alert_rules.generate", "--check", "--output-dir", tmp_path)
    assert result.returncode == 1
    assert str(stale) in result.stderr
    assert str(tmp_path / alert_rules.PROMETHEUS_RULE_FILE.name) not in result.stderr


def test_generation_is_deterministic_and_marked_generated() -> None:
    thresholds = generate.load_thresholds()
    first, second = generate.outputs(thresholds), generate.outputs(thresholds)
    assert first == second
    for text in first.values():
        assert text.startswith("# generated by python3 -m alert_rules.generate; do not edit\n")


def test_thresholds_reach_the_rules(promtool: str, tmp_path: Path) -> None:
    """Five 2m windows: the dataset rule looks back 10m and wants 4 closes in it; the
    windows listed replace the shipped ones instead of adding to them."""
    overrides = tmp_path / "thresholds.yaml"
    overrides.write_text(
        "windows: {2m: 2m}\ndrift: {dataset_windows: 5}\n"
        "runbook_base_url: https://runbooks.test/r\n"
    )
    out = tmp_path / "out"
    assert generate.main(["--thresholds", str(overrides), "--output-dir", str(out)]) == 0
    rules_file = out / alert_rules.RULES_FILE.name
    rules = {r["alert"]: r for g in _load(rules_file)["groups"] for r in g["rules"]}
    expr = rules["DriftlineDatasetDrift"]["expr"]
    assert f'{m.DATASET_DRIFT_VERDICT.name}{{window="2m"}}[10m]' in expr
    assert re.search(r'changes\(\w+\{window="2m"\}\[10m\]\) >= 4$', expr)
    assert 'window="1m"' not in rules_file.read_text()
    assert 'window!~"2m"' in rules["DriftlineWindowNotCovered"]["expr"]
    assert rules["DriftlineDatasetDrift"]["annotations"]["runbook_url"] == (
        "https://runbooks.test/r#driftlinedatasetdrift"
    )
    assert _run(promtool, "check", "rules", rules_file).returncode == 0


REPORT_GROUPS = (
    "driftline.drift",
    "driftline.sequential",
    "driftline.attribution",
    "driftline.multivariate",
    "driftline.quality",
)


def test_shipped_rules_carry_no_report_link() -> None:
    assert generate.load_thresholds().report_base_url is None
    for name, rule in _alerts().items():
        assert "report_url" not in rule["annotations"], name


def test_report_base_url_links_exactly_the_drift_and_quality_alerts(
    promtool: str, tmp_path: Path
) -> None:
    overrides = tmp_path / "thresholds.yaml"
    overrides.write_text("report_base_url: https://reports.test/driftline/\n")
    out = tmp_path / "out"
    assert generate.main(["--thresholds", str(overrides), "--output-dir", str(out)]) == 0
    rules_file = out / alert_rules.RULES_FILE.name
    groups = {g["name"]: g["rules"] for g in _load(rules_file)["groups"]}
    assert set(REPORT_GROUPS) < set(groups)
    linked = {
        r["alert"] for rules in groups.values() for r in rules if "report_url" in r["annotations"]
    }
    expected = {r["alert"] for name in REPORT_GROUPS for r in groups[name]}
    assert expected and linked == expected
    for rule in (r for name in REPORT_GROUPS for r in groups[name]):
        # one slash after the base, whatever the base ends with
        assert rule["annotations"]["report_url"].startswith("https://reports.test/driftline/{{")
    manifest = _load(out / alert_rules.PROMETHEUS_RULE_FILE.name)
    assert manifest["spec"] == _load(rules_file)
    result = _run(promtool, "check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_report_url_renders_to_the_agents_latest_page(promtool: str, tmp_path: Path) -> None:
    """Prometheus renders the annotation, from an alert's labels, into the URL at which the
    agent's writer publishes that version's latest.html (monitor.report.store)."""
    from monitor.report.store import latest_url

    base = "https://reports.test/driftline"
    overrides = tmp_path / "thresholds.yaml"
    overrides.write_text(f"report_base_url: {base}\nquality: {{windows: 1}}\n")
    assert generate.main(["--thresholds", str(overrides), "--output-dir", str(tmp_path)]) == 0
    rules = _load(tmp_path / alert_rules.RULES_FILE.name)
    (rule,) = [
        r for g in rules["groups"] for r in g["rules"] if r["alert"] == "DriftlineMissingValues"
    ]
    # only the link is under test here; the other annotations have their own promtool tests
    rule["annotations"] = {"report_url": rule["annotations"]["report_url"]}
    only = tmp_path / "missing.rules.yaml"
    only.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [rule]}]}, sort_keys=False))
    labels = {
        "job": "driftline",
        "instance": "agent-0:9108",
        "model": "fraud-scorer",
        "model_version": "v2.1",
        "feature": "income",
        "check": "missing",
        "window": "1m",
    }
    selector = "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    case = {
        "rule_files": [str(only)],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "30s",
                "input_series": [
                    {"series": m.QUALITY_BREACHED.name + selector, "values": "1x4"},
                    {"series": m.QUALITY_RATIO.name + selector, "values": "0.4x4"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "1m",
                        "alertname": "DriftlineMissingValues",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": rule["labels"]["severity"], **labels},
                                "exp_annotations": {
                                    "report_url": latest_url(base, "fraud-scorer", "v2.1")
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "link_test.yaml"
    test_file.write_text(yaml.safe_dump(case, sort_keys=False))
    result = _run(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("report_base_url: reports.example.com\n", "report_base_url"),
        ("report_base_url: 'https://r.example/{{ $labels.job }}'\n", "report_base_url"),
        ("drift: {datset_windows: 3}\n", "drift.datset_windows"),
        ("pipeline: {no_records_for: 10 minutes}\n", "pipeline.no_records_for"),
        ("pipeline: {decode_error_ratio: 5}\n", "pipeline.decode_error_ratio"),
        ("quality: {windows: 0}\n", "quality.windows"),
        ('scrape_job: "a\\"b"\n', "scrape_job"),
        ("windows: {one minute: 1m}\n", "windows"),
        ("windows: {}\n", "windows"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_key(
    tmp_path: Path, content: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(generate.ThresholdsError, match=re.escape(key)):
        generate.load_thresholds(path)
    assert generate.main(["--thresholds", str(path), "--output-dir", str(tmp_path)]) == 2
    assert key in capsys.readouterr().err
    assert not (tmp_path / alert_rules.RULES_FILE.name).exists()


# -- the rules point only at what monitor.outputs.metrics defines ----------------------------

_METRIC = re.compile(r"\bdriftline_[a-z0-9_]+")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _undefined_metrics(text: str) -> set[str]:
    """``driftline_*`` names in ``text`` that no MetricDef exposes to PromQL."""
    exposed = set(m.BY_NAME)
    for d in m.ALL_METRICS:
        if d.kind == "histogram":
            exposed |= {d.name + suffix for suffix in _HISTOGRAM_SUFFIXES}
    return set(_METRIC.findall(text)) - exposed


def test_the_metric_check_can_fail() -> None:
    assert _undefined_metrics("rate(driftline_records[5m]) + driftline_nope") == {
        "driftline_records",
        "driftline_nope",
    }
    hist = m.WINDOW_EVALUATION_SECONDS.name
    assert _undefined_metrics(f"{hist}_bucket {hist}_sum {hist}_count {hist}_total") == {
        f"{hist}_total"
    }


def test_every_metric_in_a_rule_is_defined_in_monitor_metrics() -> None:
    for rule in _rules():
        assert _METRIC.search(rule["expr"]) or "up{" in rule["expr"], rule["alert"]
        assert not _undefined_metrics(rule["expr"]), rule["alert"]


def test_every_metric_in_the_runbooks_is_defined_in_monitor_metrics() -> None:
    assert not _undefined_metrics(RUNBOOKS.read_text())


_SELECTOR = re.compile(r"\b(driftline_[a-z0-9_]+)\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def test_rules_use_only_labels_their_metrics_have() -> None:
    for rule in _rules():
        expr, name = rule["expr"], rule["alert"]
        for metric, matchers in _SELECTOR.findall(expr):
            defn = m.BY_NAME.get(metric) or m.BY_NAME[metric.rsplit("_", 1)[0]]
            for label in re.findall(r"(\w+)\s*=", matchers):
                assert label in defn.labels, f"{name}: {metric} has no label {label}"
        for names in _GROUPING.findall(expr):
            for label in filter(None, (s.strip() for s in names.split(","))):
                assert label in m.LABELS or label in TARGET_LABELS, f"{name}: {label}"


def test_label_values_in_rules_are_ones_driftline_exports() -> None:
    checks = set()
    for rule in _rules():
        for value in re.findall(r'check="([^"]*)"', rule["expr"]):
            checks.add(value)
        for metric, value in re.findall(r'(driftline_\w+)\{[^}]*outcome="([^"]*)"', rule["expr"]):
            outcomes = m.LABEL_OUTCOMES if metric == m.LABELS_TOTAL.name else m.RECORD_OUTCOMES
            assert value in outcomes, rule["alert"]
    assert checks == set(QUALITY_CHECKS), "every quality check has its alert, and no other"


# -- annotations and runbooks ---------------------------------------------------------------


def test_every_rule_has_severity_summary_description_and_runbook() -> None:
    base = generate.load_thresholds().runbook_base_url
    for name, rule in _alerts().items():
        assert name.startswith("Driftline"), name
        assert rule["labels"]["severity"] in expr.SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"{base}#{name.lower()}", name


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _runbook_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    anchor = None
    for line in RUNBOOKS.read_text().splitlines():
        heading = re.match(r"^#{1,6} (.*)$", line)
        if heading:
            anchor = _github_anchor(heading.group(1))
            sections[anchor] = ""
        elif anchor is not None:
            sections[anchor] += line + "\n"
    return sections


def test_every_alert_has_a_runbook_section_at_its_anchor() -> None:
    sections = _runbook_sections()
    for name, rule in _alerts().items():
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in sections, f"docs/runbooks.md has no section #{anchor} for {name}"
        body = sections[anchor]
        for part in ("**What it means.**", "**How to check.**", "**What to do.**"):
            assert part in body, f"{name}: its runbook section lacks {part}"
    documented = {a for a in sections if a.startswith("driftline")}
    assert documented == {n.lower() for n in _alerts()}, "runbook sections of no alert"


def test_runbooks_explain_the_persistence_rule() -> None:
    assert "how-persistence-is-measured" in _runbook_sections()


# -- Alertmanager example -------------------------------------------------------------------


def test_alertmanager_example_is_valid_and_routes_driftline_alerts_to_the_agent(
    amtool: str,
) -> None:
    config = alert_rules.ALERTMANAGER_FILE
    result = _run(amtool, "check-config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in _alerts():
        routed = _run(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            f"alertname={name}",
            "model=credit",
            "model_version=v2",
        )
        assert routed.stdout.split() == [alert_rules.AGENT_RECEIVER], name
    other = _run(amtool, "config", "routes", "test", f"--config.file={config}", "alertname=X")
    assert alert_rules.AGENT_RECEIVER not in other.stdout


def test_alertmanager_example_authenticates_from_a_file_with_production_timings() -> None:
    config = _load(alert_rules.ALERTMANAGER_FILE)
    (receiver,) = [r for r in config["receivers"] if r["name"] == alert_rules.AGENT_RECEIVER]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"].endswith("/v1/alerts")
    auth = webhook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].startswith("/")
    assert "credentials" not in auth
    assert webhook["send_resolved"] is True
    route = config["route"]
    # production-sensible: batching and no notification storm
    assert route["group_wait"] != "0s" and route["group_interval"] != "1s"


def test_alertmanager_config_applies_test_overrides(amtool: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    config = alert_rules.alertmanager_config(
        "http://127.0.0.1:8765/v1/alerts", str(token), alert_rules.FAST_TIMINGS
    )
    assert config["route"]["group_wait"] == "0s"
    assert config["route"]["group_interval"] == "1s"
    (receiver,) = [r for r in config["receivers"] if r["name"] == alert_rules.AGENT_RECEIVER]
    webhook = receiver["webhook_configs"][0]
    assert webhook["url"] == "http://127.0.0.1:8765/v1/alerts"
    assert webhook["http_config"]["authorization"]["credentials_file"] == str(token)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = _run(amtool, "check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    # the shipped file is untouched
    assert _load(alert_rules.ALERTMANAGER_FILE)["route"]["group_wait"] == "30s"
    with pytest.raises(ValueError, match="group_wiat"):
        alert_rules.alertmanager_config(timings={"group_wiat": "0s"})


def test_the_docs_name_the_token_file_the_shipped_config_reads() -> None:
    # The Prometheus Operator mounts spec.secrets at /etc/alertmanager/secrets/<secret>/,
    # one file per key: a path one level shallower names a directory, not a token.
    config = _load(alert_rules.ALERTMANAGER_FILE)
    (receiver,) = [r for r in config["receivers"] if r["name"] == alert_rules.AGENT_RECEIVER]
    shipped = receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"]
    secret, key = re.fullmatch(r"/etc/alertmanager/secrets/([^/]+)/([^/]+)", shipped).groups()  # type: ignore[union-attr]
    doc = (ROOT / "docs" / "alerting.md").read_text()
    documented = set(re.findall(r"credentials_file:\s*(\S+)", doc))
    assert documented == {shipped}
    assert f"secrets: [{secret}]" in doc  # how the Secret is mounted
    assert f"key: {key}" in doc  # and how the agent gets the same Secret
