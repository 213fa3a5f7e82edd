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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from choreo.outbox import Circuit, Handler, OutboxWriter, ReceivedEvent
from choreo.services.payments import store
from choreo.services.payments.attempts import AttemptLog
from choreo.services.payments.domain import (
    PAID_BY_WALLET,
    ChargeAttempt,
    Payment,
    Step,
    next_step,
)
from choreo.services.payments.provider import Declined, Provider
from choreo.services.payments.psp_client import PspClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaymentsHandlers:
    writer: OutboxWriter
    provider: Provider
    attempt_log: AttemptLog

    def order_placed(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payment = store.lock(conn, event.payload["order_id"])
        if event.payload["payment_method"] == "wallet":  # the wallet service pays it
            self._carry_out(conn, payment.cancel(PAID_BY_WALLET))
            return
        self._carry_out(conn, payment.with_token(
            event.payload["payment_token"], datetime.fromisoformat(event.payload["deadline_at"])))

    def stock_reserved(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payment = store.lock(conn, event.payload["order_id"])
        self._carry_out(conn, payment.with_reservation(event.payload["total_cents"]))

    def order_cancelled(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        payment = store.lock(conn, event.payload["order_id"])
        self._carry_out(conn, payment.cancel(event.payload["reason"]))

    def _carry_out(self, conn: psycopg.Connection[Any], payment: Payment) -> None:
        payment = payment.lapsed(datetime.now(UTC))
        if next_step(payment) is Step.CHARGE:
            payment = self._charge(conn, payment)
        if next_step(payment) is Step.REFUND:  # cancelled before or while it captured
            payment = self._refund(conn, payment)
        assert not payment.charging, "saved only with the psp's final answer, else rolled back"
        store.save(conn, payment)

    def _charge(self, conn: psycopg.Connection[Any], payment: Payment) -> Payment:
        attempt = payment.attempt
        if attempt is None:
            assert payment.token is not None and payment.reserved_cents is not None
            attempt = self.attempt_log.record(
                payment.order_id, ChargeAttempt(payment.token, payment.reserved_cents))
        payment = payment.with_attempt(attempt)
        outcome = self.provider.charge(payment.order_id, attempt.amount_cents, attempt.token)
        if isinstance(outcome, Declined):
            self.writer.emit(conn, "PaymentDeclined", payment.order_id,
                             {"order_id": payment.order_id, "reason": outcome.reason})
            return payment.declined(outcome.reason)
        self.writer.emit(conn, "PaymentCaptured", payment.order_id,
                         {"order_id": payment.order_id, "payment_id": outcome.id,
                          "amount_cents": outcome.amount_cents})
        log.info("captured %d cents", outcome.amount_cents, extra={"order_id": payment.order_id})
        return payment.captured(outcome.id, outcome.amount_cents)

    def _refund(self, conn: psycopg.Connection[Any], payment: Payment) -> Payment:
        assert payment.charge_id is not None and payment.captured_cents is not None
        refunded_cents = self.provider.refund(payment.order_id, payment.charge_id)
        self.writer.emit(conn, "PaymentRefunded", payment.order_id,
                         {"order_id": payment.order_id, "payment_id": payment.charge_id,
                          "amount_cents": refunded_cents})
        log.info("refunded %d cents", refunded_cents, extra={"order_id": payment.order_id})
        return payment.refunded(payment.charge_id, payment.captured_cents, refunded_cents)


def build_handlers(writer: OutboxWriter, psp: PspClient, attempt_log: AttemptLog,
                   currency: str = "EUR", circuit: Circuit | None = None
                   ) -> dict[str, Handler]:
    """The handler for each event type payments consumes, by CloudEvents type."""
    handlers = PaymentsHandlers(writer, Provider(psp, currency, circuit), attempt_log)
    return {
        "OrderPlaced": handlers.order_placed,
        "StockReserved": handlers.stock_reserved,
        "OrderCancelled": handlers.order_cancelled,
    }
