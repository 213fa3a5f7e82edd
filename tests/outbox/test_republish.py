"""After a broker loss the outbox window is published again, but only what some reader
still needs: an event every consumer handling its type has in its inbox is left out, the
rest go out in insertion order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from outbox import inbox
from outbox.relay import Readers, republish_window
from outbox.runner import OUTBOX_SCHEMA, apply_schema
from outbox.testing import RecordingProducer
from stack.settings import StackSettings
from tests.support import WRITER, scratch_database

pytestmark = pytest.mark.postgres



@pytest.fixture
def database(running_postgres: StackSettings) -> Iterator[psycopg.Connection[Any]]:
    """A database of this test's own: no other test's consumers read its topics."""
    url = scratch_database(running_postgres, f"republish_{uuid.uuid4().hex[:8]}")
    apply_schema(url, OUTBOX_SCHEMA)
    with psycopg.connect(url, autocommit=True) as conn:
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
