"""What the agent's integration tests share: files, traffic, a `driftline run` process.

* :func:`write_agent_files` writes the reference profile of the synthetic model and a
  ``monitor.yaml`` into a directory (fast consumer-group settings, loopback only).
* :func:`window_traffic` makes prediction records of the synthetic model with known event
  times, window by window, with a drift switched on from a given window;
  :func:`produce_aiokafka` and :func:`produce_confluent` send them with either client
  and return where each record landed.
* :class:`AgentProcess` runs ``driftline run -c monitor.yaml`` as a :class:`ChildProcess`
  (its own session, a log file, stopped by pid), finds its HTTP port in its log, scrapes
  ``/metrics``, and is always stopped by its owner.
* :func:`wait_for` polls a condition with a deadline, and names what it waited for when
  the deadline passes.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from detectors.profile import Profile, build_profile
from detectors.results import WindowReport
from monitor.demo import synthetic
from monitor.demo.broker import AIOKAFKA_FAST_GROUP

T = TypeVar("T")

MODEL = "credit-scorer"
#: ``source.kafka.client`` of the agents the helpers configure; the agent test modules
#: run each test with both clients (their ``client`` fixture sets it).
CLIENT = "aiokafka"
#: Event times start here: a multiple of every window length the tests use, so windows
#: start exactly at ``BASE_TIME + k * size``.
BASE_TIME = 1_700_000_040.0
#: The drift the tests inject: income's mean moves by 0.8 of the reference's scale.
INCOME_SHIFT = synthetic.Drift(0.0, "mean_shift", "income", "income mean +0.8 std")

# -- files ---------------------------------------------------------------------------------


@functools.cache
def reference_profile() -> Profile:
    """The synthetic model's reference profile (built once per test session)."""
    return build_profile(synthetic.reference_frame(20_000, seed=0), prediction=["prediction"])


@dataclass(frozen=True)
class AgentFiles:
    """Where one agent's configuration, reports and checkpoints live."""

    config: Path
    reports: Path
    state: Path


def write_agent_files(
    directory: Path,
    *,
    bootstrap: str,
    topics: Sequence[str],
    group_id: str,
    windows: Mapping[str, Any],
    checkpoint_interval: float = 1.0,
    kafka: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
) -> AgentFiles:
    """Write ``reference.json.gz`` and ``monitor.yaml`` into `directory`.

    Reports go to ``reports.jsonl`` there (not to stdout), checkpoints to `state_dir`
    (default ``state/`` there), metrics to an ephemeral port on 127.0.0.1.
    """
    directory.mkdir(parents=True, exist_ok=True)
    reference = reference_profile().save(directory / "reference.json.gz")
    files = AgentFiles(
        config=directory / "monitor.yaml",
        reports=directory / "reports.jsonl",
        state=state_dir or directory / "state",
    )
    config = {
        "model": MODEL,
        "reference": str(reference),
        "source": {
            "kind": "kafka",
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topics": list(topics),
                "group_id": group_id,
                "start": "earliest",
                **AIOKAFKA_FAST_GROUP,
                "client": CLIENT,
                **(kafka or {}),
            },
        },
        "record": dict(record or {}),
        "windows": dict(windows),
        "exporter": {"host": "127.0.0.1", "port": 0},
        "reports": {"log": False, "file": str(files.reports)},
        "state": {"dir": str(files.state), "checkpoint_interval": checkpoint_interval},
    }
    files.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return files


# -- traffic -------------------------------------------------------------------------------


def window_traffic(
    *,
    windows: int,
    rows: int | Sequence[int],
    size: float,
    drift_from: int | None = None,
    version: str = "v1",
    seed: int = 0,
) -> list[list[dict[str, Any]]]:
    """Records of the synthetic model, one list per event-time window of `size` seconds.

    Window ``k`` holds ``rows`` (or ``rows[k]``) records with event times spread over
    ``[BASE_TIME + k*size, BASE_TIME + (k+1)*size)``, in increasing order; from window
    `drift_from` on, income is shifted (:data:`INCOME_SHIFT`). Request ids are unique.
    """
    rng = np.random.default_rng(seed)
    counts = [rows] * windows if isinstance(rows, int) else list(rows)
    assert len(counts) == windows
    out: list[list[dict[str, Any]]] = []
    for k, n in enumerate(counts):
        active = (INCOME_SHIFT,) if drift_from is not None and k >= drift_from else ()
        frame = synthetic.features(n, rng, active)
        start = BASE_TIME + k * size
        times = start + np.sort(rng.uniform(0.0, size * 0.999, n))
        out.append(synthetic.records(frame, times, MODEL, version, rng))
    return out


