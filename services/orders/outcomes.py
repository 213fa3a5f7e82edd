"""Saga outcomes and durations as Prometheus metrics, read from the orders table.

A saga ends in whichever process settles it (an event handler, the deadline job, a
customer's cancel), inside a transaction that may still roll back, so counting at that
moment would count retried batches twice. The worker instead reads what has settled,
once, a few seconds behind: rows whose ``updated_at`` lies in ``[cursor, now - lag)``.
The lag lets transactions that stamped ``updated_at`` but had not committed yet finish
first, so none is skipped past.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from prometheus_client import Counter, Histogram

from outbox.runner import PeriodicJob
from outbox.writer import OutboxWriter

SAGAS = Counter("choreo_sagas_total", "Sagas settled, by final status and the kind of reason",
                ["status", "reason"])
SAGA_SECONDS = Histogram(
    "choreo_saga_duration_seconds", "From the order's creation to its final status",
    ["status"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
COMMIT_LAG_S = 2.0
SETTLED_BETWEEN = """
SELECT status, reason, extract(epoch FROM updated_at - created_at), updated_at FROM orders
WHERE status <> 'PENDING' AND updated_at >= %s AND updated_at < now() - make_interval(secs => %s)
ORDER BY updated_at
"""


def reason_kind(reason: str | None) -> str:
    """``out_of_stock: mug requested 2, available 1`` -> ``out_of_stock``: a bounded label."""
    return (reason or "none").split(":", 1)[0].strip() or "none"


class SettledSagas:
    def __init__(self) -> None:
        self.cursor: datetime | None = None

    def observe(self, conn: psycopg.Connection[Any], _writer: OutboxWriter) -> None:
        if self.cursor is None:  # a restarted worker counts from now on, as counters do
            self.cursor = conn.execute("SELECT now()").fetchone()[0]
        rows = conn.execute(SETTLED_BETWEEN, (self.cursor, COMMIT_LAG_S)).fetchall()
        for status, reason, seconds, updated_at in rows:
            SAGAS.labels(status, reason_kind(reason)).inc()
            SAGA_SECONDS.labels(status).observe(float(seconds))
            self.cursor = updated_at
        if rows:  # rows at the cursor's instant were all read: start just after it
            self.cursor = conn.execute("SELECT %s::timestamptz + interval '1 microsecond'",
                                       (self.cursor,)).fetchone()[0]


def outcomes_job() -> PeriodicJob:
    return PeriodicJob("saga-outcome-metrics", interval_s=2.0, run=SettledSagas().observe)
