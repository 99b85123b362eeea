"""KServe halves brought together whatever partition they came from.

KServe's inference logger sends a prediction's request and response as two CloudEvents
with no Kafka key, so they land on any partitions of the topic; with several agents in
one consumer group, the two halves of a pair are often read by different agents and
neither can pair them. Kafka Streams solves this by repartitioning through a topic keyed
by the join key, and so does the agent (docs/agent.md, "KServe pairs across partitions"):

1. a KServe event read from the source topic is forwarded as it is (value, headers,
   timestamp) to the pairs topic, keyed by its CloudEvent id;
2. the agent commits the source offsets only after the forward is acknowledged;
3. the same consumer group reads the pairs topic: both halves of a pair have one key,
   hence one partition, hence one agent, which pairs them as usual (its held halves keep
   that partition's offset uncommitted until they are paired).

An event with no readable id is not forwarded: it is decoded where it is, and set aside
with the decoder's reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from monitor.config.source import KafkaSourceConfig
from monitor.ingest.batch import SourceMessage
from monitor.ingest.kafka import client_settings
from monitor.ingest.topics import TopicError, ensure_topic

log = logging.getLogger(__name__)

#: Seconds a forward of one poll's messages may take before it is tried again.
FORWARD_TIMEOUT = 10.0


def ce_id(message: SourceMessage) -> str | None:
    """The CloudEvent id of a KServe event: the ``ce_id`` header (binary mode) or the
    ``id`` of a structured event; None when there is none."""
    for name, value in message.headers or ():
        if name.lower() == "ce_id" and value:
            return bytes(value).decode("utf-8", "replace")
    value = message.value
    if value and value.lstrip()[:1] == b"{":
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if type(event) is dict and event.get("id") not in (None, "") and "specversion" in event:
            return str(event["id"])
    return None


class PairsRepartition:
    """Forwards the source topic's KServe events to the pairs topic, keyed by id."""

    def __init__(self, kafka: KafkaSourceConfig, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.source_topics = set(kafka.topics)
        self._producer: AIOKafkaProducer | None = None
        self.forwarded = 0

    async def ensure_topic(self) -> None:
        """Create the pairs topic when missing, with as many partitions as the source
        topic (so the pairs spread over the same number of agents). A broker that will
        not create it, or does not answer, is a warning: the agent reads on."""
        try:
            await ensure_topic(
                self.kafka, self.topic, replication=1, configs={}, like=self.source_topics
            )
        except TopicError as exc:
            log.warning("cannot create the pairs topic %s: %s", self.topic, exc.reason)

    def split(
        self, messages: Sequence[SourceMessage]
    ) -> tuple[list[SourceMessage], list[tuple[str, SourceMessage]]]:
        """(messages to decode here, (id, message) to forward): the source topic's events
        with an id go through the pairs topic; everything else is decoded as it is."""
        here: list[SourceMessage] = []
        forward: list[tuple[str, SourceMessage]] = []
        for m in messages:
            key = ce_id(m) if m.topic in self.source_topics else None
            if key is None:
                here.append(m)
            else:
                forward.append((key, m))
        return here, forward

    async def forward(self, messages: Sequence[tuple[str, SourceMessage]]) -> None:
        """Send every message keyed by its id and wait for all acknowledgements; raises
        ``KafkaError`` or ``TimeoutError`` when they do not all come."""
        if not messages:
            return
        producer = await self._start()
        sends = [
            await producer.send(
                self.topic,
                value=m.value,
                key=key.encode(),
                headers=list(m.headers or ()),
                timestamp_ms=m.timestamp,
            )
            for key, m in messages
        ]
        await asyncio.wait_for(asyncio.gather(*sends), FORWARD_TIMEOUT)
        self.forwarded += len(messages)

    async def forward_until_sent(
        self, messages: Sequence[tuple[str, SourceMessage]], stop: asyncio.Event
    ) -> bool:
        """``forward``, tried again with back-off until it is acknowledged or ``stop`` is
        set (then False: the source offsets must not move past these messages)."""
        delay = 0.5
        while True:
            try:
                await self.forward(messages)
                return True
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning(
                    "forward of %d KServe events to %s failed (%s); retrying in %.1fs",
                    len(messages),
                    self.topic,
                    type(exc).__name__,
                    delay,
                )
            if stop.is_set():
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _start(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                acks="all", enable_idempotence=False, linger_ms=5, **client_settings(self.kafka)
            )
            await asyncio.wait_for(producer.start(), FORWARD_TIMEOUT)
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), FORWARD_TIMEOUT)
            except (KafkaError, TimeoutError) as exc:
                log.warning("pairs producer did not close cleanly (%s)", type(exc).__name__)
            self._producer = None