def encode(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record)


@dataclass
class Delivered:
    """Where produced records landed: next offset and record count per partition."""

    high: dict[int, int] = field(default_factory=dict)  # partition -> last offset + 1
    count: dict[int, int] = field(default_factory=dict)

    def add(self, partition: int, offset: int) -> None:
        self.high[partition] = max(self.high.get(partition, 0), offset + 1)
        self.count[partition] = self.count.get(partition, 0) + 1

    def merge(self, other: Delivered) -> Delivered:
        out = Delivered(dict(self.high), dict(self.count))
        for p, h in other.high.items():
            out.high[p] = max(out.high.get(p, 0), h)
        for p, c in other.count.items():
            out.count[p] = out.count.get(p, 0) + c
        return out

    @property
    def total(self) -> int:
        return sum(self.count.values())


Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers


def as_messages(records: Iterable[Mapping[str, Any]]) -> list[Message]:
    return [(str(r["request_id"]).encode(), encode(r), []) for r in records]


def produce_confluent(
    bootstrap: str, topic: str, messages: Sequence[Message], partitions: int | None = None
) -> Delivered:
    """Send with confluent-kafka (librdkafka); message i goes to partition ``i % partitions``
    (the client's partitioner when `partitions` is None). Returns once all are acked."""
    from confluent_kafka import Producer

    delivered = Delivered()
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.add(msg.partition(), msg.offset())

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "socket.timeout.ms": 10000}
    )
    for i, (key, value, headers) in enumerate(messages):
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = headers
        if partitions is not None:
            kwargs["partition"] = i % partitions
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(20)
    assert left == 0, f"confluent-kafka left {left} messages undelivered"
    assert not errors, errors[:5]
    return delivered


def produce_aiokafka(
    bootstrap: str, topic: str, messages: Sequence[Message], partitions: int | None = None
) -> Delivered:
    """The same with aiokafka (the agent's client), non-idempotent, ``acks="all"``."""

    async def send() -> Delivered:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=10000
        )
        await producer.start()
        delivered = Delivered()
        try:
            futures = []
            for i, (key, value, headers) in enumerate(messages):
                partition = None if partitions is None else i % partitions
                futures.append(
                    await producer.send(
                        topic, value=value, key=key, headers=headers or None, partition=partition
                    )
                )
            for meta in await asyncio.gather(*futures):
                delivered.add(meta.partition, meta.offset)
        finally:
            await producer.stop()
        return delivered

    return asyncio.run(asyncio.wait_for(send(), 30.0))


