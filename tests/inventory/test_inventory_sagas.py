"""Generated interleavings of whole sagas: whatever arrives first, inventory ends correct.

A saga here is what really can happen to one order, as seen by inventory: order.events
delivers OrderPlaced and the order service's later events in order, payment.events
delivers a PaymentDeclined at any point relative to them (the two topics have no common
order; "before OrderPlaced" stands for a consumer lagging on order.events), and any
event may be redelivered later. The expected outcome is derived from the story, not
from the implementation's state machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.testing import Emitted
from tests.inventory.support import (
    Inventory,
    levels,
    order_cancelled,
    order_confirmed,
    order_placed,
    payment_declined,
    reservation,
    reset,
    stock,
)

pytestmark = pytest.mark.postgres

PRICES = {"apple": 100, "pear": 250, "plum": 1000}
UNKNOWN_SKU = "ghost"

STORIES: dict[str, tuple[str, ...]] = {
    # what inventory hears after OrderPlaced; "decline" travels on payment.events
    "pending": (),
    "confirmed": ("confirm",),
    "confirmed, then cancelled by the customer": ("confirm", "cancel:customer"),
    "declined": ("decline", "cancel:payment_declined"),
    "cancelled while pending": ("cancel:customer",),
    "timed out while pending": ("cancel:timeout",),
    "timed out, and the late charge declined": ("cancel:timeout", "decline"),
}
SHORT_STORIES = ("pending", "timed out while pending")
"""The stories a short order can have: after StockReservationFailed the order is rejected,
and nothing more reaches inventory unless the order timed out first."""


@dataclass(frozen=True)
class Saga:
    order_id: str
    items: list[tuple[str, int]]
    story: str
    deliveries: list[ReceivedEvent]


def event_id(order_id: str, step: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"choreo:test:{order_id}:{step}")


def make_event(order_id: str, step: str, items: list[tuple[str, int]]) -> ReceivedEvent:
    ident = event_id(order_id, step)
    if step == "place":
        return order_placed(order_id, items, ident)
    if step == "confirm":
        return order_confirmed(order_id, ident)
    if step == "decline":
        return payment_declined(order_id, ident)
    return order_cancelled(order_id, step.removeprefix("cancel:"), ident)


def first_short_sku(items: Sequence[tuple[str, int]], available: dict[str, int]) -> str | None:
    wanted: dict[str, int] = {}
    for sku, quantity in items:
        wanted[sku] = wanted.get(sku, 0) + quantity
    return next((sku for sku, quantity in wanted.items()
                 if quantity > available.get(sku, 0)), None)


@st.composite
def sagas(draw: st.DrawFn, order_id: str, story: str | None = None) -> Saga:
    """One order's deliveries: its story's events, interleaved and redelivered.

    Without a story, any story goes, however unlikely for the order's stock: the handlers
    must stay consistent even then.
    """
    may_be_short = story is None or story in SHORT_STORIES
    story = story or draw(st.sampled_from(list(STORIES)))
    known = [*PRICES, *PRICES, *PRICES]
    skus = st.sampled_from([*known, UNKNOWN_SKU] if may_be_short else known)
    items = draw(st.lists(st.tuples(skus, st.integers(1, 3)), min_size=1, max_size=3))
    steps = list(STORIES[story])
    order_topic = ["place", *(step for step in steps if step != "decline")]
    sequence = [make_event(order_id, step, items) for step in order_topic]
    if "decline" in steps:
        sequence.insert(draw(st.integers(0, len(sequence))),
                        make_event(order_id, "decline", items))
    for original in list(sequence):
        for _ in range(draw(st.integers(0, 2))):
            after = sequence.index(original) + 1
            sequence.insert(draw(st.integers(after, len(sequence))), original)
    return Saga(order_id, items, story, sequence)


@st.composite
def stock_for(draw: st.DrawFn, saga: Saga) -> dict[str, int]:
    """Units per SKU; enough for the order unless its story is one a short order can have."""
    wanted = {sku: sum(q for s, q in saga.items if s == sku) for sku in PRICES}
    if saga.story in SHORT_STORIES:
        return {sku: draw(st.integers(0, 12)) for sku in PRICES}
    return {sku: draw(st.integers(wanted[sku], wanted[sku] + 5)) for sku in PRICES}


@dataclass(frozen=True)
class Expected:
    status: str
    reason: str | None
    events: list[tuple[str, dict[str, Any]]]
    reserved: dict[str, int]
    sold: dict[str, int]


def expected_outcome(saga: Saga, available: dict[str, int]) -> Expected:
    """What must hold after the saga, from the order of first deliveries alone."""
    firsts = list(dict.fromkeys(event.event_id for event in saga.deliveries))
    kinds = {event.event_id: event for event in saga.deliveries}
    events = [kinds[ident] for ident in firsts]
    placed_at = next(i for i, e in enumerate(events) if e.event_type == "OrderPlaced")
    before, after = events[:placed_at], events[placed_at + 1:]
    undo = ("PaymentDeclined", "OrderCancelled")
    if any(e.event_type in undo for e in before):
        return Expected("cancelled", release_reason(before[0]), [], {}, {})
    short = first_short_sku(saga.items, available)
    if short is not None:
        wanted = sum(q for sku, q in saga.items if sku == short)
        failed = {"order_id": saga.order_id, "sku": short, "requested": wanted,
                  "available": available.get(short, 0)}
        return Expected("failed", None, [("StockReservationFailed", failed)], {}, {})
    units: dict[str, int] = {}
    for sku, quantity in saga.items:
        units[sku] = units.get(sku, 0) + quantity
    reserved = ("StockReserved", {
        "order_id": saga.order_id,
        "lines": [{"sku": sku, "quantity": q, "unit_price_cents": PRICES[sku]}
                  for sku, q in units.items()],
        "total_cents": sum(q * PRICES[sku] for sku, q in units.items()),
    })
    types = [e.event_type for e in after]
    if "OrderConfirmed" in types:
        cancels = [e for e in after[types.index("OrderConfirmed"):]
                   if e.event_type == "OrderCancelled"]
        if not cancels:
            return Expected("sold", None, [reserved], {}, units)
        return Expected("released", "order_cancelled",
                        [reserved, released(saga.order_id, "order_cancelled")], {}, {})
    undos = [e for e in after if e.event_type in undo]
    if undos:
        reason = release_reason(undos[0])
        return Expected("released", reason, [reserved, released(saga.order_id, reason)], {}, {})
    return Expected("reserved", None, [reserved], units, {})


def release_reason(event: ReceivedEvent) -> str:
    if event.event_type == "PaymentDeclined" or event.payload["reason"] == "payment_declined":
        return "payment_declined"
    return "order_cancelled"


def released(order_id: str, reason: str) -> tuple[str, dict[str, Any]]:
    return "StockReleased", {"order_id": order_id, "reason": reason}


def without_expiry(event: Emitted) -> tuple[str, dict[str, Any]]:
    payload = {k: v for k, v in event.payload.items() if k != "expires_at"}
    return event.event_type, payload


def assert_conserved(conn: psycopg.Connection[Any], initial: dict[str, int]) -> None:
    for sku, level in levels(conn).items():
        assert min(level.available, level.reserved, level.sold) >= 0, level
        assert level.on_hand == initial[sku], level


@pytest.mark.parametrize("story", list(STORIES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_one_saga_ends_right_in_every_interleaving(
        session_conn: psycopg.Connection[Any], story: str, data: st.DataObject) -> None:
    conn = session_conn
    reset(conn)
    saga = data.draw(sagas("o1", story), label="saga")
    available = data.draw(stock_for(saga), label="available")
    stock(conn, {sku: (PRICES[sku], available[sku]) for sku in PRICES})
    inventory = Inventory(conn)

    outcomes = [inventory.deliver(event) for event in saga.deliveries]

    expected = expected_outcome(saga, available)
    assert outcomes.count("handled") == len({e.event_id for e in saga.deliveries})
    assert [without_expiry(e) for e in inventory.writer.emitted] == expected.events
    assert reservation(conn, "o1") == (expected.status, expected.reason)
    assert_conserved(conn, available)
    for sku, level in levels(conn).items():
        assert level.reserved == expected.reserved.get(sku, 0), level
        assert level.sold == expected.sold.get(sku, 0), level


EVENT_PATTERNS = {
    "cancelled": [],
    "failed": ["StockReservationFailed"],
    "reserved": ["StockReserved"],
    "sold": ["StockReserved"],
    "released": ["StockReserved", "StockReleased"],
}


@st.composite
def merged(draw: st.DrawFn, sequences: list[list[ReceivedEvent]]) -> list[ReceivedEvent]:
    """A random interleaving that keeps each saga's own order."""
    pending = [list(sequence) for sequence in sequences]
    result: list[ReceivedEvent] = []
    while any(pending):
        chosen = draw(st.sampled_from([s for s in pending if s]))
        result.append(chosen.pop(0))
    return result


