"""The charging state, committed on a connection of its own before the psp is called.

Why a second connection: the handler runs inside the consumer's transaction, which
also holds the inbox claim; whatever it writes is gone if the process dies while the
psp is still capturing. The attempt must outlive that, so it commits first, apart.

Why a table of its own rather than a status in the payments row: the consumer's
transaction holds the payment's row lock (it serialises one order's handlers), and in a
batched run it may hold it already from an earlier event of the same order, so a second
connection updating that row would wait for its own process forever. Rows of
``charge_attempts`` are only ever inserted, and only by this module, each insert
committed at once: nothing the consumer's transaction holds can block it.

Why it is race-free: an attempt is inserted only while the payment's row lock is held
(by the consumer's transaction), and read only after that lock was granted, in a
statement of its own (``store.lock``). So whoever locks the payment next sees every
attempt committed by whoever held it before, whether that one committed, rolled back
or died.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from choreo.services.payments.domain import ChargeAttempt

INSERT = """
INSERT INTO charge_attempts (order_id, token, amount_cents) VALUES (%s, %s, %s)
ON CONFLICT (order_id) DO NOTHING
"""
SELECT = "SELECT token, amount_cents FROM charge_attempts WHERE order_id = %s"


class AttemptLog:
    """Commits attempts on its own autocommit connection, opened on first use.

    Thread-safe: the runtime runs the handlers of different orders side by side, and
    each insert and its read-back must not interleave with another thread's.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> AttemptLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def record(self, order_id: str, attempt: ChargeAttempt) -> ChargeAttempt:
        """Commit the attempt unless the order has one; returns the one that counts.

        The caller holds the payment's lock and saw no attempt, so the insert normally
        wins; should one exist all the same, it is what may be in flight, and it wins.
        """
        with self._lock:
            conn = self._connection()
            conn.execute(INSERT, (order_id, attempt.token, attempt.amount_cents))
            return find(conn, order_id) or attempt

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn


def find(conn: psycopg.Connection[Any], order_id: str) -> ChargeAttempt | None:
    row = conn.execute(SELECT, (order_id,)).fetchone()
    return None if row is None else ChargeAttempt(row[0], int(row[1]))
