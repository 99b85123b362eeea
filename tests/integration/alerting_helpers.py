"""What the alerting end-to-end test runs: Prometheus, Alertmanager, a rollback receiver and
a steady, drifting stream of predictions, all on 127.0.0.1.

* :func:`generate_rules` builds alerting rules for the test's short windows with the
  shipped generator (``alert_rules.generate``), checked by ``promtool check rules``.
* :class:`Service` runs a binary (Debian's ``prometheus`` or ``prometheus-alertmanager``)
  as a :class:`~tests.integration.agent_helpers.ChildProcess` (its own session, a log
  file, stopped by pid); :func:`start_prometheus` and :func:`start_alertmanager` write
  their configuration and start them.
* :class:`RollbackReceiver` is the system a webhook action calls: it records every
  request and checks its signature with :func:`monitor.actions.signing.verify`.
* :class:`NotificationRelay` sits between Alertmanager and the agent's ``/v1/alerts`` and
  records each notification with the agent's answer.
* :class:`TrafficProducer` sends the synthetic model's predictions at a steady rate with
  event time = now, and switches a drift on at the next window boundary when asked.
* :func:`leftover_processes` lists what is still running in the sessions a test started.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import numpy as np
import orjson
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

import alert_rules
from alert_rules import generate
from monitor.actions.signing import SIGNATURE_HEADER, SignatureError, verify
from monitor.demo import synthetic
from monitor.demo.broker import HOST
from tests.integration.agent_helpers import ChildProcess

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"

# -- HTTP ----------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def scrape(url: str, timeout: float = 5.0) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample_sum(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``; a KeyError when
    there is none (a misspelt name must not read as 0)."""
    want = set(labels.items())
    values = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    if not values:
        raise KeyError(f"no sample {name}{labels or ''}")
    return sum(values)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


# -- rules ---------------------------------------------------------------------------------


def generate_rules(directory: Path, thresholds: Mapping[str, Any]) -> Path:
    """Rules for ``thresholds`` (merged over the shipped ones) written by the shipped
    generator into ``directory``; fails unless ``promtool check rules`` accepts them."""
    directory.mkdir(parents=True, exist_ok=True)
    override = directory / "thresholds.yaml"
    override.write_text(yaml.safe_dump(dict(thresholds), sort_keys=False))
    status = generate.main(["--thresholds", str(override), "--output-dir", str(directory)])
    assert status == 0, f"alert_rules.generate exited {status}"
    rules = directory / alert_rules.RULES_FILE.name
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, f"promtool check rules: {check.stdout}{check.stderr}"
    return rules


# -- services ------------------------------------------------------------------------------


class Service(ChildProcess):
    """A binary run as a child in its own session (so its pid is its session id), output to
    ``log_path``; :meth:`stop` ends it by pid, SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, url: str) -> None:
        super().__init__(log_path)
        self.name = name
        self.argv = list(argv)
        self.url = url

    def start(self) -> Service:
        self._spawn(self.argv)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            if ready(f"{self.url}/-/ready"):
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log()[-3000:]}")


def start_alertmanager(
    directory: Path,
    *,
    port: int,
    webhook_url: str,
    token: str,
    timings: Mapping[str, str],
) -> Service:
    """The example Alertmanager configuration (alert_rules/alertmanager.yml) with the
    agent's URL, a token file and ``timings`` swapped in; no cluster gossip."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config_file = directory / "alertmanager.yml"
    config = alert_rules.alertmanager_config(
        webhook_url=webhook_url, credentials_file=str(token_file), timings=dict(timings)
    )
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run(
        [AMTOOL, "check-config", str(config_file)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, f"amtool check-config: {check.stdout}{check.stderr}"
    return Service(
        "alertmanager",
        [
            ALERTMANAGER,
            f"--config.file={config_file}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address={HOST}:{port}",
            "--cluster.listen-address=",
        ],
        directory / "alertmanager.log",
        f"http://{HOST}:{port}",
    ).start()


def start_prometheus(
    directory: Path,
    *,
    port: int,
    rules: Path,
    agent_port: int,
    alertmanager_port: int,
    job: str,
) -> Service:
    """A Prometheus that scrapes the agent and evaluates ``rules`` every second."""
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "prometheus.yml"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"{HOST}:{agent_port}"]}]}
        ],
    }
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run(
        [PROMTOOL, "check", "config", str(config_file)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, f"promtool check config: {check.stdout}{check.stderr}"
    return Service(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={HOST}:{port}",
        ],
        directory / "prometheus.log",
        f"http://{HOST}:{port}",
    ).start()


class PrometheusAPI:
    """The few calls of Prometheus' HTTP API the test makes."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = get_json(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else ""))
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self._api("query", query=expr)["result"])

    def samples(self, selector: str, lookback: str) -> list[tuple[float, float]]:
        """The raw samples of the first series of ``selector`` over the last ``lookback``,
        oldest first, as (timestamp, value)."""
        result = self.query(f"{selector}[{lookback}]")
        if not result:
            return []
        return [(float(t), float(v)) for t, v in result[0]["values"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Prometheus holds now (pending or firing)."""
        return list(self._api("alerts")["alerts"])

    def rules(self) -> dict[str, dict[str, Any]]:
        """Alerting rules by name."""
        groups = self._api("rules", type="alert")["groups"]
        return {r["name"]: r for g in groups for r in g["rules"]}

    def alert_names(self, groups: Iterable[str]) -> set[str]:
        """Names of the alerting rules of the rule ``groups``."""
        wanted = set(groups)
        data = self._api("rules", type="alert")["groups"]
        return {r["name"] for g in data if g["name"] in wanted for r in g["rules"]}

    def active_alertmanagers(self) -> list[str]:
        return [a["url"] for a in self._api("alertmanagers")["activeAlertmanagers"]]


# -- the system a rollback webhook calls ---------------------------------------------------


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (an ephemeral port), serving between ``with`` and
    the end of the block."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer((HOST, 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass(frozen=True)
class Call:
    """One request the receiver got, and whether its signature verified."""

    received_at: float
    path: str
    headers: dict[str, str]
    body: bytes
    signature_error: str | None

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


class RollbackReceiver(LoopbackServer):
    """An HTTP server on 127.0.0.1 that answers 200 to every POST, records it, and checks
    its ``X-Driftline-Signature`` against ``secret`` (the result is in the record)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received_at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    verify(receiver.secret, self.headers.get(SIGNATURE_HEADER), body)
                    error = None
                except SignatureError as exc:
                    error = str(exc)
                call = Call(received_at, self.path, dict(self.headers.items()), body, error)
                with receiver._lock:
                    receiver.calls.append(call)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._serve(Handler)

    def received(self) -> list[Call]:
        with self._lock:
            return list(self.calls)


@dataclass(frozen=True)
class Notification:
    """One webhook notification Alertmanager sent, and what the agent answered."""

    sent_at: float
    request: dict[str, Any]
    status: int
    answer: dict[str, Any]

    @property
    def group(self) -> str:
        return str(self.request.get("groupLabels", {}).get("alertname", ""))


class NotificationRelay(LoopbackServer):
    """A transparent HTTP relay between Alertmanager and the agent: forwards each POST
    (path, body, Authorization) to ``target`` and answers with the agent's status and
    body, recording both, so a test can tell the notifications of each alert group apart
    and read what the agent decided on each."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sent_at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type", "user-agent")
                }
                forward = urllib.request.Request(
                    relay.target + self.path, data=body, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(forward, timeout=10) as resp:
                        status, answer = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, answer = exc.code, exc.read()
                try:
                    parsed = orjson.loads(answer)
                except orjson.JSONDecodeError:
                    parsed = {"raw": answer.decode(errors="replace")}
                with relay._lock:
                    relay.notifications.append(
                        Notification(sent_at, orjson.loads(body), status, parsed)
                    )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._serve(Handler)

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)


