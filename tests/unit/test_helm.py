"""The Helm chart and the image recipe, checked without a cluster or a Docker engine.

helm v4 (from its PyPI wheel, see tests/helm_tools.py) lints and renders the chart for
each mode and a spread of values; every rendered object is validated against the
Kubernetes API schemas of two versions (kubernetes-validate, strict), and the custom
resources against the Prometheus Operator, cert-manager and KEDA models. Beyond schemas,
the tests check what a schema cannot: selectors that select, ports that exist, the
certificate the API server will trust, the rendered configs loading with the code that
reads them, the alert rules through promtool, the dashboards byte for byte.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.cert_manager import v1 as cert_manager
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from monitor.config.loader import parse_config
from monitor.inject.names import ANNOTATION_INJECTED
from monitor.inject.settings import load_settings
from monitor.outputs.metrics import CONSUMER_LAG
from tests.helm_tools import CHART, ROOT, HelmUnavailable, helm_binary, render, run_helm

K8S_VERSIONS = ("1.29", "1.33")
NAMESPACE = "ml"
RELEASE = "dl"
CUSTOM_RESOURCES: dict[tuple[str, str], Any] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): prometheus_operator.PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_operator.PrometheusRule,
    ("cert-manager.io/v1", "Certificate"): cert_manager.Certificate,
    ("cert-manager.io/v1", "Issuer"): cert_manager.Issuer,
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
}
WORKLOAD_KINDS = {"Deployment"}
IANA_SVC_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?=[a-z0-9]))*$")

AGENT_CONFIG: dict[str, Any] = {
    "model": "fraud-scorer",
    "source": {
        "kind": "kafka",
        "kafka": {
            "bootstrap_servers": "kafka-0.kafka:9092,kafka-1.kafka:9092",
            "topics": ["fraud-scorer-predictions"],
            "group_id": "driftline-fraud-scorer",
        },
    },
    "windows": {"size": "5m"},
}
SASL_CONFIG = copy.deepcopy(AGENT_CONFIG)
SASL_CONFIG["source"]["kafka"].update(
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="driftline",
    sasl_password_env="KAFKA_PASSWORD",
)
PROFILE_SHA = "3f" * 32
REPORTS_URL = "https://driftline-reports.ml.example.com/fraud"
REPORTS_CONFIG = copy.deepcopy(AGENT_CONFIG)
REPORTS_CONFIG["reports"] = {"file": "/var/lib/driftline/reports.jsonl"}

# name -> (values, the kinds it must render, and nothing else)
CASES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "injector": (
        {},
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "Secret",
            "MutatingWebhookConfiguration",
            "NetworkPolicy",
            "PodDisruptionBudget",
        },
    ),
    "injector-cert-manager-observability": (
        {
            "injector": {"certManager": {"enabled": True}},
            "metrics": {"podMonitor": {"enabled": True, "labels": {"release": "kps"}}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
            "rulesConfigMap": {"enabled": True},
            "dashboards": {"enabled": True, "namespace": "grafana"},
        },
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Certificate",
            "Issuer",
            "PodMonitor",
            "PrometheusRule",
        },
    ),
    "injector-cluster-issuer-fail-sasl-rollback": (
        {
            "injector": {
                "replicas": 1,
                "failurePolicy": "Fail",
                "sidecar": {"aggregation": "none"},
                "timeoutSeconds": 3,
                "certManager": {
                    "enabled": True,
                    "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"},
                },
                "kafka": {
                    "bootstrapServers": "kafka.streaming:9093",
                    "securityProtocol": "SASL_SSL",
                    "saslMechanism": "SCRAM-SHA-512",
                    "saslUsername": "driftline",
                    "passwordSecret": {"name": "kafka-driftline"},
                },
            },
            "rollback": {
                "argoRollouts": {"enabled": True, "resourceNames": ["fraud-scorer"]},
                "extraSubjects": [
                    {"kind": "ServiceAccount", "name": "fraud-scorer", "namespace": "models"}
                ],
                "namespaces": ["models"],
            },
            "networkPolicy": {"enabled": False},
        },
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration",
            "Certificate",
            "Role",
            "RoleBinding",
        },
    ),
    "standalone-hpa-servicemonitor": (
        {
            "mode": "standalone",
            "agent": {
                "config": AGENT_CONFIG,
                "reference": {"existingConfigMap": "fraud-scorer-reference"},
                "autoscaling": {"enabled": True, "maxReplicas": 12},
            },
            "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
        },
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ServiceMonitor",
            "PodMonitor",
        },
    ),
    "standalone-hpa-pods-pvc": (
        {
            "mode": "standalone",
            "agent": {
                "config": AGENT_CONFIG,
                "reference": {
                    "volume": {"persistentVolumeClaim": {"claimName": "profiles"}},
                    "key": "fraud.profile.json.gz",
                },
                "autoscaling": {"enabled": True, "metricType": "Pods"},
            },
            "podDisruptionBudget": {"enabled": False},
        },
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
        },
    ),
    "standalone-keda-kafka-secrets-rollback": (
        {
            "mode": "standalone",
            "agent": {
                "config": SASL_CONFIG,
                "reference": {
                    "url": "https://models.example/fraud.profile.json.gz",
                    "sha256": PROFILE_SHA,
                },
                "keda": {"enabled": True, "kafka": {"authenticationRef": "kafka-sasl"}},
            },
            "secrets": {
                "kafkaPassword": {"existingSecret": "kafka-driftline"},
                "alertToken": {"existingSecret": "driftline-tokens"},
                "webhookSecret": {"existingSecret": "driftline-tokens", "key": "hook"},
            },
            "rollback": {
                "argoRollouts": {"enabled": True},
                "kserve": {"enabled": True},
                "namespaces": ["models", "models-canary"],
            },
        },
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "ScaledObject",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
        },
    ),
    "standalone-html-reports": (
        {
            "mode": "standalone",
            "agent": {
                "config": REPORTS_CONFIG,
                "reference": {
                    "url": "https://models.example/fraud.profile.json.gz",
                    "sha256": PROFILE_SHA,
                },
            },
            "reports": {"html": {"enabled": True, "baseUrl": REPORTS_URL, "size": "2Gi"}},
        },
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
        },
    ),
    "standalone-aggregator": (
        {
            "mode": "standalone",
            "agent": {
                "replicas": 3,
                "config": AGENT_CONFIG,
                "reference": {"existingConfigMap": "fraud-scorer-reference"},
                "aggregator": {"enabled": True},
            },
            "metrics": {"serviceMonitor": {"enabled": True}},
        },
        {
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ServiceMonitor",
        },
    ),
    "standalone-keda-prometheus-existing-config": (
        {
            "mode": "standalone",
            "agent": {
                "replicas": 1,
                "config": {"model": "fraud-scorer"},
                "existingConfigMap": "fraud-scorer-monitor",
                "keda": {
                    "enabled": True,
                    "trigger": "prometheus",
                    "prometheus": {"serverAddress": "http://prometheus-operated.monitoring:9090"},
                },
            },
            "serviceAccount": {"create": False, "name": "driftline"},
        },
        {"Deployment", "Service", "ScaledObject", "NetworkPolicy", "PodDisruptionBudget"},
    ),
}


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return helm_binary()
    except HelmUnavailable as exc:
        pytest.fail(f"helm v4 is needed for the chart tests: {exc}")


@functools.cache
def _render_cached(helm: Path, case: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(helm, CASES[case][0], release=RELEASE, namespace=NAMESPACE))


def manifests(helm: Path, case: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_render_cached(helm, case)))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in of_kind(docs, kind)
        if component is None
        or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"{kind}/{component}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]) for d in docs if d["kind"] in WORKLOAD_KINDS
    ]


def validate_manifest(doc: dict[str, Any], version: str) -> None:
    """Strict schema validation: the API's own for built-in kinds, the operators' models
    (every field kept on a round trip) for custom resources."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CUSTOM_RESOURCES:
        model = CUSTOM_RESOURCES[key].model_validate(doc)
        back = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        assert back == doc, f"{doc['kind']} has fields its CRD does not know"
        return
    kubernetes_validate.validate(doc, version, strict=True)


