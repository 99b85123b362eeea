"""``POST /v1/alerts`` over real HTTP on 127.0.0.1: Alertmanager's webhook payloads,
authentication, validation, idempotency, and the policy decisions they cause."""

from __future__ import annotations

import copy
import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.actions.alerts import SeenKeys
from monitor.actions.audit import AuditLog, read_audit
from monitor.actions.decision import Decision
from monitor.actions.notifications import parse_notification
from monitor.actions.policy import PolicyEngine
from monitor.actions.routes import register
from monitor.config.rollback import RollbackSettings
from monitor.outputs.server import AgentServer

TOKEN_ENV = "DRIFTLINE_TEST_ALERTS_TOKEN"
TOKEN = "alerts-token-3f9a"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def alert(
    version: str,
    status: str = "firing",
    fingerprint: str | None = None,
    name: str = "DriftlineDatasetDrift",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": name,
            "model": "fraud",
            "model_version": version,
            "baseline": "reference",
            "severity": "critical",
            "window": "60s",
        },
        "annotations": {"summary": f"Dataset drift in fraud {version} for 3 windows"},
        "startsAt": "2024-06-01T10:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2024-06-01T10:20:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=driftline",
        "fingerprint": fingerprint or f"fp-{version}",
    }


def notification(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DriftlineDatasetDrift"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "driftline",
        "groupLabels": {"alertname": "DriftlineDatasetDrift"},
        "commonLabels": {"alertname": "DriftlineDatasetDrift", "model": "fraud"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


class Recorder:
    kind = "fake"

    def __init__(self) -> None:
        self.name = "abort"
        self.calls: list[str] = []

    def execute(self, decision: Decision) -> str:
        self.calls.append(decision.version)
        return "done"


class Setup:
    def __init__(self, tmp_path: Path, max_body: int) -> None:
        self.settings = RollbackSettings.model_validate(
            {
                "model": "fraud",
                "stable_version": "v1",
                "alerts": {"token_env": TOKEN_ENV, "max_body_bytes": max_body, "remember": 100},
                "policies": [
                    {
                        "name": "abort-on-alert",
                        "when": {"alert": "DriftlineDatasetDrift"},
                        "cooldown": 0,
                        "max_actions_per_hour": 100,
                        "actions": ["abort"],
                    }
                ],
                "actions": {
                    "abort": {"kind": "argo_rollouts", "namespace": "ml", "rollout": "{model}"}
                },
                "audit": {"path": str(tmp_path / "audit.jsonl")},
            }
        )
        self.action = Recorder()
        self.engine = PolicyEngine(
            self.settings, {"abort": self.action}, audit=AuditLog(self.settings.audit_path())
        )
        self.server = AgentServer("127.0.0.1", 0)
        self.routes = register(self.server, self.engine, self.settings)
        self.server.start()

    def post(
        self, body: bytes | dict[str, Any] | list[Any], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request(
                "POST", "/v1/alerts", body=data, headers=AUTH if headers is None else headers
            )
            resp = conn.getresponse()
            raw = resp.read()
            self.engine.flush(10)
            return resp.status, orjson.loads(raw) if raw else {}
        finally:
            conn.close()

    def audit(self) -> list[dict[str, Any]]:
        self.engine.flush(10)
        return list(read_audit(self.settings.audit_path()))

    def close(self) -> None:
        self.server.stop()
        self.engine.close()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    s = Setup(tmp_path, max_body=8192)
    yield s
    s.close()


def test_routes_are_registered(setup: Setup) -> None:
    assert ("POST", "/v1/alerts") in setup.routes
    assert ("POST", "/v1/alerts") in setup.server.routes()


def test_a_firing_alert_is_processed_and_triggers_the_policy(setup: Setup) -> None:
    status, body = setup.post(notification(alert("v2")))
    assert status == 200
    assert (body["received"], body["processed"], body["duplicates"]) == (1, 1, 0)
    (decision,) = body["decisions"]
    assert (decision["version"], decision["policy"]) == ("v2", "abort-on-alert")
    assert setup.action.calls == ["v2"]
    (line,) = setup.audit()
    assert line["outcome"] == "acted"
    assert line["trigger"]["kind"] == "alert"
    assert line["evidence"]["alerts"][0]["fingerprint"] == "fp-v2"


def test_a_grouped_notification_decides_per_alert(setup: Setup) -> None:
    status, body = setup.post(notification(alert("v2"), alert("v3"), alert("v1")))
    assert status == 200 and body["processed"] == 3
    outcomes = {d["version"]: d["outcome"] for d in body["decisions"]}
    # v1 is the stable version and has no bad windows of its own: protected
    assert outcomes["v1"] == "stable_version_protected"
    assert sorted(setup.action.calls) == ["v2", "v3"]


def test_repeats_are_processed_once(setup: Setup) -> None:
    payload = notification(alert("v2"), alert("v3"))
    assert setup.post(payload)[1]["processed"] == 2
    status, body = setup.post(copy.deepcopy(payload))  # Alertmanager's repeat_interval
    assert status == 200
    assert (body["processed"], body["duplicates"], body["decisions"]) == (0, 2, [])
    # a group that gained one alert: only the new one is processed
    status, body = setup.post(notification(alert("v2"), alert("v3"), alert("v4")))
    assert (body["processed"], body["duplicates"]) == (1, 2)
    assert sorted(setup.action.calls) == ["v2", "v3", "v4"]
    assert len(setup.audit()) == 3


def test_resolved_alerts_rearm_the_policy(setup: Setup) -> None:
    setup.post(notification(alert("v2")))
    status, body = setup.post(notification(alert("v2", "resolved"), status="resolved"))
    assert status == 200 and body["processed"] == 1 and body["decisions"] == []
    again = alert("v2")
    again["startsAt"] = "2024-06-01T11:00:00Z"  # a new episode of the same alert
    status, body = setup.post(notification(again))
    assert status == 200 and len(body["decisions"]) == 1
    assert setup.action.calls == ["v2", "v2"]
    assert [line["outcome"] for line in setup.audit()] == ["acted", "acted"]


def test_a_firing_alert_seen_with_a_new_end_time_is_already_acted_on(setup: Setup) -> None:
    setup.post(notification(alert("v2")))
    moved = alert("v2")
    moved["endsAt"] = "2024-06-01T10:04:00Z"  # not a repeat, but the same episode
    status, body = setup.post(notification(moved))
    assert status == 200
    assert [d["outcome"] for d in body["decisions"]] == ["already_acted"]
    assert setup.action.calls == ["v2"]


def _drop(doc: dict[str, Any], key: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc["alerts"][0] if key.startswith("alerts[0].") else doc
    del target[key.removeprefix("alerts[0].")]
    return doc


def _set(doc: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc["alerts"][0] if key.startswith("alerts[0].") else doc
    target[key.removeprefix("alerts[0].")] = value
    return doc


GOOD = notification(alert("v2"))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "no body"),
        (b"[1, 2]", "must be a JSON object"),
        (_set(GOOD, "version", "3"), "version must be '4'"),
        (_drop(GOOD, "version"), "version is missing"),
        (_drop(GOOD, "status"), "status is missing"),
        (_drop(GOOD, "receiver"), "receiver is missing"),
        (_drop(GOOD, "groupKey"), "groupKey is missing"),
        (_drop(GOOD, "commonLabels"), "commonLabels is missing"),
        (_drop(GOOD, "externalURL"), "externalURL is missing"),
        (_drop(GOOD, "alerts"), "alerts is missing"),
        (_set(GOOD, "alerts", {"a": 1}), "alerts must be an array"),
        (_set(GOOD, "status", "pending"), "status must be"),
        (_set(GOOD, "groupLabels", ["a"]), "groupLabels must be an object"),
        (_set(GOOD, "truncatedAlerts", "2"), "truncatedAlerts"),
        (_set(GOOD, "alerts", [3]), "alerts[0] must be an object"),
        (_drop(GOOD, "alerts[0].fingerprint"), "alerts[0].fingerprint is missing"),
        (_drop(GOOD, "alerts[0].startsAt"), "alerts[0].startsAt is missing"),
        (_drop(GOOD, "alerts[0].labels"), "alerts[0].labels is missing"),
        (_set(GOOD, "alerts[0].startsAt", "yesterday"), "not an RFC 3339 time"),
        (_set(GOOD, "alerts[0].endsAt", "2024-06-01"), "not an RFC 3339 time"),
        (_set(GOOD, "alerts[0].labels", {"model_version": 2}), "labels.model_version"),
        (_set(GOOD, "alerts[0].status", "silenced"), "alerts[0].status must be"),
        (_set(GOOD, "alerts[0].fingerprint", 7), "fingerprint must be a string"),
    ],
)
def test_malformed_payloads_get_400_with_the_reason(setup: Setup, body: Any, words: str) -> None:
    status, answer = setup.post(body)
    assert status == 400
    assert words in answer["error"]
    assert setup.action.calls == []


def test_a_truncated_group_is_accepted_and_reported(setup: Setup) -> None:
    status, body = setup.post(_set(GOOD, "truncatedAlerts", 5))
    assert status == 200 and body["truncated"] == 5
    # older Alertmanagers do not send the field at all
    status, body = setup.post(_drop(notification(alert("v3")), "truncatedAlerts"))
    assert status == 200 and body["processed"] == 1


def test_oversized_bodies_get_413(setup: Setup) -> None:
    many = notification(*[alert(f"v{i}", fingerprint=f"f{i}") for i in range(40)])
    data = orjson.dumps(many)
    assert len(data) > setup.settings.alerts.max_body_bytes
    status, body = setup.post(data)
    assert status == 413
    assert "max_body_bytes" in body["error"]
    assert setup.action.calls == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
)
def test_requests_without_the_right_token_get_401(setup: Setup, headers: dict[str, str]) -> None:
    status, body = setup.post(GOOD, headers)
    assert status == 401
    assert body["error"]
    assert TOKEN not in body["error"]
    assert setup.action.calls == []


def test_an_unset_token_variable_fails_closed(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    status, body = setup.post(GOOD)
    assert status == 401 and "not configured" in body["error"]


def test_other_methods_are_refused(setup: Setup) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", setup.server.port, timeout=10)
    try:
        conn.request("GET", "/v1/alerts", headers=AUTH)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 405
    finally:
        conn.close()


def test_the_memory_of_seen_notifications_is_bounded() -> None:
    seen = SeenKeys(2)
    assert seen.add("a") and seen.add("b")
    assert not seen.add("a")  # a repeat; "a" becomes the most recent
    assert seen.add("c")  # evicts "b", the least recent
    assert len(seen) == 2
    assert seen.add("b") and not seen.add("c")


def test_parsed_times_keep_the_sent_strings_and_read_nanoseconds() -> None:
    parsed = parse_notification(GOOD)
    (a,) = parsed.alerts
    assert a.starts_at == "2024-06-01T10:00:00.123456789Z"
    assert a.started == pytest.approx(1717236000.123456)
    assert a.ended == 0.0  # Go's zero time: not set
    assert a.name == "DriftlineDatasetDrift" and a.firing


def test_a_token_secret_ending_in_a_newline_is_accepted(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alertmanager trims its credentials_file; the Secret in the agent's environment is
    # not trimmed by Kubernetes, so the agent has to trim it
    monkeypatch.setenv(TOKEN_ENV, f"{TOKEN}\n")
    status, body = setup.post(GOOD)
    assert status == 200, body
    assert setup.post(GOOD, {"Authorization": "Bearer wrong-token"})[0] == 401
