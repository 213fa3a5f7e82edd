"""The wallet's handlers on the test stack's PostgreSQL, through the runtime's own unit
(``handle_once``: inbox claim and handler in one transaction).

What is read back is what would reach Kafka (the outbox rows, decoded) and the money
(balances, entries, points), for every path: debit, decline, refund, a card order's
points, a cancel that overtakes the reservation, a lapsed deadline, copies of one event
delivered to two replicas at once, and two replicas' runs over the same customers in
opposite orders.
"""

from __future__ import annotations

import threading
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
from choreo.services.wallet.__main__ import DEFINITION
from choreo.services.wallet.handlers import build_handlers, lock_run
from choreo.services.wallet.store import CREATE_WALLETS, CREDIT
from choreo.stack.settings import StackSettings
from tests.support import scratch_database

pytestmark = pytest.mark.postgres

CODEC = EventCodec(SchemaCatalog.load())
HANDLERS = build_handlers(OutboxWriter(CODEC, "wallet", emits=DEFINITION.emits))
FUTURE, PAST = "2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def dsn(running_postgres: StackSettings) -> Iterator[str]:
    dsn = scratch_database(running_postgres, "wallet_tests")
    apply_schema(dsn, OUTBOX_DDL, DEFINITION.schema_sql)
    yield dsn


def event(event_type: str, order_id: str, **payload: Any) -> ReceivedEvent:
    """Schema-valid, through the codec and back, as a consumer would get it."""
    data, schema = CODEC.encode(event_type, {"order_id": order_id, **payload})
    return ReceivedEvent(
        event_id=uuid.uuid4(), event_type=event_type, aggregate_id=order_id,
        payload=CODEC.decode(event_type, schema.reference, data), source="tests",
        occurred_at=FUTURE, traceparent="", origin="test")


def placed(order_id: str, customer: str, method: str = "wallet",
           deadline_at: str = FUTURE) -> ReceivedEvent:
    return event("OrderPlaced", order_id, customer_id=customer,
                 items=[{"sku": "mug", "quantity": 1}], payment_token="",
                 deadline_at=deadline_at, payment_method=method)


def reserved(order_id: str, total_cents: int) -> ReceivedEvent:
    return event("StockReserved", order_id, total_cents=total_cents, expires_at=FUTURE,
                 lines=[{"sku": "mug", "quantity": 1, "unit_price_cents": total_cents}])


def confirmed(order_id: str, total_cents: int) -> ReceivedEvent:
    return event("OrderConfirmed", order_id, total_cents=total_cents)


def cancelled(order_id: str) -> ReceivedEvent:
    return event("OrderCancelled", order_id, reason="customer")


def deliver(dsn: str, *events: ReceivedEvent) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [handle_once(conn, "wallet", HANDLERS[e.event_type], e) for e in events]


def new_customer(dsn: str, balance_cents: int = 0) -> str:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn) as conn:
        conn.execute(CREATE_WALLETS, ([customer],))
        if balance_cents:
            conn.execute(CREDIT, {"customer": customer, "amount": balance_cents})
            conn.execute("INSERT INTO wallet_entries (customer_id, kind, amount_cents)"
                         " VALUES (%s, 'topup', %s)", (customer, balance_cents))
    return customer


def wallet(dsn: str, customer: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT balance_cents, points FROM wallets WHERE customer_id = %s",
                            (customer,)).fetchone()  # type: ignore[return-value]


def emitted(dsn: str, order_id: str) -> list[tuple[str, dict[str, Any]]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT type, dataschema, payload FROM outbox"
                            " WHERE aggregateid = %s ORDER BY seq", (order_id,)).fetchall()
    return [(kind, CODEC.decode(kind, schema, bytes(data))) for kind, schema, data in rows]


def order_id() -> str:
    return str(uuid.uuid4())


def test_a_wallet_order_is_debited_once_whichever_event_comes_first(dsn: str) -> None:
    customer = new_customer(dsn, 10_000)
    first, second = order_id(), order_id()
    again = reserved(first, 2500)
    deliver(dsn, placed(first, customer), again, again, reserved(first, 2500),
            reserved(second, 1000), placed(second, customer))

    assert wallet(dsn, customer) == (6500, 0)
    assert emitted(dsn, first) == [("WalletDebited", {
        "order_id": first, "customer_id": customer, "amount_cents": 2500,
        "balance_cents": 7500})]
    assert [kind for kind, _ in emitted(dsn, second)] == ["WalletDebited"]


