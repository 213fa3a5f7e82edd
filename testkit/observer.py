"""Read what the system holds for one chaos run, straight from where each fact lives.

An auditor's view, not a client's, read through each service's own store module: orders
and their histories from the order service's database, stock and reservations from the
inventory's, payment states from the payments service's, dead letters from all three,
and money from the psp's own ledger over its API. Each query is one statement, so what
it returns is one consistent moment of that database.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg

from choreo.outbox import deadletter
from choreo.services.inventory import catalog
from choreo.services.inventory import store as inventory_store
from choreo.services.notifier import app as notifier_app
from choreo.services.orders import store as orders_store
from choreo.services.payments import store as payments_store
from choreo.services.payments.psp_client import Charge
from choreo.services.wallet import store as wallet_store
from choreo.stack import manifest
from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop


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
    payment_method: str = "card"

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
class Wallet:
    balance_cents: int
    points: int
    entries: list[tuple[str, str | None, int]]
    """(kind, order id or None for a top-up, amount) of every movement of its money."""

    def total(self, kind: str) -> int:
        return sum(amount for entry_kind, _, amount in self.entries if entry_kind == kind)

    def of(self, order_id: str, kind: str) -> list[int]:
        return [amount for entry_kind, order, amount in self.entries
                if order == order_id and entry_kind == kind]


@dataclass(frozen=True)
class Snapshot:
    orders: list[OrderState]
    stock: dict[str, Stock]
    open_reservations: list[str]
    payment_status: dict[str, str]
    dead_letters: list[DeadLetter]
    charges: dict[str, list[Charge]] | None = None
    """Per order, from the psp; only in the final snapshot (one request per order)."""
    wallet: Wallet | None = None
    """The customer's wallet; only in the final snapshot."""
    messages: dict[str, Counter[str]] | None = None
    """Per order, the messages the notifier sent by kind; only in the final snapshot."""
    resends: int = 0
    """Requests the notifier answered with a message it had sent before (same key): what
    a provider without idempotency keys would have sent twice."""


class Observer:
    def __init__(self, settings: StackSettings, shop: Shop, customer: str,
                 skus: list[str]) -> None:
        self.settings = settings
        self.shop = shop
        self.customer = customer
        self.skus = skus

    def _connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.database_dsn(database), autocommit=True)

    def stock(self) -> dict[str, Stock]:
        with self._connect("inventory") as conn:
            levels = catalog.levels_of(conn, self.skus)
        return {sku: Stock(level.available, level.reserved, level.sold)
                for sku, level in levels.items()}

    def orders(self) -> list[OrderState]:
        with self._connect("orders") as conn:
            rows = conn.execute(orders_store.CUSTOMER_ORDERS, (self.customer,)).fetchall()
        return [OrderState(row[0], row[1], row[2], row[3], row[4], row[5], tuple(row[6]),
                           tuple(row[7]), row[8]) for row in rows]

    def dead_letters(self, order_ids: list[str]) -> list[DeadLetter]:
        letters = []
        for database in manifest.databases(outbox=True):
            with self._connect(database) as conn:
                letters += [DeadLetter(database, entry.consumer, entry.aggregate_key,
                                       entry.event_type, entry.status, entry.reason)
                            for entry in deadletter.entries_for_keys(conn, order_ids)]
        return letters

    def open_reservations(self, order_ids: list[str]) -> list[str]:
        with self._connect("inventory") as conn:
            return inventory_store.open_reservations(conn, order_ids)

    def payment_status(self, order_ids: list[str]) -> dict[str, str]:
        with self._connect("payments") as conn:
            return payments_store.statuses(conn, order_ids)

    def wallet(self) -> Wallet:
        with self._connect("wallet") as conn:
            shown = conn.execute(wallet_store.SHOW, (self.customer,)).fetchone()
            entries = conn.execute(wallet_store.ENTRIES_OF, (self.customer,)).fetchall()
        balance, points = (shown[0], shown[1]) if shown else (0, 0)
        return Wallet(balance, points, [(kind, order, amount) for kind, order, amount in entries])

    def messages(self, order_ids: list[str]) -> tuple[dict[str, Counter[str]], int]:
        """Per order, how many messages of each kind the notifier's ledger holds; and the
        re-sends its keys absorbed."""
        with self._connect("notifier") as conn:
            rows = conn.execute(notifier_app.KEYS_ABOUT, (order_ids,)).fetchall()
        sent: dict[str, Counter[str]] = {}
        for reference, key, _ in rows:
            sent.setdefault(reference, Counter())[key.rpartition(":")[2]] += 1
        return sent, sum(requests - 1 for _, _, requests in rows)

    def charges(self, order_ids: list[str]) -> dict[str, list[Charge]]:
        return {order_id: self.shop.psp.charges_for(order_id) for order_id in order_ids}

    def snapshot(self, with_money: bool = False) -> Snapshot:
        orders = self.orders()
        ids = [order.id for order in orders]
        messages, resends = self.messages(ids) if with_money else (None, 0)
        return Snapshot(
            orders=orders,
            stock=self.stock(),
            open_reservations=self.open_reservations(ids),
            payment_status=self.payment_status(ids),
            dead_letters=self.dead_letters(ids),
            charges=self.charges(ids) if with_money else None,
            wallet=self.wallet() if with_money else None,
            messages=messages,
            resends=resends,
        )
