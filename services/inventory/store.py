"""The inventory's SQL: reservation rows and the stock counters, in the caller's transaction.

Lock order, which every writer follows so that concurrent handlers never deadlock: first
the order's reservation row, then SKU rows in ascending SKU order. The expiry sweeper
locks its batch of reservation rows first and then all their SKUs at once, sorted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from choreo.outbox import current_traceparent
from choreo.services.inventory.domain import Line, PricedLine, ReleaseReason, Status, StockRow

SCHEMA_SQL = Path(__file__).resolve().parent / "schema.sql"
"""The DDL of the tables this module reads and writes."""


class Counter(StrEnum):
    """The three stock counters of a SKU; a move takes units from one into another."""

    AVAILABLE = "available"
    RESERVED = "reserved"
    SOLD = "sold"


@dataclass(frozen=True)
class Reservation:
    status: Status
    reason: ReleaseReason | None


def claim_order(conn: psycopg.Connection[Any], order_id: str) -> bool:
    """Create the order's row, or report that it exists (a duplicate or a cancellation).

    The row is inserted as FAILED, the outcome until every line is taken, and updated in
    the same transaction, so nobody ever sees it half-done. Inserting before touching
    stock makes the row the order's lock: a concurrent cancellation of this order waits
    for this transaction and then finds the row.
    """
    cursor = conn.execute(
        "INSERT INTO reservations (order_id, status) VALUES (%s, %s) "
        "ON CONFLICT (order_id) DO NOTHING",
        (order_id, Status.FAILED.value),
    )
    return cursor.rowcount == 1


def remember_cancellation(conn: psycopg.Connection[Any], order_id: str,
                          reason: ReleaseReason) -> bool:
    """Record a cancellation of an order not seen yet; False if the order has a row."""
    cursor = conn.execute(
        "INSERT INTO reservations (order_id, status, reason) VALUES (%s, %s, %s) "
        "ON CONFLICT (order_id) DO NOTHING",
        (order_id, Status.CANCELLED.value, reason.value),
    )
    return cursor.rowcount == 1


def lock_reservation(conn: psycopg.Connection[Any], order_id: str) -> Reservation | None:
    row = conn.execute(
        "SELECT status, reason FROM reservations WHERE order_id = %s FOR UPDATE", (order_id,)
    ).fetchone()
    if row is None:
        return None
    return Reservation(Status(row[0]), ReleaseReason(row[1]) if row[1] else None)


def lock_reservations(conn: psycopg.Connection[Any], order_ids: Sequence[str]) -> None:
    """The orders' rows that exist, locked in order id order."""
    conn.execute("SELECT 1 FROM reservations WHERE order_id = ANY(%s) ORDER BY order_id"
                 " FOR UPDATE", (list(order_ids),))


def lock_stock(conn: psycopg.Connection[Any], skus: Iterable[str]) -> dict[str, StockRow]:
    """The catalog rows of ``skus``, locked in SKU order; unknown SKUs are simply absent."""
    rows = conn.execute(
        "SELECT sku, unit_price_cents, available FROM stock_items "
        "WHERE sku = ANY(%s) ORDER BY sku FOR UPDATE",
        (sorted(set(skus)),),
    ).fetchall()
    return {sku: StockRow(sku, price, available) for sku, price, available in rows}


def move(conn: psycopg.Connection[Any], quantities: Mapping[str, int], source: Counter,
         target: Counter) -> None:
    """Move units between two counters of each SKU, one SKU at a time in SKU order.

    The CHECK constraints make a move that would drive a counter negative abort the
    transaction; the callers check availability first, so that is only a backstop.
    """
    statement = sql.SQL(
        "UPDATE stock_items SET {source} = {source} - %(q)s, {target} = {target} + %(q)s, "
        "updated_at = now() WHERE sku = %(sku)s"
    ).format(source=sql.Identifier(source.value), target=sql.Identifier(target.value))
    for sku in sorted(quantities):
        conn.execute(statement, {"q": quantities[sku], "sku": sku})


