"""What the payments tests share: events built by hand, a writer that records, a harness.

The harness drives handlers exactly as the runtime does (``handle_once``) on a real
connection, and reads back the three things the guarantees are about: the payment
row, the events emitted, and the money at the psp.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from choreo.outbox.breaker import Circuit
from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import Handler, handle_once
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.writer import OutboxWriter
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.payments.__main__ import definition
from choreo.services.payments.attempts import AttemptLog
from choreo.services.payments.handlers import build_handlers
from choreo.services.payments.psp_client import Charge, PspClient

CONSUMER = "payments"

EMITTED_EVENTS = """
CREATE TABLE IF NOT EXISTS emitted_events (
    seq        bigserial PRIMARY KEY,
    event_id   uuid      NOT NULL,
    event_type text      NOT NULL,
    order_id   text      NOT NULL,
    payload    jsonb     NOT NULL
)
"""


class TableCopyWriter(OutboxWriter):
    """Emits for real and also keeps a copy in ``emitted_events``, in the same transaction.

    The outbox row is deleted within its transaction, so it cannot be read back; the
    copy commits or rolls back with it, so a test sees exactly what would reach Kafka.
    """

    def emit(self, conn: psycopg.Connection[Any], event_type: str, aggregate_id: str,
             payload: Mapping[str, Any]) -> uuid.UUID:
        event_id = super().emit(conn, event_type, aggregate_id, payload)
        conn.execute("INSERT INTO emitted_events (event_id, event_type, order_id, payload)"
                     " VALUES (%s, %s, %s, %s)",
                     (event_id, event_type, aggregate_id, Jsonb(dict(payload))))
        return event_id


def handlers_for(psp: PspClient, attempt_log: AttemptLog,
                 circuit: Circuit | None = None) -> dict[str, Handler]:
    """The service's handlers, emitting through a :class:`TableCopyWriter`."""
    return build_handlers(TableCopyWriter(EventCodec(SchemaCatalog.load()), source=CONSUMER,
                                              emits=definition().emits),
                          psp, attempt_log, circuit=circuit)


class Events:
    """Schema-valid events as the runtime would hand them to a handler."""

    def __init__(self, codec: EventCodec) -> None:
        self.codec = codec

    def event(self, event_type: str, source: str, payload: dict[str, Any]) -> ReceivedEvent:
        # Through the codec and back: an invalid payload raises, and the handler gets what
        # a consumer would (a field the writer left out comes with its default).
        data, schema = self.codec.encode(event_type, payload)
        return ReceivedEvent(
            event_id=uuid.uuid4(), event_type=event_type, aggregate_id=payload["order_id"],
            payload=self.codec.decode(event_type, schema.reference, data), source=source,
            occurred_at="2030-01-01T00:00:00Z", traceparent="", origin="test",
        )

    def placed(self, order_id: str, token: str,
               deadline_at: str = "2030-01-01T00:15:00Z") -> ReceivedEvent:
        return self.event("OrderPlaced", "orders", {
            "order_id": order_id, "customer_id": "customer-1",
            "items": [{"sku": "sku-1", "quantity": 1}], "payment_token": token,
            "deadline_at": deadline_at,
        })

    def reserved(self, order_id: str, total_cents: int) -> ReceivedEvent:
        return self.event("StockReserved", "inventory", {
            "order_id": order_id,
            "lines": [{"sku": "sku-1", "quantity": 1, "unit_price_cents": total_cents}],
            "total_cents": total_cents, "expires_at": "2030-01-01T00:10:00Z",
        })

    def cancelled(self, order_id: str, reason: str = "customer") -> ReceivedEvent:
        return self.event("OrderCancelled", "orders", {"order_id": order_id, "reason": reason})


@dataclass(frozen=True)
class Emitted:
    event_type: str
    payload: dict[str, Any]


@dataclass
class Harness:
    conn: psycopg.Connection[Any]
    handlers: dict[str, Handler]
    psp: PspClient

    def deliver(self, event: ReceivedEvent) -> str:
        return handle_once(self.conn, CONSUMER, self.handlers[event.event_type], event)

    def payment(self, order_id: str) -> dict[str, Any] | None:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute("SELECT * FROM payments WHERE order_id = %s",
                                  (order_id,)).fetchone()

    def status(self, order_id: str) -> str | None:
        payment = self.payment(order_id)
        return None if payment is None else str(payment["status"])

    def emitted(self, order_id: str) -> list[Emitted]:
        rows = self.conn.execute("SELECT event_type, payload FROM emitted_events"
                                 " WHERE order_id = %s ORDER BY seq", (order_id,)).fetchall()
        return [Emitted(event_type, payload) for event_type, payload in rows]

    def emitted_types(self, order_id: str) -> list[str]:
        return [event.event_type for event in self.emitted(order_id)]

    def charges(self, order_id: str) -> list[Charge]:
        return self.psp.charges_for(order_id)

    def attempt(self, order_id: str) -> tuple[str, int] | None:
        """The committed charge attempt (token, cents): what makes a payment charging."""
        row = self.conn.execute("SELECT token, amount_cents FROM charge_attempts"
                                " WHERE order_id = %s", (order_id,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))


def new_order_id() -> str:
    return f"order-{uuid.uuid4()}"
