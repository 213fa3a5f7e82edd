"""One transactional handler per event type the wallet consumes.

Each locks the order's row, applies the event, carries out the step
:func:`~choreo.services.wallet.domain.next_step` decides on the customer's wallet, emits
what happened and saves, all in the runtime's transaction: a debit, its entry, its event
and the inbox row commit together or not at all, so a redelivery or a second replica
finds the order already debited and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from choreo.outbox import Handler, OutboxWriter, ReceivedEvent
from choreo.services.wallet import store
from choreo.services.wallet.domain import Step, WalletOrder, next_step

EMITS = ("WalletDebited", "WalletDebitDeclined", "WalletRefunded")


@dataclass(frozen=True)
class WalletHandlers:
    writer: OutboxWriter

    def order_placed(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payload = event.payload
        order = store.lock_order(conn, payload["order_id"]).placed(
            payload["customer_id"], payload["payment_method"],
            datetime.fromisoformat(payload["deadline_at"]))
        self._carry_out(conn, order)

    def stock_reserved(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        order = store.lock_order(conn, event.payload["order_id"])
        self._carry_out(conn, order.reserved(event.payload["total_cents"]))

    def order_confirmed(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        order = store.lock_order(conn, event.payload["order_id"])
        credited = order.confirmed(event.payload["total_cents"])
        if credited is not order and credited.customer_id is not None:
            store.lock_wallets(conn, [credited.customer_id])
            store.add_points(conn, credited.customer_id, credited.points)
        store.save_order(conn, credited)

    def order_cancelled(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        order = store.lock_order(conn, event.payload["order_id"]).cancel(event.payload["reason"])
        self._carry_out(conn, order)

    def _carry_out(self, conn: psycopg.Connection[Any], order: WalletOrder) -> None:
        order = order.lapsed(datetime.now(UTC))
        customer = order.customer_id
        if customer is None:  # not placed yet: only remembered, nothing to move
            store.save_order(conn, order)
            return
        store.lock_wallets(conn, [customer])
        if next_step(order) is Step.DEBIT:
            order = self._debit(conn, order)
        points = 0
        if order.cancelled:
            order, points = order.points_taken_back()
            if points:
                store.add_points(conn, customer, -points)
        if next_step(order) is Step.REFUND:
            order = self._refund(conn, order, points)
        store.save_order(conn, order)

    def _debit(self, conn: psycopg.Connection[Any], order: WalletOrder) -> WalletOrder:
        customer, amount = order.customer_id, order.total_cents
        assert customer is not None and amount is not None
        left = store.debit(conn, customer, order.order_id, amount)
        if left is None:
            self.writer.emit(conn, "WalletDebitDeclined", order.order_id, {
                "order_id": order.order_id, "customer_id": customer, "amount_cents": amount,
                "reason": f"insufficient_balance: {store.balance(conn, customer)} cents"})
            return order.declined()
        self.writer.emit(conn, "WalletDebited", order.order_id, {
            "order_id": order.order_id, "customer_id": customer, "amount_cents": amount,
            "balance_cents": left})
        return order.debited()

    def _refund(self, conn: psycopg.Connection[Any], order: WalletOrder, points: int
                ) -> WalletOrder:
        customer, amount = order.customer_id, order.total_cents
        assert customer is not None and amount is not None
        store.refund(conn, customer, order.order_id, amount)
        self.writer.emit(conn, "WalletRefunded", order.order_id, {
            "order_id": order.order_id, "customer_id": customer, "amount_cents": amount,
            "points_reversed": points})
        return order.refunded()


def lock_run(conn: psycopg.Connection[Any], events: list[ReceivedEvent]) -> None:
    """Lock every row a run of events may touch before any handler runs: the orders' rows
    in order id order, then their customers' wallets in customer order, as each handler
    alone locks its order and then its wallet. Alone, the handlers of a run would take
    them in the run's order, and two replicas' runs over the same customers in different
    orders would deadlock. The customer of an order comes from its OrderPlaced, in this
    run or stored earlier; one placed meanwhile elsewhere is locked by its handler later,
    and a deadlock that this leaves possible is retried like any other."""
    order_ids = sorted({event.payload["order_id"] for event in events})
    placed = {event.payload["customer_id"] for event in events
              if event.event_type == "OrderPlaced"}
    store.lock_orders(conn, order_ids)
    store.lock_wallets(conn, placed | set(store.customers_of(conn, order_ids)))


def build_handlers(writer: OutboxWriter) -> dict[str, Handler]:
    """The handler for each event type the wallet consumes, by CloudEvents type."""
    handlers = WalletHandlers(writer)
    return {
        "OrderPlaced": handlers.order_placed,
        "StockReserved": handlers.stock_reserved,
        "OrderConfirmed": handlers.order_confirmed,
        "OrderCancelled": handlers.order_cancelled,
    }
