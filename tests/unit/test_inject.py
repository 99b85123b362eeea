"""The sidecar injector: AdmissionReviews as the API server sends them, the JSONPatch
applied as the API server applies it (RFC 6902, the ``jsonpatch`` library), the patched
Pod checked against the Kubernetes API schema, and the HTTPS server on loopback.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import http.client
import http.server
import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from detectors.profile import build_profile, load_profile
from monitor.cli import main as cli_main
from monitor.config.loader import parse_config
from monitor.inject.names import (
    ANNOTATION_ERROR,
    ANNOTATION_INJECTED,
    CONFIG_DIR,
    CONTAINER_NAME,
    INIT_CONTAINER_NAME,
    METRICS_PORT_NAME,
    MONITOR_YAML_ENV,
    STATE_DIR,
)
from monitor.inject.patch import escape_pointer
from monitor.inject.prepare import PrepareError, fetch_reference, write_config
from monitor.inject.server import InjectorServer
from monitor.inject.settings import InjectorSettings, SettingsError, load_settings
from monitor.inject.webhook import decide, handle_review

K8S_VERSIONS = ("1.29", "1.33")
SETTINGS = InjectorSettings(kafka={"bootstrap_servers": "kafka-0.kafka:9092"})
URL_REFERENCE = "https://models.example/fraud/reference.json.gz"


def model_pod(annotations: dict[str, str] | None = None, **spec_extra: Any) -> dict[str, Any]:
    """A Pod as a ReplicaSet creates it: generateName, labels, no namespace or name."""
    meta: dict[str, Any] = {
        "generateName": "fraud-scorer-7d9f8b-",
        "labels": {"app.kubernetes.io/name": "fraud-scorer", "pod-template-hash": "7d9f8b"},
    }
    if annotations is not None:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "model",
                "image": "registry.example/fraud-scorer:v7",
                "ports": [{"name": "http", "containerPort": 8080}],
            }
        ],
        "restartPolicy": "Always",
        "serviceAccountName": "fraud-scorer",
    }
    spec.update(spec_extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def admission_review(
    obj: dict[str, Any] | None,
    *,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    operation: str = "CREATE",
    kind: dict[str, str] | None = None,
    resource: str = "pods",
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """The AdmissionReview the API server POSTs for ``obj``."""
    kind = kind or {"group": "", "version": "v1", "kind": "Pod"}
    request: dict[str, Any] = {
        "uid": uid,
        "kind": kind,
        "resource": {"group": kind["group"], "version": kind["version"], "resource": resource},
        "requestKind": kind,
        "requestResource": {
            "group": kind["group"],
            "version": kind["version"],
            "resource": resource,
        },
        "namespace": "ml",
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def review(obj: Any, settings: InjectorSettings = SETTINGS, **kw: Any) -> dict[str, Any]:
    status, answer = handle_review(json.dumps(admission_review(obj, **kw)).encode(), settings)
    assert status == 200, answer
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    return answer["response"]


def patched(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Apply the response's patch as the API server does."""
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.JsonPatch(ops).apply(copy.deepcopy(pod))


def validate_pod(pod: dict[str, Any]) -> None:
    named = copy.deepcopy(pod)
    named["metadata"]["name"] = "fraud-scorer-7d9f8b-x2x9q"  # the API server names it
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(named, version, strict=True)