def test_a_short_balance_declines_and_keeps_the_money(dsn: str) -> None:
    customer, order = new_customer(dsn, 900), order_id()
    deliver(dsn, placed(order, customer), reserved(order, 1000))

    assert wallet(dsn, customer) == (900, 0)
    [(kind, payload)] = emitted(dsn, order)
    assert kind == "WalletDebitDeclined"
    assert payload["reason"] == "insufficient_balance: 900 cents"


def test_a_card_order_earns_points_and_loses_them_when_cancelled(dsn: str) -> None:
    customer, order = new_customer(dsn, 5000), order_id()
    deliver(dsn, placed(order, customer, "card"), reserved(order, 4250),
            confirmed(order, 4250))
    assert wallet(dsn, customer) == (5000, 42)

    deliver(dsn, cancelled(order))

    assert wallet(dsn, customer) == (5000, 0)
    assert emitted(dsn, order) == []


def test_a_debited_order_cancelled_after_confirmation_is_refunded_with_its_points(
        dsn: str) -> None:
    customer, order = new_customer(dsn, 5000), order_id()
    deliver(dsn, placed(order, customer), reserved(order, 3000), confirmed(order, 3000))
    assert wallet(dsn, customer) == (2000, 30)

    deliver(dsn, cancelled(order), cancelled(order))

    assert wallet(dsn, customer) == (5000, 0)
    assert [(kind, payload.get("points_reversed")) for kind, payload in emitted(dsn, order)] \
        == [("WalletDebited", None), ("WalletRefunded", 30)]


def test_a_cancel_that_overtakes_the_reservation_means_no_debit(dsn: str) -> None:
    customer, order = new_customer(dsn, 5000), order_id()
    deliver(dsn, placed(order, customer), cancelled(order), reserved(order, 3000))

    assert wallet(dsn, customer) == (5000, 0)
    assert emitted(dsn, order) == []


def test_past_its_deadline_an_order_is_not_debited(dsn: str) -> None:
    customer, order = new_customer(dsn, 5000), order_id()
    deliver(dsn, placed(order, customer, deadline_at=PAST), reserved(order, 3000))

    assert wallet(dsn, customer) == (5000, 0)
    assert emitted(dsn, order) == []


def test_two_replicas_given_copies_of_one_reservation_debit_once(dsn: str) -> None:
    """A republished StockReserved (another event id, so the inbox lets both in) reaches
    two replicas at once: the order's row lock makes the second see the debit."""
    customer, order = new_customer(dsn, 5000), order_id()
    deliver(dsn, placed(order, customer))
    copies = [reserved(order, 1500), reserved(order, 1500)]
    start = threading.Barrier(2)

    def replica(copy: ReceivedEvent) -> None:
        start.wait()
        deliver(dsn, copy)

    threads = [threading.Thread(target=replica, args=(copy,)) for copy in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert wallet(dsn, customer) == (3500, 0)
    assert [kind for kind, _ in emitted(dsn, order)] == ["WalletDebited"]


def test_runs_over_the_same_customers_in_opposite_orders_do_not_deadlock(dsn: str) -> None:
    """Each replica's run locks its customers' wallets up front, in one order
    (``lock_run``), as the runtime does before a run's handlers."""
    x, y = new_customer(dsn, 10_000), new_customer(dsn, 10_000)
    orders = {name: order_id() for name in "abcd"}
    deliver(dsn, placed(orders["a"], x), placed(orders["b"], y),
            placed(orders["c"], y), placed(orders["d"], x))
    runs = [[reserved(orders["a"], 100), reserved(orders["b"], 100)],
            [reserved(orders["c"], 100), reserved(orders["d"], 100)]]
    start, failures = threading.Barrier(2), []

    def replica(run: list[ReceivedEvent]) -> None:
        try:
            with psycopg.connect(dsn) as conn, conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '10s'")
                start.wait()
                lock_run(conn, run)
                for received in run:
                    HANDLERS[received.event_type](received, conn)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=replica, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert wallet(dsn, x) == (9800, 0) and wallet(dsn, y) == (9800, 0)
