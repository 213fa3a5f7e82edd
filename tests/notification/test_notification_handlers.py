"""The notification handlers on the test stack's PostgreSQL and a real notifier, through
the runtime's own unit (``handle_once``): one message per order and kind on the
customer's channel, none for a guest or ``none``, a refund read before its order still
told, and a redelivery or a copy of an event telling no one twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import handle_once
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL
from choreo.outbox.writer import OutboxWriter
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.notification.__main__ import definition
from choreo.services.notification.handlers import EMITS, build_handlers, settle_pending
from choreo.services.notification.provider import Notifier
from choreo.stack.settings import StackSettings
from tests.notification.conftest import messages
from tests.support import scratch_database

pytestmark = pytest.mark.postgres

CODEC = EventCodec(SchemaCatalog.load())
FUTURE = "2030-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def dsn(running_postgres: StackSettings) -> Iterator[str]:
    dsn = scratch_database(running_postgres, "notification_tests")
    apply_schema(dsn, OUTBOX_DDL, definition().schema_sql)
    yield dsn


@pytest.fixture(scope="module")
def handlers(notifier_url: str) -> dict[str, Any]:
    return build_handlers(OutboxWriter(CODEC, "notification", emits=EMITS),
                          Notifier(notifier_url, 5.0))


def event(event_type: str, key: str, **payload: Any) -> ReceivedEvent:
    data, schema = CODEC.encode(event_type, payload)
    return ReceivedEvent(
        event_id=uuid.uuid4(), event_type=event_type, aggregate_id=key,
        payload=CODEC.decode(event_type, schema.reference, data), source="tests",
        occurred_at=FUTURE, traceparent="", origin="test")


def registered(customer: str, channel: str, email: str | None = None) -> ReceivedEvent:
    return event("CustomerRegistered", customer, customer_id=customer, name="Ada",
                 email=email, phone=None,
                 preferences={"channel": channel, "address": "Berlin",
                              "marketing_allowed": False})


def placed(order_id: str, customer: str) -> ReceivedEvent:
    return event("OrderPlaced", order_id, order_id=order_id, customer_id=customer,
                 items=[{"sku": "mug", "quantity": 1}], payment_token="tok_ok",
                 deadline_at=FUTURE)


def confirmed(order_id: str) -> ReceivedEvent:
    return event("OrderConfirmed", order_id, order_id=order_id, total_cents=2500)


def cancelled(order_id: str) -> ReceivedEvent:
    return event("OrderCancelled", order_id, order_id=order_id, reason="customer")


def refunded(order_id: str) -> ReceivedEvent:
    return event("PaymentRefunded", order_id, order_id=order_id, payment_id="ch_1",
                 amount_cents=2500)


def deliver(dsn: str, handlers: dict[str, Any], *events: ReceivedEvent) -> None:
    with psycopg.connect(dsn) as conn:
        for received in events:
            handle_once(conn, "notification", handlers[received.event_type], received)


def told(dsn: str, order_id: str) -> list[tuple[str, str]]:
    """(kind, outcome) of each CustomerNotified about the order, in order."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT dataschema, payload FROM outbox WHERE aggregateid = %s"
                            " ORDER BY seq", (order_id,)).fetchall()
    return [(p["kind"], p["outcome"]) for p in
            (CODEC.decode("CustomerNotified", schema, bytes(data)) for schema, data in rows)]


def ids() -> tuple[str, str]:
    return f"c-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())


def test_each_end_of_an_order_is_told_once_on_the_customers_channel(
        dsn: str, handlers: dict[str, Any], ledger_dsn: str) -> None:
    customer, order = ids()
    again = confirmed(order)
    deliver(dsn, handlers, registered(customer, "email", "ada@example.org"),
            placed(order, customer), again, again, confirmed(order), cancelled(order),
            refunded(order))

    assert told(dsn, order) == [("confirmed", "sent"), ("cancelled", "sent"),
                                ("refunded", "sent")]
    assert [(key.split(":")[1], to, asked) for key, to, asked in messages(ledger_dsn, order)] \
        == [("confirmed", "ada@example.org", 1), ("cancelled", "ada@example.org", 1),
            ("refunded", "ada@example.org", 1)]


def sweep(dsn: str, notifier_url: str, guest_after_s: float) -> None:
    """One round of the pending-message job, as the runtime's job thread runs it."""
    job = settle_pending(Notifier(notifier_url, 5.0), guest_after_s)
    with psycopg.connect(dsn) as conn, conn.transaction():
        job(conn, OutboxWriter(CODEC, "notification", emits=EMITS))


def test_a_customer_who_chose_none_is_skipped_and_a_guest_once_it_waited(
        dsn: str, handlers: dict[str, Any], ledger_dsn: str, notifier_url: str) -> None:
    quiet, first = ids()
    guest, second = ids()
    deliver(dsn, handlers, registered(quiet, "none"), placed(first, quiet), confirmed(first),
            placed(second, guest), confirmed(second))
    assert told(dsn, first) == [("confirmed", "skipped")]
    assert told(dsn, second) == []  # a registration may still be on its way
    sweep(dsn, notifier_url, guest_after_s=3600)
    assert told(dsn, second) == []

    sweep(dsn, notifier_url, guest_after_s=0)

    assert told(dsn, second) == [("confirmed", "skipped")]
    assert messages(ledger_dsn, first) == [] and messages(ledger_dsn, second) == []


def test_a_registration_read_after_the_orders_end_still_gets_the_message(
        dsn: str, handlers: dict[str, Any], ledger_dsn: str, notifier_url: str) -> None:
    """customer.events and order.events have no order between them: the registration
    can come last, and the customer is no guest for that."""
    customer, order = ids()
    deliver(dsn, handlers, placed(order, customer), confirmed(order),
            registered(customer, "email", "late@example.org"))
    assert told(dsn, order) == []

    sweep(dsn, notifier_url, guest_after_s=3600)

    assert told(dsn, order) == [("confirmed", "sent")]
    assert [to for _, to, _ in messages(ledger_dsn, order)] == ["late@example.org"]


def test_an_order_placed_and_refunded_at_once_on_two_replicas_is_still_told(
        dsn: str, handlers: dict[str, Any], ledger_dsn: str, notifier_url: str) -> None:
    """Replica B commits the refund's row while the order's customer is unknown; replica
    A, reading the OrderPlaced at the same moment, did not see that row uncommitted and
    sent nothing. The row waits as pending, and the sweeper sends it."""
    customer, order = ids()
    deliver(dsn, handlers, registered(customer, "email", "cy@example.org"), refunded(order))
    with psycopg.connect(dsn) as conn:  # A's OrderPlaced, as if it ran before B committed
        conn.execute("INSERT INTO order_customers (order_id, customer_id) VALUES (%s, %s)",
                     (order, customer))
    assert told(dsn, order) == []

    sweep(dsn, notifier_url, guest_after_s=3600)

    assert told(dsn, order) == [("refunded", "sent")]
    assert len(messages(ledger_dsn, order)) == 1


def test_a_refund_read_before_its_order_is_told_once_the_order_is(
        dsn: str, handlers: dict[str, Any], ledger_dsn: str) -> None:
    customer, order = ids()
    deliver(dsn, handlers, registered(customer, "email", "bo@example.org"), refunded(order))
    assert told(dsn, order) == []

    deliver(dsn, handlers, placed(order, customer), placed(order, customer))

    assert told(dsn, order) == [("refunded", "sent")]
    assert len(messages(ledger_dsn, order)) == 1
