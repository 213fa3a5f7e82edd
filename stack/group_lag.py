"""Each consumer group's lag as the broker sees it, for the dashboard beside the consumers'
own figure.

The consumers report their lag themselves (``choreo_consumer_lag``), from the positions in
their databases. The broker knows the offsets they also commit for its tools
(``outbox.group_offsets``); this reads those back, with each partition's end, the way
kafka-consumer-groups, Burrow and kminion do, and publishes the difference per group and
topic. The two should agree within seconds: when they do not, the commits are failing
(an ACL, say), or a consumer is gone and only Kafka still remembers where it stood.
Published by ``choreo connectors metrics``, compose's ``connect-metrics`` job. Not by the
embedded supervisor: with this reader's librdkafka threads in it, the supervisor died
silently right after some starts (tests/stack/test_supervisor.py, CI of this change), and
the supervisor is the one process that must not; on the embedded stack
``choreo kafka consumer-groups --describe --all-groups`` shows the same figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import Gauge

from choreo.outbox.kafka import Kafka, build_admin
from choreo.stack import manifest

GROUP_LAG = Gauge("choreo_kafka_group_lag",
                  "Records behind the log end per consumer group and topic, from the offsets"
                  " the group committed to Kafka (the broker's view)", ["group", "topic"])
TIMEOUT_S = 5.0
INTERVAL_S = 15.0


def consumer_groups() -> list[str]:
    """Every consumer of the manifest commits under its name."""
    return sorted({manifest.definition(p).name for p in manifest.MANIFEST if p.consumer})


def group_lag(admin: AdminClient, group: str) -> dict[str, int]:
    """Records behind per topic for one group; empty when it committed nothing yet."""
    request = [ConsumerGroupTopicPartitions(group)]
    committed = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group]
    partitions = [tp for tp in committed.result().topic_partitions or [] if tp.offset >= 0]
    if not partitions:
        return {}
    ends = admin.list_offsets({TopicPartition(tp.topic, tp.partition): OffsetSpec.latest()
                               for tp in partitions}, request_timeout=TIMEOUT_S)
    behind: dict[str, int] = {}
    for tp in partitions:
        end = ends[TopicPartition(tp.topic, tp.partition)].result().offset
        behind[tp.topic] = behind.get(tp.topic, 0) + max(end - tp.offset, 0)
    return behind


def publish_group_lag(admin: AdminClient, groups: Iterable[str]) -> None:
    """One reading per group; a group the broker cannot answer for keeps its last value."""
    for group in groups:
        try:
            lag = group_lag(admin, group)
        except KafkaException:
            continue
        for topic, behind in lag.items():
            GROUP_LAG.labels(group, topic).set(behind)


def watch(kafka: Kafka, interval_s: float = INTERVAL_S) -> threading.Thread:
    """Publish every ``interval_s`` from a daemon thread of its own: a broker that is slow
    or gone never holds up the caller's loop (the supervisor's restarts)."""
    def loop() -> None:
        admin = build_admin(kafka)
        groups = consumer_groups()
        while True:
            publish_group_lag(admin, groups)
            time.sleep(interval_s)

    thread = threading.Thread(target=loop, name="group-lag", daemon=True)
    thread.start()
    return thread
