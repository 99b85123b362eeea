"""Argo Rollouts abort and KServe canary actions against a fake Kubernetes API server.

The fake server listens on 127.0.0.1 (plain HTTP, or TLS with the self-signed test
certificate below) and records every request, so the tests assert the exact method,
path, content type, body and credentials the actions send.
"""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from detectors.results import DriftResult, QualityResult, TestResult, WindowReport
from monitor.actions import ActionError, Retry
from monitor.actions.argo import ArgoAbortAction
from monitor.actions.audit import AuditLog, read_audit
from monitor.actions.decision import Decision
from monitor.actions.factory import build_actions
from monitor.actions.kserve import KServeCanaryAction
from monitor.actions.kubernetes import KubeConfigError, KubernetesClient
from monitor.actions.policy import PolicyEngine
from monitor.config.rollback import ActionConfig, KubernetesConfig, RollbackSettings

# A self-signed certificate for 127.0.0.1/localhost (valid 2000-2199), used both as the
# fake API server's certificate and as the cluster CA the client trusts.
TEST_CERT = """-----BEGIN CERTIFICATE-----
MIIB4DCCAYagAwIBAgIUDe0s+GgjYjiPCXDI5ABqx780KrMwCgYIKoZIzj0EAwIw
IzEhMB8GA1UEAwwYZHJpZnRsaW5lLXRlc3QtYXBpc2VydmVyMCAXDTAwMDEwMTAw
MDAwMFoYDzIxOTkwMTAxMDAwMDAwWjAjMSEwHwYDVQQDDBhkcmlmdGxpbmUtdGVz
dC1hcGlzZXJ2ZXIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQZaEB9n8Q5edB8
oYZxPckrN/qEdrLgiPKazc7QmF28imW5GYXnG8bVn7szCaVgMHN7FfHPLBRmPJce
B13ysTffo4GVMIGSMBoGA1UdEQQTMBGHBH8AAAGCCWxvY2FsaG9zdDAPBgNVHRMB
Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIChDATBgNVHSUEDDAKBggrBgEFBQcDATAd
BgNVHQ4EFgQUp9HsqMNqVjIh4oNwD0DmvlZl4YEwHwYDVR0jBBgwFoAUp9HsqMNq
VjIh4oNwD0DmvlZl4YEwCgYIKoZIzj0EAwIDSAAwRQIhAOpOk0vBUZtSZ40wUio5
Vy5U2hnNiDVCJZtDD2bh0/wmAiAjKg1ABmc+bKZ7w+5u8F5cUEjq4AZCRucyTP4f
iZ0Szw==
-----END CERTIFICATE-----
"""
TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghhcmFkzmt5aOkUQx
5KIBj+8hW622UUQIaaL7SPcEgBihRANCAAQZaEB9n8Q5edB8oYZxPckrN/qEdrLg
iPKazc7QmF28imW5GYXnG8bVn7szCaVgMHN7FfHPLBRmPJceB13ysTff
-----END PRIVATE KEY-----
"""
# Another self-signed CA: it did not sign TEST_CERT.
OTHER_CA = """-----BEGIN CERTIFICATE-----
MIIBijCCATCgAwIBAgIUAiuN/9vZ7gxM0pGfnau6hsSfFgcwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXZHJpZnRsaW5lLXRlc3Qtb3RoZXItY2EwIBcNMDAwMTAxMDAw
MDAwWhgPMjE5OTAxMDEwMDAwMDBaMCIxIDAeBgNVBAMMF2RyaWZ0bGluZS10ZXN0
LW90aGVyLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAExM2JCKoeiWUrsccl
wQ4VYYPWU0vX0Ff3cWZBrxcHQCAXO1+Y4RdyWfoA72tV82k6m9yGoc64qY5hkxFh
ZPA8rKNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAoQwHQYDVR0O
BBYEFMY13tquzbXxiOlJwLo14nS7+wu+MAoGCCqGSM49BAMCA0gAMEUCIBlf4xff
jevy2WaB76Nq3SzVal5L4f5vGLNZv1skMszZAiEA7qMNfOIEPau1F7eDuKQzXsrl
zasmQjGU/XBe2zyF2Ms=
-----END CERTIFICATE-----
"""

ROLLOUT = "/apis/argoproj.io/v1alpha1/namespaces/ml/rollouts/fraud-scorer"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/fraud-scorer"
MERGE_PATCH = "application/merge-patch+json"


class FakeAPIServer:
    """Records requests; answers from per-(method, path) scripts, else 200."""

    def __init__(self, tls_dir: Path | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.scripts: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else b""
                api.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                script = api.scripts.get((self.command, self.path))
                if script:
                    status, doc = script.pop(0) if len(script) > 1 else script[0]
                else:
                    status, doc = 200, {"kind": "Object", "metadata": {"name": "fraud-scorer"}}
                answer = orjson.dumps(doc)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_PATCH = do_GET = do_POST = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls_dir is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert, key = tls_dir / "server.crt", tls_dir / "server.key"
            cert.write_text(TEST_CERT)
            key.write_text(TEST_KEY)
            context.load_cert_chain(cert, key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, method: str, path: str, *replies: tuple[int, dict[str, Any]]) -> None:
        self.scripts[(method, path)] = list(replies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def not_found(what: str) -> dict[str, Any]:
    return {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": f'{what} "fraud-scorer" not found'}  # fmt: skip


@pytest.fixture
def api() -> Iterator[FakeAPIServer]:
    server = FakeAPIServer()
    yield server
    server.close()


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[FakeAPIServer]:
    server = FakeAPIServer(tmp_path)
    yield server
    server.close()


@pytest.fixture
def service_account(tmp_path: Path) -> Path:
    """A pod's service account mount: token, CA certificate, namespace."""
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("sa-token-1\n")
    (sa / "ca.crt").write_text(TEST_CERT)
    (sa / "namespace").write_text("ml")
    return sa


