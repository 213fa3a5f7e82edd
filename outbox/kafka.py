"""The only module that builds Kafka clients; the rest of choreo gets them from here.

Settings are tuned for Apache Kafka, embedded or a team's own: a short fetch wait keeps
one hop in the tens of milliseconds (see docs/benchmarks.md). The services'
consumers are only ever assigned partitions (``build_unmanaged_consumer``); the group
settings serve the throw-away readers of tests and benchmarks, where a short session
timeout and heartbeat make a join take seconds instead of tens of seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

DEFAULT_PARTITIONS = 3


def consumer_config(bootstrap: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        # Chosen on the old embedded broker, which held every fetch for its whole wait
        # (10 ms gave a 39 ms hop, 500 ms a 176 ms hop). Kafka answers as soon as data
        # arrives, so a longer wait would cost no latency and less idle CPU: untried yet
        # (docs/benchmarks.md).
        "fetch.wait.max.ms": 10,
        "partition.assignment.strategy": "range",
        # For group readers only: an assigned consumer has no membership to lose.
        "max.poll.interval.ms": 300000,
        "log_level": 3,
        **overrides,
    }


def build_consumer(bootstrap: str, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(bootstrap, group_id, **overrides))


def build_unmanaged_consumer(bootstrap: str, name: str, **overrides: Any) -> Consumer:
    """A consumer that is only ever ``assign``ed partitions: no group join, no commits.

    librdkafka insists on a ``group.id``; without ``subscribe`` it never joins the
    group, so the broker's group coordinator plays no part (see outbox/assignment.py).
    """
    return Consumer(consumer_config(bootstrap, name, **overrides))


def build_producer(bootstrap: str, **overrides: Any) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "log_level": 3,
        **overrides,
    })


def build_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create missing topics; an existing topic is fine, whatever its partition count.

    The replication factor is the cluster's own ``default.replication.factor`` (-1 asks
    the broker, KIP-464): 1 on the embedded single node, 3 on ``choreo up --brokers 3``
    or a team's cluster, rather than a number that is wrong on one of them.
    """
    admin = build_admin(bootstrap)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=-1)
              for t in sorted(set(topics) - existing)]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, request_timeout=15).items():
        try:
            future.result()
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise RuntimeError(f"could not create topic {topic}: {error}") from error
