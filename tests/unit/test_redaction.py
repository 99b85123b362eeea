"""Credentials written into a URL never come out again: not in `config check`, not in the
agent's log, not in the audit log. One helper (monitor/redaction.py) does it everywhere."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from detectors.results import DriftResult, QualityResult, TestResult, WindowReport
from monitor.actions.audit import AuditLog, read_audit
from monitor.actions.policy import PolicyEngine
from monitor.actions.webhook import WebhookAction
from monitor.config.rollback import RollbackSettings
from monitor.redaction import RedactingFormatter, redact, redact_text, redact_url

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-s3cret"
TOKEN = "tok-9f8e7d"
SECRET_ENV = "DRIFTLINE_TEST_REDACT_SECRET"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:hunter2@hooks.example/x", "https://***@hooks.example/x"),
        ("https://ghp_abc@hooks.example:8443/x", "https://***@hooks.example:8443/x"),
        ("https://hooks.example/x?token=abc&team=ml", "https://hooks.example/x?token=***&team=ml"),
        ("https://h.example/x?API_KEY=1&sig=2", "https://h.example/x?API_KEY=***&sig=***"),
        ("https://h.example/cb#access_token=abc", "https://h.example/cb#access_token=***"),
        ("https://hooks.example/x?team=ml", "https://hooks.example/x?team=ml"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://u:p@[::1:8080/x", "http://***"),  # unparseable: everything masked
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_every_url_and_leaves_the_rest() -> None:
    text = f"POST https://bot:{PASSWORD}@h.example/x failed; retry 'http://a:{TOKEN}@b/c'"
    out = redact_text(text)
    assert PASSWORD not in out and TOKEN not in out
    assert out == "POST https://***@h.example/x failed; retry 'http://***@b/c'"
    assert redact_text("no url here: a@b ?x=1") == "no url here: a@b ?x=1"
    assert redact({"a": [f"https://u:{PASSWORD}@h/"], "n": 3}) == {"a": ["https://***@h/"], "n": 3}


def test_log_lines_are_redacted_whoever_writes_them() -> None:
    formatter = RedactingFormatter("%(name)s: %(message)s")
    record = logging.LogRecord(
        "aiokafka",
        logging.ERROR,
        __file__,
        1,
        "cannot reach %s",
        (f"http://u:{PASSWORD}@h/",),
        None,
    )
    assert formatter.format(record) == "aiokafka: cannot reach http://***@h/"


def _config(tmp_path: Path, url: str) -> Path:
    data = {
        "model": "fraud",
        "reference": "ref.json",
        "source": {
            "kind": "kafka",
            "kafka": {"bootstrap_servers": "k:9092", "topics": ["p"], "group_id": "g"},
        },
        "policies": [
            {"name": "p", "when": "dataset_drift", "for_windows": 1, "actions": ["notify"]}
        ],
        "actions": {"notify": {"kind": "webhook", "url": url, "secret_env": SECRET_ENV}},
        "exporter": {"otlp_endpoint": f"https://otel:{PASSWORD}@collector.example:4318"},
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def config_check(cwd: Path) -> subprocess.CompletedProcess[str]:
    command = ["config", "check", "-c", "monitor.yaml", "--no-reference"]
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *command],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_config_check_masks_credentials_in_urls(tmp_path: Path) -> None:
    url = f"https://deploy-bot:{PASSWORD}@deploy.example/hooks/driftline?token={TOKEN}"
    _config(tmp_path, url)
    result = config_check(tmp_path)
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    assert PASSWORD not in shown and TOKEN not in shown
    effective = yaml.safe_load(result.stdout)
    assert effective["actions"]["notify"]["url"] == (
        "https://***@deploy.example/hooks/driftline?token=***"
    )
    assert effective["exporter"]["otlp_endpoint"] == "https://***@collector.example:4318"


def test_a_bad_webhook_url_is_named_without_its_password(tmp_path: Path) -> None:
    _config(tmp_path, f"ftp://bot:{PASSWORD}@deploy.example/x")
    result = config_check(tmp_path)
    assert result.returncode == 2 and "actions.notify.url" in result.stderr, result.stderr
    assert PASSWORD not in result.stderr


class _Receiver:
    """Answers 503 then 200 and remembers the Authorization header it got."""

    def __init__(self) -> None:
        self.statuses = [503, 200]
        self.authorization: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.authorization.append(self.headers.get("Authorization"))
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def _drifted_report() -> WindowReport:
    drift = DriftResult(
        1.0, 1, 1, 0.5, True, "none", (TestResult("age", "psi", 0.4, None, 0.2, True),)
    )
    return WindowReport(
        model="fraud",
        model_version="v2",
        window_start=1_700_000_000.0,
        window_end=1_700_000_060.0,
        reference_hash="abc123" * 4,
        rows=500,
        drift=drift,
        prediction_drift=DriftResult(0.0, 0, 1, 0.5, False, "none", ()),
        quality=QualityResult(rows=500),
    )


def test_a_webhook_with_credentials_in_its_url_uses_them_and_never_shows_them(
    receiver: _Receiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_ENV, "signing-secret")
    caplog.set_level(logging.DEBUG)
    # the agent's loggers too: the live demo (run earlier in the same process) quiets them
    caplog.set_level(logging.DEBUG, logger="monitor")
    url = f"http://deploy-bot:{PASSWORD}@127.0.0.1:{receiver.port}/hook?token={TOKEN}"
    settings = RollbackSettings.model_validate(
        {
            "model": "fraud",
            "policies": [
                {"name": "p", "when": "dataset_drift", "for_windows": 1, "actions": ["notify"]}
            ],
            "actions": {
                "notify": {
                    "kind": "webhook",
                    "url": url,
                    "secret_env": SECRET_ENV,
                    "backoff": "10ms",
                }
            },
            "audit": {"path": str(tmp_path / "audit.jsonl")},
        }
    )
    hook = WebhookAction("notify", settings.actions["notify"])
    engine = PolicyEngine(settings, {"notify": hook}, audit=AuditLog(settings.audit_path()))
    try:
        decisions = engine.observe_report(_drifted_report())
        assert engine.flush(10)
    finally:
        engine.close()
    assert [d.outcome for d in decisions] == ["acted"]
    # the URL's user info was sent as Basic authentication, on every attempt
    basic = "Basic " + base64.b64encode(f"deploy-bot:{PASSWORD}".encode()).decode()
    assert receiver.authorization == [basic, basic]
    audit_text = (tmp_path / "audit.jsonl").read_text()
    records = list(read_audit(settings.audit_path()))
    assert records and any("***@127.0.0.1" in str(r) for r in records), records
    # the attempt that failed (503) and the one that worked were logged, redacted
    log_text = "\n".join(RedactingFormatter().format(r) for r in caplog.records)
    assert "503" in caplog.text
    for text in (audit_text, caplog.text, log_text):
        assert PASSWORD not in text and TOKEN not in text
    # AuditLog masks whatever a record carries, from any caller
    AuditLog(tmp_path / "other.jsonl", fsync=False).append(
        {"detail": f"POST https://u:{PASSWORD}@h/x answered 500", "nested": {"u": url}}
    )
    other = (tmp_path / "other.jsonl").read_text()
    assert PASSWORD not in other and TOKEN not in other and "https://***@h/x" in other
