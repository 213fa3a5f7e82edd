"""The payment of one order as a value, the rules that move it, and the service's errors.

Payments hears about an order from two topics with no order between them: the token
from ``OrderPlaced`` (order.events) and the total from ``StockReserved``
(inventory.events), and a cancellation may overtake either. So the payment waits in
``awaiting`` until it knows both, and a cancellation that arrives first is remembered
so the charge is never made. Everything here is pure; ``store`` persists a payment and
``handlers`` talk to the provider.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum, StrEnum

from outbox.errors import PermanentError, TransientError


class PaymentStatus(StrEnum):
    AWAITING = "awaiting"
    """Waiting for the token, the total, or both; nothing has been charged."""
    CAPTURED = "captured"
    DECLINED = "declined"
    REFUNDED = "refunded"
    """A capture of a cancelled order, refunded in full."""
    CANCELLED = "cancelled"
    """Cancelled before anything was charged: a late reservation never charges."""


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

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    @property
    def chargeable(self) -> bool:
        """Token and total known: the point at which the order would be charged."""
        return self.token is not None and self.reserved_cents is not None

    def with_token(self, token: str) -> Payment:
        """The first token wins; a re-emitted OrderPlaced cannot change what was charged."""
        return self if self.token is not None else replace(self, token=token)

    def with_reservation(self, total_cents: int) -> Payment:
        if total_cents <= 0:
            raise InvalidReservation(f"order {self.order_id}: reserved total {total_cents} "
                                     "is not a positive amount")
        return self if self.reserved_cents is not None \
            else replace(self, reserved_cents=total_cents)

    def captured(self, charge_id: str, amount_cents: int) -> Payment:
        return replace(self, status=PaymentStatus.CAPTURED, charge_id=charge_id,
                       captured_cents=amount_cents)

    def declined(self, reason: str) -> Payment:
        return replace(self, status=PaymentStatus.DECLINED, decline_reason=reason)

    def cancel(self, reason: str) -> Payment:
        """Remember the first cancellation; an uncharged order can then never be charged.

        A captured payment stays captured here: the refund is the handler's business,
        and it calls :meth:`refunded` once the provider has refunded.
        """
        if self.cancelled:
            return self
        status = PaymentStatus.CANCELLED if self.status is PaymentStatus.AWAITING \
            else self.status
        return replace(self, status=status, cancel_reason=reason)

    def refunded(self, charge_id: str, captured_cents: int, refunded_cents: int) -> Payment:
        """Also used for a lost capture found at the provider, hence the charge's fields."""
        return replace(self, status=PaymentStatus.REFUNDED, charge_id=charge_id,
                       captured_cents=captured_cents, refunded_cents=refunded_cents)


class Step(Enum):
    """What a handler must do at the provider after an event changed a payment."""

    NOTHING = "nothing"
    CHARGE = "charge"
    REFUND = "refund"
    FIND_LOST_CAPTURE = "find_lost_capture"


def next_step(before: Payment, after: Payment) -> Step:
    """Decide from the payment as it was locked and as the event left it.

    The lost capture: a handler charges and records the capture in one transaction. If
    that transaction rolled back after the provider captured (a crash, or a timeout
    while the provider kept going) and the cancellation committed before the retry,
    the capture is recorded nowhere here and only the provider knows of it. The token
    and the total arrive in separate transactions, so only an order that knew one of
    them can have lost a capture to the event bringing the other. Such an order is
    looked up at the provider when it is cancelled, and a cancelled order again when it
    gets what a charge needs (the rolled-back event's redelivery may come after the
    capture finally landed). An order that knew neither is cancelled without a call.
    """
    if after.status is PaymentStatus.AWAITING and after.chargeable:
        return Step.CHARGE
    if after.status is PaymentStatus.CAPTURED and after.cancelled:
        return Step.REFUND
    if after.status is PaymentStatus.CANCELLED:
        half_known = before.token is not None or before.reserved_cents is not None
        cancelled_now = before.status is PaymentStatus.AWAITING
        if (cancelled_now and half_known) or (after.chargeable and not before.chargeable):
            return Step.FIND_LOST_CAPTURE
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


class AmbiguousCaptures(PermanentError):
    """The psp lists several captures for one order, which one key per order rules out."""
