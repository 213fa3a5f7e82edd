"""The guarantee of effectively-once handling: one inbox row per (consumer, event).

The row is inserted in the handler's own transaction before the handler runs. If the
event was handled before, the insert finds the row and the handler is skipped; if the
handler's transaction rolls back, the row goes with it and a redelivery tries again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import psycopg

SUBSCRIBE = """
INSERT INTO consumer_subscriptions (consumer, event_type)
SELECT %(consumer)s, unnest(%(types)s::text[])
ON CONFLICT DO NOTHING
"""

CLAIM = """
INSERT INTO inbox (consumer, event_id) VALUES (%s, %s)
ON CONFLICT (consumer, event_id) DO NOTHING
"""


def subscribe(conn: psycopg.Connection[Any], consumer: str, event_types: Iterable[str]) -> None:
    """Say which event types this consumer's inbox holds, so that a recovery can tell an
    event nobody needs again (every handler of its type has it) from one some still does.

    Add-only: a replica still running an older version, or a type a new version dropped,
    must never take a type off the list while another process of the consumer handles
    it. A type left over only makes a recovery send more."""
    conn.execute(SUBSCRIBE, {"consumer": consumer, "types": sorted(event_types)})


def unsubscribe(conn: psycopg.Connection[Any], consumer: str) -> None:
    """A consumer taken out of service: recoveries stop keeping events for it."""
    conn.execute("DELETE FROM consumer_subscriptions WHERE consumer = %s", (consumer,))


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