def container(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    found = [c for c in pod["spec"].get(key, []) if c["name"] == name]
    assert len(found) == 1, f"{name} in {key}: {found}"
    return found[0]


def generated_config(pod: dict[str, Any]) -> dict[str, Any]:
    init = container(pod, INIT_CONTAINER_NAME, init=True)
    env = {e["name"]: e.get("value") for e in init["env"]}
    return yaml.safe_load(env[MONITOR_YAML_ENV])


# -- injection ---------------------------------------------------------------------------


def annotated(**extra: str) -> dict[str, str]:
    return {
        "driftline.io/inject": "true",
        "driftline.io/topic": "fraud-scorer-predictions",
        "driftline.io/reference": URL_REFERENCE,
        **extra,
    }


def test_injects_sidecar_into_pod_without_volumes_labels_or_init_containers() -> None:
    pod = model_pod(annotated(**{"driftline.io/model": "fraud-scorer"}))
    pod["metadata"].pop("labels")
    response = review(pod)
    ops = json.loads(base64.b64decode(response["patch"]))
    # Absent maps and lists are added whole (a path into them would fail).
    whole = {op["path"] for op in ops if not op["path"].endswith("/-")}
    assert {"/metadata/labels", "/spec/volumes", "/spec/initContainers"} <= whole
    result = patched(pod, response)
    validate_pod(result)

    sidecar = container(result, CONTAINER_NAME)
    assert sidecar["args"] == ["run", "-c", "/etc/driftline/monitor.yaml"]
    assert sidecar["image"] == SETTINGS.image
    ctx = sidecar["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 65532
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sidecar["resources"]["requests"] and sidecar["resources"]["limits"]
    (port,) = sidecar["ports"]
    assert port == {"name": METRICS_PORT_NAME, "containerPort": 9108, "protocol": "TCP"}
    assert len(METRICS_PORT_NAME) <= 15  # IANA service name limit, not in the JSON schema
    assert sidecar["livenessProbe"]["httpGet"]["port"] == METRICS_PORT_NAME
    assert "readinessProbe" not in sidecar  # must never take the model out of its Service

    volumes = {v["name"]: v for v in result["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[STATE_DIR]["name"]]
    assert mounts[CONFIG_DIR]["readOnly"] is True
    assert "emptyDir" in volumes[mounts[CONFIG_DIR]["name"]]

    annotations = result["metadata"]["annotations"]
    assert annotations[ANNOTATION_INJECTED] == "true"
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9108"
    assert result["metadata"]["labels"][ANNOTATION_INJECTED] == "true"
    # The model's container is untouched.
    assert result["spec"]["containers"][0] == pod["spec"]["containers"][0]


def test_generated_config_is_valid_and_matches_the_pod() -> None:
    pod = model_pod(annotated(**{"driftline.io/window": "5m"}))
    result = patched(pod, review(pod))
    data = generated_config(result)
    cfg = parse_config(data)
    assert cfg.model == "fraud-scorer"  # from app.kubernetes.io/name
    assert cfg.source.kafka is not None
    assert cfg.source.kafka.topics == ["fraud-scorer-predictions"]
    assert cfg.source.kafka.bootstrap_servers == "kafka-0.kafka:9092"
    assert cfg.source.kafka.group_id == "driftline-fraud-scorer"
    assert cfg.windows.size == 300.0
    sidecar = container(result, CONTAINER_NAME)
    assert cfg.exporter.port == sidecar["ports"][0]["containerPort"]
    assert str(cfg.state.dir) == STATE_DIR
    # The init container fetches the URL to the path the config names, inside the
    # volume the sidecar reads.
    init = container(result, INIT_CONTAINER_NAME, init=True)
    args = init["args"]
    assert args[:2] == ["inject", "prepare"]
    assert args[args.index("--reference-url") + 1] == URL_REFERENCE
    assert args[args.index("--reference-file") + 1] == str(cfg.reference)
    assert str(cfg.reference).startswith(CONFIG_DIR + "/")
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    sidecar_mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    assert init_mounts[CONFIG_DIR] == sidecar_mounts[CONFIG_DIR]
    assert init["securityContext"] == sidecar["securityContext"]


def test_appends_to_existing_lists_and_escapes_annotation_keys() -> None:
    pod = model_pod(
        annotated(**{"example.com/owner~team": "ml"}),
        volumes=[{"name": "models", "emptyDir": {}}],
        initContainers=[{"name": "warmup", "image": "busybox:1.36"}],
    )
    response = review(pod)
    ops = json.loads(base64.b64decode(response["patch"]))
    paths = [op["path"] for op in ops]
    assert "/metadata/annotations/driftline.io~1injected" in paths
    assert "/metadata/annotations/prometheus.io~1scrape" in paths
    assert "/metadata/labels/driftline.io~1injected" in paths
    assert "/spec/volumes" not in paths and "/spec/volumes/-" in paths
    result = patched(pod, response)
    validate_pod(result)
    assert result["spec"]["volumes"][0]["name"] == "models"
    assert [c["name"] for c in result["spec"]["initContainers"]] == [
        "warmup",
        INIT_CONTAINER_NAME,
    ]
    assert result["metadata"]["annotations"]["example.com/owner~team"] == "ml"


def test_escape_pointer_follows_rfc_6901() -> None:
    assert escape_pointer("a/b") == "a~1b"
    assert escape_pointer("a~b") == "a~0b"
    assert escape_pointer("~/") == "~0~1"  # "~" first, or "/"'s "~1" would become "~01"
    doc = {"m": {}}
    key = "x~1/y"
    out = jsonpatch.apply_patch(
        doc, [{"op": "add", "path": f"/m/{escape_pointer(key)}", "value": 1}]
    )
    assert out == {"m": {key: 1}}


def test_injection_is_idempotent() -> None:
    pod = model_pod(annotated())
    once = patched(pod, review(pod))
    again = review(once)
    assert again["allowed"] is True
    assert "patch" not in again
    # The container alone (annotation removed) also stops a second injection.
    stripped = copy.deepcopy(once)
    del stripped["metadata"]["annotations"][ANNOTATION_INJECTED]
    assert "patch" not in review(stripped)


@pytest.mark.parametrize(
    ("annotations", "warned"),
    [
        (None, False),
        ({"driftline.io/inject": "false", "driftline.io/topic": "t"}, False),
        ({"driftline.io/inject": "yes"}, True),
    ],
)
def test_pods_not_asking_for_injection_pass_unchanged(
    annotations: dict[str, str] | None, warned: bool
) -> None:
    response = review(model_pod(annotations))
    assert response["allowed"] is True
    assert "patch" not in response and "patchType" not in response
    assert bool(response.get("warnings")) is warned


def test_other_kinds_operations_and_subresources_pass_unchanged() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m"}}
    kind = {"group": "apps", "version": "v1", "kind": "Deployment"}
    response = review(deployment, kind=kind, resource="deployments")
    assert response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}
    pod = model_pod(annotated())
    assert "patch" not in review(pod, operation="UPDATE")
    assert "patch" not in review(pod, sub_resource="status")
    assert "patch" in review(pod)  # the same pod on CREATE is injected


def test_answer_echoes_the_request_uid() -> None:
    response = review(model_pod(annotated()), uid="a-very-unique-uid")
    assert response["uid"] == "a-very-unique-uid"


# -- what the pod asks for cannot be done: per failure policy ----------------------------


@pytest.mark.parametrize(
    ("annotations", "key"),
    [
        ({"driftline.io/inject": "true", "driftline.io/reference": URL_REFERENCE}, "topic"),
        ({"driftline.io/inject": "true", "driftline.io/topic": "t"}, "reference"),
        (annotated(**{"driftline.io/window": "sixty"}), "windows.size"),
        (annotated(**{"driftline.io/record-format": "avro"}), "record.format"),
        (annotated(**{"driftline.io/reference": "s3://bucket/ref.json.gz"}), "s3://"),
        (annotated(**{"driftline.io/reference": "/models/ref.json.gz"}), "not inside a volume"),
        (annotated(**{"driftline.io/reference-sha256": "abc"}), "64 hexadecimal"),
        (annotated(**{"driftline.io/config": "Not_A_Name"}), "ConfigMap name"),
    ],
)
def test_bad_annotations_warn_under_ignore_and_deny_under_fail(
    annotations: dict[str, str], key: str
) -> None:
    pod = model_pod(annotations)
    ignore = review(pod)
    (warning,) = ignore["warnings"]
    assert key in warning and "not injected" in warning
    # Admitted without the sidecar; the reason is kept on the pod, where people look
    # (warnings of a Deployment's pods go to the ReplicaSet controller).
    result = patched(pod, ignore)
    assert result["spec"] == pod["spec"]
    assert key in result["metadata"]["annotations"].pop(ANNOTATION_ERROR)
    assert result == pod

    fail = review(pod, settings=SETTINGS.model_copy(update={"failure_policy": "Fail"}))
    assert fail["allowed"] is False and "patch" not in fail
    assert fail["status"]["code"] == 400
    assert key in fail["status"]["message"]


def test_port_and_volume_conflicts_are_reported() -> None:
    pod = model_pod(annotated())
    pod["spec"]["containers"][0]["ports"].append({"containerPort": 9108})
    (warning,) = review(pod)["warnings"]
    assert "9108" in warning
    pod = model_pod(annotated(), volumes=[{"name": "driftline-state", "emptyDir": {}}])
    (warning,) = review(pod)["warnings"]
    assert "driftline-state" in warning


# -- where the configuration and the reference come from ---------------------------------


def test_configmap_mode_mounts_the_configmap_and_needs_no_init_container() -> None:
    pod = model_pod(
        {
            "driftline.io/inject": "true",
            "driftline.io/config": "fraud-scorer-driftline",
            "driftline.io/topic": "ignored",
        }
    )
    response = review(pod)
    (warning,) = response["warnings"]
    assert "driftline.io/topic" in warning and "ignored" in warning
    result = patched(pod, response)
    validate_pod(result)
    assert not result["spec"].get("initContainers")
    sidecar = container(result, CONTAINER_NAME)
    mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in result["spec"]["volumes"]}
    assert volumes[mounts[CONFIG_DIR]]["configMap"] == {"name": "fraud-scorer-driftline"}


def test_reference_in_a_volume_the_model_mounts_is_mounted_read_only_in_the_sidecar() -> None:
    pod = model_pod(
        annotated(**{"driftline.io/reference": "/mnt/models/profiles/ref.json.gz"}),
        volumes=[{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
    )
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "models", "mountPath": "/mnt/models", "readOnly": True}
    ]
    result = patched(pod, review(pod))
    validate_pod(result)
    sidecar = container(result, CONTAINER_NAME)
    assert {"name": "models", "mountPath": "/mnt/models", "readOnly": True} in sidecar[
        "volumeMounts"
    ]
    assert generated_config(result)["reference"] == "/mnt/models/profiles/ref.json.gz"
    init = container(result, INIT_CONTAINER_NAME, init=True)
    assert "--reference-url" not in init["args"]


def test_reference_configmap_is_mounted_and_named_in_the_config() -> None:
    pod = model_pod(
        {
            "driftline.io/inject": "true",
            "driftline.io/topic": "preds",
            "driftline.io/model": "churn",
            "driftline.io/reference-configmap": "churn-reference",
            "driftline.io/reference": "churn.profile.json.gz",
            "driftline.io/bootstrap-servers": "kafka.streaming:9092",
        }
    )
    result = patched(pod, review(pod))
    validate_pod(result)
    cfg = parse_config(generated_config(result))
    assert cfg.model == "churn"
    assert cfg.source.kafka is not None
    assert cfg.source.kafka.bootstrap_servers == "kafka.streaming:9092"
    sidecar = container(result, CONTAINER_NAME)
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in result["spec"]["volumes"]}
    (name,) = [n for n, v in volumes.items() if v.get("configMap") == {"name": "churn-reference"}]
    assert str(cfg.reference) == f"{mounts[name]}/churn.profile.json.gz"


def test_pod_with_its_own_scrape_annotations_keeps_them() -> None:
    pod = model_pod(annotated(**{"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}))
    result = patched(pod, review(pod))
    assert result["metadata"]["annotations"]["prometheus.io/port"] == "8080"


def test_sasl_password_comes_from_a_secret_named_in_the_config() -> None:
    settings = InjectorSettings(
        kafka={
            "bootstrap_servers": "kafka:9093",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "driftline",
            "password_secret": {"name": "kafka-driftline", "key": "password"},
        }
    )
    pod = model_pod(annotated())
    result = patched(pod, review(pod, settings=settings))
    validate_pod(result)
    cfg = parse_config(generated_config(result))
    assert cfg.source.kafka is not None
    env = {e["name"]: e for e in container(result, CONTAINER_NAME)["env"]}
    secret_env = env[cfg.source.kafka.sasl_password_env or ""]
    assert secret_env["valueFrom"]["secretKeyRef"] == {"name": "kafka-driftline", "key": "password"}
    assert "value" not in secret_env
    assert "password" not in generated_config(result)["source"]["kafka"]


def test_decide_reports_why_nothing_was_done() -> None:
    assert decide(model_pod(None), "ml", SETTINGS).action == "skip"
    outcome = decide({"metadata": {}, "spec": {"containers": "x"}}, "ml", SETTINGS)
    assert outcome.action == "error"


# -- malformed reviews -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
        b'{"request": {"uid": 7}}',
    ],
)
def test_reviews_without_a_uid_get_http_400(body: bytes) -> None:
    status, answer = handle_review(body, SETTINGS)
    assert status == 400
    assert "error" in answer


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(apiVersion="admission.k8s.io/v1beta1"),
        lambda r: r.update(kind="Pod"),
        lambda r: r["request"].update(object="not a pod"),
        lambda r: r["request"]["object"].update(spec={"containers": None}),
    ],
)
@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_malformed_reviews_with_a_uid_get_a_well_formed_answer(mutate: Any, policy: str) -> None:
    body = admission_review(model_pod(annotated()))
    mutate(body)
    settings = SETTINGS.model_copy(update={"failure_policy": policy})
    status, answer = handle_review(json.dumps(body).encode(), settings)
    assert status == 200
    assert answer["kind"] == "AdmissionReview"
    assert answer["apiVersion"].startswith("admission.k8s.io/")
    response = answer["response"]
    assert response["uid"] == body["request"]["uid"]
    if policy == "Ignore":
        assert response["allowed"] is True and response["warnings"]
        ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
        assert all(op["path"].startswith("/metadata/annotations") for op in ops)
    else:
        assert response["allowed"] is False and response["status"]["message"]
        assert "patch" not in response


