"""The order service's SQL, and the one transition every outcome goes through.

A status change, its history row and its event are written together, in the caller's
transaction. They are built once, as statements (``transition_statements``), which
``finish`` runs on a synchronous connection (handlers, the deadline job) and the HTTP
intake on its asyncio one: no async twin to keep in step.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from choreo.outbox import OutboxWriter
from choreo.services.orders.domain import Status, Transition

INSERT_ORDER = """
INSERT INTO orders (id, idempotency_key, request_hash, customer_id, items, payment_token,
                    payment_method, status, deadline_at, traceparent)
VALUES (%s, %s, %s, %s, %s, %s, %s, 'PENDING', now() + make_interval(secs => %s), %s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, deadline_at
"""
FIND_BY_KEY = """
SELECT id, request_hash, deadline_at, status FROM orders WHERE idempotency_key = %s
"""
LOCK_ORDER = "SELECT status, traceparent FROM orders WHERE id = %s FOR UPDATE"
REGISTER_CUSTOMER = "INSERT INTO customers (id) VALUES (%s) ON CONFLICT (id) DO NOTHING"
SET_CUSTOMER_STATUS = """
INSERT INTO customers (id, blocked, reason) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET blocked = excluded.blocked, reason = excluded.reason,
                               updated_at = now()
"""
BLOCKED_REASON = "SELECT reason FROM customers WHERE id = %s AND blocked"
SET_STATUS = """
UPDATE orders SET status = %s, reason = %s, total_cents = coalesce(%s, total_cents),
                  updated_at = now()
WHERE id = %s
"""
INSERT_HISTORY = """
INSERT INTO order_history (order_id, event_type, event_id, source, detail)
VALUES (%s, %s, %s, %s, %s)
"""
GET_ORDER = """
SELECT id, customer_id, items, status, reason, total_cents, deadline_at, created_at, updated_at
FROM orders WHERE id = %s
"""
GET_HISTORY = """
SELECT event_type, event_id, source, detail, seen_at FROM order_history
WHERE order_id = %s ORDER BY seq
"""
OVERDUE = """
SELECT id, traceparent FROM orders WHERE status = 'PENDING' AND deadline_at < now()
ORDER BY deadline_at LIMIT %s FOR UPDATE SKIP LOCKED
"""


def parse_order_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


Statement = tuple[str, tuple[object, ...]]


def record_history(conn: psycopg.Connection[Any], order_id: uuid.UUID, event_type: str,
                   event_id: uuid.UUID, source: str, detail: dict[str, Any]) -> None:
    conn.execute(*history_statement(order_id, event_type, event_id, source, detail))


def history_statement(order_id: uuid.UUID, event_type: str, event_id: uuid.UUID,
                      source: str, detail: Mapping[str, Any]) -> Statement:
    return INSERT_HISTORY, (order_id, event_type, event_id, source, json.dumps(detail))


@contextmanager
def event_statements(writer: OutboxWriter, order_id: uuid.UUID, event_type: str,
                     payload: Mapping[str, Any]) -> Iterator[list[Statement]]:
    """The order's own event: its outbox row, then its history row, for the caller to run
    inside the block.

    A context manager, so the outbox write's span is current while the caller runs them
    and records the error if one fails. (Yielded one by one from a generator, a failed
    insert reached the span only as the generator's close, and the span ended OK.)
    """
    with writer.writing(event_type, str(order_id), payload) as event:
        yield [event.statement,
               history_statement(order_id, event_type, event.event_id, writer.source,
                                 payload)]


@contextmanager
def transition_statements(writer: OutboxWriter, order_id: uuid.UUID,
                          transition: Transition) -> Iterator[list[Statement]]:
    """Move the (already locked) order on and emit the event that says so."""
    with event_statements(writer, order_id, transition.event_type,
                          transition.payload) as statements:
        yield [(SET_STATUS, (transition.status, transition.reason, transition.total_cents,
                             order_id)), *statements]


def locked_status(conn: psycopg.Connection[Any], order_id: uuid.UUID) -> Status | None:
    row = conn.execute(LOCK_ORDER, (order_id,)).fetchone()
    return Status(row[0]) if row else None


def finish(conn: psycopg.Connection[Any], writer: OutboxWriter, order_id: uuid.UUID,
           transition: Transition) -> None:
    """Move the (already locked) order on and emit the event that says so."""
    with transition_statements(writer, order_id, transition) as statements:
        for statement in statements:
            conn.execute(*statement)


CUSTOMER_ORDERS = """
SELECT o.id::text, o.idempotency_key, o.status, o.reason, o.items, o.total_cents,
       coalesce(array_agg(h.event_type ORDER BY h.seq) FILTER (WHERE h.seq IS NOT NULL), '{}'),
       coalesce(array_agg(h.event_id::text ORDER BY h.seq) FILTER (WHERE h.seq IS NOT NULL),
                '{}'),
       o.payment_method
FROM orders o LEFT JOIN order_history h ON h.order_id = o.id
WHERE o.customer_id = %s
GROUP BY o.id
"""
"""A customer's orders with the types and ids of the events each saw, in one snapshot."""

SETTLED_AMONG = """
SELECT o.id::text, o.status, o.created_at, h.seen_at
FROM orders o
JOIN LATERAL (SELECT seen_at FROM order_history
              WHERE order_id = o.id AND event_type = ANY(%s) ORDER BY seq LIMIT 1) h ON true
WHERE o.id = ANY(%s::uuid[]) AND o.status <> 'PENDING'
"""
"""Of the given orders, those settled: status, creation and the terminal event's arrival."""

LAST_HISTORY_SEQ = "SELECT max(seq) FROM order_history"
"""Moves whenever any saga sees an event: a quiet value means an idle pipeline."""


def saga_traceparent(conn: psycopg.Connection[Any], order_id: uuid.UUID) -> str | None:
    """The traceparent the order's saga runs under (None: no such order)."""
    row = conn.execute("SELECT traceparent FROM orders WHERE id = %s", (order_id,)).fetchone()
    return None if row is None else row[0]


# What an operator looks at (the web console): plain reads, no locks. -------------------

@dataclass(frozen=True)
class OrderView:
    id: str
    customer_id: str
    items: list[dict[str, Any]]
    status: str
    reason: str | None
    total_cents: int | None
    deadline_at: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class HistoryEntry:
    event_type: str
    event_id: str
    source: str
    detail: dict[str, Any]
    seen_at: datetime


ORDER_COLUMNS = ("id::text, customer_id, items, status, reason, total_cents, deadline_at,"
                 " created_at, updated_at")


def get_order(conn: psycopg.Connection[Any], order_id: uuid.UUID) -> OrderView | None:
    row = conn.execute(GET_ORDER, (order_id,)).fetchone()
    return None if row is None else OrderView(str(row[0]), *row[1:])


def get_history(conn: psycopg.Connection[Any], order_id: uuid.UUID) -> list[HistoryEntry]:
    """The events the order's saga has seen, in the order they arrived."""
    return [HistoryEntry(event_type, str(event_id), source, detail, seen_at)
            for event_type, event_id, source, detail, seen_at
            in conn.execute(GET_HISTORY, (order_id,)).fetchall()]


def status_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """How many orders are in each status (every status, zero when none)."""
    counts = {status.value: 0 for status in Status}
    counts.update(conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())
    return counts


def recent_orders(conn: psycopg.Connection[Any], status: str | None, limit: int
                  ) -> list[OrderView]:
    """The newest orders, of one status or of any."""
    rows = conn.execute(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE %(status)s::text IS NULL"
        " OR status = %(status)s ORDER BY created_at DESC LIMIT %(limit)s",
        {"status": status, "limit": limit}).fetchall()
    return [OrderView(*row) for row in rows]


def orders_with_id_prefix(conn: psycopg.Connection[Any], prefix: str, limit: int
                          ) -> list[OrderView]:
    """Orders whose id starts with ``prefix`` (hex digits and dashes), newest first."""
    cleaned = "".join(ch for ch in prefix.lower() if ch in "0123456789abcdef-")
    rows = conn.execute(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE id::text LIKE %s"
        " ORDER BY created_at DESC LIMIT %s", (cleaned + "%", limit)).fetchall()
    return [OrderView(*row) for row in rows]


def overdue_orders(conn: psycopg.Connection[Any], limit: int) -> list[OrderView]:
    """PENDING orders past their deadline: the deadline job should have cancelled them.

    Unlike ``OVERDUE`` (the job's), this takes no lock, so it never holds the job up.
    """
    rows = conn.execute(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'PENDING' AND deadline_at < now()"
        " ORDER BY deadline_at LIMIT %s", (limit,)).fetchall()
    return [OrderView(*row) for row in rows]
