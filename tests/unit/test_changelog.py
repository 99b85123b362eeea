"""The changelog's chunking and manifest, the state keys, and how a lost state is marked."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from detectors.results import DriftResult, QualityResult, WindowReport
from monitor.config.errors import ConfigError
from monitor.config.state import StateConfig, changelog_topic_for
from monitor.runtime.changelog import (
    Changelog,
    ChangelogView,
    Manifest,
    assemble,
    chunk,
    newest,
)
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, encode
from monitor.runtime.state_loss import REASON, StateLoss
from tests.unit.kafka_configs import kafka_config


def _checkpoint(size: int, created_at: float = 1.0) -> Checkpoint:
    return Checkpoint({("t", 0): 7, ("t", 1): 3}, os.urandom(size), "h" * 64, created_at)


@pytest.mark.parametrize(("size", "piece"), [(0, 1024), (1000, 1024), (50_000, 1024), (4096, 4096)])
def test_chunks_reassemble_to_the_same_checkpoint(size: int, piece: int) -> None:
    cp = _checkpoint(size)
    data = encode(cp)
    pieces = chunk(data, piece)
    assert all(len(p) <= piece for p in pieces)
    assert len(pieces) == max(1, -(-len(data) // piece))
    manifest = Manifest(1, len(pieces), len(data), hashlib.sha256(data).hexdigest(), 1.0)
    assert Manifest.from_bytes(manifest.to_bytes()) == manifest
    back = assemble(manifest, dict(enumerate(pieces)), "test")
    assert back.offsets == cp.offsets and back.windows == cp.windows


def test_a_missing_or_altered_chunk_is_refused_by_name() -> None:
    data = encode(_checkpoint(10_000))
    pieces = chunk(data, 1024)
    manifest = Manifest(0, len(pieces), len(data), hashlib.sha256(data).hexdigest(), 1.0)
    held = dict(enumerate(pieces))
    del held[3]
    with pytest.raises(CheckpointError, match="1 of 10 chunks missing"):
        assemble(manifest, held, "changelog x")
    held[3] = bytes(len(pieces[3]))  # same length, other bytes (an older save's chunk)
    with pytest.raises(CheckpointError, match="checksum"):
        assemble(manifest, held, "changelog x")


def test_newest_of_the_local_cache_and_the_changelog() -> None:
    old, new = _checkpoint(10, 1.0), _checkpoint(10, 2.0)
    assert newest(old, new) is new and newest(new, None) is new and newest(None, None) is None


def _config(state: dict[str, Any]) -> Any:
    return kafka_config(model="fraud scorer", state=state)


def test_the_changelog_is_on_by_default_keyed_by_group_and_named_after_the_model() -> None:
    changelog = Changelog.from_config(_config({}))
    assert changelog is not None
    assert (
        changelog.topic == changelog_topic_for("fraud scorer") == "driftline.fraud-scorer.changelog"
    )
    assert changelog.key == "g"
    named = Changelog.from_config(_config({"changelog_name": "agent-1", "changelog_topic": "x.y"}))
    assert named is not None and named.key == "g/agent-1" and named.topic == "x.y"
    assert Changelog.from_config(_config({"changelog": False})) is None
    assert StateConfig().changelog_chunk_bytes < 1_000_000  # under Kafka's max.message.bytes


@pytest.mark.parametrize("key", ["changelog_topic", "changelog_name"])
def test_a_bad_topic_or_name_names_the_key(key: str) -> None:
    with pytest.raises(ConfigError, match=f"state.{key}"):
        _config({key: "no spaces allowed"})


class _Window:
    def __init__(self, start: float, offsets: dict[int, list[int]]) -> None:
        self.model_version, self.start, self.offsets = "v1", start, offsets


def _report(start: float) -> WindowReport:
    return WindowReport(
        model="m",
        model_version="v1",
        window_start=start,
        window_end=start + 1,
        reference_hash="h",
        rows=1,
        drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
        prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
        quality=QualityResult(rows=1, checks=()),
    )


def test_only_the_window_holding_the_first_resumed_record_is_marked_partial() -> None:
    loss = StateLoss(["t"], restored=False)
    # partition 0 resumes at its committed offset 500; partition 1 had none (fresh)
    assert loss.check({("t", 0): (500, False), ("t", 1): (0, True), ("labels", 0): (9, False)}) == 1
    assert loss.check({("t", 0): (900, False)}) == 0  # looked at once, at start-up
    loss.closed([_Window(10.0, {0: [500, 700, 201]}), _Window(11.0, {0: [701, 900, 200]})])  # type: ignore[list-item]
    hit, whole = loss.mark(_report(10.0)), loss.mark(_report(11.0))
    assert hit.partial and hit.partial_reason == REASON
    assert not whole.partial and whole.partial_reason is None


def test_a_restored_state_marks_nothing() -> None:
    loss = StateLoss(["t"], restored=True)
    assert loss.check({("t", 0): (500, False)}) == 0
    loss.closed([_Window(10.0, {0: [500, 700, 201]})])  # type: ignore[list-item]
    assert not loss.mark(_report(10.0)).partial


def test_the_agent_name_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_CHANGELOG_NAME", "driftline-agent-2")
    changelog = Changelog.from_config(_config({}))
    assert changelog is not None and changelog.key == "g/driftline-agent-2"
    named = Changelog.from_config(_config({"changelog_name": "a1"}))
    assert named is not None and named.key == "g/a1"  # the config wins


def _manifest(writer: str, slot: int = 0) -> bytes:
    return Manifest(slot, 1, 1, "x", 1.0, writer).to_bytes()


def test_writers_following_each_other_are_restarts() -> None:
    view = ChangelogView("g")
    for writer in ("a", "a", "b", "b", "c"):
        view.add(b"g", _manifest(writer))
    view.add(b"g#0#0", b"chunk")
    view.add(b"g/other", _manifest("z"))  # another agent's key
    view.add(b"g/other#0#0", b"theirs")
    assert not view.shared
    assert view.manifest is not None and view.manifest.writer == "c"
    assert view.chunks == ({0: b"chunk"}, {})


def test_a_writer_coming_back_after_another_means_two_agents_share_the_key() -> None:
    view = ChangelogView("g")
    for writer in ("a", "b", "a"):
        view.add(b"g", _manifest(writer))
    assert view.shared


def test_brokers_that_do_not_answer_are_unreachable_not_an_empty_changelog() -> None:
    """The agent retries an unreachable changelog instead of starting without its state."""
    import asyncio
    import socket

    from monitor.config.source import KafkaSourceConfig
    from monitor.runtime.changelog import ChangelogUnreachable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kafka = KafkaSourceConfig(bootstrap_servers=f"127.0.0.1:{port}", topics=["t"], group_id="g")
    changelog = Changelog(kafka, StateConfig(), "m")
    with pytest.raises(ChangelogUnreachable, match=r"driftline\.m\.changelog"):
        asyncio.run(changelog.load(timeout=1.0))
