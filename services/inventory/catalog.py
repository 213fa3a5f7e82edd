"""The SKU catalog: seed data for a fresh database, and the operator's view and restock.

These are the functions behind the command line (stock levels, setting stock); they run
in their own transaction on the given connection, or in a savepoint when the caller has
one open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from choreo.services.inventory.domain import InvalidStockLevel, UnknownSku


@dataclass(frozen=True)
class CatalogItem:
    sku: str
    name: str
    unit_price_cents: int
    available: int


@dataclass(frozen=True)
class StockLevel:
    sku: str
    name: str
    unit_price_cents: int
    available: int
    reserved: int
    sold: int

    @property
    def on_hand(self) -> int:
        """Units the inventory is accountable for: the sum the stock guarantee conserves."""
        return self.available + self.reserved + self.sold


SEED_CATALOG: tuple[CatalogItem, ...] = (
    CatalogItem("mug-white", "White mug", 1250, 100),
    CatalogItem("tee-black-m", "Black T-shirt, M", 1999, 50),
    CatalogItem("tee-black-l", "Black T-shirt, L", 1999, 50),
    CatalogItem("hoodie-grey-l", "Grey hoodie, L", 4900, 20),
    CatalogItem("cap-navy", "Navy cap", 1500, 40),
    CatalogItem("notebook-a5", "A5 notebook", 900, 200),
    CatalogItem("sticker-pack", "Sticker pack", 450, 500),
    CatalogItem("print-signed", "Signed limited print", 15000, 3),
)
"""A small shop to place orders against; print-signed is scarce on purpose, so that
concurrent orders run into StockReservationFailed without any set-up."""

def seed_catalog(conn: psycopg.Connection[Any],
                 items: tuple[CatalogItem, ...] = SEED_CATALOG) -> int:
    """Insert ``items`` if the catalog is empty; returns how many rows were inserted.

    Only an empty catalog is seeded, so a restart never undoes an operator's changes.
    Two replicas starting together may both find it empty; ON CONFLICT makes the second
    insert a no-op.
    """
    with conn.transaction():
        if conn.execute("SELECT EXISTS (SELECT 1 FROM stock_items)").fetchone() == (True,):
            return 0
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO stock_items (sku, name, unit_price_cents, available) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (sku) DO NOTHING",
                [(i.sku, i.name, i.unit_price_cents, i.available) for i in items],
            )
            return cursor.rowcount


def set_stock(conn: psycopg.Connection[Any], sku: str, available: int) -> StockLevel:
    """Set a SKU's available units (restock or write-off); reserved and sold stay as they are.

    This is the one operation that changes a SKU's on-hand total on purpose.
    """
    if available < 0:
        raise InvalidStockLevel(f"available must be at least 0, not {available}")
    with conn.transaction():
        row = conn.execute(
            "UPDATE stock_items SET available = %s, updated_at = now() WHERE sku = %s "
            "RETURNING sku, name, unit_price_cents, available, reserved, sold",
            (available, sku),
        ).fetchone()
    if row is None:
        raise UnknownSku(f"no SKU {sku!r} in the catalog")
    return StockLevel(*row)


def stock_levels(conn: psycopg.Connection[Any]) -> list[StockLevel]:
    """Every SKU's counters, by SKU, read in one snapshot."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT sku, name, unit_price_cents, available, reserved, sold FROM stock_items "
            "ORDER BY sku"
        ).fetchall()
    return [StockLevel(*row) for row in rows]


def stock_up(conn: psycopg.Connection[Any], items: Iterable[CatalogItem]) -> None:
    """Add the SKUs that are missing and raise the others' available units to at least the
    item's figure: how tests and benchmarks give themselves stock of their own."""
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO stock_items (sku, name, unit_price_cents, available) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (sku) DO UPDATE "
            "SET available = GREATEST(stock_items.available, EXCLUDED.available), "
            "updated_at = now()",
            [(i.sku, i.name, i.unit_price_cents, i.available) for i in items],
        )


def levels_of(conn: psycopg.Connection[Any], skus: Sequence[str]) -> dict[str, StockLevel]:
    """The counters of ``skus`` (those that exist), read in one statement."""
    rows = conn.execute(
        "SELECT sku, name, unit_price_cents, available, reserved, sold FROM stock_items "
        "WHERE sku = ANY(%s)", (list(skus),)
    ).fetchall()
    return {row[0]: StockLevel(*row) for row in rows}
