"""Labels from their own topic, against a real broker: joined to the predictions by
request id, late ones revising closed windows, and a SIGKILL between checkpoints that
neither loses a label nor counts one twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.metrics import accuracy_score, roc_auc_score

from detectors.performance import learn_performance
from detectors.results import WindowReport
from monitor.demo import synthetic
from monitor.demo.broker import TansuBroker
from monitor.runtime.checkpoint import CheckpointStore
from tests.integration.agent_helpers import (
    BASE_TIME,
    AgentProcess,
    as_messages,
    produce_aiokafka,
    produce_confluent,
    read_reports,
    reference_profile,
    wait_for,
    window_traffic,
    write_agent_files,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]
SIZE = 2.0
ROWS = 600
WINDOWS = 4


def _labelled_profile(path: Path) -> None:
    """The synthetic model's profile, with its estimators learnt from outcomes drawn
    from its own (calibrated) scores."""
    frame = synthetic.reference_frame(20_000, seed=0)
    rng = np.random.default_rng(5)
    frame["outcome"] = (rng.random(len(frame)) < frame["prediction"]).astype(int)
    profile = reference_profile()
    perf = learn_performance(profile, frame, "outcome")
    replace(profile, performance=perf).save(path)


def _labels(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "request_id": r["request_id"],
            "label": int(rng.random() < r["prediction"]),
            "timestamp": r["timestamp"],
        }
        for r in records
    ]


def test_labels_topic_with_a_sigkill_between_checkpoints(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    preds_topic, labels_topic = kafka_topic(1), kafka_topic(1)
    bootstrap = broker_session.bootstrap
    files = write_agent_files(
        tmp_path / "agent",
        bootstrap=bootstrap,
        topics=[preds_topic],
        group_id=f"driftline-{uuid.uuid4().hex[:8]}",
        windows={"size": SIZE, "allowed_lateness": 0.5, "idle_timeout": 60.0},
        checkpoint_interval=5.0,
    )
    config = yaml.safe_load(files.config.read_text())
    _labelled_profile(Path(config["reference"]))
    config["labels"] = {"source": "kafka", "topic": labels_topic, "wait_for_prediction": "1h"}
    files.config.write_text(yaml.safe_dump(config, sort_keys=False))

    windows = window_traffic(windows=WINDOWS, rows=ROWS, size=SIZE, seed=41)
    labels = [_labels(w, 100 + k) for k, w in enumerate(windows)]
    flush = {**windows[0][0], "request_id": "flush", "timestamp": BASE_TIME + 100 * SIZE}
    # each window's labels come after the next window's predictions: after it closed
    phases = [
        (windows[0] + windows[1], labels[0]),
        (windows[2], labels[1] + labels[0][:50]),  # 50 duplicate labels
        (windows[3] + [flush], labels[2] + labels[3]),
    ]
    store = CheckpointStore(files.state)

    def checkpointed(topic: str) -> int:
        checkpoint = store.load()
        return 0 if checkpoint is None else checkpoint.offsets.get((topic, 0), 0)

    def send(phase: int) -> tuple[int, int]:
        preds, labs = phases[phase]
        produce = produce_aiokafka if phase % 2 == 0 else produce_confluent
        high_p = produce(bootstrap, preds_topic, as_messages(preds)).high[0]
        high_l = produce(bootstrap, labels_topic, as_messages(labs)).high[0]
        return high_p, high_l

    agents: list[AgentProcess] = []
    try:
        first = AgentProcess(files.config).start()
        agents.append(first)
        high_p, high_l = send(0)
        wait_for(
            lambda: checkpointed(preds_topic) == high_p and checkpointed(labels_topic) == high_l,
            "a checkpoint of phase 1 on both topics",
            60,
        )
        _, high_l = send(1)
        joined = "driftline_labels_total"
        wait_for(
            lambda: first.metric(joined, outcome="joined") >= 2 * ROWS,
            "the labels of window 1 joined",
            60,
        )
        first.kill()
        assert checkpointed(labels_topic) < high_l, (
            "killed with labels consumed past the checkpoint"
        )
        send(2)
        restarted = AgentProcess(files.config).start()
        agents.append(restarted)

        def final() -> dict[float, WindowReport]:
            out: dict[float, WindowReport] = {}
            for r in read_reports(files.reports):
                if r.window_start < BASE_TIME + WINDOWS * SIZE:
                    out[r.window_start] = r  # the latest report of a window wins
            return out

        def complete() -> bool:
            reports = final()
            return len(reports) == WINDOWS and all(
                r.performance is not None and r.performance.labeled_rows >= ROWS
                for r in reports.values()
            )

        wait_for(complete, "every window's labels in its latest report", 90)
        restarted.stop()
    finally:
        for agent in agents:
            agent.stop()

    reports = final()
    assert sorted(reports) == [BASE_TIME + k * SIZE for k in range(WINDOWS)]
    revised = [r for r in read_reports(files.reports) if r.performance and r.performance.revised]
    assert revised, "labels after a window closed must revise its report"
    for k, start in enumerate(sorted(reports)):
        perf = reports[start].performance
        assert perf is not None
        # nothing lost and nothing twice: exactly one label per prediction, duplicates out
        assert perf.labeled_rows == ROWS and perf.coverage == 1.0
        y = np.array([lab["label"] for lab in labels[k]])
        score = np.array([r["prediction"] for r in windows[k]])
        assert perf.realized_value("accuracy") == pytest.approx(
            accuracy_score(y, score >= 0.5), abs=1e-12
        )
        assert perf.realized_value("roc_auc") == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_two_agents_each_join_the_labels_of_their_own_predictions(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    """Two agents share a model's traffic: both topics have three partitions and are keyed
    by request id, and range assignment gives each agent the same partitions of both, so
    every label meets its prediction (none counts as no_prediction). Round robin, the
    default, would split the six partitions 0, 2 / 1 of one topic and 1 / 0, 2 of the
    other."""
    preds_topic, labels_topic = kafka_topic(3), kafka_topic(3)
    bootstrap = broker_session.bootstrap
    group = f"driftline-{uuid.uuid4().hex[:8]}"
    agents_files: list[Any] = []
    for name in ("a", "b"):
        files = write_agent_files(
            tmp_path / name,
            bootstrap=bootstrap,
            topics=[preds_topic],
            group_id=group,
            windows={"size": SIZE, "allowed_lateness": 0.5, "idle_timeout": 60.0},
            checkpoint_interval=1.0,
        )
        config = yaml.safe_load(files.config.read_text())
        if name == "a":
            _labelled_profile(Path(config["reference"]))
        else:  # the same profile file for both
            Path(config["reference"]).write_bytes(
                Path(yaml.safe_load(agents_files[0].config.read_text())["reference"]).read_bytes()
            )
        config["labels"] = {"source": "kafka", "topic": labels_topic, "wait_for_prediction": "1h"}
        files.config.write_text(yaml.safe_dump(config, sort_keys=False))
        agents_files.append(files)
    windows = window_traffic(windows=2, rows=400, size=SIZE, seed=51)
    records = windows[0] + windows[1]
    labels = _labels(records, 7)
    agents: list[AgentProcess] = []
    try:
        for files in agents_files:
            agents.append(AgentProcess(files.config).start())
        wait_for(
            lambda: (
                all(len(a.assignments()) > 0 and a.assignments()[-1] for a in agents)
                and len({p for a in agents for p in a.assignments()[-1]}) == 3
            ),
            "both agents with a partition of each topic",
            60,
        )
        produce_aiokafka(bootstrap, preds_topic, as_messages(records))
        produce_aiokafka(bootstrap, labels_topic, as_messages(labels))
        joined = "driftline_labels_total"
        wait_for(
            lambda: sum(a.metric(joined, outcome="joined") for a in agents) == len(labels),
            "every label joined by one of the agents",
            60,
        )
        assert all(a.metric(joined, outcome="joined") > 0 for a in agents)
        assert sum(a.metric(joined, outcome="no_prediction") for a in agents) == 0
        assert sum(a.metric(joined, outcome="duplicate") for a in agents) == 0
    finally:
        for agent in agents:
            agent.stop()
