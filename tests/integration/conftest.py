"""Fixtures that start real services on loopback for the integration tests.

`broker_session` is one Tansu broker shared by the whole run (topics are uniquely named,
so tests do not see each other's data); `broker` is a private one for tests that stop,
restart or otherwise disturb it. Logs land in pytest's tmp_path, kept for failed runs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.demo.broker import TansuBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of the test's own, for tests that stop or restart it."""
    with TansuBroker(log_dir=tmp_path / "tansu") as b:
        yield b


@pytest.fixture(scope="session")
def broker_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One broker for the whole session; never stop it in a test, use `broker` for that."""
    with TansuBroker(log_dir=tmp_path_factory.mktemp("tansu-session")) as b:
        yield b


KafkaTopicFactory = Callable[..., str]


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest) -> KafkaTopicFactory:
    """Factory: ``kafka_topic(partitions=1, broker=None) -> name`` of a new, unique topic.

    The topic lives on `broker` when given, else on the session broker (started only then).
    Names carry the test's name, for reading broker logs.
    """
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:120]

    def make(partitions: int = 1, *, broker: TansuBroker | None = None) -> str:
        target: TansuBroker = broker or request.getfixturevalue("broker_session")
        assert target.running, f"{target!r} is not running"
        name = f"{base}-{uuid.uuid4().hex[:8]}"
        target.create_topic(name, partitions)
        return name

    return make
