"""The agent's HTTP server over real HTTP on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import gzip
import http.client
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from detectors.results import DriftResult, QualityCheck, QualityResult, TestResult, WindowReport
from monitor.outputs import metrics as m
from monitor.outputs.exporter import Exporter
from monitor.outputs.server import (
    AgentServer,
    HTTPError,
    Request,
    Response,
    require_bearer_token,
)
from monitor.runtime.health import READY, Health

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


def make_report(model_version: str = "v1", statistic: float = 0.3) -> WindowReport:
    drift = DriftResult(
        share=0.5,
        drifted_count=1,
        tested_count=2,
        share_threshold=0.5,
        drifted=True,
        correction="none",
        columns=(
            TestResult("age", "ks", statistic, 0.001, 0.05, True),
            TestResult("city", "jensen_shannon", 0.02, None, 0.1, False),
        ),
    )
    prediction = DriftResult(
        0.0, 0, 1, 0.5, False, "none", (TestResult("score", "psi", 0.01, None, 0.2, False),)
    )
    quality = QualityResult(
        rows=200, checks=(QualityCheck("age", "missing", 0.01, 0.0, 0.05, False, 2),)
    )
    return WindowReport(
        model="fraud",
        model_version=model_version,
        window_start=1_700_000_000.0,
        window_end=1_700_000_060.0,
        reference_hash="abcdef0123456789",
        rows=200,
        drift=drift,
        prediction_drift=prediction,
        quality=quality,
        exemplar_trace_ids=(TRACE,),
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def exporter() -> Exporter:
    return Exporter("fraud", "60s", "abcdef0123456789")


@pytest.fixture
def health(clock: FakeClock) -> Health:
    """The agent's own health record (what Agent.run hands the server)."""
    return Health(clock=clock)


@pytest.fixture
def latest() -> dict[str, WindowReport]:
    """The agent's latest report per model version."""
    return {}


@pytest.fixture
def server(
    exporter: Exporter, clock: FakeClock, health: Health, latest: dict[str, WindowReport]
) -> Iterator[AgentServer]:
    srv = AgentServer(
        "127.0.0.1",
        0,
        registry=exporter.registry,
        ready=health.ready,
        last_tick=lambda: health.last_tick,
        latest_reports=lambda: dict(latest),
        clock=health.clock,
        max_body_bytes=64,
        stale_after=30.0,
    )

    def echo(req: Request) -> Response:
        return Response.json(
            {
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "x_thing": req.header("X-Thing"),
                "json": req.json(),
            }
        )

    def boom(req: Request) -> Response:
        raise RuntimeError("handler bug")

    def teapot(req: Request) -> Response:
        raise HTTPError(418, "short and stout")

    srv.add_route("POST", "/echo", echo)
    srv.add_route("GET", "/boom", boom)
    srv.add_route("GET", "/teapot", teapot)
    srv.add_route("POST", "/v1/alerts", require_bearer_token("DRIFTLINE_TEST_TOKEN")(echo))
    srv.start()
    yield srv
    srv.stop()


