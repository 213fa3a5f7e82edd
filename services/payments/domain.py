"""The payment of one order as a value, the rules that move it, and the service's errors.

Payments hears about an order from two topics with no order between them: the token
from ``OrderPlaced`` (order.events) and the total from ``StockReserved``
(inventory.events), and a cancellation may overtake either. So the payment waits in
``awaiting`` until it knows both, and a cancellation that arrives first is remembered
so the charge is never made.

Before the psp hears of a charge, a :class:`ChargeAttempt` is committed on its own
(``attempts.py``): from then on the payment is *charging*, whatever happens to the
transaction that sends the request, and every later event of the order re-sends
exactly that request (same idempotency key) until the psp's answer is final. That is
how a capture still in flight when its process died is never left unrefunded.
Everything here is pure; ``store`` persists a payment and ``handlers`` talk to the
provider.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum, StrEnum

from choreo.outbox import PermanentError, TransientError


class PaymentStatus(StrEnum):
    AWAITING = "awaiting"
    """No final psp answer yet: waiting for the token or the total, or charging (an
    attempt is committed and the request may be in flight)."""
    CAPTURED = "captured"
    DECLINED = "declined"
    REFUNDED = "refunded"
    """A capture of a cancelled order, refunded in full."""
    CANCELLED = "cancelled"
    """Cancelled before anything was charged: a late reservation never charges."""


@dataclass(frozen=True)
class ChargeAttempt:
    """The one charge request of an order, committed before it is first sent.

    Re-sent unchanged: the psp answers a reused key with a different body 422, so the
    token and amount that may be in flight are the ones every retry must carry.
    """

    token: str
    amount_cents: int


@dataclass(frozen=True)
class Payment:
    order_id: str
    status: PaymentStatus = PaymentStatus.AWAITING
    token: str | None = None
    reserved_cents: int | None = None
    charge_id: str | None = None
    captured_cents: int | None = None
    refunded_cents: int | None = None
    decline_reason: str | None = None
    cancel_reason: str | None = None
    deadline_at: datetime | None = None
    """From ``OrderPlaced``: when orders cancels the order if it is still pending."""
    attempt: ChargeAttempt | None = None
    """Kept in ``charge_attempts``, not in the payments row (see ``attempts.py``)."""

    @property
    def charging(self) -> bool:
        """A charge may be in flight at the psp: only its final answer ends this."""
        return self.status is PaymentStatus.AWAITING and self.attempt is not None

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    @property
    def chargeable(self) -> bool:
        """Token and total known: the point at which the order would be charged."""
        return self.token is not None and self.reserved_cents is not None

    def with_token(self, token: str, deadline_at: datetime) -> Payment:
        """The first token wins; a re-emitted OrderPlaced cannot change what was charged."""
        return self if self.token is not None else replace(self, token=token,
                                                           deadline_at=deadline_at)

    def lapsed(self, now: datetime) -> Payment:
        """Past the order's deadline with nothing sent: cancelled here, never charged.

        The orders service cancels such an order whatever payments does (it confirms
        only on a capture, and there is none), so a charge now would only be refunded:
        two psp calls for nothing. Behind a backlog that is every order, and the work
        doubles just when there is least time for it (a storm at 15/s once ended with
        every order timed out, captured, then refunded). A charging payment is not
        touched: its request may be in flight, and only the psp's answer tells.
        """
        if (self.deadline_at is None or now < self.deadline_at or self.cancelled
                or self.status is not PaymentStatus.AWAITING or self.attempt is not None):
            return self
        return self.cancel(DEADLINE_PASSED)

    def with_reservation(self, total_cents: int) -> Payment:
        if total_cents <= 0:
            raise InvalidReservation(f"order {self.order_id}: reserved total {total_cents} "
                                     "is not a positive amount")
        return self if self.reserved_cents is not None \
            else replace(self, reserved_cents=total_cents)

    def with_attempt(self, attempt: ChargeAttempt) -> Payment:
        """Charging: the token and total are the attempt's, even where the events that
        brought them rolled back with the process that committed the attempt."""
        return replace(self, attempt=attempt, token=self.token or attempt.token,
                       reserved_cents=self.reserved_cents or attempt.amount_cents)

    def captured(self, charge_id: str, amount_cents: int) -> Payment:
        return replace(self, status=PaymentStatus.CAPTURED, charge_id=charge_id,
                       captured_cents=amount_cents)

    def declined(self, reason: str) -> Payment:
        return replace(self, status=PaymentStatus.DECLINED, decline_reason=reason)

    def cancel(self, reason: str) -> Payment:
        """Remember the first cancellation; an uncharged order can then never be charged.

        A captured payment stays captured here, and a charging one stays charging until
        the psp's answer is known: the refund is the handler's business, and it calls
        :meth:`refunded` once the provider has refunded.
        """
        if self.cancelled:
            return self
        nothing_sent = self.status is PaymentStatus.AWAITING and self.attempt is None
        status = PaymentStatus.CANCELLED if nothing_sent else self.status
        return replace(self, status=status, cancel_reason=reason)

    def refunded(self, charge_id: str, captured_cents: int, refunded_cents: int) -> Payment:
        return replace(self, status=PaymentStatus.REFUNDED, charge_id=charge_id,
                       captured_cents=captured_cents, refunded_cents=refunded_cents)


DEADLINE_PASSED = "deadline passed"
PAID_BY_WALLET = "paid by wallet"
"""An order placed with ``payment_method: wallet``: payments never charges it, whatever
reservation comes, as for a cancelled order that had nothing charged."""


class Step(Enum):
    """What a handler must do at the provider after an event changed a payment."""

    NOTHING = "nothing"
    CHARGE = "charge"
    """Send the order's charge request: commit the attempt first if there is none yet."""
    REFUND = "refund"


def next_step(payment: Payment) -> Step:
    """Decide from the locked payment as the event left it.

    A charging payment is charged again whether or not the order was cancelled
    meanwhile: its request may be in flight, and only the psp's final answer tells
    whether there is a capture to refund. Nothing else can have a capture that is not
    recorded here, because no request is sent before its attempt is committed: a
    cancelled payment without an attempt was never charged, and never will be.
    """
    if payment.charging:
        return Step.CHARGE
    if payment.status is PaymentStatus.AWAITING and payment.chargeable \
            and not payment.cancelled:
        return Step.CHARGE
    if payment.status is PaymentStatus.CAPTURED and payment.cancelled:
        return Step.REFUND
    return Step.NOTHING


def charge_key(order_id: str) -> str:
    """One key per order: a retry or redelivery replays the first answer, never charges again."""
    return f"charge:{order_id}"


def refund_key(order_id: str) -> str:
    return f"refund:{order_id}"


class ProviderUnavailable(TransientError):
    """The psp timed out, failed or is busy with the same key; retry with the same key."""


class ProviderRejected(PermanentError):
    """The psp refused the request itself (bad token, key reused for another body)."""


class InvalidReservation(PermanentError):
    """A StockReserved whose total cannot be charged."""
