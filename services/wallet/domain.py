"""One order as the wallet sees it, and the rules that move it. Pure.

The wallet hears of an order on two topics with no order between them: who placed it
and how it is paid from ``OrderPlaced`` (order.events), its total from ``StockReserved``
(inventory.events); a cancellation may overtake either. So an order waits in
``awaiting`` until it knows all three, and a cancellation that comes first is remembered
so the debit is never made. ``OrderConfirmed`` and ``OrderCancelled`` share the order's
partition, so the points of a confirmed order are always credited before a cancel of
it can take them back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum, StrEnum

WALLET = "wallet"
CENTS_PER_POINT = 100
"""One loyalty point per whole currency unit of a confirmed order."""
DEADLINE_PASSED = "deadline passed"


class Status(StrEnum):
    AWAITING = "awaiting"
    DEBITED = "debited"
    DECLINED = "declined"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class Points(StrEnum):
    NONE = "none"
    CREDITED = "credited"
    REVERSED = "reversed"


class Step(Enum):
    """What the handler does to the customer's wallet after an event moved the order."""

    NOTHING = "nothing"
    DEBIT = "debit"
    REFUND = "refund"


@dataclass(frozen=True)
class WalletOrder:
    order_id: str
    customer_id: str | None = None
    method: str | None = None
    total_cents: int | None = None
    deadline_at: datetime | None = None
    status: Status = Status.AWAITING
    cancel_reason: str | None = None
    points: int = 0
    points_state: Points = Points.NONE

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    def placed(self, customer_id: str, method: str, deadline_at: datetime) -> WalletOrder:
        """The first OrderPlaced wins: a republished copy changes nothing."""
        if self.method is not None:
            return self
        return replace(self, customer_id=customer_id, method=method, deadline_at=deadline_at)

    def reserved(self, total_cents: int) -> WalletOrder:
        return self if self.total_cents is not None else replace(self, total_cents=total_cents)

    def cancel(self, reason: str) -> WalletOrder:
        """The first cancellation; an order not yet debited can then never be."""
        if self.cancelled:
            return self
        status = Status.CANCELLED if self.status is Status.AWAITING else self.status
        return replace(self, status=status, cancel_reason=reason)

    def lapsed(self, now: datetime) -> WalletOrder:
        """A wallet order past its deadline and not debited: orders cancels it whatever
        the wallet does, so a debit now would only be refunded. Only a wallet order: a
        card order read late (a consumer behind) is still confirmed by its capture, and
        earns its points."""
        if self.method != WALLET or self.deadline_at is None or now < self.deadline_at \
                or self.status is not Status.AWAITING or self.cancelled:
            return self
        return self.cancel(DEADLINE_PASSED)

    def debited(self) -> WalletOrder:
        return replace(self, status=Status.DEBITED)

    def declined(self) -> WalletOrder:
        return replace(self, status=Status.DECLINED)

    def refunded(self) -> WalletOrder:
        return replace(self, status=Status.REFUNDED)

    def confirmed(self, total_cents: int) -> WalletOrder:
        """Points for a confirmed order, once; none after a cancel."""
        if self.points_state is not Points.NONE or self.cancelled:
            return self
        return replace(self, points=total_cents // CENTS_PER_POINT, points_state=Points.CREDITED)

    def points_taken_back(self) -> tuple[WalletOrder, int]:
        """After a cancel: the points a confirmed order earned, to take back (0 if none)."""
        if self.points_state is not Points.CREDITED:
            return self, 0
        return replace(self, points_state=Points.REVERSED, points=0), self.points


def next_step(order: WalletOrder) -> Step:
    if order.method == WALLET and order.status is Status.AWAITING and not order.cancelled \
            and order.customer_id is not None and order.total_cents is not None:
        return Step.DEBIT
    if order.status is Status.DEBITED and order.cancelled:
        return Step.REFUND
    return Step.NOTHING