# -- settings ----------------------------------------------------------------------------


def test_settings_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "injector.yaml"
    path.write_text(
        "image: registry.example/driftline:1.2.3\nkafka:\n  bootstrap_servers: k:9092\n"
    )
    settings = load_settings(path)
    assert settings.image == "registry.example/driftline:1.2.3"
    assert settings.failure_policy == "Ignore"
    path.write_text("imagee: x\n")
    with pytest.raises(SettingsError, match="imagee"):
        load_settings(path)
    path.write_text("kafka: {password_secret: {name: Bad_Name}}\n")
    with pytest.raises(SettingsError, match="password_secret"):
        load_settings(path)


def test_serve_command_fails_cleanly_on_bad_settings_or_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = _self_signed(tmp_path, "x")
    bad = tmp_path / "injector.yaml"
    bad.write_text("failure_policy: Sometimes\n")
    args = ["inject", "serve", "--tls-cert", str(cert), "--tls-key", str(key)]
    assert cli_main([*args, "--settings", str(bad)]) == 2
    assert "failure_policy" in capsys.readouterr().err
    missing = ["inject", "serve", "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(key)]
    assert cli_main([*missing, "--port", "0"]) == 2
    assert "cannot start the injector" in capsys.readouterr().err


def test_serve_command_runs_until_sigterm(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "driftline-injector")
    settings = tmp_path / "injector.yaml"
    settings.write_text("kafka: {bootstrap_servers: 'kafka:9092'}\n")
    command = [sys.executable, "-m", "monitor.cli", "inject", "serve", "--tls-cert", str(cert),
               "--tls-key", str(key), "--settings", str(settings), "--host", "127.0.0.1",
               "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path.cwd())
    try:
        assert proc.stderr is not None
        port = None
        for _ in range(50):
            line = proc.stderr.readline()
            found = re.search(r"listening on https://127\.0\.0\.1:(\d+)/mutate", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "the injector did not say where it listens"
        pod = model_pod(annotated())
        status, answer = _request(
            _client(port, cert), "POST", "/mutate", json.dumps(admission_review(pod)).encode()
        )
        assert status == 200
        validate_pod(patched(pod, answer["response"]))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the init step -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def profile_bytes(tmp_path_factory: pytest.TempPathFactory, reference_frame: Any) -> bytes:
    path = tmp_path_factory.mktemp("profile") / "reference.json.gz"
    build_profile(reference_frame.iloc[:300], sample_rows=100).save(path)
    return path.read_bytes()


class _Files(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {}
    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status, body = self.routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server(profile_bytes: bytes) -> Iterator[tuple[str, type[_Files]]]:
    class Handler(_Files):
        routes: ClassVar[dict[str, tuple[int, bytes]]] = {
            "/ref.json.gz": (200, profile_bytes),
            "/error.html": (200, b"<html>Access denied</html>"),
            "/flaky": (503, b"busy"),
        }
        hits: ClassVar[dict[str, int]] = {}

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_prepare_writes_the_config_and_fetches_the_reference(
    tmp_path: Path,
    file_server: tuple[str, type[_Files]],
    profile_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, _ = file_server
    pod = model_pod(annotated(**{"driftline.io/reference": f"{base}/ref.json.gz"}))
    result = patched(pod, review(pod))
    init = container(result, INIT_CONTAINER_NAME, init=True)
    env = {e["name"]: e["value"] for e in init["env"]}
    monkeypatch.setenv(MONITOR_YAML_ENV, env[MONITOR_YAML_ENV])
    # The init container's own arguments, with its paths moved under tmp_path.
    args = [a.replace(CONFIG_DIR, str(tmp_path)) for a in init["args"]]
    assert cli_main(args) == 0
    written = yaml.safe_load((tmp_path / "monitor.yaml").read_text())
    assert written == yaml.safe_load(env[MONITOR_YAML_ENV])
    fetched = Path(written["reference"].replace(CONFIG_DIR, str(tmp_path)))
    assert fetched.read_bytes() == profile_bytes
    assert load_profile(fetched).rows == 300


def test_fetch_reference_checks_what_it_downloads(
    tmp_path: Path, file_server: tuple[str, type[_Files]], profile_bytes: bytes
) -> None:
    base, handler = file_server
    target = tmp_path / "ref.json.gz"
    digest = hashlib.sha256(profile_bytes).hexdigest()
    fetch_reference(f"{base}/ref.json.gz", target, sha256=digest.upper())
    assert target.read_bytes() == profile_bytes

    with pytest.raises(PrepareError, match="SHA-256"):
        fetch_reference(f"{base}/ref.json.gz", tmp_path / "a.json.gz", sha256="0" * 64)
    with pytest.raises(PrepareError, match="not a driftline profile"):
        fetch_reference(f"{base}/error.html", tmp_path / "b.json.gz")
    with pytest.raises(PrepareError, match="HTTP 404"):
        fetch_reference(f"{base}/missing", tmp_path / "c.json.gz", sleep=lambda s: None)
    assert handler.hits["/missing"] == 1  # a 404 is not retried
    delays: list[float] = []
    with pytest.raises(PrepareError, match="after 3 attempts"):
        fetch_reference(f"{base}/flaky", tmp_path / "d.json.gz", attempts=3, sleep=delays.append)
    assert handler.hits["/flaky"] == 3 and len(delays) == 2 and delays[1] > delays[0]
    with pytest.raises(PrepareError, match="http"):
        fetch_reference(f"file://{target}", tmp_path / "e.json.gz")
    assert not any((tmp_path / n).exists() for n in ("a.json.gz", "b.json.gz", "d.json.gz"))


def test_write_config_refuses_an_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="source"):
        write_config("model: m\nreference: r.json.gz\n", tmp_path)
    assert not (tmp_path / "monitor.yaml").exists()


# -- the HTTPS server --------------------------------------------------------------------


def _self_signed(directory: Path, common_name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: cryptography if installed, else openssl."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        assert openssl, "the TLS tests need the cryptography package or the openssl CLI"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", f"/CN={common_name}",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[InjectorServer, Path]]:
    cert, key = _self_signed(tmp_path, "driftline-injector-test")
    with InjectorServer(SETTINGS, cert, key, host="127.0.0.1", port=0) as server:
        yield server, cert


def _client(port: int, cafile: Path) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(cafile))
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)


def _request(
    conn: http.client.HTTPSConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def test_tls_server_answers_admission_reviews(tls_server: tuple[InjectorServer, Path]) -> None:
    server, cert = tls_server
    conn = _client(server.port, cert)
    pod = model_pod(annotated())
    body = json.dumps(admission_review(pod)).encode()
    # The API server appends ?timeout=...; the connection is kept alive between requests.
    status, answer = _request(conn, "POST", "/mutate?timeout=5s", body)
    assert status == 200
    validate_pod(patched(pod, answer["response"]))
    status, answer = _request(conn, "POST", "/mutate", b"{oops")
    assert status == 400
    status, answer = _request(conn, "GET", "/healthz")
    assert (status, answer) == (200, {"status": "ok"})
    status, _ = _request(conn, "GET", "/mutate")
    assert status == 405
    status, _ = _request(conn, "POST", "/validate", body)
    assert status == 404
    conn.close()


def test_tls_server_refuses_plain_http(tls_server: tuple[InjectorServer, Path]) -> None:
    server, _ = tls_server
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/healthz")
        conn.getresponse()
    conn.close()
    # ... and keeps serving TLS clients afterwards.
    status, _ = _request(_client(server.port, tls_server[1]), "GET", "/healthz")
    assert status == 200


def test_tls_server_reloads_a_renewed_certificate(
    tls_server: tuple[InjectorServer, Path], tmp_path: Path
) -> None:
    server, cert = tls_server
    old = tmp_path / "old.crt"
    old.write_bytes(cert.read_bytes())
    renewed = tmp_path / "renewed"
    renewed.mkdir()
    new_cert, new_key = _self_signed(renewed, "driftline-injector-renewed")
    # cert-manager renews the Secret; the kubelet swaps the mounted files.
    cert.with_name("tls.key").write_bytes(new_key.read_bytes())
    cert.write_bytes(new_cert.read_bytes())
    status, _ = _request(_client(server.port, new_cert), "GET", "/healthz")
    assert status == 200
    assert server.certificates.reloads == 1
    with pytest.raises(ssl.SSLCertVerificationError):
        _request(_client(server.port, old), "GET", "/healthz")
