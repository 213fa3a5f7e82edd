"""The expiry sweeper, and what happens to an order whose reservation expired."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from choreo.outbox.testing import Emitted
from choreo.services.inventory.catalog import set_stock
from choreo.services.inventory.domain import SoldOutAfterExpiry
from choreo.services.inventory.jobs import expiry_job, release_expired
from tests.inventory.support import (
    Inventory,
    expire_now,
    levels,
    order_cancelled,
    order_confirmed,
    order_placed,
    reservation,
    stock,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def inventory(conn: psycopg.Connection[Any]) -> Inventory:
    stock(conn, {"mug": (1250, 10), "tee": (1999, 5)})
    return Inventory(conn)


def sweep(inventory: Inventory, batch_size: int = 200) -> int:
    """One run of the sweeper in its own transaction, as the job runner does it."""
    mark = len(inventory.writer.emitted)
    with inventory.conn.transaction():
        released = release_expired(inventory.conn, inventory.writer, batch_size)
    assert len(inventory.writer.emitted) - mark == released
    return released


def test_releases_expired_reservations_and_emits_stock_released_expired(
        inventory: Inventory) -> None:
    inventory.deliver(order_placed("old", [("mug", 2), ("tee", 1)]))
    inventory.deliver(order_placed("fresh", [("mug", 1)]))
    expire_now(inventory.conn, "old")

    assert sweep(inventory) == 1

    assert inventory.writer.emitted[-1] == Emitted(
        "StockReleased", "old", {"order_id": "old", "reason": "expired"})
    assert reservation(inventory.conn, "old") == ("released", "expired")
    assert reservation(inventory.conn, "fresh") == ("reserved", None)
    stock_now = levels(inventory.conn)
    assert (stock_now["mug"].available, stock_now["mug"].reserved) == (9, 1)
    assert (stock_now["tee"].available, stock_now["tee"].reserved) == (5, 0)
    assert sweep(inventory) == 0


def test_releases_a_backlog_in_batches(inventory: Inventory) -> None:
    orders = [f"o{n}" for n in range(5)]
    for order_id in orders:
        inventory.deliver(order_placed(order_id, [("mug", 1)]))
    expire_now(inventory.conn, *orders)

    assert [sweep(inventory, batch_size=2) for _ in range(4)] == [2, 2, 1, 0]
    assert levels(inventory.conn)["mug"].available == 10


def test_skips_a_reservation_a_handler_holds_and_takes_it_next_time(
        inventory: Inventory, inventory_dsn: str) -> None:
    for order_id in ("held", "free"):
        inventory.deliver(order_placed(order_id, [("mug", 1)]))
    expire_now(inventory.conn, "held", "free")

    with psycopg.connect(inventory_dsn) as other:
        other.execute("SELECT 1 FROM reservations WHERE order_id = 'held' FOR UPDATE")
        assert sweep(inventory) == 1
        assert reservation(inventory.conn, "held") == ("reserved", None)
    assert sweep(inventory) == 1
    assert reservation(inventory.conn, "held") == ("released", "expired")


def test_the_job_runs_one_batch_per_run(inventory: Inventory) -> None:
    for order_id in ("a", "b", "c"):
        inventory.deliver(order_placed(order_id, [("tee", 1)]))
    expire_now(inventory.conn, "a", "b", "c")
    job = expiry_job(interval_s=0.5, batch_size=2)

    with inventory.conn.transaction():
        job.run(inventory.conn, inventory.writer)

    assert job.interval_s == 0.5
    assert sorted(e.aggregate_id for e in inventory.writer.emitted
                  if e.event_type == "StockReleased") in (["a", "b"], ["a", "c"], ["b", "c"])


def test_a_confirmation_before_the_sweep_sells_even_past_expiry(inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2)]))
    expire_now(inventory.conn, "o1")

    inventory.deliver(order_confirmed("o1"))

    assert sweep(inventory) == 0
    assert reservation(inventory.conn, "o1") == ("sold", None)
    assert (levels(inventory.conn)["mug"].available, levels(inventory.conn)["mug"].sold) == (8, 2)


def test_a_confirmation_after_expiry_takes_the_units_again_without_an_event(
        inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2), ("tee", 1)]))
    expire_now(inventory.conn, "o1")
    sweep(inventory)

    inventory.deliver(order_confirmed("o1"))

    assert [e.event_type for e in inventory.writer.emitted] == ["StockReserved", "StockReleased"]
    assert reservation(inventory.conn, "o1") == ("sold", None)
    stock_now = levels(inventory.conn)
    assert (stock_now["mug"].available, stock_now["mug"].reserved, stock_now["mug"].sold) \
        == (8, 0, 2)
    assert (stock_now["tee"].available, stock_now["tee"].sold) == (4, 1)


def test_a_confirmation_after_expiry_with_the_stock_gone_is_dead_lettered_until_restocked(
        inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("tee", 3)]))
    expire_now(inventory.conn, "o1")
    sweep(inventory)
    inventory.deliver(order_placed("o2", [("tee", 4)]))  # the released units are taken
    confirmed = order_confirmed("o1")

    with pytest.raises(SoldOutAfterExpiry, match="tee has 1 of 3"):
        inventory.deliver(confirmed)
    assert reservation(inventory.conn, "o1") == ("released", "expired")
    assert levels(inventory.conn)["tee"].sold == 0

    set_stock(inventory.conn, "tee", 3)  # the operator restocks, then replays
    assert inventory.deliver(confirmed) == "handled"
    assert reservation(inventory.conn, "o1") == ("sold", None)
    tee = levels(inventory.conn)["tee"]
    assert (tee.available, tee.reserved, tee.sold) == (0, 4, 3)


def test_a_cancellation_after_expiry_releases_nothing_twice(inventory: Inventory) -> None:
    inventory.deliver(order_placed("o1", [("mug", 2)]))
    expire_now(inventory.conn, "o1")
    sweep(inventory)

    inventory.deliver(order_cancelled("o1", "timeout"))

    assert [e.event_type for e in inventory.writer.emitted] == ["StockReserved", "StockReleased"]
    assert reservation(inventory.conn, "o1") == ("released", "expired")
    assert levels(inventory.conn)["mug"].available == 10
