"""A deadline on the database's answer, for the connections a consumer process keeps.

A link that is cut without a reset (a partition, a server that accepts and never
answers) leaves a statement waiting for ever: libpq has no read timeout, TCP keepalives
and ``tcp_user_timeout`` only notice a peer whose kernel stopped acknowledging, and the
server-side ``statement_timeout`` never starts for a query that never arrived. A chaos
run found it: payments' loop waited in a lease query on a blackholed link, holding no
partition, for as long as anyone looked.

So each watched connection is looked at every second; one that has had a command in
progress (libpq's ``ACTIVE``) for longer than ``answer_timeout_s`` has its socket shut
down. The wait then fails like any lost connection: the session is lost, its leases with
it, and the loop connects again. The server's own ``statement_timeout`` (set below the
deadline by ``outbox.session``) ends a statement that is merely slow first.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0


class AnswerWatchdog:
    """One thread per process looks at every watched connection, each with its own
    deadline (``watch``); started on first use."""

    def __init__(self) -> None:
        self._watched: weakref.WeakKeyDictionary[psycopg.Connection[Any], list[float]] = (
            weakref.WeakKeyDictionary())
        """Each connection's deadline, and since when it has had a command in progress."""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, conn: psycopg.Connection[Any], answer_timeout_s: float) -> None:
        with self._lock:
            self._watched[conn] = [answer_timeout_s, 0.0]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_INTERVAL_S)
            with self._lock:
                watched = list(self._watched.items())
            for conn, state in watched:
                self._look_at(conn, state)

    def _look_at(self, conn: psycopg.Connection[Any], state: list[float]) -> None:
        if conn.closed or conn.broken:
            with self._lock:
                self._watched.pop(conn, None)
            return
        timeout_s, since = state
        now = time.monotonic()
        if conn.info.transaction_status != TransactionStatus.ACTIVE:
            state[1] = 0.0
        elif not since:
            state[1] = now
        elif now - since > timeout_s:
            log.warning("no answer from the database for %.0fs: dropping the connection",
                        now - since)
            cut(conn)
            state[1] = 0.0


WATCHDOG = AnswerWatchdog()


def watch(conn: psycopg.Connection[Any], answer_timeout_s: float) -> None:
    """Shut ``conn`` down once a command of it has gone unanswered for ``answer_timeout_s``."""
    WATCHDOG.watch(conn, answer_timeout_s)


def cut(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down under the thread waiting on it: its wait ends
    with an error, as when the server goes away."""
    try:
        with socket.socket(fileno=socket.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
