"""State kept in Kafka: an agent killed with SIGKILL whose state directory is deleted too
(a pod rescheduled onto another node with an emptyDir) restores its windows from the
changelog topic and reports what an uninterrupted run does; with the changelog off the
same loss is said out loud (a warning, a metric, the hit window's report partial).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.demo.broker import TansuBroker
from monitor.runtime.checkpoint import CheckpointStore
from monitor.runtime.state_loss import REASON
from tests.integration import agent_helpers
from tests.integration.agent_helpers import (
    BASE_TIME,
    MODEL,
    AgentFiles,
    AgentProcess,
    committed_offsets,
    produce_aiokafka,
    read_reports,
    same_window,
    unique_reports,
    wait_for,
    write_agent_files,
)
from tests.integration.test_agent_crash import (
    CRASH_WINDOWS,
    FLUSH_AT,
    ROWS,
    SIZE,
    crash_traffic,
    data_reports,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]


def _files(
    tmp_path: Path, name: str, bootstrap: str, topic: str, interval: float, **state: Any
) -> AgentFiles:
    files = write_agent_files(
        tmp_path / name,
        bootstrap=bootstrap,
        topics=[topic],
        group_id=f"driftline-{name}-{uuid.uuid4().hex[:8]}",
        windows=CRASH_WINDOWS,
        checkpoint_interval=interval,
    )
    config = yaml.safe_load(files.config.read_text())
    config["state"].update(state)
    files.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return files


def _kill_mid_phase_two_and_lose_the_disk(
    bootstrap: str, topic: str, files: AgentFiles, phases: list[Any]
) -> tuple[int, int]:
    """Run an agent over phase 1 until it checkpoints, send phase 2, SIGKILL it once it
    consumed records past the checkpoint, delete its state directory, send phase 3.
    Returns (checkpointed offset, reports written before the kill)."""
    store = CheckpointStore(files.state)

    def checkpointed() -> int:
        checkpoint = store.load()
        return 0 if checkpoint is None else checkpoint.offsets.get((topic, 0), 0)

    high = produce_aiokafka(bootstrap, topic, phases[0]).high[0]
    agent = AgentProcess(files.config).start()
    try:
        wait_for(lambda: checkpointed() == high, "a checkpoint of phase 1", 60)
        before = agent.decoded()  # read first: phase 2 may be consumed in a blink
        produce_aiokafka(bootstrap, topic, phases[1])
        wait_for(lambda: agent.decoded() > before, "records of phase 2 consumed", 60)
        consumed = int(agent.decoded())
        agent.kill()
    finally:
        agent.stop()
    at_kill = checkpointed()
    assert 0 < at_kill < consumed, "killed after a checkpoint, with records consumed past it"
    shutil.rmtree(files.state)  # the new node has no disk
    produce_aiokafka(bootstrap, topic, phases[2])
    return at_kill, len(read_reports(files.reports))


def _run_to_the_end(files: AgentFiles) -> AgentProcess:
    agent = AgentProcess(files.config).start()
    wait_for(
        lambda: len(data_reports(files.reports)) >= len(ROWS),
        f"reports of all {len(ROWS)} windows from {files.config.parent.name}",
        60,
    )
    return agent


def test_sigkill_with_the_state_directory_gone_restores_from_the_changelog(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """The changelog is on by default for a Kafka source; the restarted agent finds no
    state directory and restores the window state from the topic: every window equals
    the clean run's (rows, late and duplicate counts, statistics)."""
    topic = kafka_topic(1)
    bootstrap = broker_session.bootstrap
    phases = crash_traffic()
    crashed = _files(tmp_path, "crashed", bootstrap, topic, 5.0, changelog_chunk_bytes=4096)
    _kill_mid_phase_two_and_lose_the_disk(bootstrap, topic, crashed, phases)

    clean = _files(tmp_path, "clean", bootstrap, topic, 1.0, changelog=False)
    agents = []
    try:
        agents.append(restarted := _run_to_the_end(crashed))
        agents.append(_run_to_the_end(clean))
        assert "restored checkpoint" in restarted.log()
        assert "resumes at checkpoint offset" in restarted.log()
        assert restarted.metric("driftline_state_lost_partitions_total") == 0
        assert restarted.metric("driftline_changelog_writes_total", outcome="acknowledged") > 0
    finally:
        for agent in agents:
            agent.stop()

    a, b = data_reports(clean.reports), data_reports(crashed.reports)
    assert sorted(a) == sorted(b)
    for key in sorted(a):
        assert same_window(a[key], b[key]), f"window {key} differs after the restore"
        assert not b[key].partial
    assert [a[key].rows for key in sorted(a)] == list(ROWS)
    assert sum(r.late_records for r in b.values()) == 12
    assert sum(r.duplicate_records for r in b.values()) == 5 + 15 + 15


