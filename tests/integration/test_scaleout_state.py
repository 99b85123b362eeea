"""Scale-out with state lost: three agents and an aggregator on a real broker; one agent
and the aggregator are killed with SIGKILL mid-stream, while records are being read and a
window holds committed rows, and both state directories are deleted (pods rescheduled
onto nodes with no disk). The agent comes back with no identity of its own (a new id: a
new pod); the partition it had is restored from the changelog, where its state is kept per
source partition, by whoever the group assigns it to, and the aggregator restores its own
state (the windows it judged) from there too. The aggregated windows must equal those of
one agent reading the same topic alone: rows, late and duplicate counts, every statistic
to 1e-9 and every verdict, with full coverage and no partial window.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.demo.broker import TansuBroker
from tests.integration import agent_helpers
from tests.integration.agent_helpers import (
    BASE_TIME,
    AgentProcess,
    Message,
    as_messages,
    committed_offsets,
    produce_aiokafka,
    same_window,
    wait_for,
    window_traffic,
)
from tests.integration.test_scaleout import (
    DRIFT_FROM,
    FLUSH_AT,
    PARTITIONS,
    ROWS,
    SIZE,
    reports,
    scale_out,
    scale_out_counts,
    start_scale_out,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]


def phases() -> list[list[Message]]:
    """Windows 0-2; window 3 and the first 60% of window 4 (committed before the kill:
    window 4 is then open with committed rows in it, which a restart from the committed
    offset alone would miss); the rest of window 4 and the first 30% of window 5 (read
    when the kill comes, window 4 possibly closed and sent, not necessarily checkpointed);
    the rest of window 5 and a flush record per partition."""
    windows = window_traffic(
        windows=len(ROWS), rows=list(ROWS), size=SIZE, drift_from=DRIFT_FROM, seed=31
    )
    flush = [
        {**windows[0][0], "request_id": f"flush-{p}", "timestamp": FLUSH_AT}
        for p in range(PARTITIONS)
    ]
    four, five = windows[4], windows[5]
    a, b = int(0.6 * len(four)), int(0.3 * len(five))
    return [
        as_messages([r for w in windows[:3] for r in w]),
        as_messages(windows[3] + four[:a]),
        as_messages(four[a:] + five[:b]),
        as_messages(five[b:]) + as_messages(flush),
    ]


def send_committed_phases(
    bootstrap: str, topic: str, group: str, phases: list[list[Message]], agg_reports: Path
) -> None:
    """Send each phase and wait until the agents have committed all of it (the first
    closes a window: its report comes first): the state every later fault starts from."""
    for i, messages in enumerate(phases):
        high = produce_aiokafka(bootstrap, topic, messages, partitions=PARTITIONS).high
        if i == 0:
            wait_for(lambda: len(reports(agg_reports)) >= 1, "a first aggregated window", 40.0)
        wait_committed(bootstrap, group, topic, high, f"phase {i + 1} committed")


def wait_committed(bootstrap: str, group: str, topic: str, high: dict[int, int], what: str) -> None:
    """Until the group's committed offsets are ``high`` on every partition."""
    wait_for(
        lambda: committed_offsets(bootstrap, group, topic, PARTITIONS) == high, what, timeout=30.0
    )


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
def test_agent_and_aggregator_killed_with_the_agent_disk_gone_report_as_one_agent(
    tmp_path: Path,
    kafka_topic: KafkaTopicFactory,
    broker_session: TansuBroker,
    client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # both clients restore a newly assigned partition before handing out its records
    monkeypatch.setattr(agent_helpers, "CLIENT", client)
    bootstrap = broker_session.bootstrap
    topic = kafka_topic(PARTITIONS)
    # no state.changelog_name: the changelog keys each partition's state, not each agent's
    files = scale_out(tmp_path, broker_session, topic)
    group, agent_cfgs, agg_cfg = files.group, files.agents, files.aggregator
    first, committed, read, last = phases()
    procs = [AgentProcess(files.alone), *(AgentProcess(c) for c in agent_cfgs)]
    aggregator = AgentProcess(agg_cfg)
    restarted: list[AgentProcess] = []
    agg_reports, alone_reports = files.agg_reports, files.alone_reports
    try:
        start_scale_out(procs[1:], aggregator, procs[0])
        send_committed_phases(bootstrap, topic, group, [first, committed], agg_reports)
        victim = procs[1]
        before = victim.decoded()
        produce_aiokafka(bootstrap, topic, read, partitions=PARTITIONS)
        wait_for(lambda: victim.decoded() > before, "the agent reading on", 30.0)
        # mid-stream: killed while reading, checkpoints and commits of it possibly not made
        victim.kill()
        aggregator.kill()
        shutil.rmtree(agent_cfgs[0].parent / "state")  # the new nodes have no disk
        shutil.rmtree(agg_cfg.parent / "state")
        restarted = [AgentProcess(agent_cfgs[0]).start(), AgentProcess(agg_cfg).start()]
        produce_aiokafka(bootstrap, topic, last, partitions=PARTITIONS)
        wait_for(lambda: len(reports(alone_reports)) == len(ROWS), "the lone agent's windows", 60.0)
        try:
            wait_for(lambda: len(reports(agg_reports)) == len(ROWS), "six aggregated windows", 60.0)
        except AssertionError:
            for p in [*procs[1:], *restarted]:
                if p.alive():
                    print(p.log_path, scale_out_counts(p))
            raise
        agents = [*procs[2:], restarted[0]]
        restored = sum(p.log().count("window state restored from the changelog") for p in agents)
        lost = sum(p.metric("driftline_state_lost_partitions_total") for p in agents)
        aggregator_restored = "aggregator state restored from the changelog" in restarted[1].log()
    finally:
        for p in [*procs, aggregator, *restarted]:
            p.stop()
    assert restored >= 1, "the victim's partition was restored from the changelog"
    assert lost == 0
    assert aggregator_restored, "the aggregator's state came back from the changelog"
    alone, merged = reports(alone_reports), reports(agg_reports)
    assert sorted(alone) == sorted(merged)
    assert [alone[k].rows for k in sorted(alone)] == list(ROWS)
    for key, want in alone.items():
        got = merged[key]
        assert not got.partial, (key, got.partial_reason)
        assert got.coverage is not None and got.coverage.reported == (0, 1, 2), key
        assert same_window(got, want, tol=1e-9), key
    drifted = [
        k
        for k in sorted(merged)
        if any(c.drifted for c in merged[k].drift.columns if c.feature == "income")
    ]
    assert drifted and min(k[1] for k in drifted) >= BASE_TIME + DRIFT_FROM * SIZE
