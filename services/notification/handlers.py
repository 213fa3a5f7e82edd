"""One transactional handler per event type notification consumes, and a sweeper.

An order's end (or refund) creates its notification row, locked for the handler; if the
order's customer and how to reach them are known (its OrderPlaced and the customer's
registration were read), the message goes out at once on the customer's channel. Else
the row waits as ``pending``: the OrderPlaced sends it when it comes, and
:func:`settle_pending` looks at every pending row again each second. Waiting rather than
deciding at once matters twice over: an OrderPlaced and a refund read at the same moment
by two replicas (two topics) can each miss the other's uncommitted row, and a
registration read after the order's end (customer.events has no order with
order.events) would have made a registered customer look like a guest. Only after
``GUEST_AFTER_S`` without a registration is the customer taken as a guest and the
message skipped. The provider is called with the row locked and a key per order and
kind, so whatever happens to the transaction afterwards (a rollback, a crash, a second
replica, the sweeper), the next attempt gets the same message back: a customer hears
once per order and kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from choreo.outbox import Handler, OutboxWriter, ReceivedEvent
from choreo.services.notification.provider import Message, Notifier

EMITS = ("CustomerNotified",)
KIND_OF = {"OrderConfirmed": "confirmed", "OrderRejected": "rejected",
           "OrderCancelled": "cancelled", "PaymentRefunded": "refunded",
           "WalletRefunded": "refunded"}
"""The events that each owe the customer one message, and the message's kind."""

UPSERT_RECIPIENT = """
INSERT INTO recipients (customer_id, name, email, phone, channel) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, email = excluded.email,
                                        phone = excluded.phone, channel = excluded.channel
"""
SET_CHANNEL = "UPDATE recipients SET channel = %s WHERE customer_id = %s"
RECIPIENT = "SELECT name, email, phone, channel FROM recipients WHERE customer_id = %s"
PLACE = "INSERT INTO order_customers (order_id, customer_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
CUSTOMER = "SELECT customer_id FROM order_customers WHERE order_id = %s"
CREATE = """
INSERT INTO notifications (order_id, kind, detail) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING
"""
LOCK = """
SELECT kind, status, detail FROM notifications WHERE order_id = %s AND kind = ANY(%s)
ORDER BY kind FOR UPDATE
"""
PENDING_KINDS = "SELECT kind FROM notifications WHERE order_id = %s AND status = 'pending'"
PENDING = """
SELECT n.order_id, n.kind, n.detail, c.customer_id, n.updated_at < now() - make_interval(secs => %s)
FROM notifications n JOIN order_customers c USING (order_id)
WHERE n.status = 'pending'
ORDER BY n.updated_at LIMIT 200
FOR UPDATE OF n SKIP LOCKED
"""
GUEST_AFTER_S = 30.0
"""How long a message waits for its customer's registration before the customer is taken
for a guest (and told nothing)."""
SETTLE = """
UPDATE notifications SET status = %s, channel = %s, message_id = %s, updated_at = now()
WHERE order_id = %s AND kind = %s
"""

TOLD = """
SELECT kind, status, channel, message_id, updated_at FROM notifications
WHERE order_id = %s ORDER BY updated_at
"""
"""What the customer was told about an order (the console's saga page)."""

SUBJECTS = {"confirmed": "is confirmed", "rejected": "could not be accepted",
            "cancelled": "was cancelled", "refunded": "was refunded"}


def detail_of(event: ReceivedEvent) -> str:
    payload = event.payload
    if "reason" in payload:
        return f"Reason: {payload['reason']}."
    for field in ("total_cents", "amount_cents"):
        if field in payload:
            return f"Amount: {payload[field] / 100:.2f}."
    return ""