def mark_reserved(conn: psycopg.Connection[Any], order_id: str, lines: Sequence[PricedLine],
                  ttl_s: float) -> datetime:
    """Record the taken lines and the expiry (database clock); returns ``expires_at``."""
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO reservation_lines (order_id, sku, quantity, unit_price_cents) "
            "VALUES (%s, %s, %s, %s)",
            [(order_id, line.sku, line.quantity, line.unit_price_cents) for line in lines],
        )
    row = conn.execute(
        "UPDATE reservations SET status = %s, expires_at = now() + make_interval(secs => %s), "
        "traceparent = %s, updated_at = now() WHERE order_id = %s RETURNING expires_at",
        (Status.RESERVED.value, ttl_s, current_traceparent(), order_id),
    ).fetchone()
    assert row is not None, "claim_order inserted this row in the same transaction"
    expires_at: datetime = row[0]
    return expires_at


def set_status(conn: psycopg.Connection[Any], order_ids: Sequence[str], status: Status,
               reason: ReleaseReason | None = None) -> None:
    conn.execute(
        "UPDATE reservations SET status = %s, reason = %s, updated_at = now() "
        "WHERE order_id = ANY(%s)",
        (status.value, reason.value if reason else None, list(order_ids)),
    )


def reserved_lines(conn: psycopg.Connection[Any], order_ids: Sequence[str]) -> list[Line]:
    """The lines of the given orders (one Line per order and SKU)."""
    rows = conn.execute(
        "SELECT sku, quantity FROM reservation_lines WHERE order_id = ANY(%s) "
        "ORDER BY order_id, sku",
        (list(order_ids),),
    ).fetchall()
    return [Line(sku, quantity) for sku, quantity in rows]


def saga_traces(conn: psycopg.Connection[Any], order_ids: Sequence[str]) -> dict[str, str]:
    """The traceparent each reservation was made under, for events emitted later."""
    rows = conn.execute("SELECT order_id, traceparent FROM reservations"
                        " WHERE order_id = ANY(%s)", (list(order_ids),)).fetchall()
    return dict(rows)


def lock_expired(conn: psycopg.Connection[Any], limit: int) -> list[str]:
    """Up to ``limit`` reservations past their expiry, skipping any a handler holds now.

    A skipped row is being confirmed or released at this very moment; if it is still
    reserved afterwards, the next sweep takes it.
    """
    rows = conn.execute(
        "SELECT order_id FROM reservations WHERE status = %s AND expires_at <= now() "
        "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (Status.RESERVED.value, limit),
    ).fetchall()
    return [order_id for (order_id,) in rows]


def open_reservations(conn: psycopg.Connection[Any], order_ids: Sequence[str]) -> list[str]:
    """Which of ``order_ids`` still hold stock (an auditor's question after a run)."""
    rows = conn.execute("SELECT order_id FROM reservations"
                        " WHERE order_id = ANY(%s) AND status = 'reserved'", (list(order_ids),))
    return [order_id for (order_id,) in rows.fetchall()]


@dataclass(frozen=True)
class HeldReservation:
    order_id: str
    expires_at: datetime
    seconds_left: float
    """Negative once past its expiry: the sweeper has not released it yet."""


def expiring_reservations(conn: psycopg.Connection[Any], within_s: float, limit: int
                          ) -> list[HeldReservation]:
    """Reservations still holding stock that expire within ``within_s`` (or already did),
    soonest first: sagas that have waited on payment or confirmation far too long. No lock,
    so the expiry sweeper is never held up by someone looking."""
    rows = conn.execute(
        "SELECT order_id, expires_at, extract(epoch FROM expires_at - now())::float8"
        " FROM reservations WHERE status = %s AND expires_at < now() + make_interval(secs => %s)"
        " ORDER BY expires_at LIMIT %s", (Status.RESERVED.value, within_s, limit)).fetchall()
    return [HeldReservation(*row) for row in rows]
