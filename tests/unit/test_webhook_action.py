"""The signed webhook action against a real receiver on 127.0.0.1 that checks signatures."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.results import DriftResult, QualityResult, TestResult, WindowReport
from monitor.actions import ActionError, Retry
from monitor.actions.audit import AuditLog, read_audit
from monitor.actions.decision import Decision
from monitor.actions.factory import build_actions
from monitor.actions.history import report_summary
from monitor.actions.policy import PolicyEngine
from monitor.actions.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    sign,
    signature_header,
    verify,
)
from monitor.actions.webhook import EVENT_HEADER, WebhookAction
from monitor.config.rollback import ActionConfig, RollbackSettings

SECRET = "whsec-test-0123456789abcdef"
SECRET_ENV = "DRIFTLINE_TEST_HOOK_SECRET"


class Receiver:
    """A webhook receiver: answers from a script of statuses, verifies every signature."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [200])
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(SECRET, headers.get(SIGNATURE_HEADER.lower()), body)
                    verified = True
                except SignatureError:
                    verified = False
                receiver.requests.append(
                    {"path": self.path, "headers": headers, "body": body, "verified": verified}
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = (
                    receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                )
                if not verified:
                    status = 401
                answer = b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up (the timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/driftline"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None, delay: float = 0.0) -> Receiver:
        r = Receiver(statuses, delay)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def report() -> WindowReport:
    drift = DriftResult(
        0.5, 1, 2, 0.5, True, "none",
        (TestResult("age", "psi", 0.4, None, 0.2, True),
         TestResult("city", "jensen_shannon", 0.01, None, 0.1, False)),
    )  # fmt: skip
    none = DriftResult(0.0, 0, 1, 0.5, False, "none", ())
    return WindowReport(
        model="fraud",
        model_version="v2",
        window_start=1_700_000_000.0,
        window_end=1_700_000_060.0,
        reference_hash="abc123" * 4,
        rows=500,
        drift=drift,
        prediction_drift=none,
        quality=QualityResult(rows=500),
    )


def decision() -> Decision:
    return Decision(
        id="d" * 32,
        policy="abort-canary",
        model="fraud",
        version="v2",
        stable_version="v1",
        reason="3 window(s) in a row bad",
        trigger={"kind": "windows", "bad_windows": 3},
        dry_run=False,
        decided_at=1_700_000_100.0,
        actions=("notify",),
        reports=(report_summary(report()),),
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def action(
    url: str, *, retries: int = 3, timeout: float = 5.0, rand: float = 0.5
) -> tuple[WebhookAction, Sleeps]:
    config = ActionConfig.model_validate(
        {
            "kind": "webhook",
            "url": url,
            "secret_env": SECRET_ENV,
            "timeout": timeout,
            "retries": retries,
            "backoff": "100ms",
            "max_backoff": "250ms",
            "headers": {"X-Team": "ml-platform"},
        }
    )
    sleeps = Sleeps()
    retry = Retry(
        config.retries, config.backoff, config.max_backoff, sleep=sleeps, rand=lambda: rand
    )
    return WebhookAction("notify", config, retry=retry), sleeps


def test_posts_a_signed_description_of_the_decision(receiver_factory: Any) -> None:
    receiver = receiver_factory([200])
    hook, _ = action(receiver.url)
    detail = hook.execute(decision())
    assert "200" in detail
    (req,) = receiver.requests
    assert req["verified"], "the receiver's verify() accepted the signature"
    assert req["path"] == "/hooks/driftline"
    headers = req["headers"]
    assert headers["content-type"] == "application/json"
    assert headers[EVENT_HEADER.lower()] == "rollback"
    assert headers["x-team"] == "ml-platform"
    assert len(headers[IDEMPOTENCY_HEADER.lower()]) >= 32
    body = orjson.loads(req["body"])
    assert (body["model"], body["version"], body["stable_version"]) == ("fraud", "v2", "v1")
    assert body["policy"] == "abort-canary" and body["decision_id"] == "d" * 32
    assert body["reason"] == "3 window(s) in a row bad"
    (evidence,) = body["evidence"]["reports"]
    assert evidence["window"] == {"start": 1_700_000_000.0, "end": 1_700_000_060.0, "kind": "time"}
    assert evidence["dataset_drift"]["share"] == 0.5
    assert [c["feature"] for c in evidence["dataset_drift"]["drifted_columns"]] == ["age"]
    assert evidence["reference_hash"] == "abc123" * 4
    assert SECRET not in req["body"].decode()


def test_5xx_is_retried_with_backoff_and_the_same_idempotency_key(receiver_factory: Any) -> None:
    receiver = receiver_factory([503, 502, 200])
    hook, sleeps = action(receiver.url, rand=1.0)
    assert "attempt 3" in hook.execute(decision())
    assert len(receiver.requests) == 3
    assert all(r["verified"] for r in receiver.requests)
    keys = {r["headers"][IDEMPOTENCY_HEADER.lower()] for r in receiver.requests}
    assert len(keys) == 1
    # rand()=1 gives the cap of each full-jitter draw: 100ms, then 200ms (under max 250ms)
    assert sleeps.calls == pytest.approx([0.1, 0.2])


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    draws = iter([0.0, 0.25, 0.999, 0.5, 1.0])
    retry = Retry(retries=5, backoff=0.1, max_backoff=0.3, rand=lambda: next(draws))
    delays = [retry.delay(n) for n in range(5)]
    caps = [0.1, 0.2, 0.3, 0.3, 0.3]
    assert all(0.0 <= d <= c + 1e-12 for d, c in zip(delays, caps, strict=True))
    assert delays[0] == 0.0 and delays[4] == pytest.approx(0.3)


def test_4xx_fails_at_once(receiver_factory: Any) -> None:
    receiver = receiver_factory([422])
    hook, sleeps = action(receiver.url)
    with pytest.raises(ActionError) as exc:
        hook.execute(decision())
    assert exc.value.status == 422 and not exc.value.retryable
    assert len(receiver.requests) == 1 and sleeps.calls == []


def test_retries_run_out(receiver_factory: Any) -> None:
    receiver = receiver_factory([500])
    hook, sleeps = action(receiver.url, retries=2)
    with pytest.raises(ActionError) as exc:
        hook.execute(decision())
    assert "after 3 attempts" in str(exc.value)
    assert len(receiver.requests) == 3 and len(sleeps.calls) == 2


def test_connection_errors_are_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    hook, sleeps = action(f"http://127.0.0.1:{port}/", retries=2)
    with pytest.raises(ActionError) as exc:
        hook.execute(decision())
    assert exc.value.retryable and len(sleeps.calls) == 2


def test_a_slow_receiver_times_out(receiver_factory: Any) -> None:
    receiver = receiver_factory([200], delay=1.0)
    hook, _ = action(receiver.url, retries=0, timeout=0.2)
    with pytest.raises(ActionError) as exc:
        hook.execute(decision())
    assert exc.value.retryable
    assert "timed out" in str(exc.value).lower()


def test_without_the_secret_nothing_is_sent(
    receiver_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = receiver_factory([200])
    monkeypatch.delenv(SECRET_ENV)
    hook, _ = action(receiver.url)
    with pytest.raises(ActionError) as exc:
        hook.execute(decision())
    assert SECRET_ENV in str(exc.value)
    assert receiver.requests == []


def test_the_engine_calls_the_webhook_and_never_logs_the_secret(
    receiver_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = receiver_factory([503, 200])
    settings = RollbackSettings.model_validate(
        {
            "model": "fraud",
            "policies": [
                {"name": "p", "when": "dataset_drift", "for_windows": 1, "actions": ["notify"]}
            ],
            "actions": {
                "notify": {
                    "kind": "webhook",
                    "url": receiver.url,
                    "secret_env": SECRET_ENV,
                    "backoff": "10ms",
                }
            },
            "audit": {"path": str(tmp_path / "audit.jsonl")},
        }
    )
    engine = PolicyEngine(
        settings, build_actions(settings.actions), audit=AuditLog(settings.audit_path())
    )
    try:
        decisions = engine.observe_report(report())
        assert engine.flush(10)
    finally:
        engine.close()
    assert [d.outcome for d in decisions] == ["acted"]
    assert [r["verified"] for r in receiver.requests] == [True, True]
    body = orjson.loads(receiver.requests[-1]["body"])
    assert body["decision_id"] == decisions[0].id
    (line,) = read_audit(settings.audit_path())
    assert line["outcome"] == "acted" and line["action"] == "notify"
    assert SECRET not in caplog.text
    assert SECRET not in (tmp_path / "audit.jsonl").read_text()


# -- signing and verification --------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, body) == expected
    assert signature_header(SECRET, body, 1_700_000_000) == f"t=1700000000,v1={expected}"


def test_verify_accepts_a_fresh_signature_and_rejects_tampering() -> None:
    body = b'{"version":"v2"}'
    header = signature_header(SECRET, body, 1_000)
    assert verify(SECRET, header, body, now=lambda: 1_100.0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(SECRET, header, b'{"version":"v1"}', now=lambda: 1_100.0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify("another-secret", header, body, now=lambda: 1_100.0)
    forged_time = header.replace("t=1000", "t=1050")
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(SECRET, forged_time, body, now=lambda: 1_100.0)


def test_verify_rejects_stale_and_future_timestamps() -> None:
    body = b"{}"
    header = signature_header(SECRET, body, 1_000)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, header, body, tolerance=300, now=lambda: 1_301.0)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, header, body, tolerance=300, now=lambda: 699.0)
    assert verify(SECRET, header, body, tolerance=300, now=lambda: 1_300.0)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "missing"),
        ("", "missing"),
        ("v1=abc", "no timestamp"),
        ("t=1000", "no v1"),
        ("t=soon,v1=abc", "not one integer"),
        ("t=1000,t=1001,v1=abc", "not one integer"),
    ],
)
def test_verify_rejects_malformed_headers(header: str | None, words: str) -> None:
    with pytest.raises(SignatureError, match=words):
        verify(SECRET, header, b"{}", now=lambda: 1_000.0)


def test_verify_accepts_any_secret_of_a_rotation() -> None:
    body = b"{}"
    header = signature_header("old-secret", body, 1_000)
    assert verify([SECRET, "old-secret"], header, body, now=lambda: 1_000.0)
    with pytest.raises(SignatureError):
        verify([SECRET], header, body, now=lambda: 1_000.0)
