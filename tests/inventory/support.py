"""What the inventory tests share: hand-built events, a recording writer, table reads.

Events go through ``handle_once``, the runtime's exact unit (inbox claim and handler in
one transaction). The recording writer keeps what was emitted, and forgets the emits of
a transaction that rolled back, so a test sees exactly what would have reached Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import Handler, handle_once
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.testing import RecordingWriter
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.inventory.catalog import CatalogItem, StockLevel, seed_catalog, stock_levels
from choreo.services.inventory.handlers import build_handlers

CONSUMER = "inventory"
CODEC = EventCodec(SchemaCatalog.load())
TTL_S = 120.0


@dataclass
class Inventory:
    """The handlers over one connection, driven the way the consumer runtime drives them."""

    conn: psycopg.Connection[Any]
    ttl_s: float = TTL_S
    writer: RecordingWriter = field(default_factory=lambda: RecordingWriter(CODEC, CONSUMER))
    handlers: dict[str, Handler] = field(init=False)

    def __post_init__(self) -> None:
        self.handlers = build_handlers(self.writer, self.ttl_s)

    def deliver(self, event: ReceivedEvent) -> str:
        """"handled" or "duplicate"; a raising handler leaves no emits behind."""
        mark = len(self.writer.emitted)
        try:
            return handle_once(self.conn, CONSUMER, self.handlers[event.event_type], event)
        except BaseException:
            del self.writer.emitted[mark:]
            raise


def received(event_type: str, order_id: str, payload: dict[str, Any],
             event_id: uuid.UUID | None = None) -> ReceivedEvent:
    source = "payments" if event_type.startswith("Payment") else "orders"
    return ReceivedEvent(
        event_id=event_id or uuid.uuid4(), event_type=event_type, aggregate_id=order_id,
        payload={"order_id": order_id, **payload}, source=source,
        occurred_at="2026-01-01T00:00:00.000Z", traceparent="", origin="test/0/0",
    )


def order_placed(order_id: str, items: Iterable[tuple[str, int]],
                 event_id: uuid.UUID | None = None) -> ReceivedEvent:
    return received("OrderPlaced", order_id, {
        "customer_id": "customer-1",
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
        "payment_token": "tok_ok",
        "deadline_at": "2026-01-01T00:15:00.000Z",
    }, event_id)


def order_confirmed(order_id: str, event_id: uuid.UUID | None = None) -> ReceivedEvent:
    return received("OrderConfirmed", order_id, {"total_cents": 0}, event_id)


def order_cancelled(order_id: str, reason: str,
                    event_id: uuid.UUID | None = None) -> ReceivedEvent:
    return received("OrderCancelled", order_id, {"reason": reason}, event_id)


def payment_declined(order_id: str, event_id: uuid.UUID | None = None) -> ReceivedEvent:
    return received("PaymentDeclined", order_id, {"reason": "card_declined"}, event_id)


def reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE reservation_lines, reservations, stock_items, inbox")


def stock(conn: psycopg.Connection[Any], levels: Mapping[str, tuple[int, int]]) -> None:
    """Put SKUs in the catalog: ``{sku: (unit_price_cents, available)}``."""
    seed_catalog(conn, tuple(CatalogItem(sku, sku.title(), price, available)
                             for sku, (price, available) in levels.items()))


def levels(conn: psycopg.Connection[Any]) -> dict[str, StockLevel]:
    return {level.sku: level for level in stock_levels(conn)}


def reservation(conn: psycopg.Connection[Any], order_id: str) -> tuple[str, str | None] | None:
    """(status, reason) of the order's row, or None if inventory never heard of it."""
    row = conn.execute("SELECT status, reason FROM reservations WHERE order_id = %s",
                       (order_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def expire_now(conn: psycopg.Connection[Any], *order_ids: str) -> None:
    """Move reservations' expiry into the past, as if their TTL had run out."""
    conn.execute("UPDATE reservations SET expires_at = now() - interval '1 second' "
                 "WHERE order_id = ANY(%s)", (list(order_ids),))