@settings(max_examples=40, deadline=None)
@given(data=st.data(), available=st.fixed_dictionaries({s: st.integers(0, 8) for s in PRICES}))
def test_competing_sagas_conserve_stock_and_each_ends_consistently(
        session_conn: psycopg.Connection[Any], data: st.DataObject,
        available: dict[str, int]) -> None:
    """Several orders share scarce stock; who gets it depends on the interleaving."""
    conn = session_conn
    reset(conn)
    stock(conn, {sku: (PRICES[sku], available[sku]) for sku in PRICES})
    orders = [f"o{n}" for n in range(4)]
    stories = [data.draw(sagas(order_id), label=order_id) for order_id in orders]
    inventory = Inventory(conn)

    for event in data.draw(merged([s.deliveries for s in stories]), label="deliveries"):
        inventory.deliver(event)

    assert_conserved(conn, available)
    holding: dict[str, dict[str, int]] = {"reserved": {}, "sold": {}}
    for saga in stories:
        found = reservation(conn, saga.order_id)
        assert found is not None
        status = found[0]
        emitted = [e.event_type for e in inventory.writer.of(saga.order_id)]
        assert emitted == EVENT_PATTERNS[status], (saga.story, status, emitted)
        if status in holding:
            for sku, quantity in saga.items:
                holding[status][sku] = holding[status].get(sku, 0) + quantity
    for sku, level in levels(conn).items():
        assert level.reserved == holding["reserved"].get(sku, 0), level
        assert level.sold == holding["sold"].get(sku, 0), level
