"""One transactional handler per event type payments consumes.

Each handler locks the order's payment, applies the event to it, carries out the step
:func:`~services.payments.domain.next_step` decides at the provider, emits what
happened and saves, all inside the runtime's transaction. The provider call happens
while the row is locked, so the next event of the same order waits for its outcome.
If the transaction rolls back after the provider acted, the redelivery repeats the
call with the same idempotency key and gets the same answer.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from outbox.consumer import Handler
from outbox.delivery import ReceivedEvent
from outbox.writer import OutboxWriter
from services.payments import store
from services.payments.domain import Payment, Step, next_step
from services.payments.provider import Declined, Provider
from services.psp.client import PspClient

log = logging.getLogger(__name__)


def build_handlers(writer: OutboxWriter, psp: PspClient,
                   currency: str = "EUR") -> dict[str, Handler]:
    provider = Provider(psp, currency)

    def charge(conn: psycopg.Connection[Any], payment: Payment) -> Payment:
        assert payment.token is not None and payment.reserved_cents is not None
        outcome = provider.charge(payment.order_id, payment.reserved_cents, payment.token)
        if isinstance(outcome, Declined):
            writer.emit(conn, "PaymentDeclined", payment.order_id,
                        {"order_id": payment.order_id, "reason": outcome.reason})
            return payment.declined(outcome.reason)
        writer.emit(conn, "PaymentCaptured", payment.order_id,
                    {"order_id": payment.order_id, "payment_id": outcome.id,
                     "amount_cents": outcome.amount_cents})
        log.info("captured %d cents", outcome.amount_cents, extra={"order_id": payment.order_id})
        return payment.captured(outcome.id, outcome.amount_cents)

    def refund(conn: psycopg.Connection[Any], payment: Payment, charge_id: str,
               captured_cents: int) -> Payment:
        refunded_cents = provider.refund(payment.order_id, charge_id)
        writer.emit(conn, "PaymentRefunded", payment.order_id,
                    {"order_id": payment.order_id, "payment_id": charge_id,
                     "amount_cents": refunded_cents})
        log.info("refunded %d cents", refunded_cents, extra={"order_id": payment.order_id})
        return payment.refunded(charge_id, captured_cents, refunded_cents)

    def carry_out(conn: psycopg.Connection[Any], before: Payment, after: Payment) -> None:
        step = next_step(before, after)
        if step is Step.CHARGE:
            after = charge(conn, after)
        elif step is Step.REFUND:
            assert after.charge_id is not None and after.captured_cents is not None
            after = refund(conn, after, after.charge_id, after.captured_cents)
        elif step is Step.FIND_LOST_CAPTURE:
            lost = provider.capture_of(after.order_id)
            if lost is not None:
                log.warning("found a capture of a cancelled order", extra={
                    "order_id": after.order_id})
                after = refund(conn, after, lost.id, lost.amount_cents)
        store.save(conn, after)

    def on_order_placed(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        before = store.lock(conn, event.payload["order_id"])
        carry_out(conn, before, before.with_token(event.payload["payment_token"]))

    def on_stock_reserved(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        before = store.lock(conn, event.payload["order_id"])
        carry_out(conn, before, before.with_reservation(event.payload["total_cents"]))

    def on_order_cancelled(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        before = store.lock(conn, event.payload["order_id"])
        carry_out(conn, before, before.cancel(event.payload["reason"]))

    return {
        "OrderPlaced": on_order_placed,
        "StockReserved": on_stock_reserved,
        "OrderCancelled": on_order_cancelled,
    }
