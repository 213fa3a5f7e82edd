"""How the order service reacts to the other participants: one function per event type.

Only a PENDING order moves. A late event for an order that has already ended (a capture
after a timeout, say) changes nothing here: payments and inventory undo their own side
when they see the OrderCancelled that ended it. Every event is kept in the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from choreo.outbox import Handler, OutboxWriter, ReceivedEvent
from choreo.services.orders.domain import Status, Transition
from choreo.services.orders.store import (
    REGISTER_CUSTOMER,
    SET_CUSTOMER_STATUS,
    finish,
    locked_status,
    parse_order_id,
    record_history,
)


@dataclass(frozen=True)
class OrdersHandlers:
    writer: OutboxWriter

    def paid(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        """PaymentCaptured for a card, WalletDebited for a wallet order: confirmed."""
        total = event.payload["amount_cents"]
        self._record(event, conn, Transition(
            Status.CONFIRMED, "OrderConfirmed",
            {"order_id": event.aggregate_id, "total_cents": total}, None, total))

    def wallet_debit_declined(self, event: ReceivedEvent, conn: psycopg.Connection[Any]
                              ) -> None:
        self._record(event, conn, Transition.cancel(event.aggregate_id, "wallet_declined"))

    def stock_reservation_failed(self, event: ReceivedEvent,
                                 conn: psycopg.Connection[Any]) -> None:
        reason = (f"out_of_stock: {event.payload['sku']} requested"
                  f" {event.payload['requested']}, available {event.payload['available']}")
        self._record(event, conn, Transition(
            Status.REJECTED, "OrderRejected", {"order_id": event.aggregate_id, "reason": reason},
            reason))

    def payment_declined(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        self._record(event, conn, Transition.cancel(event.aggregate_id, "payment_declined"))

    def stock_released(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        """Only an expiry ends the order: any other release follows an end already made."""
        expired = event.payload["reason"] == "expired"
        self._record(event, conn, Transition.cancel(event.aggregate_id, "reservation_expired")
                     if expired else None)

    def progress(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        """StockReserved, PaymentRefunded: kept in the history, the order does not move."""
        self._record(event, conn, None)

    def customer_registered(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        conn.execute(REGISTER_CUSTOMER, (event.aggregate_id,))

    def customer_status_changed(self, event: ReceivedEvent,
                                conn: psycopg.Connection[Any]) -> None:
        """Customer events keep their order on one partition: the last one wins."""
        conn.execute(SET_CUSTOMER_STATUS, (event.aggregate_id, event.payload["blocked"],
                                           event.payload["reason"]))

    def _record(self, event: ReceivedEvent, conn: psycopg.Connection[Any],
                ending: Transition | None) -> None:
        """Record the event; if it ends a PENDING order, end it."""
        order_id = parse_order_id(event.aggregate_id)
        current = locked_status(conn, order_id) if order_id else None
        if order_id is None or current is None:
            return  # not an order of this service: nothing to record against
        record_history(conn, order_id, event.event_type, event.event_id, event.source,
                       event.payload)
        if ending is not None and current is Status.PENDING:
            finish(conn, self.writer, order_id, ending)


def build_handlers(writer: OutboxWriter) -> dict[str, Handler]:
    """The handler for each event type the order service consumes, by CloudEvents type."""
    handlers = OrdersHandlers(writer)
    return {
        "PaymentCaptured": handlers.paid,
        "StockReservationFailed": handlers.stock_reservation_failed,
        "PaymentDeclined": handlers.payment_declined,
        "StockReleased": handlers.stock_released,
        "StockReserved": handlers.progress,
        "PaymentRefunded": handlers.progress,
        "WalletDebited": handlers.paid,
        "WalletDebitDeclined": handlers.wallet_debit_declined,
        "WalletRefunded": handlers.progress,
        "CustomerRegistered": handlers.customer_registered,
        "CustomerStatusChanged": handlers.customer_status_changed,
    }
