"""The boundary to the psp: idempotency keys per order, and its errors in ours.

Every call is keyed by the order, so calling again after a timeout, a rollback or a
redelivery gets the provider's first answer instead of moving money twice. The client's
exceptions become the runtime's branches here, once: unavailable is transient (retried
with the same key), a refused request is permanent (dead-lettered). A decline is not an
error at all but an answer, :class:`Declined`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from services.payments.domain import (
    ProviderRejected,
    ProviderUnavailable,
    charge_key,
    refund_key,
)
from services.payments.psp_client import (
    Charge,
    PaymentDeclined,
    PspClient,
    PspRequestError,
    PspUnavailable,
)


@dataclass(frozen=True)
class Declined:
    reason: str


@contextmanager
def translated(action: str) -> Iterator[None]:
    try:
        yield
    except PspUnavailable as error:
        raise ProviderUnavailable(f"{action}: {error}") from error
    except (PspRequestError, PaymentDeclined) as error:
        raise ProviderRejected(f"{action}: {error}") from error


class Provider:
    def __init__(self, psp: PspClient, currency: str) -> None:
        self.psp = psp
        self.currency = currency

    def charge(self, order_id: str, amount_cents: int, token: str) -> Charge | Declined:
        with translated(f"charge order {order_id}"):
            try:
                return self.psp.charge(charge_key(order_id), amount_cents, self.currency, token,
                                       reference=order_id)
            except PaymentDeclined as decline:
                return Declined(decline.code)

    def refund(self, order_id: str, charge_id: str) -> int:
        """Refund what is left of the order's charge; returns the refunded cents."""
        with translated(f"refund order {order_id}"):
            return self.psp.refund(refund_key(order_id), charge_id).amount_cents
