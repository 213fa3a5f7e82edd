"""Dead letters, and the events of the same key parked behind them.

A dead letter is written twice: to the ``<consumer>.dlq`` topic (for people and tools
that watch topics) and to the ``dead_letters`` table of the consumer's database (the
record that blocks the key and that replay works from). Events that arrive later for a
blocked key are parked in the table, in order, so that one aggregate's events are never
handled out of order, while every other key keeps flowing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg.rows import dict_row

from outbox import constants as c
from outbox.delivery import Delivery
from outbox.errors import TransientError

ACTIVE = ("dead", "parked", "replay", "discard")

INSERT = """
INSERT INTO dead_letters (consumer, aggregate_key, event_id, event_type, status, reason,
                          attempts, topic, partition, "offset", headers, value, fingerprint)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (consumer, fingerprint) DO NOTHING
"""

PRUNE = """
DELETE FROM dead_letters WHERE seq IN (
    SELECT seq FROM dead_letters
    WHERE status IN ('replayed', 'discarded') AND updated_at < now() - make_interval(secs => %s)
    LIMIT %s)
"""

HEADS = """
SELECT DISTINCT ON (aggregate_key) aggregate_key, status, topic, partition
FROM dead_letters WHERE consumer = %s AND status = ANY(%s)
ORDER BY aggregate_key, seq
"""


def dead_letter_topic(consumer: str) -> str:
    return f"{consumer}{c.DEAD_LETTER_TOPIC_SUFFIX}"


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    consumer: str
    aggregate_key: str
    event_id: str | None
    event_type: str | None
    status: str
    reason: str
    attempts: int
    delivery: Delivery
    created_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeadLetter:
        delivery = Delivery(row["topic"], row["partition"], row["offset"], row["aggregate_key"],
                            row["value"], dict(row["headers"]))
        return cls(row["seq"], row["consumer"], row["aggregate_key"], row["event_id"],
                   row["event_type"], row["status"], row["reason"], row["attempts"], delivery,
                   str(row["created_at"]))


def fingerprint(delivery: Delivery) -> str:
    """What makes a dead letter the same one again: its event id, else its bytes.

    Not its Kafka offset: offsets start again at 0 when a topic is recreated, and a new
    dead letter at an old offset must not be dropped as a redelivery.
    """
    if delivery.parsed_event_id() is not None:
        return f"id:{delivery.parsed_event_id()}"
    digest = hashlib.sha256()
    for part in (delivery.topic, delivery.key, json.dumps(delivery.headers, sort_keys=True)):
        digest.update(part.encode() + b"\0")
    digest.update(delivery.value or b"")
    return f"sha256:{digest.hexdigest()}"


def record(
    conn: psycopg.Connection[Any], consumer: str, delivery: Delivery, *, status: str,
    reason: str, attempts: int,
) -> None:
    """Idempotent by (consumer, fingerprint): a redelivery adds no second row."""
    conn.execute(INSERT, (
        consumer, delivery.key, delivery.event_id or None, delivery.event_type or None, status,
        reason, attempts, delivery.topic, delivery.partition, delivery.offset,
        json.dumps(delivery.headers), delivery.value, fingerprint(delivery),
    ))


def prune(conn: psycopg.Connection[Any], retention_s: float, batch: int = 5000) -> int:
    """Forget entries settled (replayed or discarded) longer ago than ``retention_s``.

    Active entries stay whatever their age: they block their key. Forgetting a settled
    one is safe: what keeps a redelivered copy of a discarded event from being handled is
    its inbox row (``_discard`` claims it), and a replayed event has one as well.
    """
    return conn.execute(PRUNE, (retention_s, batch)).rowcount


def publish(producer: Producer, consumer: str, delivery: Delivery, reason: str,
            attempts: int) -> None:
    """Send to the dead-letter topic with the original headers and why it is there."""
    headers = {
        **delivery.headers,
        c.HEADER_DLQ_REASON: reason,
        c.HEADER_DLQ_CONSUMER: consumer,
        c.HEADER_DLQ_ATTEMPTS: str(attempts),
        c.HEADER_DLQ_ORIGIN: delivery.origin,
    }
    producer.produce(dead_letter_topic(consumer), key=delivery.key, value=delivery.value,
                     headers=list(headers.items()))
    if producer.flush(10):
        # Not recorded as dead either: the caller's batch fails and is read again.
        raise TransientError(f"dead-letter topic {dead_letter_topic(consumer)} unreachable")


def blocked_keys(conn: psycopg.Connection[Any], consumer: str) -> set[str]:
    rows = conn.execute(
        "SELECT DISTINCT aggregate_key FROM dead_letters WHERE consumer = %s"
        " AND status = ANY(%s)", (consumer, list(ACTIVE)),
    ).fetchall()
    return {row[0] for row in rows}


def keys_to_release(conn: psycopg.Connection[Any], consumer: str,
                    owned: set[tuple[str, int]]) -> list[str]:
    """Keys whose head entry is no longer plainly dead, in partitions this member owns.

    A head that is ``replay`` or ``discard`` was requested; a head that is ``parked``
    means a release was interrupted (the process stopped after the dead letter was
    replayed, before all that it parked was), so it resumes from the table alone.
    Only the owner of the head's partition acts, so a key is released by one member.
    """
    rows = conn.execute(HEADS, (consumer, list(ACTIVE))).fetchall()
    return [key for key, status, topic, partition in rows
            if status != "dead" and (topic, partition) in owned]


def active_for_key(conn: psycopg.Connection[Any], consumer: str, key: str) -> list[DeadLetter]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM dead_letters WHERE consumer = %s AND aggregate_key = %s"
            " AND status = ANY(%s) ORDER BY seq", (consumer, key, list(ACTIVE)),
        )
        return [DeadLetter.from_row(row) for row in cur.fetchall()]


def set_status(conn: psycopg.Connection[Any], seq: int, status: str, *,
               reason: str | None = None, attempts: int | None = None) -> None:
    conn.execute(
        "UPDATE dead_letters SET status = %s, reason = coalesce(%s, reason),"
        " attempts = coalesce(%s, attempts), updated_at = now() WHERE seq = %s",
        (status, reason, attempts, seq),
    )


def list_entries(conn: psycopg.Connection[Any], *, include_done: bool = False
                 ) -> list[DeadLetter]:
    statuses = ACTIVE + (("replayed", "discarded") if include_done else ())
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM dead_letters WHERE status = ANY(%s) ORDER BY seq",
                    (list(statuses),))
        return [DeadLetter.from_row(row) for row in cur.fetchall()]


def entries_for_keys(conn: psycopg.Connection[Any], keys: Sequence[str]) -> list[DeadLetter]:
    """Every entry, done or not, of the given aggregate keys, in sequence order."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM dead_letters WHERE aggregate_key = ANY(%s) ORDER BY seq",
                    (list(keys),))
        return [DeadLetter.from_row(row) for row in cur.fetchall()]


def get_entry(conn: psycopg.Connection[Any], seq: int) -> DeadLetter | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM dead_letters WHERE seq = %s", (seq,)).fetchone()
        return DeadLetter.from_row(row) if row else None


def request(conn: psycopg.Connection[Any], seq: int, action: str) -> DeadLetter:
    """Ask the owning consumer to replay or discard a dead letter (it does the work).

    Only a ``dead`` entry can be acted on; the entries parked behind it follow it
    automatically once it is replayed or discarded.
    """
    if action not in ("replay", "discard"):
        raise ValueError(f"unknown action {action!r}")
    entry = get_entry(conn, seq)
    if entry is None:
        raise LookupError(f"no dead letter #{seq}")
    if entry.status != "dead":
        raise ValueError(
            f"dead letter #{seq} is {entry.status}; only a dead entry can be {action}ed"
        )
    set_status(conn, seq, action)
    return entry
