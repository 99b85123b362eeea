"""The partials topic made sure of on a real broker: created when missing, with one
partition and the settings docs/kubernetes.md gives, by the helper and by agents and
aggregators at start; an existing topic left exactly as it was.

Tansu answers DescribeConfigs with the settings a topic was created with, so the tests
read them back through aiokafka's admin client.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from monitor.config.loader import parse_config
from monitor.config.model import MonitorConfig
from monitor.demo.broker import TansuBroker
from monitor.runtime.partials_topic import ensure_partials_topic, topic_configs
from tests.integration.agent_helpers import MODEL, AgentProcess, wait_for, write_agent_files

pytestmark = pytest.mark.integration

SETTINGS = ("cleanup.policy", "retention.ms", "max.message.bytes")


def described(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's settings as the broker reports them (DescribeConfigs)."""

    async def ask() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic)
            [response] = await admin.describe_configs([resource])
        finally:
            await admin.close()
        [(code, _, _, name, entries)] = response.resources
        assert code == 0 and name == topic
        return {e[0]: e[1] for e in entries}

    return asyncio.run(ask())


def config(bootstrap: str, topic: str, size: str, **aggregation: Any) -> MonitorConfig:
    return parse_config(
        {
            "model": MODEL,
            "reference": "ref.json",
            "source": {
                "kind": "kafka",
                "kafka": {"bootstrap_servers": bootstrap, "topics": ["t"], "group_id": "g"},
            },
            "windows": {"size": size, "allowed_lateness": "1m"},
            "aggregation": {"role": "agent", "partials_topic": topic, **aggregation},
        }
    )


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}.partials"


def test_the_helper_creates_the_topic_once_and_then_leaves_it_alone(
    broker_session: TansuBroker,
) -> None:
    bootstrap, topic = broker_session.bootstrap, fresh("helper")
    assert topic not in broker_session.topics()
    first = config(bootstrap, topic, "30m")
    assert asyncio.run(ensure_partials_topic(first)) is True
    assert broker_session.topics()[topic] == 1
    settings = described(bootstrap, topic)
    wanted = topic_configs(first)
    assert wanted["retention.ms"] == str(3 * (1800 + 60 + 30) * 1000)
    assert {k: settings.get(k) for k in SETTINGS} == wanted
    # again, with a config asking for another retention: the topic is not altered
    again = config(bootstrap, topic, "2h")
    assert topic_configs(again)["retention.ms"] != wanted["retention.ms"]
    assert asyncio.run(ensure_partials_topic(again)) is True
    assert broker_session.topics()[topic] == 1
    assert {k: v for k, v in described(bootstrap, topic).items() if k in SETTINGS} == wanted


def test_a_topic_made_by_hand_is_not_altered(broker_session: TansuBroker) -> None:
    bootstrap, topic = broker_session.bootstrap, fresh("by-hand")
    broker_session.create_topic(topic, 2)
    before = described(bootstrap, topic)
    assert asyncio.run(ensure_partials_topic(config(bootstrap, topic, "30m"))) is True
    assert broker_session.topics()[topic] == 2
    assert described(bootstrap, topic) == before


def test_nothing_is_created_with_create_topic_off(broker_session: TansuBroker) -> None:
    bootstrap, topic = broker_session.bootstrap, fresh("locked")
    off = config(bootstrap, topic, "30m", create_topic=False)
    assert asyncio.run(ensure_partials_topic(off)) is False
    assert topic not in broker_session.topics()


def test_an_agent_and_an_aggregator_create_it_at_start(
    tmp_path: Path, kafka_topic: Any, broker_session: TansuBroker
) -> None:
    """No traffic at all: the topics exist because the processes made them at start
    (the aggregator's subscription alone would have the broker make one of 4 partitions)."""
    bootstrap, source = broker_session.bootstrap, kafka_topic(2)
    topics = {"agent": fresh("agent"), "aggregator": fresh("aggregator")}
    procs = []
    for role, topic in topics.items():
        files = write_agent_files(
            tmp_path / role,
            bootstrap=bootstrap,
            topics=[source],
            group_id=f"{role}-{uuid.uuid4().hex[:8]}",
            windows={"size": 2.0, "allowed_lateness": 0.5},
        )
        data = yaml.safe_load(files.config.read_text())
        data["aggregation"] = {"role": role, "partials_topic": topic, "deadline": "10s"}
        files.config.write_text(yaml.safe_dump(data, sort_keys=False))
        procs.append(AgentProcess(files.config))
    try:
        for p in procs:
            p.start()
        wait_for(
            lambda: set(topics.values()) <= set(broker_session.topics()),
            "both partials topics",
            timeout=25.0,
        )
        counts = broker_session.topics()
        for topic in topics.values():
            assert counts[topic] == 1, (topic, counts[topic])
            settings = described(bootstrap, topic)
            assert settings.get("cleanup.policy") == "delete"
            assert settings.get("retention.ms") == "3600000"  # 3 × 12.5 s: the hour floor
            assert settings.get("max.message.bytes") == "8388608"
    finally:
        for p in procs:
            p.stop()
