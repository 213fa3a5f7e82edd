"""How the order service reacts to the other participants: one function per event type.

Only a PENDING order moves. A late event for an order that has already ended (a capture
after a timeout, say) changes nothing here: payments and inventory undo their own side
when they see the OrderCancelled that ended it. Every event is kept in the history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from outbox.consumer import Handler
from outbox.delivery import ReceivedEvent
from outbox.writer import OutboxWriter
from services.orders.domain import Status, Transition
from services.orders.store import finish, locked_status, parse_order_id, record_history

Outcome = Callable[[ReceivedEvent], Transition]


def _confirm(event: ReceivedEvent) -> Transition:
    total = event.payload["amount_cents"]
    return Transition(Status.CONFIRMED, "OrderConfirmed",
                      {"order_id": event.aggregate_id, "total_cents": total}, None, total)


def _reject(event: ReceivedEvent) -> Transition:
    reason = (f"out_of_stock: {event.payload['sku']} requested {event.payload['requested']},"
              f" available {event.payload['available']}")
    return Transition(Status.REJECTED, "OrderRejected",
                      {"order_id": event.aggregate_id, "reason": reason}, reason)


def _cancel(reason: str) -> Outcome:
    return lambda event: Transition.cancel(event.aggregate_id, reason)


def _transition(writer: OutboxWriter, outcome: Outcome | None,
                applies: Callable[[ReceivedEvent], bool] = lambda event: True) -> Handler:
    """Record the event; if it ends a PENDING order, end it."""

    def handle(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        order_id = parse_order_id(event.aggregate_id)
        current = locked_status(conn, order_id) if order_id else None
        if order_id is None or current is None:
            return  # not an order of this service: nothing to record against
        record_history(conn, order_id, event.event_type, event.event_id, event.source,
                       event.payload)
        if outcome is None or not applies(event) or current is not Status.PENDING:
            return
        finish(conn, writer, order_id, outcome(event))

    return handle


def build_handlers(writer: OutboxWriter) -> dict[str, Handler]:
    return {
        "PaymentCaptured": _transition(writer, _confirm),
        "StockReservationFailed": _transition(writer, _reject),
        "PaymentDeclined": _transition(writer, _cancel("payment_declined")),
        "StockReleased": _transition(writer, _cancel("reservation_expired"),
                                     lambda event: event.payload["reason"] == "expired"),
        "StockReserved": _transition(writer, None),
        "PaymentRefunded": _transition(writer, None),
    }
