"""The aggregator's checkpoints in the changelog, so a replica with no disk takes over with
the memory of the windows it judged.

Re-reading the partials topic from the committed offset recovers the open windows'
partials, the agents' progress and the judged markers written after that offset, but not
the windows judged *before* it. An agent restored from a state older than the partials it
had sent (killed between a send and the commit) closes such a window again and re-sends
its piece; an aggregator that forgot the window would take the piece for a new window and,
the other partitions' owners being past it, judge it complete with one partition's rows.
So the aggregator keeps its state as agents keep theirs (docs/agent.md, "State"): at every
checkpoint, before its offsets commit, under the keys of each partials partition it owns
(``<aggregator group>/<partials topic>/<partition>``, ``monitor/runtime/
partition_changelog.py``); whoever is assigned the partition restores the state ending at
the group's committed offset before reading it. The state directory stays as a cache: a
checkpoint there ending at the committed offset is used as it is.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import partial

from monitor.config.model import MonitorConfig
from monitor.runtime.changelog import Changelog, ChangelogError
from monitor.runtime.checkpoint import Checkpoint, CheckpointError, encode
from monitor.runtime.partition_changelog import PartitionLog
from monitor.runtime.partition_state import ensure_partitioned
from monitor.runtime.restore_retry import RestoreRetry

log = logging.getLogger(__name__)

Key = tuple[str, int]


class AggregatorChangelog(Changelog):
    """``save`` writes the aggregator's checkpoint per owned partials partition;
    ``on_assign`` restores it through ``apply``."""

    def __init__(
        self, config: MonitorConfig, group_id: str, partials_topic: str, reference_hash: str
    ) -> None:
        kafka = config.source.kafka
        assert kafka is not None
        super().__init__(kafka, config.state, config.model)
        self.source_topics = set(kafka.topics)
        own = kafka.model_copy(update={"group_id": group_id})
        writer = f"aggregator-{uuid.uuid4().hex[:12]}"
        self.log = PartitionLog(own, self.topic, config.state.changelog_chunk_bytes, writer, 0)
        self.key = f"{group_id}/{partials_topic}/<partition>"
        self.partials_topic = partials_topic
        self.reference_hash = reference_hash
        # An assignment's reads the brokers do not answer are tried again, briefly
        self.retry = RestoreRetry.for_session(kafka.session_timeout_ms)
        self.local: dict[Key, int] = {}  # offsets of the checkpoint restored from the disk
        self.apply: Callable[[Checkpoint], None] = lambda checkpoint: None
        self.source: object = None

    @classmethod
    def for_aggregator(
        cls, config: MonitorConfig, group_id: str, partials_topic: str, reference_hash: str
    ) -> AggregatorChangelog | None:
        if config.source.kafka is None or not config.state.changelog:
            return None
        return cls(config, group_id, partials_topic, reference_hash)

    def bind(self, source: object, apply: Callable[[Checkpoint], None]) -> None:
        self.source, self.apply = source, apply
        source.on_assign = self.on_assign  # type: ignore[attr-defined]

    async def ensure_topic(self) -> None:
        await ensure_partitioned(self, self.log, self.source_topics)

    async def load(self, timeout: float = 60.0) -> Checkpoint | None:
        """Nothing before the assignment: the topic is made ready."""
        await self.ensure_topic()
        return None

    async def save(self, checkpoint: Checkpoint) -> None:
        """The checkpoint under each owned partials partition's keys, acknowledged."""
        assigned: set[Key] = getattr(self.source, "assigned", set)()
        states = [
            (
                topic,
                part,
                offset,
                encode(
                    Checkpoint(
                        {(topic, part): offset},
                        checkpoint.windows,
                        checkpoint.reference_hash,
                        checkpoint.created_at,
                        checkpoint.extra,
                    )
                ),
            )
            for (topic, part), offset in sorted(checkpoint.offsets.items())
            if (topic, part) in assigned
        ]
        if not states:
            return
        producer = await self._start()
        try:
            await self.log.write(producer, states, getattr(self.source, "acked", {}))
        except Exception as exc:  # a broker error of any kind: the offsets wait
            raise ChangelogError(
                f"{self.where}: aggregator state not acknowledged ({type(exc).__name__})"
            ) from exc

    async def on_assign(self, committed: dict[Key, int | None]) -> dict[Key, int]:
        """The state ending at a newly assigned partials partition's committed offset,
        given to ``apply`` (unless the disk's checkpoint ends there already)."""
        self.retry.start()
        for key, offset in sorted(committed.items(), key=lambda kv: kv[0]):
            if offset is None or self.local.get(key) == offset:
                continue
            try:
                checkpoint = await self.retry.read(
                    f"aggregator state of {key[0]}-{key[1]}",
                    partial(self.log.read, key[0], key[1], offset),
                )
            except (ChangelogError, CheckpointError) as exc:  # unanswered past the retries too
                log.warning("aggregator state not restored from the changelog: %s", exc)
                continue
            if checkpoint is None:
                log.warning(
                    "no aggregator state in the changelog for %s-%d at offset %d: reading the "
                    "partials again from there",
                    *key,
                    offset,
                )
                continue
            if checkpoint.reference_hash != self.reference_hash:
                log.warning("the changelog's aggregator state is of another reference")
                continue
            log.info("aggregator state restored from the changelog at %s-%d@%d", *key, offset)
            self.apply(checkpoint)
            self.local = dict(checkpoint.offsets)
            return {key: offset}
        return {}

    async def close(self) -> None:
        await self.log.close()
        await super().close()