def decision(version: str = "v2") -> Decision:
    return Decision(
        id="e" * 32,
        policy="abort-canary",
        model="fraud-scorer",
        version=version,
        stable_version="v1",
        reason="dataset drift",
        trigger={"kind": "windows"},
        dry_run=False,
        decided_at=0.0,
        actions=("abort",),
    )


def in_cluster(sa: Path, server: str) -> dict[str, Any]:
    return {
        "mode": "in_cluster",
        "token_file": str(sa / "token"),
        "ca_file": str(sa / "ca.crt"),
        "server": server,
        "timeout": "2s",
    }


def no_wait() -> Retry:
    return Retry(retries=2, backoff=0.01, max_backoff=0.01, sleep=lambda s: None)


def argo_action(kube: dict[str, Any], rollout: str = "{model}") -> ArgoAbortAction:
    config = ActionConfig.model_validate(
        {"kind": "argo_rollouts", "namespace": "ml", "rollout": rollout, "kubernetes": kube}
    )
    client = KubernetesClient.from_config(config.kubernetes, retry=no_wait())
    return ArgoAbortAction("abort", config, client)


def test_argo_abort_patches_the_status_subresource_like_kubectl(
    api: FakeAPIServer, service_account: Path
) -> None:
    action = argo_action(in_cluster(service_account, api.url))
    detail = action.execute(decision())
    (req,) = api.requests
    assert req["method"] == "PATCH"
    assert req["path"] == ROLLOUT + "/status"
    assert req["headers"]["content-type"] == MERGE_PATCH
    assert orjson.loads(req["body"]) == {"status": {"abort": True}}
    assert req["headers"]["authorization"] == "Bearer sa-token-1"
    assert "aborted rollout ml/fraud-scorer" in detail


def test_argo_abort_falls_back_to_the_resource_without_a_status_subresource(
    api: FakeAPIServer, service_account: Path
) -> None:
    api.answer("PATCH", ROLLOUT + "/status", (404, not_found("rollouts.argoproj.io")))
    action = argo_action(in_cluster(service_account, api.url))
    detail = action.execute(decision())
    assert [(r["method"], r["path"]) for r in api.requests] == [
        ("PATCH", ROLLOUT + "/status"),
        ("PATCH", ROLLOUT),
    ]
    assert orjson.loads(api.requests[1]["body"]) == {"status": {"abort": True}}
    assert api.requests[1]["headers"]["content-type"] == MERGE_PATCH
    assert f"PATCH {ROLLOUT} 200" in detail


def test_argo_abort_of_a_missing_rollout_fails_with_the_api_message(
    api: FakeAPIServer, service_account: Path
) -> None:
    for path in (ROLLOUT + "/status", ROLLOUT):
        api.answer("PATCH", path, (404, not_found("rollouts.argoproj.io")))
    action = argo_action(in_cluster(service_account, api.url))
    with pytest.raises(ActionError) as exc:
        action.execute(decision())
    assert exc.value.status == 404
    assert 'rollouts.argoproj.io "fraud-scorer" not found' in str(exc.value)


def test_the_rollout_name_template_uses_the_version(
    api: FakeAPIServer, service_account: Path
) -> None:
    action = argo_action(in_cluster(service_account, api.url), rollout="{model}-{version}")
    action.execute(decision("canary-7"))
    assert api.requests[0]["path"] == (
        "/apis/argoproj.io/v1alpha1/namespaces/ml/rollouts/fraud-scorer-canary-7/status"
    )


