"""Handlers racing on their own connections, as replicas of the service would.

Each worker is a thread with its own connection and handlers; a barrier releases them
together so that their transactions really overlap. No handler may fail: the lock order
(order row, then SKUs sorted) leaves no deadlock for the runtime to retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import pytest

from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.testing import Emitted
from choreo.services.inventory.jobs import release_expired
from tests.inventory.support import (
    Inventory,
    expire_now,
    levels,
    order_cancelled,
    order_confirmed,
    order_placed,
    payment_declined,
    reservation,
    stock,
)

pytestmark = pytest.mark.postgres

T = TypeVar("T")


def race(dsn: str, tasks: list[Callable[[Inventory], T]]) -> list[T]:
    """Run each task on its own connection, all starting at the same moment."""
    barrier = threading.Barrier(len(tasks))

    def run(task: Callable[[Inventory], T]) -> T:
        with psycopg.connect(dsn, autocommit=True) as conn:
            inventory = Inventory(conn)
            barrier.wait(timeout=30)
            return task(inventory)

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        return [future.result(timeout=60) for future in [pool.submit(run, t) for t in tasks]]


def deliver_all(*events: ReceivedEvent) -> Callable[[Inventory], list[Emitted]]:
    def task(inventory: Inventory) -> list[Emitted]:
        for event in events:
            inventory.deliver(event)
        return inventory.writer.emitted

    return task


def test_concurrent_orders_for_a_scarce_sku_never_oversell(
        conn: psycopg.Connection[Any], inventory_dsn: str) -> None:
    stock(conn, {"scarce": (5000, 5)})

    results = race(inventory_dsn, [deliver_all(order_placed(f"o{n}", [("scarce", 1)]))
                                   for n in range(24)])

    types = [event.event_type for emitted in results for event in emitted]
    assert types.count("StockReserved") == 5
    assert types.count("StockReservationFailed") == 19
    level = levels(conn)["scarce"]
    assert (level.available, level.reserved, level.sold) == (0, 5, 0)


def test_orders_naming_the_same_skus_in_opposite_orders_do_not_deadlock(
        conn: psycopg.Connection[Any], inventory_dsn: str) -> None:
    stock(conn, {"a": (100, 10), "b": (100, 10), "c": (100, 10)})
    orders = [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]]

    results = race(inventory_dsn, [
        deliver_all(order_placed(f"o{n}", [(sku, 1) for sku in orders[n % 3]]))
        for n in range(18)
    ])

    types = [event.event_type for emitted in results for event in emitted]
    assert types.count("StockReserved") == 10
    assert all((level.available, level.reserved) == (0, 10) for level in levels(conn).values())


@pytest.mark.parametrize("cancel", [payment_declined, lambda o: order_cancelled(o, "timeout")])
def test_a_cancellation_racing_its_order_ends_with_nothing_held(
        conn: psycopg.Connection[Any], inventory_dsn: str,
        cancel: Callable[[str], ReceivedEvent]) -> None:
    stock(conn, {"mug": (1250, 100)})
    orders = [f"o{n}" for n in range(12)]
    tasks = [deliver_all(order_placed(o, [("mug", 2)])) for o in orders]
    tasks += [deliver_all(cancel(o)) for o in orders]

    emitted = [event for result in race(inventory_dsn, tasks) for event in result]

    for order_id in orders:
        types = [e.event_type for e in emitted if e.aggregate_id == order_id]
        status = reservation(conn, order_id)
        assert status is not None
        expected = {"cancelled": [], "released": ["StockReserved", "StockReleased"]}
        assert sorted(types) == sorted(expected[status[0]]), (order_id, status, types)
    level = levels(conn)["mug"]
    assert (level.available, level.reserved, level.sold) == (100, 0, 0)


def test_confirmations_racing_the_expiry_sweeper_all_end_sold(
        conn: psycopg.Connection[Any], inventory_dsn: str) -> None:
    stock(conn, {"mug": (1250, 100)})
    setup = Inventory(conn)
    orders = [f"o{n}" for n in range(16)]
    for order_id in orders:
        setup.deliver(order_placed(order_id, [("mug", 3)]))
    expire_now(conn, *orders)

    def sweep(inventory: Inventory) -> list[Emitted]:
        with inventory.conn.transaction():
            release_expired(inventory.conn, inventory.writer, batch_size=5)
        return inventory.writer.emitted

    tasks = [deliver_all(order_confirmed(o)) for o in orders] + [sweep] * 4
    race(inventory_dsn, tasks)

    assert {reservation(conn, o) for o in orders} == {("sold", None)}
    level = levels(conn)["mug"]
    assert (level.available, level.reserved, level.sold) == (100 - 48, 0, 48)
