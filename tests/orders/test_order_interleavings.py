"""The order service ends right under every interleaving of what it hears, duplicates included.

Whatever arrives first among the decisive events (a capture, a failed reservation, a
decline, an expired reservation, or the deadline passing) decides the outcome; every
later event only goes into the history, and exactly one outcome event is emitted.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import handle_once
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.runner import apply_schema
from choreo.outbox.testing import RecordingWriter
from choreo.outbox.wire import OUTBOX_DDL
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.orders.__main__ import SCHEMA
from choreo.services.orders.handlers import build_handlers
from choreo.services.orders.jobs import cancel_overdue
from choreo.services.orders.store import INSERT_ORDER
from choreo.stack.settings import StackSettings
from tests.support import scratch_database

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def orders_dsn(running_postgres: StackSettings) -> str:
    dsn = scratch_database(running_postgres, "orders_tests")
    apply_schema(dsn, OUTBOX_DDL, SCHEMA)
    return dsn


# (event type, payload extras, outcome it decides if it comes first)
EVENTS = {
    "reserved": ("StockReserved", {"lines": [], "total_cents": 500,
                                   "expires_at": "2030-01-01T00:00:00Z"}, None),
    "captured": ("PaymentCaptured", {"payment_id": "ch_1", "amount_cents": 500},
                 ("CONFIRMED", None)),
    "failed": ("StockReservationFailed", {"sku": "mug", "requested": 2, "available": 1},
               ("REJECTED", "out_of_stock: mug requested 2, available 1")),
    "declined": ("PaymentDeclined", {"reason": "card_declined"},
                 ("CANCELLED", "payment_declined")),
    "expired": ("StockReleased", {"reason": "expired"}, ("CANCELLED", "reservation_expired")),
    "released": ("StockReleased", {"reason": "payment_declined"}, None),
    "refunded": ("PaymentRefunded", {"payment_id": "ch_1", "amount_cents": 500}, None),
}
# What really can reach the order service for one order (before any compensation).
SAGAS = [
    ["failed"],
    ["reserved", "captured"],
    ["reserved", "declined", "released"],
    ["reserved", "expired", "captured", "refunded"],
]
DEADLINE = "deadline"


@st.composite
def deliveries(draw: st.DrawFn) -> list[str]:
    saga = draw(st.sampled_from(SAGAS))
    order = draw(st.permutations(saga + ([DEADLINE] if draw(st.booleans()) else [])))
    repeats = draw(st.lists(st.sampled_from(saga), max_size=3))
    positions = [draw(st.integers(0, len(order))) for _ in repeats]
    for name, position in zip(repeats, positions, strict=True):
        order.insert(position, name)
    return order


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=deliveries())
def test_first_decisive_event_wins_and_one_outcome_is_emitted(
    orders_dsn: str, sequence: list[str]
) -> None:
    order_id = uuid.uuid4()
    writer = RecordingWriter(EventCodec(SchemaCatalog.load()), "orders")
    handlers = build_handlers(writer)
    event_ids = {name: uuid.uuid4() for name in EVENTS}
    with psycopg.connect(orders_dsn, autocommit=True) as conn:
        conn.execute(INSERT_ORDER, (order_id, str(order_id), "h", "c", json.dumps([]), "tok",
                                    "card", 3600, ""))
        for name in sequence:
            if name == DEADLINE:
                conn.execute("UPDATE orders SET deadline_at = now() - interval '1 s'"
                             " WHERE id = %s", (order_id,))
                with conn.transaction():
                    cancel_overdue(conn, writer)
                continue
            event_type, extras, _ = EVENTS[name]
            event = ReceivedEvent(event_ids[name], event_type, str(order_id),
                                  {"order_id": str(order_id), **extras}, "tests", "", "", "t")
            handle_once(conn, "orders", handlers[event_type], event)
        status, reason = conn.execute("SELECT status, reason FROM orders WHERE id = %s",
                                      (order_id,)).fetchone()
        history = [row[0] for row in conn.execute(
            "SELECT event_type FROM order_history WHERE order_id = %s ORDER BY seq",
            (order_id,))]

    first = next(EVENTS[name][2] if name != DEADLINE else ("CANCELLED", "timeout")
                 for name in sequence if name == DEADLINE or EVENTS[name][2] is not None)
    assert (status, reason) == first
    outcomes = [emitted.event_type for emitted in writer.of(str(order_id))]
    assert outcomes == [{"CONFIRMED": "OrderConfirmed", "REJECTED": "OrderRejected",
                         "CANCELLED": "OrderCancelled"}[status]]
    heard = [EVENTS[name][0] for name in dict.fromkeys(sequence) if name != DEADLINE]
    assert sorted(h for h in history if h not in outcomes) == sorted(heard)