# -- helm itself ---------------------------------------------------------------------------


def test_helm_is_version_4(helm: Path) -> None:
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True)
    assert out.stdout.startswith("v4.")


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_strict(helm: Path, case: str) -> None:
    result = run_helm(helm, "lint", "--strict", "--namespace", NAMESPACE, values=CASES[case][0])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_renders_exactly_the_expected_objects(helm: Path, case: str) -> None:
    docs = manifests(helm, case)
    assert {d["kind"] for d in docs} == CASES[case][1]
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects with the same kind and name"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_validates_strictly(helm: Path, case: str, version: str) -> None:
    for doc in manifests(helm, case):
        validate_manifest(doc, version)


def test_validators_catch_mistakes() -> None:
    """The checks above can fail: an unknown field in a built-in kind and in a CRD."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "readOnly": True}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(deployment, K8S_VERSIONS[0])
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "dl-metrics", "intervall": "30s"}]},
    }
    with pytest.raises(AssertionError, match="fields its CRD does not know"):
        validate_manifest(monitor, K8S_VERSIONS[0])


# -- what every workload gets ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_pods_are_locked_down_and_sized(helm: Path, case: str) -> None:
    docs = manifests(helm, case)
    specs = pod_specs(docs)
    assert specs
    for name, template in specs:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"] + pod.get("initContainers", []):
            ctx = c["securityContext"]
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 65532, c["name"]
            assert ctx["readOnlyRootFilesystem"] is True, c["name"]
            assert ctx["allowPrivilegeEscalation"] is False, c["name"]
            assert ctx["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
            for port in c.get("ports", []):
                # Not in the OpenAPI schema, refused by the API server all the same.
                assert IANA_SVC_NAME.match(port["name"]), port["name"]
    # The Kubernetes API token only where a rollback action needs it: the agents, or the
    # aggregator that runs the policies when there is one (then not the agents).
    rollback = any(d["kind"] == "Role" for d in docs)
    components = {t["metadata"]["labels"].get("app.kubernetes.io/component") for _, t in specs}
    judge = "aggregator" if "aggregator" in components else "agent"
    for _, template in specs:
        component = template["metadata"]["labels"].get("app.kubernetes.io/component")
        expected = rollback and component == judge
        assert template["spec"]["automountServiceAccountToken"] is expected
    for sa in of_kind(docs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("case", sorted(CASES))
def test_selectors_select_and_ports_exist(helm: Path, case: str) -> None:
    docs = manifests(helm, case)
    pods = {name: t for name, t in pod_specs(docs)}
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    for d in deployments.values():
        assert selects(d["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])

    def ports_of(template: dict[str, Any]) -> set[str]:
        return {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}

    for svc in of_kind(docs, "Service"):
        selector = {"matchLabels": svc["spec"]["selector"]}
        targets = [t for t in pods.values() if selects(selector, t["metadata"]["labels"])]
        assert len(targets) == 1, svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports_of(targets[0])
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in of_kind(docs, kind):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            assert any(selects(obj["spec"][key], t["metadata"]["labels"]) for t in pods.values())
    for sm in of_kind(docs, "ServiceMonitor"):
        services = [
            s
            for s in of_kind(docs, "Service")
            if selects(sm["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert len(services) == 1
        service_ports = {p["name"] for p in services[0]["spec"]["ports"]}
        assert {e["port"] for e in sm["spec"]["endpoints"]} <= service_ports
    for hpa in of_kind(docs, "HorizontalPodAutoscaler") + of_kind(docs, "ScaledObject"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments


def test_injector_pod_monitor_selects_what_the_webhook_labels(helm: Path, tmp_path: Path) -> None:
    docs = manifests(helm, "injector-cert-manager-observability")
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert selects(monitor["spec"]["selector"], {ANNOTATION_INJECTED: "true", "app": "m"})
    assert not selects(monitor["spec"]["selector"], {"app": "m"})
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    settings = _settings(docs, tmp_path)
    assert endpoint["port"] == "dl-metrics"
    assert settings.pod_label is True
    assert monitor["metadata"]["labels"]["release"] == "kps"


# -- the injector ------------------------------------------------------------------------


def _settings(docs: list[dict[str, Any]], tmp: Path) -> Any:
    """The injector.yaml the chart mounts, read as the injector reads it."""
    cm = next(d for d in of_kind(docs, "ConfigMap") if "injector.yaml" in d["data"])
    path = tmp / f"injector-{id(cm)}.yaml"
    path.write_text(cm["data"]["injector.yaml"])
    return load_settings(path)


def test_webhook_configuration(helm: Path) -> None:
    docs = manifests(helm, "injector")
    (webhook,) = one(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["timeoutSeconds"] == 5
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert selects(webhook["namespaceSelector"], {"driftline.io/injection": "enabled"})
    assert not selects(webhook["namespaceSelector"], {"kubernetes.io/metadata.name": "kube-system"})
    # The injector's own pods are never sent to it (a Fail policy would deadlock them).
    injector = one(docs, "Deployment", "injector")["spec"]["template"]["metadata"]["labels"]
    assert not selects(webhook["objectSelector"], injector)
    assert selects(webhook["objectSelector"], {"app": "fraud-scorer"})
    assert "driftline.io/inject" in webhook["matchConditions"][0]["expression"]
    service = one(docs, "Service", "injector")
    ref = webhook["clientConfig"]["service"]
    assert (ref["name"], ref["namespace"], ref["path"]) == (
        service["metadata"]["name"],
        NAMESPACE,
        "/mutate",
    )
    assert ref["port"] in {p["port"] for p in service["spec"]["ports"]}


def test_injector_deployment_reads_mounted_settings_and_certificate(helm: Path) -> None:
    docs = manifests(helm, "injector")
    pod = one(docs, "Deployment", "injector")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = dict(a.split("=", 1) for a in c["args"] if a.startswith("--"))
    assert c["args"][:2] == ["inject", "serve"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = one(docs, "Secret")
    tls_volume = next(n for n, v in volumes.items() if "secret" in v)
    assert volumes[tls_volume]["secret"]["secretName"] == secret["metadata"]["name"]
    assert args["--tls-cert"] == f"{mounts[tls_volume]}/tls.crt"
    assert args["--tls-key"] == f"{mounts[tls_volume]}/tls.key"
    settings_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert args["--settings"] == f"{mounts[settings_volume]}/injector.yaml"
    assert int(args["--port"]) == c["ports"][0]["containerPort"]
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_generated_certificate_is_trusted_for_the_service(helm: Path) -> None:
    docs = manifests(helm, "injector")
    secret = one(docs, "Secret")
    (webhook,) = one(docs, "MutatingWebhookConfiguration")["webhooks"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(webhook["clientConfig"]["caBundle"]))
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca.public_bytes(Encoding.PEM)
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)  # raises when the CA did not sign it
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    service = one(docs, "Service", "injector")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    key = load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_cert_manager_certificate_feeds_the_webhook(helm: Path) -> None:
    docs = manifests(helm, "injector-cert-manager-observability")
    assert not of_kind(docs, "Secret")  # cert-manager writes it
    webhook = one(docs, "MutatingWebhookConfiguration")
    assert "caBundle" not in webhook["webhooks"][0]["clientConfig"]
    cert = one(docs, "Certificate")
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{cert['metadata']['name']}"
    )
    pod = one(docs, "Deployment", "injector")["spec"]["template"]["spec"]
    secret_names = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secret_names == {cert["spec"]["secretName"]}
    service = one(docs, "Service", "injector")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    issuer = one(docs, "Issuer")
    assert cert["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert "selfSigned" in issuer["spec"]

    other = manifests(helm, "injector-cluster-issuer-fail-sasl-rollback")
    assert not of_kind(other, "Issuer")
    assert one(other, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_injector_settings_carry_the_values(helm: Path, tmp_path: Path) -> None:
    settings = _settings(manifests(helm, "injector"), tmp_path)
    assert settings.image == "ghcr.io/driftline/driftline:0.1.0"
    assert settings.failure_policy == "Ignore"
    assert settings.aggregation == "both"  # the sidecars of a model elect one judge
    assert settings.kafka.password_secret is None

    docs = manifests(helm, "injector-cluster-issuer-fail-sasl-rollback")
    settings = _settings(docs, tmp_path)
    assert settings.failure_policy == "Fail"
    assert settings.aggregation == "none"
    (webhook,) = one(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == settings.failure_policy
    assert settings.kafka.bootstrap_servers == "kafka.streaming:9093"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.password_secret is not None
    assert settings.kafka.password_secret.name == "kafka-driftline"


# -- the standalone agents ---------------------------------------------------------------


def _agent(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = one(docs, "Deployment", "agent")["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "driftline")


@pytest.mark.parametrize(
    "case",
    [
        "standalone-hpa-servicemonitor",
        "standalone-hpa-pods-pvc",
        "standalone-keda-kafka-secrets-rollback",
        "standalone-html-reports",
    ],
)
def test_agent_config_loads_and_matches_its_pod(helm: Path, case: str) -> None:
    docs = manifests(helm, case)
    cm = one(docs, "ConfigMap", "agent")
    cfg = parse_config(yaml.safe_load(cm["data"]["monitor.yaml"]), source=case)
    assert cfg.model == "fraud-scorer"
    pod, agent = _agent(docs)
    # Each case can have more than one agent: they publish partials to an aggregator.
    assert agent["args"] == ["run", "-c", "/etc/driftline/monitor.yaml", "--role", "agent"]
    assert cfg.exporter.port == agent["ports"][0]["containerPort"]
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert str(cfg.state.dir) in mounts and not mounts[str(cfg.state.dir)].get("readOnly")
    # The reference lies in a volume the agent mounts (or the init container writes).
    holder = max(
        (p for p in mounts if str(cfg.reference).startswith(p + "/")), key=len, default=None
    )
    assert holder is not None, cfg.reference
    for init in pod.get("initContainers", []):
        args = dict(a.split("=", 1) for a in init["args"] if a.startswith("--"))
        assert args["--reference-file"] == str(cfg.reference)
        assert args["--reference-sha256"] == PROFILE_SHA
        assert {m["mountPath"] for m in init["volumeMounts"]} == {holder}


def _agent_config(docs: list[dict[str, Any]]) -> Any:
    return parse_config(yaml.safe_load(one(docs, "ConfigMap", "agent")["data"]["monitor.yaml"]))


def test_html_reports_go_to_their_own_volume_named_in_the_config(helm: Path) -> None:
    docs = manifests(helm, "standalone-html-reports")
    cfg = _agent_config(docs)
    assert cfg.reports.html_dir is not None
    assert cfg.reports.html_base_url == REPORTS_URL
    assert str(cfg.reports.file) == REPORTS_CONFIG["reports"]["file"]  # the user's keys stay
    pod, agent = _agent(docs)
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    html = mounts.get(str(cfg.reports.html_dir))
    assert html is not None, f"{cfg.reports.html_dir} is not a mount of {sorted(mounts)}"
    assert not html.get("readOnly")
    assert html["name"] != mounts[str(cfg.state.dir)]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[html["name"]] == {"name": html["name"], "emptyDir": {"sizeLimit": "2Gi"}}
    for init in pod.get("initContainers", []):
        assert html["name"] not in {m["name"] for m in init["volumeMounts"]}


def test_html_reports_are_off_by_default_and_optional_parts_stay_out(helm: Path) -> None:
    plain = manifests(helm, "standalone-hpa-servicemonitor")
    assert _agent_config(plain).reports.html_dir is None
    pod, _ = _agent(plain)
    assert {v["name"] for v in pod["volumes"]} == {"config", "state", "reference"}

    values = copy.deepcopy(CASES["standalone-hpa-servicemonitor"][0])
    values["reports"] = {"html": {"enabled": True, "size": ""}}
    docs = render(helm, values, release=RELEASE, namespace=NAMESPACE)
    cfg = _agent_config(docs)
    assert cfg.reports.html_dir is not None and cfg.reports.html_base_url is None
    pod, agent = _agent(docs)
    (html,) = [m for m in agent["volumeMounts"] if m["mountPath"] == str(cfg.reports.html_dir)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == html["name"]]
    assert volume["emptyDir"] == {}
    for version in K8S_VERSIONS:
        validate_manifest(one(docs, "Deployment", "agent"), version)


def test_template_refuses_html_reports_in_injector_mode(helm: Path) -> None:
    result = run_helm(helm, "template", RELEASE, values={"reports": {"html": {"enabled": True}}})
    assert result.returncode != 0
    assert "reports.html is for mode standalone" in result.stderr


def test_agent_secrets_come_from_existing_secrets(helm: Path) -> None:
    docs = manifests(helm, "standalone-keda-kafka-secrets-rollback")
    assert not of_kind(docs, "Secret")
    _, agent = _agent(docs)
    env = {e["name"]: e for e in agent["env"]}
    cfg = parse_config(yaml.safe_load(one(docs, "ConfigMap", "agent")["data"]["monitor.yaml"]))
    assert cfg.source.kafka is not None
    refs = {
        name: env[name]["valueFrom"]["secretKeyRef"]
        for name in (cfg.source.kafka.sasl_password_env, "DRIFTLINE_TOKEN", "DRIFTLINE_HOOK_SECRET")
        if name
    }
    assert refs == {
        "KAFKA_PASSWORD": {"name": "kafka-driftline", "key": "password"},
        "DRIFTLINE_TOKEN": {"name": "driftline-tokens", "key": "token"},
        "DRIFTLINE_HOOK_SECRET": {"name": "driftline-tokens", "key": "hook"},
    }
    assert all("value" not in env[name] for name in refs)


def test_rollback_rbac_is_least_privilege(helm: Path) -> None:
    docs = manifests(helm, "standalone-keda-kafka-secrets-rollback")
    roles = of_kind(docs, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == {"models", "models-canary"}
    for role in roles:
        rules = {tuple(r["apiGroups"]): r for r in role["rules"]}
        assert set(rules) == {("argoproj.io",), ("serving.kserve.io",)}
        assert rules[("argoproj.io",)]["resources"] == ["rollouts", "rollouts/status"]
        assert rules[("serving.kserve.io",)]["resources"] == ["inferenceservices"]
        assert all(r["verbs"] == ["patch"] for r in role["rules"])
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    for binding in of_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
        ]
        role = next(
            r for r in roles if r["metadata"]["namespace"] == binding["metadata"]["namespace"]
        )
        assert binding["roleRef"]["name"] == role["metadata"]["name"]

    injector = manifests(helm, "injector-cluster-issuer-fail-sasl-rollback")
    (role,) = of_kind(injector, "Role")
    (rule,) = role["rules"]
    assert rule["resourceNames"] == ["fraud-scorer"]
    (binding,) = of_kind(injector, "RoleBinding")
    # In injector mode the sidecar runs as the model pod's ServiceAccount.
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fraud-scorer", "namespace": "models"}
    ]
    for case in ("injector", "standalone-hpa-servicemonitor"):
        assert not of_kind(manifests(helm, case), "Role")


def test_autoscaling_on_consumer_lag(helm: Path) -> None:
    hpa = one(manifests(helm, "standalone-hpa-servicemonitor"), "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 12
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == CONSUMER_LAG.name
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"model": "fraud-scorer"}
    pods = one(manifests(helm, "standalone-hpa-pods-pvc"), "HorizontalPodAutoscaler")
    assert pods["spec"]["metrics"][0]["pods"]["metric"]["name"] == CONSUMER_LAG.name
    assert (
        "replicas"
        not in one(manifests(helm, "standalone-hpa-pods-pvc"), "Deployment", "agent")["spec"]
    )

    (trigger,) = one(manifests(helm, "standalone-keda-kafka-secrets-rollback"), "ScaledObject")[
        "spec"
    ]["triggers"]
    kafka = SASL_CONFIG["source"]["kafka"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["bootstrapServers"] == kafka["bootstrap_servers"]
    assert trigger["metadata"]["consumerGroup"] == kafka["group_id"]
    assert trigger["metadata"]["topic"] == kafka["topics"][0]
    assert trigger["authenticationRef"] == {"name": "kafka-sasl"}
    (trigger,) = one(manifests(helm, "standalone-keda-prometheus-existing-config"), "ScaledObject")[
        "spec"
    ]["triggers"]
    assert trigger["type"] == "prometheus"
    assert CONSUMER_LAG.name in trigger["metadata"]["query"]
    assert 'model="fraud-scorer"' in trigger["metadata"]["query"]


# -- rules and dashboards: the generated files, never a hand copy ------------------------


def _sync_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "sync_generated", ROOT / "helm" / "sync_generated.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_chart_copies_of_generated_files_are_current() -> None:
    diffs = _sync_module().differences()
    assert not diffs, "run python3 helm/sync_generated.py:\n" + "\n".join(map(str, diffs))


def test_prometheus_rule_is_the_generated_one_and_promtool_accepts_it(
    helm: Path, tmp_path: Path
) -> None:
    docs = manifests(helm, "injector-cert-manager-observability")
    rule = one(docs, "PrometheusRule")
    generated = yaml.safe_load((ROOT / "alert_rules" / "prometheusrule.yaml").read_text())
    assert rule["spec"] == generated["spec"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus (tests/setup.sh)"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"SUCCESS: {alerts} rules found" in result.stdout

    (rules_cm,) = [d for d in of_kind(docs, "ConfigMap") if "driftline.rules.yaml" in d["data"]]
    source = (ROOT / "alert_rules" / "driftline.rules.yaml").read_text()
    assert rules_cm["data"]["driftline.rules.yaml"] == source


def test_dashboards_are_the_generated_json_byte_for_byte(helm: Path) -> None:
    docs = manifests(helm, "injector-cert-manager-observability")
    sources = sorted((ROOT / "dashboards" / "json").glob("*.json"))
    assert sources, "dashboards/json/*.json is missing: run python3 -m dashboards.build"
    rendered = {}
    for cm in of_kind(docs, "ConfigMap"):
        if cm["metadata"]["labels"].get("grafana_dashboard") == "1":
            assert cm["metadata"]["namespace"] == "grafana"
            assert cm["metadata"]["annotations"]["grafana_folder"] == "driftline"
            ((name, text),) = cm["data"].items()
            rendered[name] = text
    assert set(rendered) == {p.name for p in sources}
    for path in sources:
        assert rendered[path.name].encode("utf-8") == path.read_bytes(), path.name


def test_dashboard_configmaps_keep_any_content_exactly(helm: Path, tmp_path: Path) -> None:
    """Template syntax, HTML-looking text, non-ASCII and no final newline survive."""
    chart = tmp_path / "driftline"
    shutil.copytree(CHART, chart)
    dashboards = chart / "files" / "dashboards"
    shutil.rmtree(dashboards, ignore_errors=True)
    dashboards.mkdir(parents=True)
    tricky = (
        '{"title": "Drift {{ $labels.model }} <b>&</b> \\u00e9t\u00e9 \u2014 ~/x",\n'
        '  "expr": "rate(x[5m]) > 0 and {{ .Values }}", "tab":"\\t", "nl": "a\\nb"}'
    )
    (dashboards / "tricky_one.json").write_bytes(tricky.encode("utf-8"))
    docs = render(helm, {"dashboards": {"enabled": True}}, chart=chart)
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if "tricky_one.json" in d.get("data", {})]
    assert cm["data"]["tricky_one.json"].encode("utf-8") == tricky.encode("utf-8")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", cm["metadata"]["name"])


# -- values: schema, failures, documentation ---------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "sidecar"}, "'injector', 'standalone'"),
        ({"injector": {"failurePolicy": "ignore"}}, "'Ignore', 'Fail'"),
        ({"injector": {"sidecar": {"metricsPort": 70000}}}, "/injector/sidecar/metricsPort"),
        ({"secrets": {"kafkaPassword": {"password": "hunter2"}}}, "'password' not allowed"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"mode": "standalone"}, "missing properties 'model', 'source'"),
        (
            {
                "mode": "standalone",
                "agent": {
                    "config": AGENT_CONFIG,
                    "autoscaling": {"enabled": True},
                    "keda": {"enabled": True},
                },
            },
            "/agent/keda/enabled",
        ),
        ({"agent": {"reference": {"url": "s3://bucket/ref"}}}, "/agent/reference/url"),
        ({"reports": {"html": {"baseUrl": "reports.example.com"}}}, "/reports/html/baseUrl"),
        ({"reports": {"html": {"size": "a lot"}}}, "/reports/html/size"),
        ({"reports": {"html": {"dir": "/tmp"}}}, "'dir' not allowed"),
        ({"agent": {"aggregator": {"enabled": "yes"}}}, "/agent/aggregator/enabled"),
        ({"injector": {"sidecar": {"aggregation": "agent"}}}, "/injector/sidecar/aggregation"),
    ],
)
def test_schema_rejects_bad_values_clearly(
    helm: Path, values: dict[str, Any], message: str
) -> None:
    result = run_helm(helm, "template", RELEASE, values=values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_template_explains_what_a_keda_kafka_trigger_lacks(helm: Path) -> None:
    values = {
        "mode": "standalone",
        "agent": {
            "existingConfigMap": "cfg",
            "config": {"model": "m", "source": {"kind": "file"}},
            "keda": {"enabled": True},
        },
    }
    result = run_helm(helm, "template", RELEASE, values=values)
    assert result.returncode != 0
    assert "agent.keda.trigger kafka needs the brokers, topic and consumer group" in result.stderr


def test_template_explains_whom_injector_mode_rollback_rbac_is_for(helm: Path) -> None:
    result = run_helm(helm, "template", RELEASE, values={"rollback": {"kserve": {"enabled": True}}})
    assert result.returncode != 0
    assert "list it in rollback.extraSubjects" in result.stderr


# Values that are Kubernetes objects are documented as one row.
WHOLE_OBJECTS = {
    "podSecurityContext",
    "securityContext",
    "resources",
    "initResources",
    "namespaceSelector",
    "labels",
}


def _leaf_keys(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values and prefix.rsplit(".", 1)[-1] not in WHOLE_OBJECTS:
        keys: list[str] = []
        for k, v in values.items():
            keys += _leaf_keys(v, f"{prefix}.{k}" if prefix else k)
        return keys
    return [prefix]


def test_aggregator_role_runs_beside_the_agents(helm: Path) -> None:
    """agent.aggregator.enabled: agents publish partials, an aggregator Deployment with the
    same monitor.yaml merges them, and both are scraped."""
    docs = manifests(helm, "standalone-aggregator")
    agents = one(docs, "Deployment", "agent")
    aggregator = one(docs, "Deployment", "aggregator")
    args = {
        name: d["spec"]["template"]["spec"]["containers"][0]["args"]
        for name, d in (("agent", agents), ("aggregator", aggregator))
    }
    assert args["agent"][-2:] == ["--role", "agent"]
    assert args["aggregator"][-2:] == ["--role", "aggregator"]
    assert agents["spec"]["replicas"] == 3 and aggregator["spec"]["replicas"] == 2
    volumes = {
        v["name"]: v for v in aggregator["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    }
    agent_volumes = {
        v["name"]: v for v in agents["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    }
    assert volumes["config"] == agent_volumes["config"]  # one monitor.yaml for both roles
    monitors = {d["metadata"]["name"] for d in of_kind(docs, "ServiceMonitor")}
    assert len(monitors) == 2


def test_the_aggregator_is_fenced_and_kept_like_the_agents(helm: Path) -> None:
    """The aggregator judges the model and runs its rollbacks: the same NetworkPolicy as
    the agents (metrics in; Kafka, the API and OTLP out) and a PodDisruptionBudget that
    keeps its standby while the judge is evicted."""
    docs = manifests(helm, "standalone-aggregator")
    aggregator = one(docs, "Deployment", "aggregator")
    labels = aggregator["spec"]["template"]["metadata"]["labels"]
    agent_np, agg_np = (one(docs, "NetworkPolicy", c) for c in ("agent", "aggregator"))
    assert selects(agg_np["spec"]["podSelector"], labels)
    assert not selects(agent_np["spec"]["podSelector"], labels)
    assert agg_np["spec"]["ingress"] == agent_np["spec"]["ingress"]
    assert agg_np["spec"]["egress"] == agent_np["spec"]["egress"]
    port = aggregator["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert agg_np["spec"]["ingress"][0]["ports"][0]["port"] == port
    pdb = one(docs, "PodDisruptionBudget", "aggregator")
    assert selects(pdb["spec"]["selector"], labels) and pdb["spec"]["maxUnavailable"] == 1
    # one aggregator: nothing to keep while it is evicted, no budget
    values = _standalone({"replicas": 3, "aggregator": {"replicas": 1}})
    single = render(helm, values, release=RELEASE, namespace=NAMESPACE)
    assert _aggregators(of_kind(single, "PodDisruptionBudget")) == []
    assert len(_aggregators(of_kind(single, "NetworkPolicy"))) == 1


def _aggregators(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "aggregator"
    ]


def _agent_args(docs: list[dict[str, Any]]) -> list[str]:
    agents = one(docs, "Deployment", "agent")
    args: list[str] = agents["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def _standalone(agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": "standalone",
        "agent": {
            "config": AGENT_CONFIG,
            "reference": {"existingConfigMap": "fraud-scorer-reference"},
            **agent,
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
    }


@pytest.mark.parametrize(
    ("agent", "aggregated"),
    [
        ({}, True),  # the defaults: two replicas, enabled auto
        ({"replicas": 1}, False),
        ({"aggregator": {"enabled": False}}, False),
        ({"replicas": 1, "autoscaling": {"enabled": True}}, True),
        ({"replicas": 1, "keda": {"enabled": True}}, True),
        ({"replicas": 1, "autoscaling": {"enabled": True, "maxReplicas": 1}}, False),
        ({"replicas": 1, "aggregator": {"enabled": True}}, True),
    ],
)
def test_aggregator_runs_whenever_there_can_be_more_than_one_agent(
    helm: Path, agent: dict[str, Any], aggregated: bool
) -> None:
    """agent.aggregator.enabled auto (the default): several agents of one group publish
    partials and one aggregator judges, so the model gets one verdict per window."""
    values = _standalone(agent)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (
        defaults["agent"]["replicas"] == 2 and defaults["agent"]["aggregator"]["enabled"] == "auto"
    )
    docs = render(helm, values, release=RELEASE, namespace=NAMESPACE)
    aggregators = _aggregators(docs)
    args = _agent_args(docs)
    if aggregated:
        assert args[-2:] == ["--role", "agent"]
        deployment = one(docs, "Deployment", "aggregator")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == [
            "--role",
            "aggregator",
        ]
        kinds = {"Deployment", "Service", "ServiceMonitor", "NetworkPolicy"}
        if deployment["spec"]["replicas"] > 1:  # a standby to keep while the judge goes
            kinds.add("PodDisruptionBudget")
        assert {d["kind"] for d in aggregators} == kinds
    else:
        assert "--role" not in args  # each agent judges what it reads
        assert not aggregators


def test_install_notes_warn_when_several_agents_judge_alone(helm: Path) -> None:
    def notes(agent: dict[str, Any]) -> str:
        result = run_helm(
            helm,
            "install",
            RELEASE,
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            values=_standalone(agent),
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split("NOTES:", 1)[1]

    split = notes({"aggregator": {"enabled": False}})
    assert re.search(r"WARNING: .*more than one agent: each agent\s+judges only", split), split
    assert "aggregator judges each window once" in notes({})
    lone = notes({"replicas": 1, "aggregator": {"enabled": False}})
    assert "WARNING" not in lone and "aggregator" not in lone


def test_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    keys = set(_leaf_keys(values))
    missing = sorted(keys - documented)
    assert not missing, f"helm/driftline/README.md lacks {missing}"
    stale = sorted(documented - keys)
    assert not stale, f"helm/driftline/README.md documents unknown values {stale}"


# -- the image recipe --------------------------------------------------------------------


def _stages() -> list[list[str]]:
    lines, stages = [], []
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        lines.append(raw)
    text = "\n".join(lines).replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_non_root_and_pinned() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert base, "the base image is one ARG"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base.group(1))
    builder, runtime = _stages()
    assert builder[0].startswith("FROM ${PYTHON_IMAGE} AS builder")
    assert any("pip wheel" in line for line in builder)
    assert runtime[0] == "FROM ${PYTHON_IMAGE}"
    final = "\n".join(runtime)
    assert "USER 65532:65532" in final
    assert 'ENTRYPOINT ["driftline"]' in final
    assert "pip uninstall -y pip setuptools wheel" in final
    for tool in ("gcc", "build-essential", "apt-get install", "COPY . "):
        assert tool not in final, tool


def test_docker_context_holds_every_installed_package() -> None:
    """A package pyproject.toml installs must be in the build context and copied."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns}
    allowed = {
        line[1:].strip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    builder = "\n".join(_stages()[0])
    for package in packages:
        assert package in allowed, f".dockerignore does not let {package}/ in"
        assert f"COPY {package} ./{package}" in builder, f"the builder does not copy {package}/"
    readme = project["project"]["readme"]
    assert readme in allowed and "pyproject.toml" in allowed


# -- resources from measurements ----------------------------------------------------------

# The agent's resident memory at 10k records/s with 10 s windows, (median, max) MiB, as
# `python3 bench/footprint_bench.py` measured it (docs/benchmarks.md, "Footprint", with
# glibc's mmap threshold fixed as `driftline run` fixes it).
MEASURED_MIB = {"aiokafka": (113, 138), "confluent": (127, 161)}


def _mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_agent_memory_requests_and_limits_cover_the_measured_footprint() -> None:
    """Requests at the default client's (aiokafka) median under load, so the scheduler
    counts what the agent holds; limits above either client's peak with a quarter to
    spare, so a busy minute does not get the sidecar killed."""
    from monitor.inject.settings import InjectorSettings

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for resources in (
        values["injector"]["sidecar"]["resources"],
        values["agent"]["resources"],
        InjectorSettings().resources,
    ):
        assert _mib(resources["requests"]["memory"]) >= MEASURED_MIB["aiokafka"][0]
        peak = max(high for _, high in MEASURED_MIB.values())
        assert _mib(resources["limits"]["memory"]) >= 1.25 * peak
