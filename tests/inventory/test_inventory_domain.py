"""The inventory's rules as pure functions: no database needed."""

from __future__ import annotations

import pytest

from choreo.services.inventory.domain import (
    Cancellation,
    InvalidOrder,
    Line,
    PricedLine,
    ReleaseReason,
    Shortage,
    Status,
    Step,
    StockRow,
    allocate,
    cancellation_of,
    on_cancellation,
    on_confirmation,
    requested_lines,
    total_cents,
    units_per_sku,
)

STOCK = {"a": StockRow("a", 100, 5), "b": StockRow("b", 250, 1)}


def test_requested_lines_merge_repeated_skus_in_first_appearance_order() -> None:
    items = [{"sku": "b", "quantity": 1}, {"sku": "a", "quantity": 2}, {"sku": "b", "quantity": 3}]
    assert requested_lines(items) == [Line("b", 4), Line("a", 2)]


@pytest.mark.parametrize("items", [[], [{"sku": "a", "quantity": 0}]])
def test_requested_lines_reject_what_the_order_service_must_not_send(items: list) -> None:
    with pytest.raises(InvalidOrder):
        requested_lines(items)


def test_allocate_prices_every_line_or_reports_the_first_short_one() -> None:
    assert allocate([Line("a", 5), Line("b", 1)], STOCK) == [
        PricedLine("a", 5, 100), PricedLine("b", 1, 250)]
    assert allocate([Line("b", 2), Line("a", 6)], STOCK) == Shortage("b", 2, 1)
    assert allocate([Line("a", 1), Line("zz", 1)], STOCK) == Shortage("zz", 1, 0)


def test_totals_and_units() -> None:
    lines = [PricedLine("a", 2, 100), PricedLine("b", 1, 250)]
    assert total_cents(lines) == 450
    assert units_per_sku([*lines, Line("a", 3)]) == {"a": 5, "b": 1}


@pytest.mark.parametrize(("event_type", "reason", "expected"), [
    ("PaymentDeclined", "card_declined", Cancellation(ReleaseReason.PAYMENT_DECLINED, False)),
    ("OrderCancelled", "payment_declined", Cancellation(ReleaseReason.PAYMENT_DECLINED, True)),
    ("OrderCancelled", "customer", Cancellation(ReleaseReason.ORDER_CANCELLED, True)),
    ("OrderCancelled", "timeout", Cancellation(ReleaseReason.ORDER_CANCELLED, True)),
])
def test_cancellation_of(event_type: str, reason: str, expected: Cancellation) -> None:
    assert cancellation_of(event_type, {"order_id": "o", "reason": reason}) == expected


DECLINE = Cancellation(ReleaseReason.PAYMENT_DECLINED, undoes_sale=False)
CANCEL = Cancellation(ReleaseReason.ORDER_CANCELLED, undoes_sale=True)


@pytest.mark.parametrize(("status", "cancellation", "step"), [
    (Status.RESERVED, DECLINE, Step.RELEASE),
    (Status.RESERVED, CANCEL, Step.RELEASE),
    (Status.SOLD, CANCEL, Step.RETURN),
    (Status.SOLD, DECLINE, Step.NOTHING),
    (Status.RELEASED, CANCEL, Step.NOTHING),
    (Status.FAILED, CANCEL, Step.NOTHING),
    (Status.CANCELLED, DECLINE, Step.NOTHING),
])
def test_on_cancellation(status: Status, cancellation: Cancellation, step: Step) -> None:
    assert on_cancellation(status, cancellation) is step


@pytest.mark.parametrize(("status", "reason", "step"), [
    (Status.RESERVED, None, Step.SELL),
    (Status.RELEASED, ReleaseReason.EXPIRED, Step.RESELL),
    (Status.RELEASED, ReleaseReason.ORDER_CANCELLED, Step.NOTHING),
    (Status.RELEASED, ReleaseReason.PAYMENT_DECLINED, Step.NOTHING),
    (Status.SOLD, None, Step.NOTHING),
    (Status.FAILED, None, Step.NOTHING),
    (Status.CANCELLED, ReleaseReason.ORDER_CANCELLED, Step.NOTHING),
    (None, None, Step.NOTHING),
])
def test_on_confirmation(status: Status | None, reason: ReleaseReason | None,
                         step: Step) -> None:
    assert on_confirmation(status, reason) is step
