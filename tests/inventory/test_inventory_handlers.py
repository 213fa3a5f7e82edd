"""Each handler on the real tables, one decision per example.

The property tests cover the interleavings; these pin down the single steps, the event
payloads and the documented edge cases in a form that reads like the specification.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from choreo.outbox.testing import Emitted
from choreo.services.inventory.domain import InvalidOrder
from tests.inventory.support import (
    TTL_S,
    Inventory,
    levels,
    order_cancelled,
    order_confirmed,
    order_placed,
    payment_declined,
    reservation,
    stock,
)

pytestmark = pytest.mark.postgres

SHOP = {"mug": (1250, 10), "tee": (1999, 3), "cap": (1500, 0)}


@pytest.fixture
def inventory(conn: psycopg.Connection[Any]) -> Inventory:
    stock(conn, SHOP)
    return Inventory(conn)


def counters(inventory: Inventory, sku: str) -> tuple[int, int, int]:
    level = levels(inventory.conn)[sku]
    return level.available, level.reserved, level.sold


def test_reserves_every_line_at_current_prices_and_merges_repeated_skus(
        inventory: Inventory) -> None:
    before = datetime.now(UTC)
    inventory.deliver(order_placed("o1", [("mug", 2), ("tee", 1), ("mug", 1)]))

    [event] = inventory.writer.emitted
    assert event.event_type == "StockReserved" and event.aggregate_id == "o1"
    assert event.payload["lines"] == [
        {"sku": "mug", "quantity": 3, "unit_price_cents": 1250},
        {"sku": "tee", "quantity": 1, "unit_price_cents": 1999},
    ]
    assert event.payload["total_cents"] == 3 * 1250 + 1999
    expires_at = datetime.fromisoformat(event.payload["expires_at"])
    assert event.payload["expires_at"].endswith("Z")
    assert before + timedelta(seconds=TTL_S - 5) < expires_at \
        < datetime.now(UTC) + timedelta(seconds=TTL_S + 5)
    assert counters(inventory, "mug") == (7, 3, 0)
    assert counters(inventory, "tee") == (2, 1, 0)
    assert reservation(inventory.conn, "o1") == ("reserved", None)


def test_reserves_nothing_when_any_line_is_short_and_reports_the_first(
        inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2), ("tee", 4), ("cap", 1)]))

    assert inventory.writer.emitted == [Emitted("StockReservationFailed", "o1", {
        "order_id": "o1", "sku": "tee", "requested": 4, "available": 3})]
    assert counters(inventory, "mug") == (10, 0, 0)
    assert reservation(inventory.conn, "o1") == ("failed", None)


def test_an_unknown_sku_is_short_with_nothing_available(inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 1), ("ghost", 2)]))

    assert inventory.writer.emitted == [Emitted("StockReservationFailed", "o1", {
        "order_id": "o1", "sku": "ghost", "requested": 2, "available": 0})]
    assert counters(inventory, "mug") == (10, 0, 0)


def test_repeated_skus_are_checked_against_stock_as_one_claim(inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("tee", 2), ("tee", 2)]))

    assert inventory.writer.emitted == [Emitted("StockReservationFailed", "o1", {
        "order_id": "o1", "sku": "tee", "requested": 4, "available": 3})]


def test_a_second_order_placed_for_the_same_order_changes_nothing(inventory: Inventory) -> None:
    placed = order_placed("o1", [("mug", 2)])
    assert inventory.deliver(placed) == "handled"
    assert inventory.deliver(placed) == "duplicate"
    assert inventory.deliver(order_placed("o1", [("mug", 5)])) == "handled"

    assert [e.event_type for e in inventory.writer.emitted] == ["StockReserved"]
    assert counters(inventory, "mug") == (8, 2, 0)


@pytest.mark.parametrize("items", [[], [("mug", 0)], [("mug", 1), ("tee", -1)]])
def test_an_invalid_order_is_a_permanent_error_that_writes_nothing(
        inventory: Inventory, items: list[tuple[str, int]]) -> None:
    with pytest.raises(InvalidOrder):
        inventory.deliver(order_placed("o1", items))

    assert inventory.writer.emitted == []
    assert reservation(inventory.conn, "o1") is None
    assert inventory.conn.execute("SELECT count(*) FROM inbox").fetchone() == (0,)


def test_confirmation_turns_the_reservation_into_a_sale(inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2)]))
    inventory.deliver(order_confirmed("o1"))

    assert counters(inventory, "mug") == (8, 0, 2)
    assert reservation(inventory.conn, "o1") == ("sold", None)
    assert [e.event_type for e in inventory.writer.emitted] == ["StockReserved"]


def test_a_decline_releases_and_the_cancellation_that_follows_is_a_no_op(
        inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2)]))
    inventory.deliver(payment_declined("o1"))
    inventory.deliver(order_cancelled("o1", "payment_declined"))

    assert inventory.writer.emitted[1:] == [
        Emitted("StockReleased", "o1", {"order_id": "o1", "reason": "payment_declined"})]
    assert counters(inventory, "mug") == (10, 0, 0)
    assert reservation(inventory.conn, "o1") == ("released", "payment_declined")


@pytest.mark.parametrize("reason", ["customer", "timeout"])
def test_a_cancellation_of_a_pending_order_releases_it(inventory: Inventory,
                                                        reason: str) -> None:
    inventory.deliver(order_placed("o1", [("tee", 3)]))
    inventory.deliver(order_cancelled("o1", reason))

    assert inventory.writer.emitted[1:] == [
        Emitted("StockReleased", "o1", {"order_id": "o1", "reason": "order_cancelled"})]
    assert counters(inventory, "tee") == (3, 0, 0)


def test_a_customer_cancel_after_confirmation_returns_the_sold_units(
        inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2)]))
    inventory.deliver(order_confirmed("o1"))
    inventory.deliver(order_cancelled("o1", "customer"))

    assert inventory.writer.emitted[1:] == [
        Emitted("StockReleased", "o1", {"order_id": "o1", "reason": "order_cancelled"})]
    assert counters(inventory, "mug") == (10, 0, 0)
    assert reservation(inventory.conn, "o1") == ("released", "order_cancelled")


def test_a_decline_never_undoes_a_sale(inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2)]))
    inventory.deliver(order_confirmed("o1"))
    inventory.deliver(payment_declined("o1"))

    assert counters(inventory, "mug") == (8, 0, 2)
    assert [e.event_type for e in inventory.writer.emitted] == ["StockReserved"]


def test_a_cancellation_first_is_remembered_and_the_late_order_reserves_nothing(
        inventory: Inventory) -> None:
    inventory.deliver(order_cancelled("o1", "timeout"))
    assert reservation(inventory.conn, "o1") == ("cancelled", "order_cancelled")

    inventory.deliver(order_placed("o1", [("mug", 2)]))
    inventory.deliver(order_confirmed("o1"))

    assert inventory.writer.emitted == []
    assert counters(inventory, "mug") == (10, 0, 0)
    assert reservation(inventory.conn, "o1") == ("cancelled", "order_cancelled")


def test_a_confirmation_after_a_cancellation_sells_nothing(inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2)]))
    inventory.deliver(order_cancelled("o1", "customer"))
    inventory.deliver(order_confirmed("o1"))

    assert counters(inventory, "mug") == (10, 0, 0)
    assert reservation(inventory.conn, "o1") == ("released", "order_cancelled")


def test_events_about_an_order_never_placed_or_failed_change_no_stock(
        inventory: Inventory) -> None:
    inventory.deliver(order_confirmed("o1"))
    inventory.deliver(order_placed("o2", [("cap", 1)]))
    inventory.deliver(order_confirmed("o2"))
    inventory.deliver(order_cancelled("o2", "timeout"))

    assert reservation(inventory.conn, "o1") is None
    assert reservation(inventory.conn, "o2") == ("failed", None)
    assert [e.event_type for e in inventory.writer.emitted] == ["StockReservationFailed"]
    assert all(level.reserved == level.sold == 0 for level in levels(inventory.conn).values())
