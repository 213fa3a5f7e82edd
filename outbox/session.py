"""The one database session of a consumer process.

It holds the process's partition leases (advisory locks, ``outbox.leases``) and commits
its handlers' transactions, so that no transaction of an old owner can commit after it
lost a partition. That is why a broken session is never silently replaced: its leases
died with it, and the loop must let go of every partition before it connects again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from choreo.outbox import inbox, watchdog


class SessionLost(Exception):
    """The database session broke: its partition leases are gone, so must the batch be."""


ANSWER_TIMEOUT_S = 30.0
"""How long a statement of the session may go unanswered before its connection is
dropped (``outbox.watchdog``); the server ends a merely slow one at two thirds of it."""


class Session:
    def __init__(self, database_url: str, group_id: str, handled_types: Iterable[str],
                 answer_timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.database_url = database_url
        self.group_id = group_id
        self.handled_types = handled_types
        self.answer_timeout_s = answer_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The live session, or ``SessionLost``: never a new one behind the loop's back."""
        if self._conn is None or not self.alive():
            raise SessionLost("database session lost")
        return self._conn

    @property
    def opened(self) -> bool:
        """Whether a session was opened and not yet closed (it may have broken since)."""
        return self._conn is not None

    def alive(self) -> bool:
        return self._conn is not None and not self._conn.closed and not self._conn.broken

    def open(self) -> psycopg.Connection[Any]:
        """A new session, after closing any old one; it records the types this consumer
        handles (``inbox.subscribe``), which the relay's recovery reads."""
        self.close()
        statement_timeout_ms = int(self.answer_timeout_s * 2 / 3 * 1000)
        self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5,
                                     options=f"-c statement_timeout={statement_timeout_ms}")
        watchdog.watch(self._conn, self.answer_timeout_s)
        inbox.subscribe(self._conn, self.group_id, self.handled_types)
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()  # and with it every lease this process held
        self._conn = None
