"""The partials topic made sure of at start, so scaled-out agents need no one to create it.

Agents (``aggregation.role: agent``/``both``) before their first partial and aggregators
(``aggregator``/``both``) before they subscribe create ``driftline.<model>.partials``
when it is missing (``aggregation.create_topic``, on by default), with the settings
docs/kubernetes.md ("Scaling out") gives for creating it by hand:

* one partition: every partial of a model is keyed by the model, so one aggregator owns
  the model and reads its partials in order;
* ``cleanup.policy=delete`` with ``retention.ms`` of three times what a window can wait
  before it is judged (its size, the allowed lateness and the aggregation deadline), and
  at least an hour: an aggregator taking over re-reads the open windows' partials;
* ``max.message.bytes`` of 8 MiB, above the largest partial.

An existing topic is left as it is. Nothing here stops the agent: a broker that refuses
the creation is logged once, as an error with the command to run; brokers that do not
answer are a warning, and the publisher's retries wait for them.
"""

from __future__ import annotations

import logging
import math
import shlex

from monitor.config.aggregation import AggregationConfig
from monitor.config.model import MonitorConfig
from monitor.config.windows import WindowsConfig
from monitor.ingest.topics import TopicRefused, TopicUnreachable, ensure_topic

log = logging.getLogger(__name__)

#: The shortest retention the partials topic is created with.
MIN_RETENTION_MS = 3_600_000
#: A partial carries a window sketch and its performance state: room for the largest.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: (brokers, topic) whose refusal this process logged: with ``role: both`` the agent and
#: the aggregator both ask, and one error says it.
_REFUSED: set[tuple[str, str]] = set()


def retention_ms(windows: WindowsConfig, aggregation: AggregationConfig) -> int:
    """How long the partials topic keeps a partial: three times the longest a window's
    partials can wait to be judged (size + allowed lateness + deadline), at least 1 hour."""
    wait = float(windows.size) + float(windows.allowed_lateness) + float(aggregation.deadline)
    return max(MIN_RETENTION_MS, math.ceil(3 * wait * 1000))


def topic_configs(config: MonitorConfig) -> dict[str, str]:
    """The settings the partials topic is created with."""
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(retention_ms(config.windows, config.aggregation)),
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
    }


def create_command(topic: str, configs: dict[str, str], replication: int) -> str:
    """The ``kafka-topics.sh`` command that creates the topic as the agent would."""
    words = ["kafka-topics.sh", "--create", "--topic", topic, "--partitions", "1"]
    words += ["--replication-factor", str(replication)]
    for key, value in configs.items():
        words += ["--config", f"{key}={value}"]
    return shlex.join(words)


async def ensure_partials_topic(config: MonitorConfig) -> bool:
    """Create the partials topic when missing (Kafka sources, ``aggregation.create_topic``);
    whether it is known to exist now. Never raises: what went wrong is logged."""
    kafka = config.source.kafka
    if not config.aggregation.create_topic or config.source.kind != "kafka" or kafka is None:
        return False
    topic = config.aggregation.topic(config.model)
    configs = topic_configs(config)
    replication = config.state.changelog_replication
    try:
        await ensure_topic(kafka, topic, replication=replication, configs=configs, partitions=1)
        return True
    except TopicRefused as exc:
        seen = (str(kafka.bootstrap_servers), topic) in _REFUSED
        _REFUSED.add((str(kafka.bootstrap_servers), topic))
        log.log(
            logging.DEBUG if seen else logging.ERROR,
            "the partials topic %s does not exist and the brokers refused to create it (%s); "
            'create it (docs/kubernetes.md, "Scaling out"): %s; until it exists the '
            "agents retry their partials and the aggregator has none to read",
            topic,
            exc.reason,
            create_command(topic, configs, replication),
        )
    except TopicUnreachable as exc:
        log.warning(
            "cannot make sure the partials topic %s exists: brokers %s did not answer (%s); "
            "partials are retried until they do",
            topic,
            kafka.bootstrap_servers,
            exc.reason,
        )
    except Exception as exc:  # never out of the agent: sends retry and report the rest
        log.warning("cannot make sure the partials topic %s exists (%s)", topic, type(exc).__name__)
    return False
