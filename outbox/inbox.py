"""The guarantee of effectively-once handling: one inbox row per (consumer, event).

The row is inserted in the handler's own transaction before the handler runs. If the
event was handled before, the insert finds the row and the handler is skipped; if the
handler's transaction rolls back, the row goes with it and a redelivery tries again.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

CLAIM = """
INSERT INTO inbox (consumer, event_id) VALUES (%s, %s)
ON CONFLICT (consumer, event_id) DO NOTHING
"""


def claim(conn: psycopg.Connection[Any], consumer: str, event_id: uuid.UUID) -> bool:
    """True if this transaction is the first to handle the event for this consumer."""
    return conn.execute(CLAIM, (consumer, event_id)).rowcount == 1


PRUNE = """
DELETE FROM inbox WHERE ctid IN (
    SELECT ctid FROM inbox WHERE handled_at < now() - make_interval(secs => %s) LIMIT %s)
"""


def prune(conn: psycopg.Connection[Any], retention_s: float, batch: int = 5000) -> int:
    """Forget events handled longer ago than any redelivery can come back.

    The retention must exceed every way an old event can arrive again: the outbox
    window published after a broker loss, and the dedupe keys' TTL.
    """
    return conn.execute(PRUNE, (retention_s, batch)).rowcount
