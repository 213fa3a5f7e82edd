"""Persist a :class:`Payment` in the ``payments`` table, locked for the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from choreo.services.payments import attempts
from choreo.services.payments.domain import Payment, PaymentStatus

SCHEMA = Path(__file__).resolve().parent / "schema.sql"
"""The DDL of the table, applied at start-up."""

CREATE = "INSERT INTO payments (order_id) VALUES (%s) ON CONFLICT (order_id) DO NOTHING"
LOCK = """
SELECT order_id, status, token, reserved_cents, charge_id, captured_cents, refunded_cents,
       decline_reason, cancel_reason, deadline_at
FROM payments WHERE order_id = %s FOR UPDATE
"""
UPDATE = """
UPDATE payments SET status = %(status)s, token = %(token)s,
       reserved_cents = %(reserved_cents)s, charge_id = %(charge_id)s,
       captured_cents = %(captured_cents)s, refunded_cents = %(refunded_cents)s,
       decline_reason = %(decline_reason)s, cancel_reason = %(cancel_reason)s,
       deadline_at = %(deadline_at)s,
       cancelled_at = CASE WHEN %(cancel_reason)s::text IS NULL THEN NULL
                           ELSE coalesce(cancelled_at, now()) END,
       updated_at = now()
WHERE order_id = %(order_id)s
"""


def lock(conn: psycopg.Connection[Any], order_id: str) -> Payment:
    """The order's payment, created if new, row-locked until the transaction ends.

    Whichever event of an order arrives first creates the row, and every handler of
    that order holds its lock across the provider call, so concurrent deliveries for
    one order (two topics, two replicas) run one after the other and the second sees
    what the first decided.

    The charge attempt is read in a statement of its own, after the lock was granted:
    under READ COMMITTED each statement takes a fresh snapshot, so this one sees an
    attempt that the previous holder committed while this transaction waited (a join
    in the locking statement would not: it keeps the snapshot from before the wait).
    """
    conn.execute(CREATE, (order_id,))
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(LOCK, (order_id,)).fetchone()
    assert row is not None, "created or found just above, in this transaction"
    return Payment(**{**row, "status": PaymentStatus(row["status"])},
                   attempt=attempts.find(conn, order_id))


def save(conn: psycopg.Connection[Any], payment: Payment) -> None:
    conn.execute(UPDATE, {**asdict(payment), "status": payment.status.value})


def statuses(conn: psycopg.Connection[Any], order_ids: Sequence[str]) -> dict[str, str]:
    """Each known order's payment status, read in one statement."""
    rows = conn.execute("SELECT order_id, status FROM payments WHERE order_id = ANY(%s)",
                        (list(order_ids),)).fetchall()
    return dict(rows)
