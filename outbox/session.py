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

from outbox import inbox


class SessionLost(Exception):
    """The database session broke: its partition leases are gone, so must the batch be."""


class Session:
    def __init__(self, database_url: str, group_id: str, handled_types: Iterable[str]) -> None:
        self.database_url = database_url
        self.group_id = group_id
        self.handled_types = handled_types
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
        self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
        inbox.subscribe(self._conn, self.group_id, self.handled_types)
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()  # and with it every lease this process held
        self._conn = None