def test_kserve_sets_canary_traffic_to_zero(api: FakeAPIServer, service_account: Path) -> None:
    config = ActionConfig.model_validate(
        {
            "kind": "kserve",
            "namespace": "ml",
            "inference_service": "{model}",
            "kubernetes": in_cluster(service_account, api.url),
        }
    )
    action = KServeCanaryAction("zero", config)  # the client is built from the config
    assert "canaryTrafficPercent=0" in action.execute(decision())
    (req,) = api.requests
    assert (req["method"], req["path"]) == ("PATCH", ISVC)
    assert req["headers"]["content-type"] == MERGE_PATCH
    assert orjson.loads(req["body"]) == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert req["headers"]["authorization"] == "Bearer sa-token-1"


def test_the_service_account_token_is_read_for_every_request(
    api: FakeAPIServer, service_account: Path
) -> None:
    action = argo_action(in_cluster(service_account, api.url))
    action.execute(decision())
    (service_account / "token").write_text("sa-token-2")  # the kubelet rotated it
    action.execute(decision())
    tokens = [r["headers"]["authorization"] for r in api.requests]
    assert tokens == ["Bearer sa-token-1", "Bearer sa-token-2"]


def test_server_errors_are_retried_and_client_errors_are_not(
    api: FakeAPIServer, service_account: Path
) -> None:
    api.answer("PATCH", ROLLOUT + "/status", (503, {"message": "etcd leader changed"}), (200, {}))
    argo_action(in_cluster(service_account, api.url)).execute(decision())
    assert len(api.requests) == 2
    api.requests.clear()
    forbidden = {"kind": "Status", "code": 403, "message": "rollouts.argoproj.io is forbidden"}
    api.answer("PATCH", ROLLOUT + "/status", (403, forbidden))
    with pytest.raises(ActionError) as exc:
        argo_action(in_cluster(service_account, api.url)).execute(decision())
    assert exc.value.status == 403 and "forbidden" in str(exc.value)
    assert len(api.requests) == 1


def test_in_cluster_over_tls_verifies_the_cluster_ca(
    tls_api: FakeAPIServer, service_account: Path, tmp_path: Path
) -> None:
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(tls_api.httpd.server_address[1]),
    }
    kube = KubernetesConfig.model_validate(
        {"token_file": str(service_account / "token"), "ca_file": str(service_account / "ca.crt")}
    )
    client = KubernetesClient.from_config(kube, env=env, retry=no_wait())  # mode auto
    assert client.server == f"https://127.0.0.1:{env['KUBERNETES_SERVICE_PORT']}"
    assert client.merge_patch(ROLLOUT + "/status", {"status": {"abort": True}}).status == 200
    assert tls_api.requests[0]["headers"]["authorization"] == "Bearer sa-token-1"
    # a CA that did not sign the server's certificate: refused, and not retried
    (service_account / "ca.crt").write_text(OTHER_CA)
    wrong = KubernetesConfig.model_validate(
        {"token_file": str(service_account / "token"), "ca_file": str(service_account / "ca.crt")}
    )
    with pytest.raises(ActionError) as exc:
        KubernetesClient.from_config(wrong, env=env, retry=no_wait()).merge_patch(ROLLOUT, {})
    assert "TLS" in str(exc.value) and not exc.value.retryable
    assert len(tls_api.requests) == 1


def write_kubeconfig(
    path: Path, server: str, user: dict[str, Any], cluster: dict[str, Any]
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "contexts": [
            {"name": "prod", "context": {"cluster": "c1", "user": "deployer"}},
            {"name": "other", "context": {"cluster": "c1", "user": "nobody"}},
        ],
        "clusters": [{"name": "c1", "cluster": {"server": server, **cluster}}],
        "users": [
            {"name": "deployer", "user": user},
            {"name": "nobody", "user": {"token": "nobody-token"}},
        ],
    }
    path.write_text(yaml.safe_dump(doc))


