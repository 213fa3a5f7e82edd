"""The wallet's SQL: orders, balances and the entries that explain them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from choreo.services.wallet.domain import Points, Status, WalletOrder

SCHEMA = Path(__file__).resolve().parent / "schema.sql"

CREATE_ORDER = "INSERT INTO wallet_orders (order_id) VALUES (%s) ON CONFLICT DO NOTHING"
LOCK_ORDER = """
SELECT order_id, customer_id, method, total_cents, deadline_at, status, cancel_reason, points,
       points_state
FROM wallet_orders WHERE order_id = %s FOR UPDATE
"""
SAVE_ORDER = """
UPDATE wallet_orders SET customer_id = %(customer_id)s, method = %(method)s,
       total_cents = %(total_cents)s, deadline_at = %(deadline_at)s, status = %(status)s,
       cancel_reason = %(cancel_reason)s, points = %(points)s, points_state = %(points_state)s,
       updated_at = now()
WHERE order_id = %(order_id)s
"""
CREATE_ORDERS = """
INSERT INTO wallet_orders (order_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING
"""
LOCK_ORDERS = """
SELECT order_id FROM wallet_orders WHERE order_id = ANY(%s) ORDER BY order_id FOR UPDATE
"""
CUSTOMERS_OF = """
SELECT DISTINCT customer_id FROM wallet_orders
WHERE order_id = ANY(%s) AND customer_id IS NOT NULL
"""
CREATE_WALLETS = """
INSERT INTO wallets (customer_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING
"""
LOCK_WALLETS = """
SELECT customer_id FROM wallets WHERE customer_id = ANY(%s) ORDER BY customer_id FOR UPDATE
"""
DEBIT = """
UPDATE wallets SET balance_cents = balance_cents - %(amount)s, updated_at = now()
WHERE customer_id = %(customer)s AND balance_cents >= %(amount)s
RETURNING balance_cents
"""
CREDIT = """
UPDATE wallets SET balance_cents = balance_cents + %(amount)s, updated_at = now()
WHERE customer_id = %(customer)s
RETURNING balance_cents
"""
BALANCE = "SELECT balance_cents FROM wallets WHERE customer_id = %s"
ADD_POINTS = """
UPDATE wallets SET points = points + %s, updated_at = now() WHERE customer_id = %s
"""
ENTRY = """
INSERT INTO wallet_entries (customer_id, kind, order_id, amount_cents) VALUES (%s, %s, %s, %s)
"""
SHOW = "SELECT balance_cents, points, updated_at FROM wallets WHERE customer_id = %s"
ENTRIES_OF = "SELECT kind, order_id, amount_cents FROM wallet_entries WHERE customer_id = %s"


def lock_order(conn: psycopg.Connection[Any], order_id: str) -> WalletOrder:
    """The order, created if new, row-locked until the transaction ends: whichever event
    comes first creates it, and one order's handlers run one after the other."""
    conn.execute(CREATE_ORDER, (order_id,))
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(LOCK_ORDER, (order_id,)).fetchone()
    assert row is not None, "created or found just above, in this transaction"
    return WalletOrder(**{**row, "status": Status(row["status"]),
                          "points_state": Points(row["points_state"])})


def save_order(conn: psycopg.Connection[Any], order: WalletOrder) -> None:
    conn.execute(SAVE_ORDER, {**asdict(order), "status": order.status.value,
                              "points_state": order.points_state.value})


def lock_orders(conn: psycopg.Connection[Any], order_ids: list[str]) -> None:
    """The rows of ``order_ids``, created if new, locked in order id order."""
    conn.execute(CREATE_ORDERS, (order_ids,))
    conn.execute(LOCK_ORDERS, (order_ids,)).fetchall()


def lock_wallets(conn: psycopg.Connection[Any], customers: Iterable[str]) -> None:
    """Every wallet of ``customers``, created if new, locked in one order (customer id):
    two replicas' runs touching the same customers then wait rather than deadlock."""
    ordered = sorted(set(customers))
    conn.execute(CREATE_WALLETS, (ordered,))
    conn.execute(LOCK_WALLETS, (ordered,)).fetchall()


def customers_of(conn: psycopg.Connection[Any], order_ids: list[str]) -> list[str]:
    return [row[0] for row in conn.execute(CUSTOMERS_OF, (order_ids,)).fetchall()]


def debit(conn: psycopg.Connection[Any], customer: str, order_id: str, amount: int
          ) -> int | None:
    """The balance left, with the debit entry written; None when the balance is short."""
    row = conn.execute(DEBIT, {"customer": customer, "amount": amount}).fetchone()
    if row is None:
        return None
    conn.execute(ENTRY, (customer, "debit", order_id, amount))
    return int(row[0])


def refund(conn: psycopg.Connection[Any], customer: str, order_id: str, amount: int) -> None:
    conn.execute(CREDIT, {"customer": customer, "amount": amount})
    conn.execute(ENTRY, (customer, "refund", order_id, amount))


def balance(conn: psycopg.Connection[Any], customer: str) -> int:
    row = conn.execute(BALANCE, (customer,)).fetchone()
    return int(row[0]) if row else 0


def add_points(conn: psycopg.Connection[Any], customer: str, points: int) -> None:
    conn.execute(ADD_POINTS, (points, customer))
