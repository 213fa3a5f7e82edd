"""One transactional handler per event type payments consumes.

Each handler locks the order's payment, applies the event to it, carries out the step
:func:`~services.payments.domain.next_step` decides at the provider, emits what
happened and saves, all inside the runtime's transaction. The provider call happens
while the row is locked, so the next event of the same order waits for its outcome.

A charge is the one call that needs more: its attempt is committed on a connection of
its own (:class:`~services.payments.attempts.AttemptLog`) before the request is sent.
If the runtime's transaction then rolls back, or the process dies with the request in
flight, the payment is still charging, and whichever event of the order comes next
(the redelivery, a cancellation) sends the same request with the same idempotency key:
the psp answers 409 while the first one runs (a transient error, retried), then its
final answer, which is recorded, and refunded if the order was cancelled meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from outbox.breaker import Circuit
from outbox.consumer import Handler
from outbox.delivery import ReceivedEvent
from outbox.writer import OutboxWriter
from services.payments import store
from services.payments.attempts import AttemptLog
from services.payments.domain import ChargeAttempt, Payment, Step, next_step
from services.payments.provider import Declined, Provider
from services.payments.psp_client import PspClient

log = logging.getLogger(__name__)


def build_handlers(writer: OutboxWriter, psp: PspClient, attempt_log: AttemptLog,
                   currency: str = "EUR", circuit: Circuit | None = None
                   ) -> dict[str, Handler]:
    provider = Provider(psp, currency, circuit)

    def charge(conn: psycopg.Connection[Any], payment: Payment) -> Payment:
        attempt = payment.attempt
        if attempt is None:
            assert payment.token is not None and payment.reserved_cents is not None
            attempt = attempt_log.record(payment.order_id,
                                         ChargeAttempt(payment.token, payment.reserved_cents))
        payment = payment.with_attempt(attempt)
        outcome = provider.charge(payment.order_id, attempt.amount_cents, attempt.token)
        if isinstance(outcome, Declined):
            writer.emit(conn, "PaymentDeclined", payment.order_id,
                        {"order_id": payment.order_id, "reason": outcome.reason})
            return payment.declined(outcome.reason)
        writer.emit(conn, "PaymentCaptured", payment.order_id,
                    {"order_id": payment.order_id, "payment_id": outcome.id,
                     "amount_cents": outcome.amount_cents})
        log.info("captured %d cents", outcome.amount_cents, extra={"order_id": payment.order_id})
        return payment.captured(outcome.id, outcome.amount_cents)

    def refund(conn: psycopg.Connection[Any], payment: Payment) -> Payment:
        assert payment.charge_id is not None and payment.captured_cents is not None
        refunded_cents = provider.refund(payment.order_id, payment.charge_id)
        writer.emit(conn, "PaymentRefunded", payment.order_id,
                    {"order_id": payment.order_id, "payment_id": payment.charge_id,
                     "amount_cents": refunded_cents})
        log.info("refunded %d cents", refunded_cents, extra={"order_id": payment.order_id})
        return payment.refunded(payment.charge_id, payment.captured_cents, refunded_cents)

    def carry_out(conn: psycopg.Connection[Any], payment: Payment) -> None:
        if next_step(payment) is Step.CHARGE:
            payment = charge(conn, payment)
        if next_step(payment) is Step.REFUND:  # cancelled before or while it captured
            payment = refund(conn, payment)
        assert not payment.charging, "saved only with the psp's final answer, else rolled back"
        store.save(conn, payment)

    def on_order_placed(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payment = store.lock(conn, event.payload["order_id"])
        carry_out(conn, payment.with_token(event.payload["payment_token"]))

    def on_stock_reserved(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payment = store.lock(conn, event.payload["order_id"])
        carry_out(conn, payment.with_reservation(event.payload["total_cents"]))

    def on_order_cancelled(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payment = store.lock(conn, event.payload["order_id"])
        carry_out(conn, payment.cancel(event.payload["reason"]))

    return {
        "OrderPlaced": on_order_placed,
        "StockReserved": on_stock_reserved,
        "OrderCancelled": on_order_cancelled,
    }