def test_state_lost_without_a_changelog_is_logged_counted_and_reported_partial(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """With ``state.changelog: false`` and the directory gone, the agent resumes at the
    committed offsets: the window open at the crash (window 2, whose rows before the
    committed offset are gone) is reported partial with reason state_lost, the loss is
    counted and logged; the windows opened after the restart are whole and not partial."""
    topic = kafka_topic(1)
    bootstrap = broker_session.bootstrap
    phases = crash_traffic()
    crashed = _files(tmp_path, "lost", bootstrap, topic, 5.0, changelog=False)
    _, written = _kill_mid_phase_two_and_lose_the_disk(bootstrap, topic, crashed, phases)

    restarted = AgentProcess(crashed.config).start()
    try:
        wait_for(
            lambda: any(r.window_start == BASE_TIME + 5 * SIZE for r in _after(crashed, written)),
            "the report of the last window after the restart",
            60,
        )
        assert restarted.metric("driftline_state_lost_partitions_total", model=MODEL) == 1
        assert "no window state to restore" in restarted.log()
    finally:
        restarted.stop()

    after = {
        r.window_start: r for r in _after(crashed, written) if r.window_start < FLUSH_AT - SIZE
    }
    hit = after[BASE_TIME + 2 * SIZE]
    assert hit.partial and hit.partial_reason == REASON
    assert hit.rows < ROWS[2], "only the rows after the committed offset are in it"
    for k in (3, 4, 5):
        whole = after[BASE_TIME + k * SIZE]
        assert not whole.partial and whole.rows == ROWS[k]


def _after(files: AgentFiles, written: int) -> list[Any]:
    """Reports the restarted agent wrote (unique per window)."""
    return list(unique_reports(read_reports(files.reports)[written:]).values())


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
def test_a_restored_agent_does_not_rewind_past_what_another_member_read_on(
    broker_session: TansuBroker,
    kafka_topic: KafkaTopicFactory,
    tmp_path: Path,
    client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Agent A checkpoints phase 1 to the changelog and is killed with its disk; agent B,
    same group, takes the partition over and reads phase 2 from A's commit, then stops.
    A comes back with its windows from the changelog: the group's committed offset is
    ahead of A's checkpoint (B's), so A resumes there and reads only phase 3 — it does
    not count phase 2 again, which is in B's windows."""
    monkeypatch.setattr(agent_helpers, "CLIENT", client)  # both Kafka clients seek alike
    topic = kafka_topic(1)
    bootstrap = broker_session.bootstrap
    phases = crash_traffic()
    a = _files(tmp_path, "a", bootstrap, topic, 1.0, changelog_name="a")
    group = yaml.safe_load(a.config.read_text())["source"]["kafka"]["group_id"]
    b_dir = write_agent_files(
        tmp_path / "b",
        bootstrap=bootstrap,
        topics=[topic],
        group_id=group,
        windows=CRASH_WINDOWS,
    )
    config = yaml.safe_load(b_dir.config.read_text())
    config["state"]["changelog_name"] = "b"
    b_dir.config.write_text(yaml.safe_dump(config, sort_keys=False))

    store = CheckpointStore(a.state)
    high = produce_aiokafka(bootstrap, topic, phases[0]).high[0]
    first = AgentProcess(a.config).start()
    try:
        # committed only once the changelog acknowledged the checkpoint: before that, a
        # kill could leave phase 1 in the state directory alone, which is deleted below
        wait_for(
            lambda: (
                (c := store.load()) is not None
                and c.offsets.get((topic, 0)) == high
                and committed_offsets(bootstrap, group, topic, 1) == {0: high}
            ),
            "A's checkpoint of phase 1, in the changelog and committed",
            60,
        )
        first.kill()
    finally:
        first.stop()
    shutil.rmtree(a.state)

    high = produce_aiokafka(bootstrap, topic, phases[1]).high[0]
    other = AgentProcess(b_dir.config).start()
    try:
        phase2 = len(phases[1])
        wait_for(lambda: other.decoded() >= phase2, "B reads phase 2", 60)
    finally:
        other.stop()  # SIGTERM: B checkpoints and commits phase 2
    assert committed_offsets(bootstrap, group, topic, 1) == {0: high}
    produce_aiokafka(bootstrap, topic, phases[2])

    back = AgentProcess(a.config).start()
    try:
        wait_for(lambda: back.decoded() >= len(phases[2]), "A reads phase 3", 60)
        assert "restored checkpoint" in back.log()
        assert "ahead of the checkpoint (another member read on)" in back.log()
        assert back.decoded() == len(phases[2]), "phase 2 is B's; A must not read it again"
    finally:
        back.stop()
