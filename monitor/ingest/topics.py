"""Topics the agent creates for itself when they are missing: the compacted changelog
(monitor/runtime/changelog.py), the partials topic (monitor/runtime/partials_topic.py)
and the KServe pairs topic (repartition.py).

A topic that exists is left exactly as it is: its partitions and settings are the
operator's, never altered. A broker that will not create it (ACLs, a creation policy)
answers with an error code, raised as ``TopicRefused``; brokers that do not answer raise
``TopicUnreachable``, which trying again may cure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    for_code,
)

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.kafka import client_settings

log = logging.getLogger(__name__)

#: Seconds a metadata request or a topic creation may take.
REQUEST_TIMEOUT = 10.0
TOPIC_ALREADY_EXISTS = 36
#: Creation error codes that say "not now" rather than "not allowed": request timed
#: out, not the controller (a controller election under way).
TRANSIENT_CODES = frozenset({7, 41})


class TopicError(Exception):
    """A topic could not be made sure of; the message names it and why."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"cannot create {topic}: {reason}")
        self.topic = topic
        self.reason = reason


class TopicUnreachable(TopicError):
    """The brokers did not answer (or not yet): trying again later may succeed."""


class TopicRefused(TopicError):
    """The broker refused to create the topic (authorization, policy, invalid settings):
    trying again will not help; someone allowed to must create it."""


def error_name(code: int) -> str:
    """Kafka's name of a protocol error code, e.g. ``TopicAuthorizationFailedError``."""
    try:
        return for_code(code).__name__
    except Exception:  # an unknown code: aiokafka has no class for it
        return "UnknownError"


async def ensure_topic(
    kafka: KafkaSourceConfig,
    topic: str,
    *,
    replication: int,
    configs: Mapping[str, str],
    partitions: int = 1,
    like: Iterable[str] = (),
) -> int:
    """Create ``topic`` with ``configs`` when it does not exist, with ``partitions``
    partitions or, when more, as many as the largest of the topics ``like``; its
    partition count. A topic that exists is not touched.

    ``TopicRefused`` when the broker will not create it, ``TopicUnreachable`` when the
    brokers do not answer.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(
        request_timeout_ms=int(REQUEST_TIMEOUT * 1000), **client_settings(kafka)
    )
    try:
        await asyncio.wait_for(admin.start(), REQUEST_TIMEOUT)
        counts = await _counts(admin)
        if topic not in counts:
            wanted = max([counts.get(t, 0) for t in like] + [partitions, 1])
            new = NewTopic(topic, wanted, replication, topic_configs=dict(configs))
            response = await asyncio.wait_for(admin.create_topics([new]), REQUEST_TIMEOUT)
            for name, code, *_ in response.topic_errors:
                if code in TRANSIENT_CODES:
                    raise TopicUnreachable(name, error_name(code))
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise TopicRefused(name, f"{error_name(code)} (error code {code})")
                if code == 0:
                    log.info("created topic %s (%d partitions)", name, wanted)
            deadline = time.monotonic() + REQUEST_TIMEOUT
            while topic not in counts and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                counts = await _counts(admin)
        return max(1, counts.get(topic, 1))
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
        raise TopicRefused(topic, type(exc).__name__) from exc
    except (KafkaError, OSError, TimeoutError) as exc:
        raise TopicUnreachable(topic, type(exc).__name__) from exc
    finally:
        await admin.close()


async def _counts(admin: Any) -> dict[str, int]:
    """Topic -> partitions, asking for all topics (asking by name may create one)."""
    topics = await asyncio.wait_for(admin.describe_topics(), REQUEST_TIMEOUT)
    return {t["topic"]: len(t["partitions"]) for t in topics if t["partitions"]}
