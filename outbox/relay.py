"""Publish outbox rows to Kafka from Python, exactly as Debezium's EventRouter does.

Used to publish the retention window again after the embedded broker lost its log
(its topics live in memory). The record a row becomes is the one the connector in
``connectors/outbox-postgres.json`` makes: topic ``<aggregatetype>.events``, key the
aggregate id, the Avro payload as value, and the CloudEvents attributes plus the
``traceparent`` as headers. A consumer cannot tell the two apart, and its inbox turns
an event it already handled into a duplicate.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from confluent_kafka import Producer

from outbox import constants as c
from outbox.kafka import build_producer

log = logging.getLogger(__name__)

WINDOW = """
SELECT id, aggregatetype, aggregateid, type, payload, dataschema, source, specversion,
       occurred_at, traceparent
FROM outbox WHERE created_at >= now() - make_interval(secs => %s) ORDER BY seq
"""


def relay_producer(bootstrap: str, **overrides: Any) -> Producer:
    """An idempotent producer that partitions as Connect's does.

    Kafka's Java producer (Connect's) partitions by murmur2 of the key; so must every
    producer that publishes outbox rows beside it, or one order's events would land in
    two partitions and per-key order would be lost.
    """
    return build_producer(bootstrap, partitioner="murmur2_random", **overrides)


def record_of(row: tuple[Any, ...]) -> tuple[str, str, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of one outbox row, as the EventRouter routes it."""
    (event_id, aggregate, aggregate_id, event_type, payload, dataschema, source, specversion,
     occurred_at, traceparent) = row
    headers = [
        ("id", str(event_id)),
        (c.HEADER_ID, str(event_id)),
        (c.HEADER_TYPE, event_type),
        (c.HEADER_SOURCE, source),
        (c.HEADER_TIME, occurred_at),
        (c.HEADER_SPECVERSION, specversion),
        (c.HEADER_DATASCHEMA, dataschema),
        (c.HEADER_TRACEPARENT, traceparent),
    ]
    return (f"{aggregate}{c.EVENTS_TOPIC_SUFFIX}", aggregate_id, bytes(payload),
            [(name, value.encode()) for name, value in headers])


def republish_window(database_url: str, producer: Producer, window_s: float) -> int:
    """Publish every row of the last ``window_s`` seconds in insertion order.

    Per aggregate that is commit order, so one order's events reach their partition
    in the order they happened. Returns how many were published.
    """
    count = 0
    with psycopg.connect(database_url) as conn, conn.cursor(name="republish") as cursor:
        cursor.execute(WINDOW, (window_s,))
        for row in cursor:
            topic, key, value, headers = record_of(row)
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=headers)
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(1)
            producer.poll(0)
            count += 1
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} of {count} re-published events were not acknowledged")
    return count
