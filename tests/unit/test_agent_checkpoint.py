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


def make_agent(tmp_path: Path) -> Agent:
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
            "state": {"dir": str(tmp_path / "state")},
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
