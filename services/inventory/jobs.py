"""The expiry sweeper: a reservation nobody confirmed or released in time goes back to stock.

This is the inventory's deadline without a coordinator. If payments or the order service
never answer (crashed, event dead-lettered), the units would otherwise stay reserved
forever; the sweeper guarantees every reservation ends sold or released.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from opentelemetry.trace import SpanKind

from choreo.outbox import OutboxWriter, PeriodicJob, continued_span
from choreo.services.inventory import domain, store
from choreo.services.inventory.domain import ReleaseReason, Status
from choreo.services.inventory.store import Counter

log = logging.getLogger(__name__)

EXPIRY_BATCH_SIZE = 200
EXPIRY_INTERVAL_S = 1.0


def release_expired(conn: psycopg.Connection[Any], writer: OutboxWriter,
                    batch_size: int = EXPIRY_BATCH_SIZE) -> int:
    """Release one batch of expired reservations in the caller's transaction.

    Emits StockReleased(reason="expired") for each and returns how many it released.
    Rows a handler has locked right now are skipped, not waited for, so a sweep never
    stalls the consumer nor races it: whoever locks the row first decides.
    """
    order_ids = store.lock_expired(conn, batch_size)
    if not order_ids:
        return 0
    units = domain.units_per_sku(store.reserved_lines(conn, order_ids))
    store.move(conn, units, Counter.RESERVED, Counter.AVAILABLE)
    store.set_status(conn, order_ids, Status.RELEASED, ReleaseReason.EXPIRED)
    traces = store.saga_traces(conn, order_ids)
    for order_id in order_ids:
        with continued_span("reservation expired", traces.get(order_id, ""), SpanKind.INTERNAL):
            writer.emit(conn, "StockReleased", order_id,
                        {"order_id": order_id, "reason": ReleaseReason.EXPIRED.value})
    log.info("released %d expired reservations", len(order_ids))
    return len(order_ids)


def expiry_job(interval_s: float = EXPIRY_INTERVAL_S,
               batch_size: int = EXPIRY_BATCH_SIZE) -> PeriodicJob:
    """One batch per run; a backlog larger than a batch drains over the next runs."""

    def run(conn: psycopg.Connection[Any], writer: OutboxWriter) -> None:
        release_expired(conn, writer, batch_size)

    return PeriodicJob(name="expire-reservations", interval_s=interval_s, run=run)
