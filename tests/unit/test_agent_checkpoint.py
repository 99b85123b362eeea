"""The agent's checkpoint step when the state directory cannot be written: it keeps
running, commits nothing, and succeeds at the next interval once the disk is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from detectors.profile import build_profile
from monitor.config.model import MonitorConfig
from monitor.runtime.agent import Agent
from tests.conftest import make_reference


class RecordingSource:
    """Stands in for the Kafka source: records what would be committed."""

    consumer = None

    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.commits.append(dict(offsets))


def make_agent(tmp_path: Path, changelog: bool = False) -> Agent:
    profile = build_profile(make_reference(500))
    path = profile.save(tmp_path / "ref.json")
    config = MonitorConfig.model_validate(
        {
            "model": "m",
            "reference": str(path),
            "source": {
                "kind": "kafka",
                "kafka": {"bootstrap_servers": "127.0.0.1:9", "topics": ["t"], "group_id": "g"},
            },
            "reports": {"log": False},
            "state": {"dir": str(tmp_path / "state"), "changelog": changelog},
        }
    )
    return Agent(config, profile=profile, sinks=[], serve_http=False)


def test_unwritable_state_dir_skips_the_commit_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(tmp_path)
    source = RecordingSource()
    agent.source = source  # type: ignore[assignment]
    agent.offsets = {("t", 0): 42}
    real_save = agent.store.save

    def disk_full(checkpoint: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(agent.store, "save", disk_full)
    asyncio.run(agent.checkpoint())
    assert source.commits == []  # offsets stay uncommitted: nothing can be lost
    assert "checkpoint not written" in caplog.text
    assert agent.store.load() is None

    monkeypatch.setattr(agent.store, "save", real_save)
    asyncio.run(agent.checkpoint())
    assert source.commits == [{("t", 0): 42}]
    restored = agent.store.load()
    assert restored is not None and restored.offsets == {("t", 0): 42}
    agent.executor.shutdown()


def test_with_a_changelog_the_commit_waits_for_its_acknowledgement_not_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory is a cache when the changelog is on: a full disk does not hold the
    commit back, an unacknowledged changelog write does."""
    from monitor.runtime.changelog import ChangelogError

    agent = make_agent(tmp_path, changelog=True)
    assert agent.changelog is not None
    source = RecordingSource()
    agent.source = source  # type: ignore[assignment]
    agent.offsets = {("t", 0): 7}
    written: list[object] = []

    async def acknowledged(checkpoint: object) -> None:
        written.append(checkpoint)

    async def refused(checkpoint: object) -> None:
        raise ChangelogError("changelog x: not acknowledged (KafkaTimeoutError)")

    def disk_full(checkpoint: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(agent.store, "save", disk_full)
    monkeypatch.setattr(agent.changelog, "save", refused)
    asyncio.run(agent.checkpoint())
    assert source.commits == []
    monkeypatch.setattr(agent.changelog, "save", acknowledged)
    asyncio.run(agent.checkpoint())
    assert len(written) == 1 and source.commits == [{("t", 0): 7}]
    agent.executor.shutdown()
