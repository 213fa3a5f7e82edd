"""One transactional function per event type the inventory consumes.

Each runs inside the consumer runtime's transaction, right after the inbox claim, so a
redelivered event never gets here twice. What each does (decisions in ``domain``):

- OrderPlaced: reserve every line or none; emit StockReserved or StockReservationFailed.
  If a cancellation of the order arrived first, reserve nothing and emit nothing: the
  order is already cancelled, and without a StockReserved payments never charges it.
- OrderConfirmed: the reservation becomes a sale. If the sweeper already released it as
  expired, the units are taken again from available stock without an event; if they are
  gone, ``SoldOutAfterExpiry`` dead-letters the confirmation for an operator.
- PaymentDeclined, OrderCancelled: release a reservation still held and emit
  StockReleased; an OrderCancelled also returns a sold order's units to available. A
  cancellation of an order not seen yet is remembered for the late OrderPlaced.

All handlers of one order serialise on its reservation row (see ``store``), so events of
the same order arriving on different topics at the same moment are applied one by one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from choreo.outbox import Handler, OutboxWriter, ReceivedEvent
from choreo.services.inventory import domain, store
from choreo.services.inventory.domain import (
    Line,
    PricedLine,
    Shortage,
    SoldOutAfterExpiry,
    Status,
    Step,
)
from choreo.services.inventory.store import Counter

log = logging.getLogger(__name__)

def iso_instant(moment: datetime) -> str:
    """ISO-8601 in UTC with a Z, the form every timestamp in the saga's events takes."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class InventoryHandlers:
    writer: OutboxWriter
    reservation_ttl_s: float

    def order_placed(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        order_id = event.payload["order_id"]
        lines = domain.requested_lines(event.payload["items"])
        if not store.claim_order(conn, order_id):
            return  # cancelled before it was placed, or placed before under another event id
        outcome = domain.allocate(lines, store.lock_stock(conn, (line.sku for line in lines)))
        if isinstance(outcome, Shortage):
            self.writer.emit(conn, "StockReservationFailed", order_id, {
                "order_id": order_id, "sku": outcome.sku, "requested": outcome.requested,
                "available": outcome.available,
            })
            return  # the row stays FAILED, as claimed
        store.move(conn, domain.units_per_sku(outcome), Counter.AVAILABLE, Counter.RESERVED)
        expires_at = store.mark_reserved(conn, order_id, outcome, self.reservation_ttl_s)
        self.writer.emit(conn, "StockReserved", order_id, {
            "order_id": order_id,
            "lines": [_reserved_line(line) for line in outcome],
            "total_cents": domain.total_cents(outcome),
            "expires_at": iso_instant(expires_at),
        })

    def order_confirmed(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        order_id = event.payload["order_id"]
        reservation = store.lock_reservation(conn, order_id)
        if reservation is None:
            return  # never placed here: there is nothing to sell
        step = domain.on_confirmation(reservation.status, reservation.reason)
        if step is Step.NOTHING:
            return
        units = domain.units_per_sku(store.reserved_lines(conn, [order_id]))
        if step is Step.SELL:
            store.move(conn, units, Counter.RESERVED, Counter.SOLD)
        else:
            self._resell(conn, order_id, units)
        store.set_status(conn, [order_id], Status.SOLD)

    @staticmethod
    def _resell(conn: psycopg.Connection[Any], order_id: str, units: dict[str, int]) -> None:
        """Take the units of an expired reservation again, straight into sold."""
        stock = store.lock_stock(conn, list(units))
        shortage = domain.first_shortage(
            (Line(sku, quantity) for sku, quantity in units.items()),
            {sku: row.available for sku, row in stock.items()},
        )
        if shortage is not None:
            raise SoldOutAfterExpiry(
                f"order {order_id} was confirmed after its reservation expired, and "
                f"{shortage.sku} has {shortage.available} of {shortage.requested} units left; "
                "restock it and replay this event"
            )
        store.move(conn, units, Counter.AVAILABLE, Counter.SOLD)
        log.warning("confirmed after its reservation expired; sold from available stock",
                    extra={"order_id": order_id})

    def cancelled(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        """PaymentDeclined and OrderCancelled: give back whatever the order still holds."""
        order_id = event.payload["order_id"]
        cancellation = domain.cancellation_of(event.event_type, event.payload)
        if store.remember_cancellation(conn, order_id, cancellation.reason):
            return  # first news of this order: nothing is held, the late OrderPlaced will see it
        reservation = store.lock_reservation(conn, order_id)
        assert reservation is not None, "rows are never deleted, and the insert just conflicted"
        step = domain.on_cancellation(reservation.status, cancellation)
        if step is Step.NOTHING:
            return
        units = domain.units_per_sku(store.reserved_lines(conn, [order_id]))
        source = Counter.RESERVED if step is Step.RELEASE else Counter.SOLD
        store.move(conn, units, source, Counter.AVAILABLE)
        store.set_status(conn, [order_id], Status.RELEASED, cancellation.reason)
        self.writer.emit(conn, "StockReleased", order_id,
                         {"order_id": order_id, "reason": cancellation.reason.value})


def _reserved_line(line: PricedLine) -> dict[str, Any]:
    return {"sku": line.sku, "quantity": line.quantity,
            "unit_price_cents": line.unit_price_cents}


def lock_run(conn: psycopg.Connection[Any], events: list[ReceivedEvent]) -> None:
    """Lock every row a run of events will touch, before any handler runs: the orders'
    reservations, then the stock rows, each in key order, as each handler alone does.

    Alone, each handler locks only its own order's rows; a run of several orders then
    takes stock rows in an order that depends on the run, and two replicas' runs
    deadlock (``tests/inventory/test_inventory_replicas.py``). A row inserted later
    (a new order's reservation) conflicts only with events of that same order.
    """
    order_ids = sorted({event.payload["order_id"] for event in events})
    requested = {item["sku"] for event in events if event.event_type == "OrderPlaced"
                 for item in event.payload["items"]}
    store.lock_reservations(conn, order_ids)
    store.lock_stock(conn, requested | {line.sku for line in store.reserved_lines(conn,
                                                                                  order_ids)})


def build_handlers(writer: OutboxWriter, reservation_ttl_s: float) -> dict[str, Handler]:
    """The handler for each event type the inventory consumes, by CloudEvents type."""
    handlers = InventoryHandlers(writer, reservation_ttl_s)
    return {
        "OrderPlaced": handlers.order_placed,
        "OrderConfirmed": handlers.order_confirmed,
        "OrderCancelled": handlers.cancelled,
        "PaymentDeclined": handlers.cancelled,
    }
