"""KServe halves split across partitions, read by two agents of one group, all pair.

KServe's logger sends a request and its response as two unkeyed CloudEvents; here every
request lands on partition 0 and every response on partition 1, the worst case. With
``record.kserve_repartition`` the agents forward the halves keyed by CloudEvent id through
the pairs topic, so each pair meets in one agent; requests whose response never comes
are counted as ``model_error``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.demo.broker import TansuBroker
from tests.integration.agent_helpers import (
    AgentProcess,
    Message,
    produce_aiokafka,
    wait_for,
    window_traffic,
    write_agent_files,
)

pytestmark = pytest.mark.integration

KafkaTopicFactory = Callable[..., str]
PAIRS = 60
FEATURES = ("age", "income", "tenure_months", "balance", "num_products", "credit_score")


def _headers(ce_id: str, kind: str, t: float) -> list[tuple[str, bytes]]:
    iso = f"{datetime.fromtimestamp(t, UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    attrs = {
        "ce_specversion": "1.0",
        "ce_id": ce_id,
        "ce_type": f"org.kubeflow.serving.inference.{kind}",
        "ce_source": "http://credit-scorer-predictor-00007/",
        "ce_time": iso,
        "ce_inferenceservicename": "credit-scorer",
        "content-type": "application/json",
    }
    return [(k, v.encode()) for k, v in attrs.items()]


def kserve_events(n: int, lone_requests: int) -> list[Message]:
    """Request and response of ``n`` predictions, interleaved (request i at 2i), plus
    ``lone_requests`` requests whose response never comes, at the end."""
    records = window_traffic(windows=1, rows=n + lone_requests, size=2.0, seed=5)[0]
    out: list[Message] = []
    for i, r in enumerate(records):
        ce_id = f"pred-{i}"
        f = r["features"]
        inputs = [{"name": k, "shape": [1], "datatype": "FP64", "data": [f[k]]} for k in FEATURES]
        inputs += [
            {"name": k, "shape": [1], "datatype": "BYTES", "data": [f[k]]}
            for k in ("country", "channel")
        ]
        request = {"inputs": inputs}
        response = {
            "model_name": "credit-scorer",
            "outputs": [
                {"name": "prediction", "shape": [1], "datatype": "FP64", "data": [r["prediction"]]}
            ],
        }
        out.append((None, json.dumps(request).encode(), _headers(ce_id, "request", r["timestamp"])))
        if i < n:
            resp = json.dumps(response).encode()
            out.append((None, resp, _headers(ce_id, "response", r["timestamp"] + 0.01)))
    return out


def _config(tmp_path: Path, name: str, bootstrap: str, topic: str, group: str) -> Any:
    files = write_agent_files(
        tmp_path / name,
        bootstrap=bootstrap,
        topics=[topic],
        group_id=group,
        windows={"size": 60.0, "allowed_lateness": 600.0, "idle_timeout": 60.0},
        record={
            "format": "kserve_v2",
            "kserve_repartition": True,
            "kserve_pairs_topic": f"{topic}.pairs",
            "kserve_pair_ttl": "4s",
            "kserve_version_attribute": "source",
        },
    )
    config = yaml.safe_load(files.config.read_text())
    config["state"]["changelog_name"] = name
    files.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return files


def test_halves_split_across_partitions_all_pair_with_two_agents(
    broker_session: TansuBroker, kafka_topic: KafkaTopicFactory, tmp_path: Path
) -> None:
    topic = kafka_topic(2)
    bootstrap = broker_session.bootstrap
    group = f"driftline-pairs-{uuid.uuid4().hex[:8]}"
    lone = 3
    agents = [AgentProcess(_config(tmp_path, "a0", bootstrap, topic, group).config).start()]
    try:
        # both members hold partitions before traffic comes: no rebalance mid-pair
        wait_for(lambda: agents[0].assignments(), "the first agent assigned", 60)
        agents.append(AgentProcess(_config(tmp_path, "a1", bootstrap, topic, group).config).start())
        wait_for(
            lambda: agents[1].assignments() and len(agents[0].assignments()) >= 2,
            "the group rebalanced over both agents",
            60,
        )
        events = kserve_events(PAIRS, lone)
        # partition i % 2: every request on partition 0, every response on partition 1
        delivered = produce_aiokafka(bootstrap, topic, events, partitions=2)
        assert set(delivered.high) == {0, 1}

        def decoded() -> float:
            return sum(a.decoded() for a in agents)

        wait_for(lambda: decoded() == PAIRS, f"{PAIRS} pairs decoded by the two agents", 60)

        def failed(reason: str) -> float:
            return sum(a.metric("driftline_records_failed_total", reason=reason) for a in agents)

        wait_for(lambda: failed("model_error") == lone, "lone requests expired", 30)
        assert failed("unpaired") == 0
        assert all(a.decoded() > 0 for a in agents), "both agents paired some halves"
        versions = {
            s["model_version"]
            for a in agents
            for s in a.series("driftline_records_total")
            if s.get("outcome") == "decoded"
        }
        assert versions == {"http://credit-scorer-predictor-00007/"}
        # two lone agents (role none) share the group: each says it judges a share
        for a in agents:
            assert "reads 1 of the 2 partitions" in a.log(), a.log_path
    finally:
        for a in agents:
            a.stop()