# -- traffic -------------------------------------------------------------------------------


@dataclass
class TrafficProducer:
    """Predictions of the synthetic model sent to ``topic`` at ``rate`` per second from a
    thread (confluent-kafka), each with event time = the moment it is made.

    :meth:`drift_from_next_window` switches ``drift`` on for every record whose event time
    is at or after the next multiple of ``window`` seconds, so the first drifted window is
    entirely drifted; ``first_drifted`` is then the event time of the first such record.
    """

    bootstrap: str
    topic: str
    model: str
    version: str
    rate: float
    window: float
    drift: synthetic.Drift
    seed: int = 0
    tick: float = 0.05
    sent: int = 0
    drift_at: float | None = None
    first_drifted: float | None = None
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TrafficProducer:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def drift_from_next_window(self) -> float:
        """Drift every record from the next window boundary on; returns that boundary."""
        boundary = math.floor(time.time() / self.window + 1.0) * self.window
        self.drift_at = boundary
        return boundary

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "the traffic thread did not stop"

    def _records(
        self, rng: np.random.Generator, times: np.ndarray, drifted: bool
    ) -> list[dict[str, object]]:
        if len(times) == 0:
            return []
        frame = synthetic.features(len(times), rng, (self.drift,) if drifted else ())
        return synthetic.records(frame, times, self.model, self.version, rng)

    def _run(self) -> None:
        from confluent_kafka import Producer

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                self.errors.append(str(err))

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "1"})
        rng = np.random.default_rng(self.seed)
        last = time.time()
        owed = 0.0
        try:
            while not self._stop.is_set():
                self._stop.wait(self.tick)
                now = time.time()
                owed += self.rate * (now - last)
                n = int(owed)
                owed -= n
                times = np.sort(rng.uniform(last, now, n))
                last = now
                drift_at = self.drift_at
                cut = len(times) if drift_at is None else int(np.searchsorted(times, drift_at))
                batch = self._records(rng, times[:cut], False)
                drifted = self._records(rng, times[cut:], True)
                if drifted and self.first_drifted is None:
                    self.first_drifted = float(times[cut])
                for record in batch + drifted:
                    producer.produce(
                        self.topic,
                        orjson.dumps(record),
                        key=str(record["request_id"]).encode(),
                        on_delivery=on_delivery,
                    )
                self.sent += len(times)
                producer.poll(0)
        finally:
            left = producer.flush(10)
            if left:
                self.errors.append(f"{left} records undelivered")


# -- processes -----------------------------------------------------------------------------


def leftover_processes(sessions: Iterable[int]) -> list[str]:
    """Processes still running in any of ``sessions`` (session ids: the pids of children
    started with ``start_new_session``), as ``"pid name"``."""
    wanted = set(sessions)
    left = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(proc.info["pid"]) in wanted:
                left.append(f"{proc.info['pid']} {proc.info['name']}")
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return left
