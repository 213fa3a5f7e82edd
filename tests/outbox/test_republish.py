"""After a broker loss the outbox window is published again, but only what some reader
still needs: an event every consumer handling its type has in its inbox is left out, the
rest go out in insertion order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from choreo.outbox import inbox, relay
from choreo.outbox.relay import Readers, republish_window
from choreo.outbox.runner import apply_schema
from choreo.outbox.testing import RecordingProducer
from choreo.outbox.wire import OUTBOX_DDL
from choreo.stack.settings import StackSettings
from tests.support import WRITER, scratch_database

pytestmark = pytest.mark.postgres



@contextmanager
def own_database(settings: StackSettings) -> Iterator[psycopg.Connection[Any]]:
    """A database of its own, dropped afterwards: no other test's consumers read it."""
    name = f"republish_{uuid.uuid4().hex[:8]}"
    url = scratch_database(settings, name)
    apply_schema(url, OUTBOX_DDL)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn
    finally:
        with psycopg.connect(settings.database_dsn("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(running_postgres: StackSettings) -> Iterator[psycopg.Connection[Any]]:
    with own_database(running_postgres) as conn:
        yield conn


def emitted(conn: psycopg.Connection[Any], event_type: str, order_id: str,
            payload: dict[str, Any]) -> uuid.UUID:
    return WRITER.emit(conn, event_type, order_id, {"order_id": order_id, **payload})


def test_only_events_some_reader_has_not_handled_are_sent_again_in_order(
        database: psycopg.Connection[Any]) -> None:
    key = f"rp-{uuid.uuid4().hex[:8]}"
    first, second, third = (emitted(database, "OrderConfirmed", key, {"total_cents": n})
                            for n in (1, 2, 3))
    refund = emitted(database, "PaymentRefunded", key,
                     {"payment_id": "ch_1", "amount_cents": 1})  # a type nobody handles
    inbox.subscribe(database, "inventory", ["OrderConfirmed", "OrderPlaced"])
    inbox.subscribe(database, "payments", ["OrderConfirmed"])
    inbox.subscribe(database, "orders", ["StockReserved"])
    for consumer, handled in (("inventory", (first, second)), ("payments", (first,)),
                              ("orders", (refund,))):
        for event_id in handled:
            inbox.claim(database, consumer, event_id)
    producer = RecordingProducer()

    result = republish_window(database.info.dsn, producer, 600.0, Readers.of([database]))

    sent = [(topic, headers["ce_id"]) for topic, _, _, headers in producer.records]
    assert sent == [("order.events", str(second)), ("order.events", str(third)),
                    ("payment.events", str(refund))]
    assert (result.published, result.left_out) == (3, 1)


def test_without_subscriptions_the_whole_window_is_sent(database: psycopg.Connection[Any]) -> None:
    key = f"rp-{uuid.uuid4().hex[:8]}"
    ids = [emitted(database, "OrderConfirmed", key, {"total_cents": n}) for n in range(3)]
    inbox.claim(database, "inventory", ids[0])  # handled, but inventory never said it handles it
    producer = RecordingProducer()

    result = republish_window(database.info.dsn, producer, 600.0, Readers.of([database]))

    assert [headers["ce_id"] for _, _, _, headers in producer.records] == [str(i) for i in ids]
    assert (result.published, result.left_out) == (3, 0)


def test_readers_in_two_databases_across_chunks(running_postgres: StackSettings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The window read in chunks of 2: each chunk asks the consumers of both databases."""
    monkeypatch.setattr(relay, "CHUNK_ROWS", 2)
    key = f"rp-{uuid.uuid4().hex[:8]}"
    with own_database(running_postgres) as orders, own_database(running_postgres) as other:
        ids = [emitted(orders, "OrderConfirmed", key, {"total_cents": n}) for n in range(5)]
        inbox.subscribe(orders, "audit", ["OrderConfirmed"])
        inbox.subscribe(other, "inventory", ["OrderConfirmed"])
        for event_id in ids[:4]:
            inbox.claim(orders, "audit", event_id)
        for event_id in (ids[0], ids[2], ids[3]):
            inbox.claim(other, "inventory", event_id)
        producer = RecordingProducer()

        result = republish_window(orders.info.dsn, producer, 600.0, Readers.of([orders, other]))

        assert [h["ce_id"] for _, _, _, h in producer.records] == [str(ids[1]), str(ids[4])]
        assert (result.published, result.left_out) == (2, 3)


def test_a_topic_read_by_a_consumer_that_never_said_what_it_handles_is_sent_whole(
        database: psycopg.Connection[Any]) -> None:
    key = f"rp-{uuid.uuid4().hex[:8]}"
    first = emitted(database, "OrderConfirmed", key, {"total_cents": 1})
    inbox.subscribe(database, "inventory", ["OrderConfirmed"])
    inbox.claim(database, "inventory", first)
    database.execute("INSERT INTO consumer_positions (consumer, topic, partition, next_offset,"
                     " log_id) VALUES ('older', 'order.events', 0, 1, 'a lost log')")
    producer = RecordingProducer()

    result = republish_window(database.info.dsn, producer, 600.0, Readers.of([database]))

    assert (result.published, result.left_out) == (1, 0)
