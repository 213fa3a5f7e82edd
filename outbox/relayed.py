"""Has the relay published everything this database committed before a moment?

A consumer's lag only counts what is already in Kafka. A row still in the outbox, which
Debezium or the polling relay has not published yet, is behind no consumer: the stack
looks idle while an event is on its way. Whoever must know that nothing is in flight
(a chaos run's quiescence, a test's wait) takes a :func:`mark` in each outbox database
and waits until :func:`reached` says the relay has passed it.

- **CDC**: the mark is the WAL position before a write of the connector's own heartbeat
  row; Debezium confirms a slot position only once every change before it is in Kafka
  (Connect commits source offsets after the broker acknowledged them), and the heartbeat
  row gives it a change to confirm even when the database is otherwise idle.
- **Polling**: the mark is a :class:`Position` at the end of the table, as the relay takes
  its own; the relay's saved position covers it once every row visible then is published.
"""

from __future__ import annotations

from typing import Any

import psycopg

from choreo.outbox.poller import Position, load_position, position_at_end

Mark = str | Position
"""An LSN (CDC) or a polling relay position."""

CURRENT_LSN = "SELECT pg_current_wal_lsn()::text"
SLOT_REACHED = """
SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s
"""


def mark(conn: psycopg.Connection[Any], slot: str | None, heartbeat: str = "") -> Mark:
    """Now, in the terms of this database's relay: ``slot`` is its replication slot, or
    None in polling mode; ``heartbeat`` the connector's heartbeat statement (CDC).
    ``conn`` must be in autocommit mode."""
    if slot is None:
        return position_at_end(conn)
    lsn = conn.execute(CURRENT_LSN).fetchone()[0]  # type: ignore[index]
    if heartbeat:
        conn.execute(heartbeat)
    return str(lsn)


def reached(conn: psycopg.Connection[Any], slot: str | None, at: Mark) -> bool:
    """Whether everything committed before ``at`` is published."""
    if isinstance(at, Position):
        position = load_position(conn)
        return position is not None and covers(position, at)
    row = conn.execute(SLOT_REACHED, (at, slot)).fetchone()
    return bool(row and row[0])


def covers(position: Position, at: Position) -> bool:
    """Whether a relay at ``position`` has published every row visible when ``at`` was
    taken. Such a row's seq is at most ``at.after_seq``, and its transaction had committed
    (below ``at.running_from``, not in ``at.in_flight``); ``position`` leaves out only rows
    above its ``after_seq`` and those of its own running transactions (listed, or from its
    ``running_from`` on). So none of those may be a transaction committed at ``at``."""
    if position.after_seq < at.after_seq:
        return False
    still_running = set(at.in_flight)
    unlisted = range(position.running_from, at.running_from)
    if any(xid not in still_running for xid in unlisted):
        return False
    return all(xid in still_running for xid in position.in_flight if xid < at.running_from)
