"""The Argo Rollouts and Flagger gate endpoints over real HTTP on 127.0.0.1, and the
shipped examples that point at them."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import yaml

from detectors.results import DriftResult, QualityCheck, QualityResult, TestResult, WindowReport
from monitor.actions.notifications import Alert
from monitor.actions.policy import PolicyEngine
from monitor.actions.routes import (
    ARGO_GATE_PATH,
    FLAGGER_ROLLBACK_PATH,
    FLAGGER_ROLLOUT_PATH,
    register,
)
from monitor.config.rollback import RollbackSettings
from monitor.outputs.server import AgentServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN_ENV = "DRIFTLINE_TEST_GATE_TOKEN"
TOKEN = "gate-token-77e1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_report(
    version: str,
    index: int,
    *,
    drift: bool = False,
    quality: bool = False,
    baseline: str = "reference",
) -> WindowReport:
    columns = (TestResult("age", "psi", 0.4 if drift else 0.01, None, 0.2, drift),)
    result = DriftResult(1.0 if drift else 0.0, int(drift), 1, 0.5, drift, "none", columns)
    checks = (QualityCheck("age", "missing", 0.3 if quality else 0.0, 0.0, 0.05, quality, 30),)
    return WindowReport(
        model="fraud",
        model_version=version,
        window_start=1000.0 + 60 * index,
        window_end=1060.0 + 60 * index,
        reference_hash="0" * 16,
        rows=100,
        drift=result,
        prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none"),
        quality=QualityResult(rows=100, checks=checks),
        baseline=baseline,
    )


class Gates:
    def __init__(self, tmp_path: Path, gates: dict[str, Any]) -> None:
        settings = RollbackSettings.model_validate(
            {
                "model": "fraud",
                "stable_version": "v1",
                "alerts": {"token_env": TOKEN_ENV, "gates": gates},
                "audit": {"path": str(tmp_path / "audit.jsonl")},
            }
        )
        self.engine = PolicyEngine(settings, {})
        self.server = AgentServer("127.0.0.1", 0)
        self.routes = register(self.server, self.engine)
        self.server.start()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        data = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=AUTH if headers is None else headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, orjson.loads(raw) if raw else {}
        finally:
            conn.close()

    def argo(self, query: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        return self.call("GET", f"{ARGO_GATE_PATH}?{query}", headers=headers)

    def close(self) -> None:
        self.server.stop()
        self.engine.close()


@pytest.fixture
def gates_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    made: list[Gates] = []

    def make(**gates: Any) -> Gates:
        g = Gates(tmp_path, gates)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


def flagger_body(version: str | None = "v2", **metadata: str) -> dict[str, Any]:
    meta = {"model": "fraud", **metadata}
    if version is not None:
        meta["version"] = version
    return {
        "name": "fraud-scorer",
        "namespace": "ml",
        "phase": "Progressing",
        "checksum": "85d557f47b",
        "metadata": meta,
    }


# -- Argo Rollouts -------------------------------------------------------------------------


def test_argo_gate_says_ok_for_a_clean_canary(gates_factory: Any) -> None:
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    status, body = g.argo("model=fraud&version=v2")
    assert status == 200
    assert body["ok"] is True  # what `jsonPath: "{$.ok}"` hands to `result == true`
    assert (body["model"], body["version"], body["windows"]) == ("fraud", "v2", 1)
    assert body["reason"]


def test_argo_gate_says_not_ok_while_the_canary_drifts(gates_factory: Any) -> None:
    g = gates_factory()
    g.engine.observe_report(make_report("v1", 0))  # the stable version is fine
    g.engine.observe_report(make_report("v2", 0, drift=True))
    status, body = g.argo("model=fraud&version=v2")
    assert status == 200 and body["ok"] is False
    assert "dataset drift" in body["reason"] and "age" in body["reason"]
    assert g.argo("model=fraud&version=v1")[1]["ok"] is True
    g.engine.observe_report(make_report("v2", 1, quality=True))
    status, body = g.argo("version=v2")  # the model defaults to the agent's
    assert body["ok"] is False and "quality breach" in body["reason"]


def test_argo_gate_cannot_judge_without_a_window(gates_factory: Any) -> None:
    g = gates_factory()
    status, body = g.argo("model=fraud&version=v9")
    assert status == 503
    assert "no window" in body["error"]
    status, body = g.argo("model=fraud")
    assert status == 400 and "version" in body["error"]


def test_argo_gate_looks_at_the_configured_number_of_windows(gates_factory: Any) -> None:
    g = gates_factory(windows=2)
    g.engine.observe_report(make_report("v2", 0, drift=True))
    g.engine.observe_report(make_report("v2", 1))
    status, body = g.argo("version=v2")
    assert status == 200 and body["ok"] is False and body["windows"] == 2
    g.engine.observe_report(make_report("v2", 2))
    assert g.argo("version=v2")[1]["ok"] is True


def test_the_stable_comparison_counts_unless_excluded(gates_factory: Any) -> None:
    both = gates_factory()
    both.engine.observe_report(make_report("v2", 0))
    both.engine.observe_report(make_report("v2", 0, drift=True, baseline="version:v1"))
    status, body = both.argo("version=v2")
    assert status == 200 and body["ok"] is False and "version:v1" in body["reason"]
    reference_only = gates_factory(baselines=["reference"])
    reference_only.engine.observe_report(make_report("v2", 0))
    reference_only.engine.observe_report(make_report("v2", 0, drift=True, baseline="version:v1"))
    assert reference_only.argo("version=v2")[1]["ok"] is True


def test_a_firing_alert_listed_in_fail_on_fails_the_gate(gates_factory: Any) -> None:
    g = gates_factory(fail_on=["dataset_drift", {"alert": "DriftlinePredictionDrift"}])
    g.engine.observe_report(make_report("v2", 0))
    alert = Alert(
        status="firing",
        labels={"alertname": "DriftlinePredictionDrift", "model": "fraud", "model_version": "v2"},
        annotations={},
        starts_at="2024-06-01T10:00:00Z",
        ends_at="0001-01-01T00:00:00Z",
        generator_url="",
        fingerprint="f1",
    )
    g.engine.observe_alerts([alert])
    body = g.argo("version=v2")[1]
    assert body["ok"] is False and body["firing_alerts"] == ["DriftlinePredictionDrift"]
    g.engine.observe_alerts([Alert(**{**alert.__dict__, "status": "resolved"})])
    assert g.argo("version=v2")[1]["ok"] is True


def test_argo_gate_requires_the_bearer_token(gates_factory: Any) -> None:
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    assert g.argo("version=v2", headers={})[0] == 401
    assert g.argo("version=v2", headers={"Authorization": "Bearer nope"})[0] == 401


def test_gates_can_be_opened(gates_factory: Any) -> None:
    g = gates_factory(auth="none")
    g.engine.observe_report(make_report("v2", 0))
    assert g.argo("version=v2", headers={})[0] == 200
    assert g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body(), headers={})[0] == 200


def test_gates_can_have_their_own_token(
    gates_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_TEST_OTHER_TOKEN", "other")
    g = gates_factory(token_env="DRIFTLINE_TEST_OTHER_TOKEN")
    g.engine.observe_report(make_report("v2", 0))
    assert g.argo("version=v2")[0] == 401  # the alerts token is not the gates' token
    assert g.argo("version=v2", headers={"Authorization": "Bearer other"})[0] == 200


# -- Flagger -------------------------------------------------------------------------------


def test_flagger_rollout_hook_passes_a_clean_canary_and_fails_a_drifting_one(
    gates_factory: Any,
) -> None:
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    status, body = g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body())
    assert status == 200 and body["ok"] is True
    assert (body["canary"], body["checksum"]) == ("ml/fraud-scorer", "85d557f47b")
    g.engine.observe_report(make_report("v2", 1, drift=True))
    status, body = g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body())
    assert status == 412 and body["ok"] is False
    assert "dataset drift" in body["reason"]


def test_flagger_rollback_hook_is_inverted(gates_factory: Any) -> None:
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    assert g.call("POST", FLAGGER_ROLLBACK_PATH, flagger_body())[0] == 412  # healthy: stay
    g.engine.observe_report(make_report("v2", 1, quality=True))
    status, body = g.call("POST", FLAGGER_ROLLBACK_PATH, flagger_body())
    assert status == 200 and body["ok"] is False  # 200: roll back now


def test_flagger_hooks_without_data_never_pass(gates_factory: Any) -> None:
    g = gates_factory()
    assert g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body("v7"))[0] == 503
    assert g.call("POST", FLAGGER_ROLLBACK_PATH, flagger_body("v7"))[0] == 503


def test_flagger_version_from_query_parameters(gates_factory: Any) -> None:
    g = gates_factory()
    g.engine.observe_report(make_report("v3", 0, drift=True))
    path = f"{FLAGGER_ROLLOUT_PATH}?model=fraud&version=v3"
    status, body = g.call("POST", path, flagger_body(version=None))
    assert status == 412 and body["version"] == "v3"
    status, body = g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body(version=None))
    assert status == 400 and "version" in body["error"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{oops", "not valid JSON"),
        (b"", "no body"),
        ({"namespace": "ml", "phase": "Progressing"}, "name is missing"),
        ({"name": "c", "namespace": "ml", "phase": 3}, "phase must be a string"),
        ({"name": "c", "namespace": "ml", "phase": "P", "metadata": ["x"]}, "metadata must be"),
        ({"name": "c", "namespace": "ml", "phase": "P", "metadata": {"v": 2}}, "metadata.v"),
    ],
)
def test_flagger_malformed_bodies_get_400(gates_factory: Any, body: Any, words: str) -> None:
    g = gates_factory()
    status, answer = g.call("POST", FLAGGER_ROLLOUT_PATH, body)
    assert status == 400 and words in answer["error"]


def test_flagger_token_in_metadata_or_header(gates_factory: Any) -> None:
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    assert g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body(token=TOKEN), headers={})[0] == 200
    assert g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body(), headers=AUTH)[0] == 200
    status, body = g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body(token="guess"), headers={})
    assert status == 401 and "invalid" in body["error"]
    status, body = g.call("POST", FLAGGER_ROLLBACK_PATH, flagger_body(), headers={})
    assert status == 401 and "metadata.token" in body["error"]
    # unauthenticated garbage is refused before it is parsed
    assert g.call("POST", FLAGGER_ROLLOUT_PATH, b"{oops", headers={})[0] == 401


def test_routes_are_all_registered(gates_factory: Any) -> None:
    g = gates_factory()
    assert set(g.routes) == {
        ("POST", "/v1/alerts"),
        ("GET", ARGO_GATE_PATH),
        ("POST", FLAGGER_ROLLOUT_PATH),
        ("POST", FLAGGER_ROLLBACK_PATH),
    }


# -- the shipped examples ------------------------------------------------------------------


def test_the_argo_example_asks_the_gate_endpoint(gates_factory: Any) -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "argo-analysistemplate.yaml").read_text()))
    template = next(d for d in docs if d["kind"] == "AnalysisTemplate")
    assert template["apiVersion"] == "argoproj.io/v1alpha1"
    (metric,) = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert metric["successCondition"] == "result == true"
    assert web["jsonPath"] == "{$.ok}"
    headers = {h["key"]: h["value"] for h in web["headers"]}
    assert headers["Authorization"].startswith("Bearer {{args.")
    url = urlsplit(web["url"].replace("{{args.driftline-url}}", "http://driftline:9108"))
    assert url.path == ARGO_GATE_PATH
    assert set(parse_qs(url.query)) == {"model", "version"}
    args = {a["name"] for a in template["spec"]["args"]}
    assert {"model", "version", "driftline-token"} <= args
    rollout = next(d for d in docs if d["kind"] == "Rollout")
    analysis = rollout["spec"]["strategy"]["canary"]["analysis"]
    assert analysis["templates"] == [{"templateName": template["metadata"]["name"]}]
    # the URL the AnalysisRun would fetch, against a real gate: ok is a JSON boolean
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    status, body = g.argo("model=fraud-scorer&version=v2")
    assert status == 503 and "no window" in body["error"]  # another model: cannot judge
    query = url.query.replace("{{args.model}}", "fraud").replace("{{args.version}}", "v2")
    status, body = g.argo(query)
    assert status == 200 and body["ok"] is True


def test_the_flagger_example_calls_both_hooks(gates_factory: Any) -> None:
    canary = yaml.safe_load((EXAMPLES / "flagger-canary.yaml").read_text())
    assert (canary["apiVersion"], canary["kind"]) == ("flagger.app/v1beta1", "Canary")
    hooks = {h["type"]: h for h in canary["spec"]["analysis"]["webhooks"]}
    assert urlsplit(hooks["rollout"]["url"]).path == FLAGGER_ROLLOUT_PATH
    assert urlsplit(hooks["rollback"]["url"]).path == FLAGGER_ROLLBACK_PATH
    for hook in hooks.values():
        assert {"model", "version", "token"} <= set(hook["metadata"])
    # Flagger's body with the example's metadata, against a real gate
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0, drift=True))
    metadata = {**hooks["rollback"]["metadata"], "model": "fraud", "token": TOKEN}
    body = {"name": "fraud-scorer", "namespace": "ml", "phase": "Progressing", "metadata": metadata}
    assert g.call("POST", FLAGGER_ROLLBACK_PATH, body, headers={})[0] == 200


@pytest.mark.parametrize("stored", [f"{TOKEN}\n", f"{TOKEN}\r\n", f"  {TOKEN}\n"])
def test_a_token_stored_with_a_trailing_newline_still_opens_the_gates(
    gates_factory: Any, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    # a Secret made from a file (or with echo) ends in a newline; what is offered is trimmed
    monkeypatch.setenv(TOKEN_ENV, stored)
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    assert g.argo("version=v2")[0] == 200
    assert g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body(), headers=AUTH)[0] == 200
    meta = flagger_body(token=f"{TOKEN}\n")
    assert g.call("POST", FLAGGER_ROLLOUT_PATH, meta, headers={})[0] == 200
    assert g.argo("version=v2", headers={"Authorization": "Bearer nope"})[0] == 401


def test_a_token_variable_holding_only_whitespace_fails_closed(
    gates_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "\n")
    g = gates_factory()
    g.engine.observe_report(make_report("v2", 0))
    status, body = g.call("POST", FLAGGER_ROLLOUT_PATH, flagger_body(token="\n"), headers={})
    assert status == 401 and "not configured" in body["error"]
    assert g.argo("version=v2")[0] == 401
