"""The boundary to the psp: idempotency keys per order, and its errors in ours.

Every call is keyed by the order, so calling again after a timeout, a rollback or a
redelivery gets the provider's first answer instead of moving money twice. The client's
exceptions become the runtime's branches here, once: unavailable is transient (retried
with the same key), a refused request is permanent (dead-lettered). A decline is not an
error at all but an answer, :class:`Declined`.

Every call goes through the psp's circuit breaker when there is one (``outbox.breaker``):
while it is open, a call raises ``RetryLater`` without reaching the psp, and the runtime
pauses payments' partitions instead of retrying each charge for minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

from choreo.outbox import Circuit
from choreo.services.payments.domain import (
    ProviderRejected,
    ProviderUnavailable,
    charge_key,
    refund_key,
)
from choreo.services.payments.psp_client import (
    Charge,
    PaymentDeclined,
    PspClient,
    PspRequestError,
    PspUnavailable,
)

REQUEST_ONLY_STATUSES = frozenset({409, 500})
"""Answers of a psp that is up, about one request: 409 while the same key is in flight,
500 its own error for this request (``tok_error``), which a retry may or may not fix.
They are retried like any transient error but say nothing about the psp's health; were
they counted, one order whose every charge fails would hold the breaker open, and with
it every other order, forever."""


def psp_down(error: BaseException) -> bool:
    """What opens the breaker: no answer in time, no connection, 502-504, 503 (the psp
    is busy or its ledger is down) or an answer that is not the psp's JSON."""
    return isinstance(error, PspUnavailable) and error.status not in REQUEST_ONLY_STATUSES


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
    def __init__(self, psp: PspClient, currency: str, circuit: Circuit | None = None) -> None:
        self.psp = psp
        self.currency = currency
        self.circuit = circuit

    def _guarded(self) -> AbstractContextManager[None]:
        return self.circuit.guarding() if self.circuit is not None else nullcontext()

    def charge(self, order_id: str, amount_cents: int, token: str) -> Charge | Declined:
        with translated(f"charge order {order_id}"), self._guarded():
            try:
                return self.psp.charge(charge_key(order_id), amount_cents, self.currency, token,
                                       reference=order_id)
            except PaymentDeclined as decline:
                return Declined(decline.code)

    def refund(self, order_id: str, charge_id: str) -> int:
        """Refund what is left of the order's charge; returns the refunded cents."""
        with translated(f"refund order {order_id}"), self._guarded():
            return self.psp.refund(refund_key(order_id), charge_id).amount_cents