def test_kubeconfig_with_a_token_over_plain_http(api: FakeAPIServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, api.url, {"token": "deployer-token"}, {})
    action = argo_action({"mode": "kubeconfig", "kubeconfig": str(kubeconfig)})
    action.execute(decision())
    assert api.requests[0]["headers"]["authorization"] == "Bearer deployer-token"
    assert api.requests[0]["path"] == ROLLOUT + "/status"
    other = argo_action({"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "context": "other"})
    other.execute(decision())
    assert api.requests[1]["headers"]["authorization"] == "Bearer nobody-token"


def test_kubeconfig_with_inline_ca_and_a_token_file(
    tls_api: FakeAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("file-token")
    kubeconfig = tmp_path / "config"
    ca_data = base64.b64encode(TEST_CERT.encode()).decode()
    write_kubeconfig(
        kubeconfig, tls_api.url, {"tokenFile": "token"}, {"certificate-authority-data": ca_data}
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # the default location
    kube = KubernetesConfig.model_validate(
        {"mode": "auto", "token_file": str(tmp_path / "no-service-account")}
    )
    client = KubernetesClient.from_config(kube, retry=no_wait())
    assert client.merge_patch(ISVC, {"spec": {}}).status == 200
    assert tls_api.requests[0]["headers"]["authorization"] == "Bearer file-token"


def test_kubeconfig_with_a_client_certificate(tls_api: FakeAPIServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    user = {
        "client-certificate-data": base64.b64encode(TEST_CERT.encode()).decode(),
        "client-key-data": base64.b64encode(TEST_KEY.encode()).decode(),
    }
    write_kubeconfig(kubeconfig, tls_api.url, user, {"insecure-skip-tls-verify": True})
    client = KubernetesClient.from_kubeconfig(kubeconfig, retry=no_wait())
    assert client.merge_patch(ISVC, {"spec": {}}).status == 200
    assert "authorization" not in tls_api.requests[0]["headers"]


def test_exec_plugins_and_missing_credentials_are_explained(
    tmp_path: Path, service_account: Path
) -> None:
    kubeconfig = tmp_path / "config"
    write_kubeconfig(kubeconfig, "https://example:443", {"exec": {"command": "aws"}}, {})
    with pytest.raises(KubeConfigError, match="exec or auth-provider"):
        KubernetesClient.from_kubeconfig(kubeconfig)
    with pytest.raises(KubeConfigError, match="no context named 'nope'"):
        KubernetesClient.from_kubeconfig(kubeconfig, context="nope")
    (service_account / "token").unlink()
    missing = KubernetesConfig.model_validate(in_cluster(service_account, "http://127.0.0.1:1"))
    with pytest.raises(KubeConfigError, match="service account token"):
        KubernetesClient.from_config(missing)
    not_in_cluster = KubernetesConfig.model_validate({"mode": "in_cluster"})
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        KubernetesClient.in_cluster(not_in_cluster, env={})


def _settings(tmp_path: Path, kube: dict[str, Any]) -> RollbackSettings:
    return RollbackSettings.model_validate(
        {
            "model": "fraud-scorer",
            "stable_version": "v1",
            "policies": [
                {
                    "name": "abort-canary",
                    "when": "dataset_drift",
                    "for_windows": 1,
                    "cooldown": 0,
                    "actions": ["abort", "zero"],
                }
            ],
            "actions": {
                "abort": {
                    "kind": "argo_rollouts",
                    "namespace": "ml",
                    "rollout": "{model}",
                    "kubernetes": kube,
                    "retries": 0,
                },
                "zero": {
                    "kind": "kserve",
                    "namespace": "ml",
                    "inference_service": "{model}",
                    "kubernetes": kube,
                    "retries": 0,
                },
            },
            "audit": {"path": str(tmp_path / "audit.jsonl")},
        }
    )


def drifted_report(version: str) -> WindowReport:
    drift = DriftResult(
        1.0, 1, 1, 0.5, True, "none", (TestResult("age", "psi", 0.5, None, 0.2, True),)
    )
    return WindowReport(
        model="fraud-scorer",
        model_version=version,
        window_start=0.0,
        window_end=60.0,
        reference_hash="r" * 16,
        rows=50,
        drift=drift,
        prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none"),
        quality=QualityResult(rows=50),
    )


def test_the_engine_aborts_the_canary_through_the_api(
    api: FakeAPIServer, service_account: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, in_cluster(service_account, api.url))
    engine = PolicyEngine(
        settings, build_actions(settings.actions), audit=AuditLog(settings.audit_path())
    )
    try:
        decisions = engine.observe_report(drifted_report("v2"))
        assert engine.flush(10)
    finally:
        engine.close()
    assert [d.outcome for d in decisions] == ["acted"]
    assert [(r["method"], r["path"]) for r in api.requests] == [
        ("PATCH", ROLLOUT + "/status"),
        ("PATCH", ISVC),
    ]
    outcomes = [(line["action"], line["outcome"]) for line in read_audit(settings.audit_path())]
    assert outcomes == [("abort", "acted"), ("zero", "acted")]


def test_missing_cluster_credentials_fail_the_action_not_the_agent(
    service_account: Path, tmp_path: Path
) -> None:
    (service_account / "token").unlink()
    settings = _settings(tmp_path, in_cluster(service_account, "http://127.0.0.1:1"))
    engine = PolicyEngine(  # building the engine needs no cluster
        settings, build_actions(settings.actions), audit=AuditLog(settings.audit_path())
    )
    try:
        decisions = engine.observe_report(drifted_report("v2"))
        assert engine.flush(10)
    finally:
        engine.close()
    assert [d.outcome for d in decisions] == ["action_failed"]
    lines = list(read_audit(settings.audit_path()))
    assert [line["outcome"] for line in lines] == ["action_failed", "action_failed"]
    assert "service account token" in lines[0]["detail"]
