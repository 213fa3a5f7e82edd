"""Deadlines without a coordinator: the order service cancels what stayed PENDING too long."""

from __future__ import annotations

from typing import Any

import psycopg
from opentelemetry.trace import SpanKind

from choreo.outbox import OutboxWriter, PeriodicJob, continued_span
from choreo.services.orders.domain import Transition
from choreo.services.orders.store import OVERDUE, finish

BATCH = 200


def cancel_overdue(conn: psycopg.Connection[Any], writer: OutboxWriter) -> None:
    """SKIP LOCKED: an order being confirmed right now is left to its handler."""
    for order_id, traceparent in conn.execute(OVERDUE, (BATCH,)).fetchall():
        with continued_span("order deadline passed", traceparent, SpanKind.INTERNAL):
            finish(conn, writer, order_id, Transition.cancel(str(order_id), "timeout"))


DEADLINE_JOB = PeriodicJob("cancel-overdue-orders", interval_s=1.0, run=cancel_overdue)
