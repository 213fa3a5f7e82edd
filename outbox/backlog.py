"""What is waiting in a consumer's own database, as gauges: its dead letters, by status,
the WAL its outbox's replication slots have not confirmed yet, and in polling mode the
outbox rows the relay has not published.

A slot's unconfirmed WAL is CDC's backlog as PostgreSQL sees it, wherever Debezium runs:
it grows while Connect is down or behind, and PostgreSQL keeps every byte of it on disk.
Both are read with one cheap query each, a few times a minute, by the consumer loop.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from prometheus_client import Gauge

from choreo.outbox.deadletter import ACTIVE

DEAD_LETTERS = Gauge("choreo_dead_letters", "Dead letters and parked events not yet settled",
                     ["consumer", "status"])
OUTBOX_PENDING = Gauge("choreo_outbox_pending_rows",
                       "Outbox rows of this database the polling relay has not published yet"
                       " (0 in CDC mode, where slot lag is the backlog)")
SLOT_LAG = Gauge("choreo_replication_slot_lag_bytes",
                 "WAL a replication slot of this database has not confirmed (CDC's backlog)",
                 ["slot"])

COUNT_ACTIVE = """
SELECT status, count(*) FROM dead_letters WHERE consumer = %s AND status = ANY(%s)
GROUP BY status
"""
RELAY_POSITION = "SELECT min(after_seq) FROM outbox_relay"
UNPUBLISHED = "SELECT count(*) FROM outbox WHERE seq > %s"
SLOT_LAGS = """
SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)
FROM pg_replication_slots WHERE database = current_database() AND confirmed_flush_lsn IS NOT NULL
"""

log = logging.getLogger(__name__)


def refresh(conn: psycopg.Connection[Any], consumer: str) -> None:
    """Outside any transaction of the caller's: one snapshot per statement, autocommitted
    as the caller's session is. A failed read is logged and skipped, never raised: the
    session holds the consumer's partition leases, and a gauge is not worth them."""
    try:
        read(conn, consumer)
    except psycopg.Error as error:
        log.warning("backlog gauges not read this round: %s", error,
                    extra={"consumer": consumer})


def read(conn: psycopg.Connection[Any], consumer: str) -> None:
    counts = dict(conn.execute(COUNT_ACTIVE, (consumer, list(ACTIVE))).fetchall())
    for status in ACTIVE:
        DEAD_LETTERS.labels(consumer, status).set(counts.get(status, 0))
    after = conn.execute(RELAY_POSITION).fetchone()[0]  # type: ignore[index]
    OUTBOX_PENDING.set(0 if after is None else conn.execute(UNPUBLISHED, (after,)).fetchone()[0])
    try:
        for slot, lag in conn.execute(SLOT_LAGS).fetchall():
            SLOT_LAG.labels(slot).set(float(lag))
    except psycopg.errors.InsufficientPrivilege as error:
        log.debug("slot lag not readable: %s", error)
