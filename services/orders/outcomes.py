"""Saga outcomes and durations as Prometheus metrics, read from the orders table.

A saga ends in whichever process settles it (an event handler, the deadline job, a
customer's cancel), inside a transaction that may still roll back, so counting at that
moment would count retried batches twice. The worker instead reads, every 2 s, the orders
that reached a final status within the last ``WINDOW_S`` and counts each (order, status)
it has not counted yet. A transaction that stamped ``updated_at`` and committed late, even
by many seconds, is still inside the window when it becomes visible.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from prometheus_client import Counter, Histogram

from choreo.outbox import OutboxWriter, PeriodicJob

SAGAS = Counter("choreo_sagas_total", "Orders that reached a final status, by status and the"
                " kind of reason (a confirmed order cancelled later counts once for each)",
                ["status", "reason"])
SAGA_SECONDS = Histogram(
    "choreo_saga_duration_seconds", "From the order's creation to its final status",
    ["status"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
WINDOW_S = 30.0
SETTLED_LATELY = """
SELECT id, status, reason, extract(epoch FROM updated_at - created_at), updated_at, now()
FROM orders
WHERE status <> 'PENDING' AND updated_at >= now() - make_interval(secs => %s)
"""


def reason_kind(reason: str | None) -> str:
    """``out_of_stock: mug requested 2, available 1`` -> ``out_of_stock``: a bounded label."""
    return (reason or "none").split(":", 1)[0].strip() or "none"


class SettledSagas:
    def __init__(self) -> None:
        self.since: datetime | None = None
        """This process's counters start here: what settled before is not counted."""
        self.counted: dict[tuple[Any, str], datetime] = {}

    def observe(self, conn: psycopg.Connection[Any], _writer: OutboxWriter) -> None:
        rows = conn.execute(SETTLED_LATELY, (WINDOW_S,)).fetchall()
        if self.since is None:
            self.since = rows[0][5] if rows else conn.execute("SELECT now()").fetchone()[0]
        for order_id, status, reason, seconds, updated_at, _now in rows:
            if updated_at < self.since or (order_id, status) in self.counted:
                continue
            self.counted[(order_id, status)] = updated_at
            SAGAS.labels(status, reason_kind(reason)).inc()
            SAGA_SECONDS.labels(status).observe(float(seconds))
        if rows:
            horizon = rows[0][5] - timedelta(seconds=2 * WINDOW_S)
            self.counted = {key: at for key, at in self.counted.items() if at >= horizon}


def outcomes_job() -> PeriodicJob:
    return PeriodicJob("saga-outcome-metrics", interval_s=2.0, run=SettledSagas().observe)
