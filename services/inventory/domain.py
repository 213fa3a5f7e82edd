"""The inventory's rules, free of SQL and Kafka: what to reserve, and what each event does.

A reservation moves through a small state machine (``Status``). The handlers look up the
order's current status, ask this module for the ``Step`` an event calls for, and carry it
out. Keeping the decisions here makes every interleaving of the saga's events a question
of pure functions, answered the same way whatever arrived first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from choreo.outbox import PermanentError


class InventoryError(PermanentError):
    """Root of the inventory's domain errors; an event raising one is dead-lettered."""


class InvalidOrder(InventoryError):
    """An OrderPlaced the order service should never have emitted (no lines, quantity < 1)."""


class SoldOutAfterExpiry(InventoryError):
    """An order was confirmed after its reservation expired, and the stock is gone since.

    Money was captured for goods that are no longer there; no event of the saga can say
    so, and retrying cannot conjure stock. The dead letter tells the operator, who can
    restock (``set_stock``) and replay it.
    """


class UnknownSku(InventoryError):
    """An operator command named a SKU that is not in the catalog."""


class InvalidStockLevel(InventoryError):
    """An operator command asked for a stock level below zero."""


class Status(StrEnum):
    RESERVED = "reserved"
    SOLD = "sold"
    RELEASED = "released"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ReleaseReason(StrEnum):
    """The vocabulary of StockReleased.reason, as documented in its schema."""

    PAYMENT_DECLINED = "payment_declined"
    ORDER_CANCELLED = "order_cancelled"
    EXPIRED = "expired"


class Step(Enum):
    """What an event does to stock; the name says which counters it moves."""

    NOTHING = "nothing"
    SELL = "reserved -> sold"
    RESELL = "available -> sold"
    RELEASE = "reserved -> available"
    RETURN = "sold -> available"


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PricedLine:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class StockRow:
    """A SKU as read under its row lock when reserving."""

    sku: str
    unit_price_cents: int
    available: int


@dataclass(frozen=True)
class Shortage:
    """The first line that could not be taken: what StockReservationFailed reports."""

    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class Cancellation:
    """PaymentDeclined or OrderCancelled, reduced to what inventory needs to know."""

    reason: ReleaseReason
    undoes_sale: bool
    """Whether it also gives back units already sold (only the order's own cancellation)."""


def requested_lines(items: Iterable[Mapping[str, Any]]) -> list[Line]:
    """The order's items with repeated SKUs merged, in the order of first appearance.

    A SKU listed twice is one claim on its stock: checking each listing on its own could
    pass both while their sum is short.
    """
    merged: dict[str, int] = {}
    for item in items:
        sku, quantity = str(item["sku"]), int(item["quantity"])
        if quantity < 1:
            raise InvalidOrder(f"line {sku!r} asks for {quantity} units; at least 1 is required")
        merged[sku] = merged.get(sku, 0) + quantity
    if not merged:
        raise InvalidOrder("the order has no lines")
    return [Line(sku, quantity) for sku, quantity in merged.items()]


def first_shortage(lines: Iterable[Line], available: Mapping[str, int]) -> Shortage | None:
    """The first line, in the order's own order, that asks for more than is available.

    A SKU missing from ``available`` is not in the catalog and counts as 0 in stock.
    """
    for line in lines:
        in_stock = available.get(line.sku, 0)
        if line.quantity > in_stock:
            return Shortage(line.sku, line.quantity, in_stock)
    return None


def allocate(lines: list[Line], stock: Mapping[str, StockRow]) -> list[PricedLine] | Shortage:
    """All lines priced at the current catalog price, or the first shortage: all or none."""
    shortage = first_shortage(lines, {sku: row.available for sku, row in stock.items()})
    if shortage is not None:
        return shortage
    return [PricedLine(line.sku, line.quantity, stock[line.sku].unit_price_cents)
            for line in lines]


def units_per_sku(lines: Iterable[Line | PricedLine]) -> dict[str, int]:
    """Total units per SKU over any number of orders: what one stock move takes."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return totals


def total_cents(lines: Iterable[PricedLine]) -> int:
    return sum(line.quantity * line.unit_price_cents for line in lines)


def cancellation_of(event_type: str, payload: Mapping[str, Any]) -> Cancellation:
    """Map the two undo events onto a release reason and whether a sale is undone too.

    PaymentDeclined never undoes a sale: a sold reservation means the order was confirmed
    after a capture, and a decline cannot follow a capture of the same order. Any
    OrderCancelled does, whatever its reason: it is the order service's final word that
    the order will not be fulfilled, payments refunds a capture for every reason, and
    inventory returns the units so that "sold" keeps meaning "confirmed and not
    cancelled". In practice only reason="customer" follows a confirmation.
    """
    if event_type == "PaymentDeclined":
        return Cancellation(ReleaseReason.PAYMENT_DECLINED, undoes_sale=False)
    reason = ReleaseReason.PAYMENT_DECLINED if payload.get("reason") == "payment_declined" \
        else ReleaseReason.ORDER_CANCELLED
    return Cancellation(reason, undoes_sale=True)


def on_cancellation(status: Status, cancellation: Cancellation) -> Step:
    """Release what is reserved; return what is sold if the cancellation undoes sales.

    Released, failed and cancelled orders hold nothing, so a late or repeated
    cancellation changes nothing and emits nothing.
    """
    if status is Status.RESERVED:
        return Step.RELEASE
    if status is Status.SOLD and cancellation.undoes_sale:
        return Step.RETURN
    return Step.NOTHING


def on_confirmation(status: Status | None, reason: ReleaseReason | None) -> Step:
    """Sell what is reserved, even past ``expires_at`` if the sweeper has not run yet.

    A reservation the sweeper already released as expired is sold again from available
    stock (the customer paid; the units may still be there). A reservation released
    because of a cancellation stays released: the cancellation wins, and the capture is
    the payments service's to refund. Nothing at all is sold for an order that failed,
    was cancelled before it was placed, or that inventory never heard of.
    """
    if status is Status.RESERVED:
        return Step.SELL
    if status is Status.RELEASED and reason is ReleaseReason.EXPIRED:
        return Step.RESELL
    return Step.NOTHING