def call(
    srv: AgentServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_port_zero_binds_an_ephemeral_loopback_port(server: AgentServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert ("GET", "/metrics") in server.routes()


def test_metrics_text_format_carries_the_window(server: AgentServer, exporter: Exporter) -> None:
    exporter.observe_report(make_report(), 0.02)
    status, headers, body = call(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    stat = families[m.FEATURE_DRIFT_STATISTIC.name]
    by_feature = {s.labels["feature"]: s.value for s in stat.samples}
    assert by_feature == {"age": 0.3, "city": 0.02}
    assert families[m.WINDOW_ROWS.name].samples[0].value == 200
    assert TRACE not in body.decode()  # exemplars only in OpenMetrics


def test_metrics_openmetrics_format_has_exemplars(server: AgentServer, exporter: Exporter) -> None:
    exporter.observe_report(make_report(), 0.02)
    status, headers, body = call(server, "GET", "/metrics", headers={"Accept": OPENMETRICS})
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    exemplars = {
        s.name: s.exemplar.labels["trace_id"]
        for f in parse_openmetrics(text)
        for s in f.samples
        if s.exemplar is not None
    }
    assert exemplars[m.WINDOWS_CLOSED.name] == TRACE
    assert exemplars[m.WINDOW_EVALUATION_SECONDS.name + "_bucket"] == TRACE


def test_metrics_gzip_when_accepted(server: AgentServer, exporter: Exporter) -> None:
    exporter.set_source_up(True)
    status, headers, body = call(server, "GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert f'{m.SOURCE_UP.name}{{model="fraud"}} 1.0' in gzip.decompress(body).decode()


def test_healthz_reports_tick_age_and_fails_when_the_loop_stalls(
    server: AgentServer, clock: FakeClock, health: Health
) -> None:
    clock.now += 12.5
    status, _, body = call(server, "GET", "/healthz")
    assert status == 200
    assert orjson.loads(body)["last_tick_age_seconds"] == pytest.approx(12.5)
    clock.now += 20.0  # 32.5 s without a tick > stale_after=30
    status, _, body = call(server, "GET", "/healthz")
    assert status == 503 and orjson.loads(body)["status"] == "stalled"
    health.tick()
    status, _, body = call(server, "GET", "/healthz")
    assert status == 200 and orjson.loads(body)["last_tick_age_seconds"] == 0.0


def test_readyz_needs_reference_and_consuming_source(server: AgentServer, health: Health) -> None:
    status, headers, body = call(server, "GET", "/readyz")
    assert status == 503 and headers["content-type"] == "application/json"
    reason = orjson.loads(body)["reason"]
    assert reason == "reference profile not loaded; source not consuming"
    health.reference_loaded = True
    status, _, body = call(server, "GET", "/readyz")
    assert status == 503 and orjson.loads(body)["reason"] == "source not consuming"
    health.consuming = True
    status, _, body = call(server, "GET", "/readyz")
    assert status == 200 and orjson.loads(body) == {"ready": True, "reason": READY}
    health.consuming = False  # e.g. the broker went away
    assert call(server, "GET", "/readyz")[0] == 503


def test_the_documented_readyz_answers_are_the_agents() -> None:
    answered = {Health().ready()[1], Health(reference_loaded=True).ready()[1]}
    answered.add(Health(reference_loaded=True, consuming=True).ready()[1])
    text = "\n".join(
        p.read_text() for p in (Path(__file__).resolve().parents[2] / "docs").glob("*.md")
    )
    quoted = set(re.findall(r'"ready": (?:true|false), "reason": "([^"]*)"', text))
    assert quoted, "the docs show /readyz answers"
    assert quoted <= answered, quoted - answered


def test_latest_reports_per_model_version(
    server: AgentServer, latest: dict[str, WindowReport]
) -> None:
    status, _, body = call(server, "GET", "/v1/reports/latest")
    assert status == 200 and orjson.loads(body) == {"reports": []}
    latest["v1"] = make_report("v1", statistic=0.1)
    latest["v1"] = make_report("v1", statistic=0.4)  # replaces the first
    latest["v2"] = make_report("v2")
    status, _, body = call(server, "GET", "/v1/reports/latest")
    reports = [WindowReport.from_dict(d) for d in orjson.loads(body)["reports"]]
    assert [r.model_version for r in reports] == ["v1", "v2"]
    assert reports[0] == make_report("v1", statistic=0.4)
    status, _, body = call(server, "GET", "/v1/reports/latest?model_version=v2")
    assert [d["model_version"] for d in orjson.loads(body)["reports"]] == ["v2"]


def test_unknown_path_is_404(server: AgentServer) -> None:
    status, _, body = call(server, "GET", "/nope")
    assert status == 404 and "/nope" in orjson.loads(body)["error"]


def test_wrong_method_is_405_with_allow(server: AgentServer) -> None:
    status, headers, body = call(server, "POST", "/metrics", body=b"{}")
    assert status == 405
    assert set(headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert "POST" in orjson.loads(body)["error"]
    status, headers, _ = call(server, "GET", "/echo")
    assert status == 405 and headers["allow"] == "POST"
    # a method the stdlib has no do_ handler for still gets a routed answer
    assert call(server, "BREW", "/healthz")[0] == 405


def test_head_answers_like_get_without_a_body(server: AgentServer) -> None:
    status, headers, body = call(server, "HEAD", "/healthz")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_body_over_the_limit_is_413(server: AgentServer) -> None:
    status, _, body = call(server, "POST", "/echo", body=b"x" * 65)
    assert status == 413 and "64" in orjson.loads(body)["error"]
    # a large body is read past, so the answer arrives intact and the connection lives on
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/echo", body=b"y" * (3 << 20))
        resp = conn.getresponse()
        assert resp.status == 413 and b"exceeds the limit" in resp.read()
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    status, _, body = call(server, "POST", "/echo", body=b'{"a": 1}')
    assert status == 200 and orjson.loads(body)["json"] == {"a": 1}


def test_handler_sees_query_headers_and_json(server: AgentServer) -> None:
    status, _, body = call(
        server, "POST", "/echo?x=1&x=2&y=", body=b"[1, 2]", headers={"X-Thing": "yes"}
    )
    got = orjson.loads(body)
    assert status == 200
    assert got["query"] == {"x": ["1", "2"], "y": [""]}
    assert (got["path"], got["method"], got["x_thing"], got["json"]) == (
        "/echo",
        "POST",
        "yes",
        [1, 2],
    )


def test_bad_json_is_400(server: AgentServer) -> None:
    status, _, body = call(server, "POST", "/echo", body=b"{not json")
    assert status == 400 and "JSON" in orjson.loads(body)["error"]
    status, _, body = call(server, "POST", "/echo", body=b"")
    assert status == 400


def test_handler_errors_are_answered_and_the_server_keeps_serving(server: AgentServer) -> None:
    status, _, body = call(server, "GET", "/boom")
    assert status == 500 and "handler bug" not in body.decode()
    status, _, body = call(server, "GET", "/teapot")
    assert status == 418 and orjson.loads(body) == {"error": "short and stout"}
    assert call(server, "GET", "/healthz")[0] == 200


def _raw(srv: AgentServer, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_framing_is_4xx(server: AgentServer) -> None:
    bad_length = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"
    assert _raw(server, bad_length).startswith(b"HTTP/1.1 400")
    chunked = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    assert _raw(server, chunked).startswith(b"HTTP/1.1 411")
    assert _raw(server, b"GET /healthz HTTP/1.1 junk\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert call(server, "GET", "/healthz")[0] == 200


def test_keep_alive_serves_several_requests_on_one_connection(server: AgentServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            assert resp.status == 200 and orjson.loads(resp.read())["status"] == "ok"
    finally:
        conn.close()


def test_bearer_token(server: AgentServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLINE_TEST_TOKEN", raising=False)
    ok = {"Authorization": "Bearer s3cret-token"}
    status, headers, body = call(server, "POST", "/v1/alerts", b"{}", ok)
    assert status == 401 and "not configured" in orjson.loads(body)["error"]
    monkeypatch.setenv("DRIFTLINE_TEST_TOKEN", "s3cret-token")
    status, headers, body = call(server, "POST", "/v1/alerts", b"{}")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    for wrong in ("Bearer s3cret-tokeN", "Basic s3cret-token", "Bearer ", "s3cret-token"):
        status, _, body = call(server, "POST", "/v1/alerts", b"{}", {"Authorization": wrong})
        assert status == 401, wrong
        assert b"s3cret" not in body
    status, _, body = call(server, "POST", "/v1/alerts", b'{"alerts": []}', ok)
    assert status == 200 and orjson.loads(body)["json"] == {"alerts": []}
    status, _, _ = call(
        server, "POST", "/v1/alerts", b"{}", {"Authorization": "bearer s3cret-token"}
    )
    assert status == 200  # the scheme is case-insensitive


def test_add_route_rejects_duplicates_and_relative_paths(server: AgentServer) -> None:
    with pytest.raises(ValueError, match="already registered"):
        server.add_route("get", "/healthz", lambda r: Response(200))
    with pytest.raises(ValueError, match="start with"):
        server.add_route("GET", "healthz", lambda r: Response(200))


def test_stop_closes_the_port(exporter: Exporter) -> None:
    srv = AgentServer(registry=exporter.registry).start()
    port = srv.port
    assert call(srv, "GET", "/healthz")[0] == 200
    srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    srv.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = srv.port


def test_other_providers(clock: FakeClock) -> None:
    tick = {"at": clock.now - 5.0}
    latest = {"v2": make_report("v2"), "v1": make_report("v1")}
    srv = AgentServer(
        ready=lambda: (False, "source not consuming"),
        last_tick=lambda: tick["at"],
        latest_reports=lambda: latest,
        clock=clock,
        stale_after=3.0,
    )
    with srv:
        status, _, body = call(srv, "GET", "/readyz")
        assert status == 503 and orjson.loads(body)["reason"] == "source not consuming"
        status, _, body = call(srv, "GET", "/healthz")
        assert status == 503 and orjson.loads(body)["last_tick_age_seconds"] == 5.0
        tick["at"] = clock.now
        assert call(srv, "GET", "/healthz")[0] == 200
        _, _, body = call(srv, "GET", "/v1/reports/latest")
        assert [d["model_version"] for d in orjson.loads(body)["reports"]] == ["v1", "v2"]


def test_without_a_registry_there_is_no_metrics_route() -> None:
    with AgentServer() as srv:
        assert call(srv, "GET", "/metrics")[0] == 404
        assert call(srv, "GET", "/healthz")[0] == 200
        # serving no agent, it is never ready
        assert call(srv, "GET", "/readyz")[0] == 503
