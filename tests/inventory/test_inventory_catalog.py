"""Seeding, restocking and reading stock levels: the functions behind the command line."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from choreo.services.inventory.catalog import (
    SEED_CATALOG,
    CatalogItem,
    StockLevel,
    seed_catalog,
    set_stock,
    stock_levels,
)
from choreo.services.inventory.domain import InvalidStockLevel, UnknownSku
from tests.inventory.support import Inventory, order_confirmed, order_placed

pytestmark = pytest.mark.postgres


def test_seeds_an_empty_catalog_once(conn: psycopg.Connection[Any]) -> None:
    assert seed_catalog(conn) == len(SEED_CATALOG)
    assert seed_catalog(conn) == 0

    found = stock_levels(conn)
    assert [level.sku for level in found] == sorted(item.sku for item in SEED_CATALOG)
    assert all(level.reserved == level.sold == 0 for level in found)
    assert len({item.sku for item in SEED_CATALOG}) == len(SEED_CATALOG)


def test_never_seeds_over_an_operators_catalog(conn: psycopg.Connection[Any]) -> None:
    seed_catalog(conn, (CatalogItem("own", "Own item", 100, 1),))

    assert seed_catalog(conn) == 0
    assert [level.sku for level in stock_levels(conn)] == ["own"]


def test_set_stock_changes_available_only(conn: psycopg.Connection[Any]) -> None:
    seed_catalog(conn, (CatalogItem("mug", "Mug", 1250, 10),))
    inventory = Inventory(conn)
    inventory.deliver(order_placed("o1", [("mug", 3)]))
    inventory.deliver(order_placed("o2", [("mug", 2)]))
    inventory.deliver(order_confirmed("o2"))

    level = set_stock(conn, "mug", 40)

    assert level == StockLevel("mug", "Mug", 1250, available=40, reserved=3, sold=2)
    assert level.on_hand == 45
    assert stock_levels(conn) == [level]


def test_set_stock_refuses_unknown_skus_and_negative_levels(
        conn: psycopg.Connection[Any]) -> None:
    seed_catalog(conn, (CatalogItem("mug", "Mug", 1250, 10),))

    with pytest.raises(UnknownSku, match="nope"):
        set_stock(conn, "nope", 1)
    with pytest.raises(InvalidStockLevel):
        set_stock(conn, "mug", -1)
    assert stock_levels(conn)[0].available == 10
