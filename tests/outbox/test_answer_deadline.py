"""A statement the database never answers ends, instead of holding the loop for ever.

A chaos run cut payments' link to PostgreSQL without a reset: its loop waited in a lease
query, with no partition and no timeout that applied, for as long as anyone looked
(libpq has no read timeout; TCP keepalives see a peer whose kernel still answers). Now
the session's statements have a server-side ``statement_timeout``, and every watched
connection a client-side deadline on the answer (``outbox.watchdog``).
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from choreo.outbox import watchdog
from choreo.outbox.session import Session
from choreo.stack.proxy import TcpProxy
from choreo.stack.settings import StackSettings
from tests.outbox.test_start_without_database import through

pytestmark = pytest.mark.postgres


def test_an_unanswered_statement_loses_its_connection_at_the_deadline(
        running_postgres: StackSettings) -> None:
    target = ("127.0.0.1", running_postgres.postgres_port)
    with TcpProxy(target) as proxy, psycopg.connect(
            through(proxy, running_postgres.database_dsn("postgres")), autocommit=True) as conn:
        watchdog.watch(conn, 2.0)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        outcome: list[BaseException] = []

        def query() -> None:
            try:
                conn.execute("SELECT 1")
            except psycopg.OperationalError as error:
                outcome.append(error)

        proxy.set_mode("blackhole")  # the established connection freezes
        started = time.monotonic()
        waiting = threading.Thread(target=query, daemon=True)
        waiting.start()
        waiting.join(15)
        took = time.monotonic() - started
        assert not waiting.is_alive(), "still waiting for an answer after 15 s"
        assert outcome and conn.broken, outcome
        assert 2.0 <= took < 5.0, f"cut after {took:.1f}s, deadline 2 s"


def test_a_session_statement_that_runs_too_long_is_ended_by_the_server(
        probe_database: str) -> None:
    session = Session(probe_database, "deadline-test", [], answer_timeout_s=3.0)
    conn = session.open()
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 2.8  # statement_timeout: 2/3 of the deadline
        assert session.alive(), "a slow statement is no lost session"
    finally:
        session.close()
