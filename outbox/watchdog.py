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
    def __init__(self, answer_timeout_s: float) -> None:
        self.answer_timeout_s = answer_timeout_s
        self._active_since: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="db-watchdog", daemon=True).start()

    def watch(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._active_since[conn] = 0.0

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_INTERVAL_S)
            with self._lock:
                conns = list(self._active_since.items())
            for conn, since in conns:
                self._look_at(conn, since)

    def _look_at(self, conn: psycopg.Connection[Any], since: float) -> None:
        if conn.closed or conn.broken:
            with self._lock:
                self._active_since.pop(conn, None)
            return
        now = time.monotonic()
        if conn.info.transaction_status != TransactionStatus.ACTIVE:
            since = 0.0
        elif not since:
            since = now
        elif now - since > self.answer_timeout_s:
            log.warning("no answer from the database for %.0fs: dropping the connection",
                        now - since)
            cut(conn)
            since = 0.0
        with self._lock:
            if conn in self._active_since:
                self._active_since[conn] = since


def cut(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down under the thread waiting on it: its wait ends
    with an error, as when the server goes away."""
    try:
        with socket.socket(fileno=socket.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
