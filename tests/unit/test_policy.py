"""The rollback policy engine: persistence, hysteresis, guards, audit log and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from detectors.results import DriftResult, QualityCheck, QualityResult, TestResult, WindowReport
from monitor.actions import ActionError
from monitor.actions.audit import AuditLog, read_audit
from monitor.actions.decision import OUTCOMES, Decision
from monitor.actions.notifications import Alert
from monitor.actions.policy import PolicyEngine
from monitor.config.rollback import ActionConfig, PolicyConfig, RollbackSettings
from monitor.outputs.exporter import Exporter

WINDOW = 60.0
T0 = 1_700_000_000.0


def drift_result(drifted: bool, feature: str = "age") -> DriftResult:
    columns = (
        TestResult(feature, "psi", 0.4 if drifted else 0.01, None, 0.2, drifted),
        TestResult("city", "jensen_shannon", 0.01, None, 0.1, False),
    )
    share = 0.5 if drifted else 0.0
    return DriftResult(share, int(drifted), 2, 0.5, drifted, "none", columns)


def make_report(
    version: str,
    index: int,
    *,
    drift: bool = False,
    prediction: bool = False,
    quality: bool = False,
    baseline: str = "reference",
    model: str = "fraud",
) -> WindowReport:
    """Window ``index`` (0, 1, ...) of ``version``; clean unless told otherwise."""
    checks = (QualityCheck("age", "missing", 0.4 if quality else 0.0, 0.0, 0.05, quality, 40),)
    return WindowReport(
        model=model,
        model_version=version,
        window_start=T0 + index * WINDOW,
        window_end=T0 + (index + 1) * WINDOW,
        reference_hash="feedbeef" * 4,
        rows=100,
        drift=drift_result(drift),
        prediction_drift=drift_result(prediction, "score"),
        quality=QualityResult(rows=100, checks=checks),
        baseline=baseline,
    )


def make_alert(
    name: str, version: str | None, status: str = "firing", fingerprint: str = "fp1"
) -> Alert:
    labels = {"alertname": name, "model": "fraud"}
    if version is not None:
        labels["model_version"] = version
    return Alert(
        status=status,
        labels=labels,
        annotations={"summary": f"{name} on {version}"},
        starts_at="2024-06-01T10:00:00Z",
        ends_at="0001-01-01T00:00:00Z" if status == "firing" else "2024-06-01T10:30:00Z",
        generator_url="http://prometheus/graph",
        fingerprint=fingerprint,
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """An action that remembers what it was asked to do (and can be made to fail)."""

    kind = "fake"

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Decision] = []
        self.fail = False

    def execute(self, decision: Decision) -> str:
        self.calls.append(decision)
        if self.fail:
            raise ActionError("the API said no")
        return f"did {decision.version}"


class Harness:
    def __init__(self, tmp_path: Path, policy: dict[str, Any], stable: str | None = "v1"):
        self.clock = Clock()
        self.names = list(policy.get("actions", ["act"]))
        settings = RollbackSettings.model_validate(
            {
                "model": "fraud",
                "stable_version": stable,
                "policies": [{"name": "p", "actions": self.names, **policy}],
                "actions": {
                    n: {"kind": "webhook", "url": "http://127.0.0.1:9/", "secret_env": "S"}
                    for n in self.names
                },
                "audit": {"path": str(tmp_path / "decisions.jsonl")},
            }
        )
        self.actions = {n: Recorder(n) for n in self.names}
        self.exporter = Exporter("fraud", "60s", "feedbeef")
        self.audit_path = settings.audit_path()
        self.engine = PolicyEngine(
            settings,
            self.actions,
            exporter=self.exporter,
            audit=AuditLog(self.audit_path),
            clock=self.clock,
        )
        self.index: dict[str, int] = {}

    def window(self, version: str, **kinds: bool) -> list[Decision]:
        """The next window of ``version``; returns the decisions, after they settled."""
        i = self.index.get(version, 0)
        self.index[version] = i + 1
        self.clock.now += WINDOW
        decisions = self.engine.observe_report(make_report(version, i, **kinds))
        assert self.engine.flush(10)
        return decisions

    def outcomes(self, decisions: list[Decision]) -> list[str]:
        return [d.outcome for d in decisions]

    def audit(self) -> list[dict[str, Any]]:
        assert self.engine.flush(10)
        return list(read_audit(self.audit_path))

    def counted(self, version: str, outcome: str, action: str = "act") -> float:
        value = self.exporter.registry.get_sample_value(
            "driftline_rollback_decisions_total",
            {"model": "fraud", "model_version": version, "action": action, "outcome": outcome},
        )
        return value or 0.0

    def calls(self, action: str = "act") -> list[str]:
        return [d.version for d in self.actions[action].calls]


@pytest.fixture
def harness_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(policy: dict[str, Any], stable: str | None = "v1") -> Harness:
        h = Harness(tmp_path, policy, stable)
        made.append(h)
        return h

    yield make
    for h in made:
        h.engine.close()


BASE = {"when": ["dataset_drift", "quality_breach"], "cooldown": 0, "max_actions_per_hour": 100}


def test_acts_only_once_the_condition_persists_for_k_windows(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 3})
    assert h.window("v2", drift=True) == []
    assert h.window("v2", quality=True) == []  # another listed condition keeps the streak
    assert h.calls() == []
    decisions = h.window("v2", drift=True)
    assert h.outcomes(decisions) == ["acted"]
    assert h.calls() == ["v2"]
    # a clean window in between breaks the streak
    h2 = harness_factory({**BASE, "for_windows": 2})
    h2.window("v3", drift=True)
    h2.window("v3")
    assert h2.window("v3", drift=True) == []
    assert h2.calls() == []


def test_conditions_not_listed_do_not_count(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "when": "dataset_drift", "for_windows": 1})
    assert h.window("v2", prediction=True, quality=True) == []
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]


def test_hysteresis_rearms_only_after_m_clean_windows(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 2, "clear_windows": 2})
    h.window("v2", drift=True)
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]
    # still bad: audited, nothing done
    assert h.outcomes(h.window("v2", drift=True)) == ["already_acted"]
    # one clean window is not enough to re-arm
    h.window("v2")
    h.window("v2", drift=True)
    assert h.outcomes(h.window("v2", drift=True)) == ["already_acted"]
    assert h.calls() == ["v2"]
    # two clean windows re-arm; the next persisting problem acts again
    h.window("v2")
    h.window("v2")
    h.window("v2", drift=True)
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]
    assert h.calls() == ["v2", "v2"]


def test_cooldown_holds_back_a_second_action_on_the_same_version(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1, "clear_windows": 1, "cooldown": "10m"})
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]
    h.window("v2")  # re-armed
    assert h.outcomes(h.window("v2", drift=True)) == ["cooldown"]  # 2 minutes later
    h.clock.now += 600
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]
    assert h.calls() == ["v2", "v2"]
    # a cooldown is per version: another version is not held back by it
    assert h.outcomes(h.window("v3", drift=True)) == ["acted"]


def test_max_actions_per_hour_across_versions(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1, "max_actions_per_hour": 2})
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]
    assert h.outcomes(h.window("v3", drift=True)) == ["acted"]
    assert h.outcomes(h.window("v4", drift=True)) == ["rate_limited"]
    assert h.calls() == ["v2", "v3"]
    h.clock.now += 3600
    # still armed (a suppressed decision does not disarm): acts once the hour has passed
    assert h.outcomes(h.window("v4", drift=True)) == ["acted"]
    assert h.counted("v4", "rate_limited") == 1
    assert h.counted("v4", "acted") == 1


def test_dry_run_decides_and_records_but_calls_nothing(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1, "dry_run": True})
    assert h.outcomes(h.window("v2", drift=True)) == ["dry_run"]
    assert h.outcomes(h.window("v2", drift=True)) == ["already_acted"]
    assert h.calls() == []
    lines = h.audit()
    assert [line["outcome"] for line in lines] == ["dry_run", "already_acted"]
    assert all(line["dry_run"] for line in lines)
    assert h.counted("v2", "dry_run") == 1


def test_a_bad_canary_never_rolls_back_the_clean_stable_version(harness_factory: Any) -> None:
    h = harness_factory(
        {**BASE, "when": ["dataset_drift", {"alert": "DriftlineDatasetDrift"}], "for_windows": 2}
    )
    for _ in range(3):
        h.window("v1")  # stable: clean
    h.window("v2", drift=True)
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]
    assert h.calls() == ["v2"]
    # an alert that names the stable version while its own windows are clean
    decisions = h.engine.observe_alerts([make_alert("DriftlineDatasetDrift", "v1")])
    assert h.engine.flush(10)
    assert [(d.version, d.outcome) for d in decisions] == [("v1", "stable_version_protected")]
    assert h.calls() == ["v2"]
    assert h.counted("v1", "stable_version_protected") == 1
    assert h.counted("v1", "acted") == 0


def test_the_stable_version_can_be_acted_on_when_its_own_reports_are_bad(
    harness_factory: Any,
) -> None:
    h = harness_factory({**BASE, "when": {"alert": "DriftlineDatasetDrift"}, "for_windows": 2})
    h.window("v1", drift=True)
    h.window("v1", drift=True)
    decisions = h.engine.observe_alerts([make_alert("DriftlineDatasetDrift", "v1")])
    assert h.engine.flush(10)
    assert [(d.version, d.outcome) for d in decisions] == [("v1", "acted")]
    assert h.calls() == ["v1"]


def test_a_stable_comparison_report_counts_against_the_canary(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1})
    clean = make_report("v2", 0)
    versus_stable = make_report("v2", 0, drift=True, baseline="version:v1")
    assert h.engine.observe_report(clean) == []
    decisions = h.engine.observe_report(versus_stable)
    assert h.engine.flush(10)
    assert [(d.version, d.outcome) for d in decisions] == [("v2", "acted")]
    # only comparisons with the reference: the stable comparison is ignored
    h2 = harness_factory({**BASE, "for_windows": 1, "baselines": ["reference"]})
    h2.engine.observe_report(clean)
    assert h2.engine.observe_report(versus_stable) == []


def test_one_decision_per_window_whatever_the_number_of_baselines(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1})
    first = h.engine.observe_report(make_report("v2", 0, drift=True))
    second = h.engine.observe_report(make_report("v2", 0, drift=True, baseline="version:v1"))
    assert h.engine.flush(10)
    assert len(first) == 1 and second == []
    assert h.calls() == ["v2"]


def test_a_failed_action_is_recorded_and_tried_again(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1})
    h.actions["act"].fail = True
    decisions = h.window("v2", drift=True)
    assert h.outcomes(decisions) == ["action_failed"]
    assert h.counted("v2", "action_failed") == 1
    h.actions["act"].fail = False
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]  # re-armed by the failure
    lines = h.audit()
    assert [line["outcome"] for line in lines] == ["action_failed", "acted"]
    assert "the API said no" in lines[0]["detail"]


def test_every_action_of_a_decision_gets_an_audit_line_and_a_count(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1, "actions": ["abort", "notify"]})
    h.actions["notify"].fail = True
    decisions = h.window("v2", drift=True, quality=True)
    # one action worked: the decision counts as acted and stays disarmed
    assert h.outcomes(decisions) == ["acted"]
    lines = h.audit()
    assert [(line["action"], line["outcome"]) for line in lines] == [
        ("abort", "acted"),
        ("notify", "action_failed"),
    ]
    assert lines[0]["decision_id"] == lines[1]["decision_id"] == decisions[0].id
    assert h.counted("v2", "acted", "abort") == 1
    assert h.counted("v2", "action_failed", "notify") == 1
    # the evidence names the window, the drifted feature, the breach and the reference
    evidence = lines[0]["evidence"]["reports"][0]
    assert evidence["window"] == {"start": T0, "end": T0 + WINDOW, "kind": "time"}
    assert evidence["reference_hash"] == "feedbeef" * 4
    assert [c["feature"] for c in evidence["dataset_drift"]["drifted_columns"]] == ["age"]
    assert evidence["quality"]["breaches"][0]["check"] == "missing"
    assert lines[0]["trigger"]["kind"] == "windows"
    assert "dataset drift" in lines[0]["reason"]


def test_the_decision_id_is_stable_for_the_same_episode(tmp_path: Path) -> None:
    ids = []
    for run in range(2):
        h = Harness(tmp_path / str(run), {**BASE, "for_windows": 2})
        h.window("v2", drift=True)
        ids.append(h.window("v2", drift=True)[0].id)
        h.engine.close()
    assert ids[0] == ids[1]  # a replay after a restart decides the same decision


def test_alerts_trigger_policies_and_resolve_rearms(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "when": {"alert": "DriftlinePredictionDrift"}})
    alert = make_alert("DriftlinePredictionDrift", "v2")
    decisions = h.engine.observe_alerts([alert])
    assert h.engine.flush(10)
    assert [(d.version, d.outcome) for d in decisions] == [("v2", "acted")]
    assert decisions[0].trigger["fingerprint"] == "fp1"
    # the same alert again (e.g. its endsAt moved): nothing more is done
    again = make_alert("DriftlinePredictionDrift", "v2")
    assert [d.outcome for d in h.engine.observe_alerts([again])] == ["already_acted"]
    # resolved: the policy re-arms; a new episode acts again
    h.engine.observe_alerts([make_alert("DriftlinePredictionDrift", "v2", "resolved")])
    later = make_alert("DriftlinePredictionDrift", "v2", fingerprint="fp1")
    later = Alert(**{**later.__dict__, "starts_at": "2024-06-01T12:00:00Z"})
    decisions = h.engine.observe_alerts([later])
    assert h.engine.flush(10)
    assert [d.outcome for d in decisions] == ["acted"]
    assert h.calls() == ["v2", "v2"]
    # other alert names and other models are not this policy's business
    assert h.engine.observe_alerts([make_alert("DriftlineMissingValues", "v2")]) == []
    other = Alert(**{**alert.__dict__, "labels": {**alert.labels, "model": "other"}})
    assert h.engine.observe_alerts([other]) == []


def test_an_alert_without_a_version_targets_the_version_with_bad_windows(
    harness_factory: Any,
) -> None:
    h = harness_factory({**BASE, "when": {"alert": "DriftlineDatasetDrift"}, "for_windows": 1})
    unlabelled = make_alert("DriftlineDatasetDrift", None)
    assert [d.outcome for d in h.engine.observe_alerts([unlabelled])] == ["no_target"]
    h.window("v1")
    h.window("v2", drift=True)
    decisions = h.engine.observe_alerts(
        [make_alert("DriftlineDatasetDrift", None, fingerprint="x")]
    )
    assert h.engine.flush(10)
    assert [(d.version, d.outcome) for d in decisions] == [("v2", "acted")]
    assert h.counted("", "no_target") == 1


def test_version_globs_choose_what_a_policy_watches(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1, "versions": "canary-*"})
    assert h.window("v2", drift=True) == []
    assert h.outcomes(h.window("canary-7", drift=True)) == ["acted"]


def test_audit_lines_are_json_with_every_field(harness_factory: Any) -> None:
    h = harness_factory({**BASE, "for_windows": 1})
    h.window("v2", drift=True)
    (line,) = h.audit()
    for key in ("ts", "decision_id", "policy", "model", "version", "action", "outcome"):
        assert key in line
    assert (line["policy"], line["model"], line["version"]) == ("p", "fraud", "v2")
    assert line["stable_version"] == "v1"
    assert set(OUTCOMES) >= {line["outcome"]}


def test_the_engine_survives_a_failing_audit_log(harness_factory: Any, tmp_path: Path) -> None:
    h = harness_factory({**BASE, "for_windows": 1})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    h.engine.audit = AuditLog(blocker / "audit.jsonl")
    assert h.outcomes(h.window("v2", drift=True)) == ["acted"]
    assert h.engine.audit.failures == 1
    assert h.counted("v2", "acted") == 1


# -- configuration -------------------------------------------------------------------------


def _error(exc: ValidationError) -> tuple[str, str]:
    """(dotted key, message) of the first error, as monitor.config.messages reports them."""
    err = exc.errors()[0]
    ctx = err.get("ctx") or {}
    parts = [str(p) for p in err["loc"]] + ([str(ctx["key"])] if ctx.get("key") else [])
    return ".".join(parts), str(ctx.get("message", err["msg"]))


def test_policy_yaml_shapes_are_normalised() -> None:
    policy = PolicyConfig.model_validate(
        {
            "name": "p",
            "when": ["dataset_drift", {"alert": "DriftlineDatasetDrift"}],
            "cooldown": "10m",
            "actions": "abort",
        }
    )
    assert policy.when == ["dataset_drift", "alert:DriftlineDatasetDrift"]
    assert policy.cooldown == 600.0
    assert policy.actions == ["abort"]
    assert policy.report_conditions == ("dataset_drift",)
    assert policy.alert_names == ("DriftlineDatasetDrift",)
    again = PolicyConfig.model_validate(policy.model_dump(mode="json"))
    assert again == policy


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"when": "drift"}, "when", "dataset_drift"),
        ({"when": [{"alert": 3}]}, "when", "alert"),
        ({"actions": []}, "actions", "empty"),
    ],
)
def test_bad_policies_name_the_key_and_the_fix(data: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        PolicyConfig.model_validate({"name": "p", "when": "dataset_drift", "actions": "a", **data})
    got_key, message = _error(exc.value)
    assert got_key == key and words in message


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"kind": "webhook", "url": "http://x/"}, "secret_env"),
        ({"kind": "webhook", "url": "ftp://x/", "secret_env": "S"}, "url"),
        ({"kind": "webhook", "url": "http://x/", "secret_env": "s3cr3t value"}, "secret_env"),
        ({"kind": "argo_rollouts", "rollout": "{model}"}, "namespace"),
        ({"kind": "argo_rollouts", "namespace": "ml", "rollout": "{team}"}, "rollout"),
        ({"kind": "kserve", "namespace": "ml", "inference_service": "m", "url": "http://x"}, "url"),
    ],
)
def test_bad_actions_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ActionConfig.model_validate(data)
    got_key, message = _error(exc.value)
    assert got_key == key
    assert "s3cr3t" not in message


def test_a_policy_naming_a_missing_action_is_an_error() -> None:
    with pytest.raises(ValidationError) as exc:
        RollbackSettings.model_validate(
            {
                "model": "fraud",
                "policies": [{"name": "p", "when": "dataset_drift", "actions": ["nope"]}],
            }
        )
    key, message = _error(exc.value)
    assert key == "policies[0].actions" and "nope" in message


def test_action_name_templates_fill_model_and_version() -> None:
    action = ActionConfig.model_validate(
        {"kind": "argo_rollouts", "namespace": "ml", "rollout": "{model}-{version}"}
    )
    assert action.target_name("fraud", "v2") == "fraud-v2"


def test_printed_settings_load_back_unchanged() -> None:
    settings = RollbackSettings.model_validate(
        {
            "model": "fraud",
            "policies": [
                {"name": "p", "when": ["dataset_drift", {"alert": "X"}], "actions": ["a", "b"]}
            ],
            "actions": {
                "a": {"kind": "kserve", "namespace": "ml", "inference_service": "{model}"},
                "b": {"kind": "webhook", "url": "http://hooks/", "secret_env": "S"},
            },
        }
    )
    printed = settings.model_dump(mode="json")
    assert printed["actions"]["a"]["url"] is None  # every key is printed, defaults included
    assert RollbackSettings.model_validate(printed) == settings
