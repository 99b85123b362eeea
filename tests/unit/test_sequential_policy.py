"""Rollback policies that require the sequential verdict (``when: sequential_drift``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from detectors.results import DriftResult, QualityResult, Sequential, TestResult, WindowReport
from monitor.actions.audit import AuditLog
from monitor.actions.decision import Decision
from monitor.actions.history import Window, window_problems
from monitor.actions.policy import PolicyEngine
from monitor.config.rollback import GatesConfig, RollbackSettings


class _Recorder:
    """An action that remembers what it was asked to do."""

    kind = "fake"
    name = "act"

    def __init__(self) -> None:
        self.calls: list[Decision] = []

    def execute(self, decision: Decision) -> str:
        self.calls.append(decision)
        return f"did {decision.version}"


def _report(index: int, fired: bool, dataset: bool = False) -> WindowReport:
    seq = Sequential(
        15.0 if fired else 2.0, 13.0, (index + 1) * 60.0 if fired else None, "location_up"
    )
    col = TestResult("age", "ks", 0.02, 0.6, 0.05, fired, sequential=seq)
    ds = Sequential(
        20.0 if dataset else 1.0, 16.0, (index + 1) * 60.0 if dataset else None, "dataset"
    )
    drift = DriftResult(float(fired), int(fired), 1, 0.5, fired or dataset, "none", (col,), ds)
    clean = DriftResult(0.0, 0, 0, 0.5, False, "none", ())
    return WindowReport(
        "fraud",
        "v2",
        index * 60.0,
        (index + 1) * 60.0,
        "f" * 64,
        100,
        drift,
        clean,
        QualityResult(rows=100),
    )


def test_window_problems_name_the_columns_whose_detector_fired() -> None:
    w = Window(0.0, 60.0, "time", {"reference": _report(0, True, dataset=True)})
    assert window_problems(w, ["sequential_drift"], ["reference"]) == [
        "sequential drift vs reference: dataset, age"
    ]
    quiet = Window(0.0, 60.0, "time", {"reference": _report(0, False)})
    assert window_problems(quiet, ["sequential_drift"], ["reference"]) == []
    # a window whose own test flagged the column, without a sequential alarm: not this condition
    flagged = _report(0, False)
    col = replace(flagged.drift.columns[0], drifted=True)
    flagged = replace(flagged, drift=replace(flagged.drift, columns=(col,)))
    assert (
        window_problems(
            Window(0.0, 60.0, "time", {"reference": flagged}), ["sequential_drift"], ["reference"]
        )
        == []
    )


def test_policy_acts_on_the_window_where_a_sequential_detector_fired(tmp_path: Path) -> None:
    settings = RollbackSettings.model_validate(
        {
            "model": "fraud",
            "policies": [
                {
                    "name": "p",
                    "when": "sequential_drift",
                    "for_windows": 1,
                    "cooldown": 0,
                    "actions": ["act"],
                }
            ],
            "actions": {
                "act": {"kind": "webhook", "url": "http://127.0.0.1:9/", "secret_env": "S"}
            },
            "audit": {"path": str(tmp_path / "decisions.jsonl")},
        }
    )
    recorder = _Recorder()
    engine = PolicyEngine(settings, {"act": recorder}, audit=AuditLog(settings.audit_path()))
    try:
        for i in range(5):
            assert engine.observe_report(_report(i, False)) == []
        decisions = engine.observe_report(_report(5, True))
        assert engine.flush(10)
        assert [d.outcome for d in decisions] == ["acted"]
        assert [d.version for d in recorder.calls] == ["v2"]
    finally:
        engine.close()


def test_gates_keep_their_default_conditions() -> None:
    assert GatesConfig().fail_on == ["dataset_drift", "prediction_drift", "quality_breach"]


def test_report_wording_gives_the_sequential_verdict_and_the_window_evidence() -> None:
    from monitor.report.wording import decision_text, window_flag

    r = _report(0, True).drift.columns[0]
    assert not window_flag(r)  # p = 0.6: the window alone shows nothing
    text = decision_text(r)
    assert text.startswith("sequential CUSUM 15 > threshold 13 (location_up)")
    assert "this window alone: p = 0.6 ≥ 0.05" in text
    quiet = _report(0, False).drift.columns[0]
    assert decision_text(quiet).startswith("sequential CUSUM 2 ≤ threshold 13")
    plain = replace(quiet, sequential=None)
    assert decision_text(plain) == "p = 0.6 ≥ 0.05"