@dataclass(frozen=True)
class NotificationHandlers:
    writer: OutboxWriter
    notifier: Notifier

    def customer_registered(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payload = event.payload
        conn.execute(UPSERT_RECIPIENT, (payload["customer_id"], payload["name"],
                                        payload["email"], payload["phone"],
                                        payload["preferences"]["channel"]))

    def preferences_changed(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SET_CHANNEL, (event.payload["preferences"]["channel"],
                                   event.payload["customer_id"]))

    def order_placed(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        order_id = event.payload["order_id"]
        conn.execute(PLACE, (order_id, event.payload["customer_id"]))
        kinds = [row[0] for row in conn.execute(PENDING_KINDS, (order_id,)).fetchall()]
        if kinds:
            self._notify(conn, order_id, kinds)

    def ended(self, kind: str) -> Handler:
        def handler(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
            conn.execute(CREATE, (event.aggregate_id, kind, detail_of(event)))
            self._notify(conn, event.aggregate_id, [kind])
        return handler

    def _notify(self, conn: psycopg.Connection[Any], order_id: str, kinds: list[str]) -> None:
        """Send each pending message of ``kinds`` once the order's customer is known."""
        rows = conn.execute(LOCK, (order_id, kinds)).fetchall()
        customer = conn.execute(CUSTOMER, (order_id,)).fetchone()
        if customer is None:
            return  # the OrderPlaced, read later, sends them
        recipient = conn.execute(RECIPIENT, (customer[0],)).fetchone()
        if recipient is None:
            return  # a registration not read yet, or a guest: settle_pending decides
        for kind, status, detail in rows:
            if status == "pending":
                self.deliver(conn, order_id, kind, detail, customer[0], recipient)

    def deliver(self, conn: psycopg.Connection[Any], order_id: str, kind: str, detail: str,
                customer: str, recipient: tuple[Any, ...] | None) -> None:
        """Send one message (none to a guest, ``recipient`` None, or channel none) and
        settle its row; the row is locked by the caller."""
        name, email, phone, channel = recipient or (None, None, None, "none")
        message_id = None
        if channel != "none":
            message_id = self.notifier.send(f"{order_id}:{kind}", Message(
                channel, email if channel == "email" else phone, order_id,
                f"Your order {order_id[:8]} {SUBJECTS[kind]}",
                f"Hello {name}, your order {order_id} {SUBJECTS[kind]}. {detail}".strip()))
        outcome = "skipped" if message_id is None else "sent"
        conn.execute(SETTLE, (outcome, channel, message_id, order_id, kind))
        self.writer.emit(conn, "CustomerNotified", order_id, {
            "order_id": order_id, "customer_id": customer, "kind": kind, "channel": channel,
            "outcome": outcome, "message_id": message_id})


def settle_pending(notifier: Notifier, guest_after_s: float = GUEST_AFTER_S
                   ) -> Callable[[psycopg.Connection[Any], OutboxWriter], None]:
    """A job: every pending message whose order's customer is known goes out now if the
    customer's registration was read, or is skipped once it waited ``guest_after_s``.
    SKIP LOCKED: a row a handler holds is that handler's to settle."""
    def run(conn: psycopg.Connection[Any], writer: OutboxWriter) -> None:
        handlers = NotificationHandlers(writer, notifier)
        for order_id, kind, detail, customer, waited in conn.execute(
                PENDING, (guest_after_s,)).fetchall():
            recipient = conn.execute(RECIPIENT, (customer,)).fetchone()
            if recipient is not None or waited:
                handlers.deliver(conn, order_id, kind, detail, customer, recipient)
    return run


def build_handlers(writer: OutboxWriter, notifier: Notifier) -> dict[str, Handler]:
    """The handler for each event type notification consumes, by CloudEvents type."""
    handlers = NotificationHandlers(writer, notifier)
    return {
        "CustomerRegistered": handlers.customer_registered,
        "PreferencesChanged": handlers.preferences_changed,
        "OrderPlaced": handlers.order_placed,
        **{event_type: handlers.ended(kind) for event_type, kind in KIND_OF.items()},
    }
