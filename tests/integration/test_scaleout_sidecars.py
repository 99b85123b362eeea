"""Sidecars of one model that elect their judge: three agents in one consumer group, each
with ``aggregation.role: both`` (what the injector gives every sidecar of a model). Each
publishes its partitions' window pieces and is a member of the model's aggregator group;
Kafka gives the partials partition to one of them, which judges every window for the
whole model. The judging sidecar is killed (SIGKILL) mid-stream with its state directory
deleted (a rescheduled pod with an ``emptyDir``); another sidecar takes the judging
over, and the lost one comes back with a new identity and restores from the changelog.
Nothing is created by hand: the sidecars create the partials topic as they start
(``aggregation.create_topic``), as injected sidecars must.

Together the three must report exactly the windows of one agent reading the same topic
alone (rows, late and duplicate counts, every statistic to 1e-9, every verdict), each
window once (a window reported by two judges is the same report both times), none
partial: one verdict per window for the model, never one per sidecar.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from detectors.results import WindowReport
from monitor.config.aggregation import partials_topic_for
from monitor.demo.broker import TansuBroker
from tests.integration.agent_helpers import (
    AgentProcess,
    ReportKey,
    committed_offsets,
    read_reports,
    unique_reports,
    wait_for,
)
from tests.integration.test_scaleout import (
    FLUSH_AT,
    PARTITIONS,
    ROWS,
    assert_merged_as_alone,
    config,
    produce,
    reports,
    scale_out_counts,
    traffic,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]

_ASSIGNED = re.compile(r"partitions assigned: \[(.*?)\]")


def holds(p: AgentProcess, topic: str) -> set[int]:
    """The partitions of ``topic`` in the last assignment of it the process logged (a
    sidecar logs its source consumer's assignments and its aggregator's)."""
    held: set[int] = set()
    for match in _ASSIGNED.finditer(p.log()):
        names = re.findall(r"'([^']+)'", match.group(1))
        if any(n.rsplit("-", 1)[0] == topic for n in names):
            held = {int(n.rsplit("-", 1)[1]) for n in names if n.rsplit("-", 1)[0] == topic}
    return held


def merged_reports(paths: list[Path]) -> dict[ReportKey, WindowReport]:
    """The data windows reported by any of the sidecars (one judge at a time; a window
    two judges reported must be the same report)."""
    everything = [r for path in paths for r in read_reports(path)]
    return {k: r for k, r in unique_reports(everything).items() if k[1] < FLUSH_AT}


def test_sidecars_with_role_both_judge_each_window_once_through_a_killed_judge(
    tmp_path: Path, kafka_topic: KafkaTopicFactory, broker_session: TansuBroker
) -> None:
    bootstrap = broker_session.bootstrap
    topic = kafka_topic(PARTITIONS)
    partials = f"{partials_topic_for('m')}-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]
    group = f"sidecars-{run}"
    alone_cfg = config(tmp_path / "alone", bootstrap, topic, f"alone-{run}", {"role": "none"})
    scale = {"role": "both", "partials_topic": partials, "deadline": "60s"}
    sidecar_cfgs = [
        config(tmp_path / f"sidecar{i}", bootstrap, topic, group, scale) for i in range(3)
    ]
    changelog = f"driftline.sidecars.changelog-{run}"
    for path in sidecar_cfgs:
        data = yaml.safe_load(path.read_text())
        data["state"]["changelog_topic"] = changelog
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    report_files = [tmp_path / f"sidecar{i}" / "reports.jsonl" for i in range(3)]
    alone_reports = tmp_path / "alone" / "reports.jsonl"
    first, second = traffic()
    alone = AgentProcess(alone_cfg)
    sidecars = [AgentProcess(c) for c in sidecar_cfgs]
    comeback: AgentProcess | None = None
    try:
        for p in [alone, *sidecars]:
            p.start()
        wait_for(
            lambda: all(holds(p, topic) for p in sidecars),
            "three sidecars with a source partition each",
            timeout=40.0,
        )
        delivered = produce(bootstrap, topic, first)
        wait_for(lambda: len(merged_reports(report_files)) >= 1, "a first window", 40.0)
        wait_for(
            lambda: committed_offsets(bootstrap, group, topic, PARTITIONS) == delivered.high,
            "the first half committed",
            timeout=30.0,
        )
        # the sidecar Kafka gave the partials partition is the one writing reports
        [judge] = [i for i, path in enumerate(report_files) if read_reports(path)]
        assert holds(sidecars[judge], partials) == {0}
        judged_first = len(read_reports(report_files[judge]))
        # the judging sidecar is lost with its disk, and comes back as a new pod
        sidecars[judge].kill()
        shutil.rmtree(tmp_path / f"sidecar{judge}" / "state")
        produce(bootstrap, topic, second)
        # another sidecar takes the judging over (Kafka's reassignment) ...
        wait_for(
            lambda: any(read_reports(f) for i, f in enumerate(report_files) if i != judge),
            "another sidecar judging a window",
            timeout=60.0,
        )
        # ... and the lost one comes back as a new pod, its disk empty
        comeback = AgentProcess(sidecar_cfgs[judge]).start()
        wait_for(lambda: len(reports(alone_reports)) == len(ROWS), "the lone agent", 60.0)
        try:
            wait_for(lambda: len(merged_reports(report_files)) == len(ROWS), "six windows", 90.0)
        except AssertionError:
            for p in [*sidecars, comeback]:
                if p.alive():
                    print(p.log_path, scale_out_counts(p))
            raise
        judges = [
            i
            for i, path in enumerate(report_files)
            if len(read_reports(path)) > (judged_first if i == judge else 0)
        ]
    finally:
        for p in [alone, *sidecars, *([comeback] if comeback else [])]:
            p.stop()
    print("first judge:", judge, "judges after it:", judges)
    assert judged_first >= 1
    assert_merged_as_alone(merged_reports(report_files), reports(alone_reports))