def committed_offsets(bootstrap: str, group_id: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets, read with confluent-kafka (a client the agent does not
    use); a partition without a commit is left out."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}


# -- waiting -------------------------------------------------------------------------------


class WaitTimeout(AssertionError):
    pass


def wait_for(
    condition: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Poll `condition` until it returns something truthy; return that. Fails after
    `timeout` seconds, naming `what` and the last exception the condition raised."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError, AssertionError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last!r})" if last is not None else ""
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


# -- the agent process ---------------------------------------------------------------------

_STARTS = itertools.count(1)
_SERVING = re.compile(r"serving /metrics on [0-9.]+:(\d+)")
_ASSIGNED = re.compile(r"partitions assigned: \[(.*?)\]")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class ChildProcess:
    """A child process in its own session (so its pid is its session id), output to
    ``log_path``; :meth:`stop` ends it by pid, SIGTERM then SIGKILL."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; a no-op once it has exited."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class AgentProcess(ChildProcess):
    """``driftline run -c CONFIG`` as a child process in its own session, logging to a file.

    Use as a context manager (or call :meth:`stop` in ``finally``): whatever happens in the
    test, the process is gone afterwards.
    """

    def __init__(self, config: Path, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(config.with_name(f"agent-{next(_STARTS)}.log"))
        self.config = config
        self.env = env
        self._port: int | None = None

    def start(self) -> AgentProcess:
        env = {**os.environ, **(self.env or {})}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._spawn([sys.executable, "-m", "monitor", "run", "-c", str(self.config)], env)
        return self

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    # -- HTTP --

    @property
    def port(self) -> int:
        """The HTTP port, read from the agent's log once it serves (waits for it)."""
        if self._port is None:

            def found() -> int | None:
                if not self.alive():
                    raise AssertionError(f"agent exited early:\n{self.log()[-3000:]}")
                match = _SERVING.search(self.log())
                return int(match.group(1)) if match else None

            self._port = wait_for(found, "the agent's HTTP server", timeout=40.0)
        return self._port

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of ``GET http://127.0.0.1:PORT{path}``."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> Samples:
        """Every sample of ``/metrics``: (name, labels) -> value."""
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        out: Samples = {}
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and want <= ls)

    def series(self, name: str) -> list[dict[str, str]]:
        """Label sets of the samples of `name`."""
        return [dict(ls) for (n, ls), _ in self.metrics().items() if n == name]

    def decoded(self) -> float:
        return self.metric("driftline_records_total", outcome="decoded")

    def assignments(self) -> list[set[int]]:
        """Partition sets of every assignment the agent logged, oldest first."""
        out = []
        for match in _ASSIGNED.finditer(self.log()):
            parts = re.findall(r"-(\d+)'", match.group(1))
            out.append({int(p) for p in parts})
        return out


# -- reports -------------------------------------------------------------------------------

ReportKey = tuple[str, float, str]  # model_version, window start, baseline


def read_reports(path: Path) -> list[WindowReport]:
    """Every report in a JSONL report file, in file order (repeats included)."""
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    return [WindowReport.from_json(line) for line in lines if line.strip()]


def unique_reports(reports: Iterable[WindowReport]) -> dict[ReportKey, WindowReport]:
    """Reports keyed by (model_version, window start, baseline); a report written twice
    (sinks are at-least-once) must be the same report both times."""
    out: dict[ReportKey, WindowReport] = {}
    for r in reports:
        key = (r.model_version, r.window_start, r.baseline)
        if key in out:
            assert same_window(out[key], r), f"two different reports for window {key}"
        else:
            out[key] = r
    return out


def window_summary(r: WindowReport) -> dict[str, Any]:
    """What a window found, without when it was evaluated: for comparing two runs."""
    return {
        "rows": r.rows,
        "late": r.late_records,
        "duplicates": r.duplicate_records,
        "end": r.window_end,
        "reference": r.reference_hash,
        "share": r.drift.share,
        "drift": {(c.feature, c.test): c for c in r.drift.columns},
        "prediction": {(c.feature, c.test): c for c in r.prediction_drift.columns},
        "quality": {(q.feature, q.check): q for q in r.quality.checks},
    }


def _close(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def same_window(a: WindowReport, b: WindowReport, tol: float = 1e-12) -> bool:
    """Whether two reports of one window agree: counts exactly, statistics to `tol`."""
    sa, sb = window_summary(a), window_summary(b)
    for key in ("rows", "late", "duplicates", "end", "reference"):
        if sa[key] != sb[key]:
            return False
    if not _close(sa["share"], sb["share"], tol):
        return False
    for part in ("drift", "prediction"):
        if sa[part].keys() != sb[part].keys():
            return False
        for k, ca in sa[part].items():
            cb = sb[part][k]
            if ca.drifted != cb.drifted or not _close(ca.statistic, cb.statistic, tol):
                return False
            if not _close(ca.p_value, cb.p_value, tol) or ca.threshold != cb.threshold:
                return False
    if sa["quality"].keys() != sb["quality"].keys():
        return False
    for k, qa in sa["quality"].items():
        qb = sb["quality"][k]
        if qa.count != qb.count or qa.breached != qb.breached:
            return False
        if not _close(qa.rate, qb.rate, tol):
            return False
    return True


def drifted_features(r: WindowReport) -> set[str]:
    return {c.feature for c in r.drift.columns if c.drifted}
