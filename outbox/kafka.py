"""The only module that builds Kafka clients; the rest of choreo gets them from here.

Settings are tuned for Apache Kafka, embedded or a team's own: a short fetch wait keeps
one hop in the tens of milliseconds (see docs/benchmarks.md). The services'
consumers are only ever assigned partitions (``build_unmanaged_consumer``); the group
settings serve the throw-away readers of tests and benchmarks, where a short session
timeout and heartbeat make a join take seconds instead of tens of seconds.

Every builder takes a :class:`~outbox.kafka_connection.KafkaConnection` (or a bare
bootstrap string, a plaintext one), so TLS and SASL reach every client alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from choreo.outbox.errors import ConfigError
from choreo.outbox.kafka_connection import KafkaConnection, connection_of
from choreo.outbox.topics import TopicSettings

Kafka = KafkaConnection | str
"""A connection, or the bootstrap of a plaintext one."""


def consumer_config(kafka: Kafka, group_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        **connection_of(kafka).client_properties(),
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


def build_consumer(kafka: Kafka, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(kafka, group_id, **overrides))


def build_unmanaged_consumer(kafka: Kafka, name: str, **overrides: Any) -> Consumer:
    """A consumer that is only ever ``assign``ed partitions: no group join; its commits are
    for Kafka's tools only (``outbox.group_offsets``).

    librdkafka insists on a ``group.id``; without ``subscribe`` it never joins the
    group, so the broker's group coordinator only keeps the offsets it commits (see
    outbox/assignment.py).
    """
    return Consumer(consumer_config(kafka, name, **overrides))


def build_producer(kafka: Kafka, **overrides: Any) -> Producer:
    return Producer({
        **connection_of(kafka).client_properties(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "log_level": 3,
        **overrides,
    })


def build_admin(kafka: Kafka, **overrides: Any) -> AdminClient:
    return AdminClient({**connection_of(kafka).client_properties(), "log_level": 3,
                        **overrides})


REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})
"""Errors no retry cures: the cluster refused the credentials, or its certificate did not
verify against the CA the client was given."""


class KafkaRefused(ConfigError):
    """The cluster turned this client away: a start-up error naming the cause, not a
    consumer that waits for ever on a broker it can never speak to."""


def list_topics(kafka: Kafka, timeout_s: float = 10.0) -> set[str]:
    """The cluster's topics; :class:`KafkaRefused` when it refuses the client.

    librdkafka reports a refused handshake only through its error callback, and the
    call itself fails with a bare transport error, so the callback's word is kept."""
    refusals: list[KafkaError] = []
    admin = build_admin(kafka, error_cb=lambda error: refusals.append(error)
                        if error.code() in REFUSALS else None)
    try:
        return set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException:
        admin.poll(0)
        if refusals:
            connection = connection_of(kafka)
            raise KafkaRefused(f"Kafka at {connection.bootstrap} refused this client"
                               f" ({connection.security_protocol}): {refusals[-1].str()}"
                               ) from None
        raise


class MissingTopics(ConfigError):
    """Topics are provisioned by the platform team (``CHOREO_CREATE_TOPICS=false``) and
    some are not there: said at start-up, naming them, rather than as a consumer that
    waits for ever on a partition that will never exist."""


def ensure_topics(kafka: Kafka, topics: Iterable[str],
                  settings: TopicSettings | None = None) -> None:
    """Create missing topics as ``settings`` say; an existing topic is left as it is,
    whatever its partition count (``docs/outbox.md``, "Topics").

    By default the replication factor is the cluster's own ``default.replication.factor``
    (-1 asks the broker, KIP-464): 1 on the embedded single node, 3 on ``choreo up
    --brokers 3`` or a team's cluster, rather than a number that is wrong on one of them.
    """
    settings = settings or TopicSettings()
    missing = sorted(set(topics) - list_topics(kafka))
    if not missing:
        return
    if not settings.create:
        raise MissingTopics(f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
                            " not found and CHOREO_CREATE_TOPICS=false: provision"
                            f" {'them' if len(missing) > 1 else 'it'} first")
    wanted = [NewTopic(topic, num_partitions=settings.partitions,
                       replication_factor=settings.replication_factor,
                       config=settings.topic_config())
              for topic in missing]
    admin = build_admin(kafka)  # held: the futures fail if it is collected before them
    for topic, future in admin.create_topics(wanted, request_timeout=15).items():
        try:
            future.result()
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise RuntimeError(f"could not create topic {topic}: {error}") from error
