"""Read what the system holds for one chaos run, straight from where each fact lives.

An auditor's view, not a client's: orders and their histories from the order service's
database, stock and reservations from the inventory's, payment states from the payments
service's, dead letters from all three, and money from the psp's own ledger over its
API. Each query is one statement, so what it returns is one consistent moment of that
database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from infra.settings import OUTBOX_DATABASES, StackSettings
from infra.shop import Shop
from services.psp.client import Charge

ORDERS = """
SELECT o.id::text, o.idempotency_key, o.status, o.reason, o.items, o.total_cents,
       coalesce(array_agg(h.event_type ORDER BY h.seq) FILTER (WHERE h.seq IS NOT NULL), '{}'),
       coalesce(array_agg(h.event_id::text ORDER BY h.seq) FILTER (WHERE h.seq IS NOT NULL),
                '{}')
FROM orders o LEFT JOIN order_history h ON h.order_id = o.id
WHERE o.customer_id = %s
GROUP BY o.id
"""
STOCK = "SELECT sku, available, reserved, sold FROM stock_items WHERE sku = ANY(%s)"
OPEN_RESERVATIONS = ("SELECT order_id FROM reservations"
                     " WHERE order_id = ANY(%s) AND status = 'reserved'")
PAYMENTS = "SELECT order_id, status FROM payments WHERE order_id = ANY(%s)"
DEAD_LETTERS = ("SELECT consumer, aggregate_key, event_type, status, reason FROM dead_letters"
                " WHERE aggregate_key = ANY(%s) ORDER BY seq")


@dataclass(frozen=True)
class Stock:
    available: int
    reserved: int
    sold: int

    @property
    def total(self) -> int:
        return self.available + self.reserved + self.sold


@dataclass(frozen=True)
class OrderState:
    id: str
    key: str
    status: str
    reason: str | None
    items: list[dict[str, Any]]
    total_cents: int | None
    event_types: tuple[str, ...]
    event_ids: tuple[str, ...]

    def as_api(self) -> dict[str, Any]:
        """The shape ``GET /orders/{id}`` answers, for the checks written against it."""
        return {"id": self.id, "status": self.status, "reason": self.reason,
                "items": self.items, "total_cents": self.total_cents,
                "history": [{"event_type": event} for event in self.event_types]}


@dataclass(frozen=True)
class DeadLetter:
    service: str
    consumer: str
    key: str
    event_type: str | None
    status: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    orders: list[OrderState]
    stock: dict[str, Stock]
    open_reservations: list[str]
    payment_status: dict[str, str]
    dead_letters: list[DeadLetter]
    charges: dict[str, list[Charge]] | None = None
    """Per order, from the psp; only in the final snapshot (one request per order)."""


class Observer:
    def __init__(self, settings: StackSettings, shop: Shop, customer: str,
                 skus: list[str]) -> None:
        self.settings = settings
        self.shop = shop
        self.customer = customer
        self.skus = skus

    def _query(self, database: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.settings.database_dsn(database), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def stock(self) -> dict[str, Stock]:
        rows = self._query("inventory", STOCK, (self.skus,))
        return {sku: Stock(available, reserved, sold) for sku, available, reserved, sold in rows}

    def orders(self) -> list[OrderState]:
        return [OrderState(row[0], row[1], row[2], row[3], row[4], row[5], tuple(row[6]),
                           tuple(row[7]))
                for row in self._query("orders", ORDERS, (self.customer,))]

    def dead_letters(self, order_ids: list[str]) -> list[DeadLetter]:
        return [DeadLetter(database, *row) for database in OUTBOX_DATABASES
                for row in self._query(database, DEAD_LETTERS, (order_ids,))]

    def charges(self, order_ids: list[str]) -> dict[str, list[Charge]]:
        return {order_id: self.shop.psp.charges_for(order_id) for order_id in order_ids}

    def snapshot(self, with_money: bool = False) -> Snapshot:
        orders = self.orders()
        ids = [order.id for order in orders]
        return Snapshot(
            orders=orders,
            stock=self.stock(),
            open_reservations=[row[0] for row in
                               self._query("inventory", OPEN_RESERVATIONS, (ids,))],
            payment_status=dict(self._query("payments", PAYMENTS, (ids,))),
            dead_letters=self.dead_letters(ids),
            charges=self.charges(ids) if with_money else None,
        )
