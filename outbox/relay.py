"""Publish outbox rows to Kafka from Python, exactly as Debezium's EventRouter does.

Used to publish the retention window again into a broker log that is new (its data
folder was lost), and by the polling relay. The record a row becomes
(``outbox.wire.record_of``) is the one the connector (``outbox.wire.OUTBOX_TEMPLATE``)
makes: topic ``<aggregatetype>.events``, key the aggregate id, the Avro payload as value,
and the CloudEvents attributes plus the ``traceparent`` as headers. A consumer cannot
tell the two apart, and its inbox turns an event it already handled into a duplicate.

Only what some reader still needs is sent (``Readers``): an event that every consumer
handling its type has in its inbox was handled and committed, so sending it again would
only make every consumer of the topic read, look up and drop it, which after a long
window costs more than the rest of the recovery together.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import Producer

from choreo.outbox import wire as c
from choreo.outbox.kafka import Kafka, build_producer

log = logging.getLogger(__name__)

WINDOW = f"{c.SELECT_ROWS} WHERE created_at >= now() - make_interval(secs => %s) ORDER BY seq"


def relay_producer(kafka: Kafka, **overrides: Any) -> Producer:
    """An idempotent producer that partitions as Connect's does.

    Kafka's Java producer (Connect's) partitions by murmur2 of the key; so must every
    producer that publishes outbox rows beside it, or one order's events would land in
    two partitions and per-key order would be lost.
    """
    return build_producer(kafka, partitioner="murmur2_random", **overrides)


READERS = "SELECT event_type, consumer FROM consumer_subscriptions"
UNDECLARED = """
SELECT DISTINCT p.topic FROM consumer_positions p
WHERE NOT EXISTS (SELECT 1 FROM consumer_subscriptions s WHERE s.consumer = p.consumer)
"""
"""Topics read by a consumer that never said what it handles (a version from before
subscriptions): everything on them is sent."""
HANDLED = "SELECT event_id FROM inbox WHERE consumer = %s AND event_id = ANY(%s)"
CHUNK_ROWS = 2000


@dataclass
class Readers:
    """Which consumers handle each event type, and what each has handled, from their own
    tables.

    A consumer says which types it handles when it starts (``consumer_subscriptions``);
    what it handled is its inbox, written in the same transaction as the handler's
    effects and kept longer than the outbox window. Both only grow during a recovery, so
    an event found handled by every handler of its type stays handled. A type no consumer
    has claimed is sent whole, and so is every event of a topic that a consumer reads
    without having said what it handles (fail closed). Not covered: a consumer whose
    tables are in none of the databases given, or that never started before the loss.
    """

    by_type: dict[str, list[tuple[psycopg.Connection[Any], str]]] = field(
        default_factory=lambda: defaultdict(list))
    sent_whole: set[str] = field(default_factory=set)
    """Topics with a reader that never said what it handles: nothing on them is left out."""

    @classmethod
    def of(cls, conns: Iterable[psycopg.Connection[Any]]) -> Readers:
        readers = cls()
        for conn in conns:
            for event_type, consumer in conn.execute(READERS).fetchall():
                readers.by_type[event_type].append((conn, consumer))
            readers.sent_whole.update(topic for (topic,) in conn.execute(UNDECLARED))
        return readers

    def handled_by_all(self, event_type: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Of ``event_ids`` (all of ``event_type``), those every handler of it handled."""
        handled: set[uuid.UUID] | None = None
        for conn, consumer in self.by_type.get(event_type, []):
            found = {row[0] for row in conn.execute(HANDLED, (consumer, event_ids))}
            handled = found if handled is None else handled & found
        return handled or set()


@dataclass(frozen=True)
class Republished:
    published: int
    left_out: int
    """Events every handler of their type had already handled."""


def republish_window(database_url: str, producer: Producer, window_s: float,
                     readers: Readers | None = None) -> Republished:
    """Publish the rows of the last ``window_s`` seconds that some reader still needs
    (every row without ``readers``), in insertion order.

    Per aggregate that is commit order, so one order's events reach their partition in
    the order they happened; leaving out events every reader handled keeps that order
    among the rest.
    """
    published = left_out = 0
    with psycopg.connect(database_url) as conn, conn.cursor(name="republish") as cursor:
        cursor.execute(WINDOW, (window_s,))
        while rows := cursor.fetchmany(CHUNK_ROWS):
            handled = _handled(readers, rows) if readers is not None else set()
            for row in rows:
                if row[0] in handled:
                    left_out += 1
                    continue
                _produce(producer, *c.record_of(row))
                published += 1
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} of {published} re-published events were not"
                           " acknowledged")
    return Republished(published, left_out)


def _handled(readers: Readers, rows: list[tuple[Any, ...]]) -> set[uuid.UUID]:
    by_type: dict[str, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        if c.topic_of(row[1]) not in readers.sent_whole:
            by_type[row[3]].append(row[0])
    return {event_id for event_type, ids in by_type.items()
            for event_id in readers.handled_by_all(event_type, ids)}


def _produce(producer: Producer, topic: str, key: str, value: bytes,
             headers: list[tuple[str, bytes]]) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers)
            break
        except BufferError:  # the local queue is full: let it drain
            producer.poll(1)
    producer.poll(0)
