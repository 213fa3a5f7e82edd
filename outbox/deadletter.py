"""Dead letters, and the events of the same key parked behind them.

An event whose failure is transient (the psp answering 500, a lock timeout) is first
recorded as ``retrying``: it blocks its key like a dead letter, and the loop tries it
again on the key's own schedule (``outbox.release``), so one bad order costs the others
nothing. Only once the transient window has passed does it become a dead letter.

A dead letter is written twice: to the ``<consumer>.dlq`` topic (for people and tools
that watch topics) and to the ``dead_letters`` table of the consumer's database (the
record that blocks the key and that replay works from). Events that arrive later for a
blocked key are parked in the table, in order, so that one aggregate's events are never
handled out of order, while every other key keeps flowing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg.rows import dict_row

from choreo.outbox import wire as c
from choreo.outbox.delivery import Delivery
from choreo.outbox.errors import TransientError

ACTIVE = ("retrying", "dead", "parked", "replay", "discard")
SETTLED = ("retried", "replayed", "discarded")

INSERT = """
INSERT INTO dead_letters (consumer, aggregate_key, event_id, event_type, status, reason,
                          attempts, topic, partition, "offset", headers, value, fingerprint,
                          retry_at, retry_since)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
        now() + make_interval(secs => %s), CASE WHEN %s THEN now() END)
ON CONFLICT (consumer, fingerprint) DO NOTHING
"""

PRUNE = """
DELETE FROM dead_letters WHERE seq IN (
    SELECT seq FROM dead_letters
    WHERE status = ANY(%s) AND updated_at < now() - make_interval(secs => %s)
    LIMIT %s)
"""

DUE = "coalesce(retry_at <= now(), true)"
"""Whether an entry may be acted on now: only a ``retrying`` one has to wait."""

HEADS = f"""
SELECT DISTINCT ON (aggregate_key) aggregate_key, status, topic, partition, {DUE}
FROM dead_letters WHERE consumer = %s AND status = ANY(%s)
ORDER BY aggregate_key, seq
"""

COLUMNS = f"*, {DUE} AS due, extract(epoch FROM now() - retry_since) AS retrying_for_s"


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
    due: bool = True
    """False for a ``retrying`` entry whose next attempt is not yet due."""
    retrying_for_s: float = 0.0
    """Since the first transient failure: what the transient window is measured against."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeadLetter:
        delivery = Delivery(row["topic"], row["partition"], row["offset"], row["aggregate_key"],
                            row["value"], dict(row["headers"]))
        return cls(row["seq"], row["consumer"], row["aggregate_key"], row["event_id"],
                   row["event_type"], row["status"], row["reason"], row["attempts"], delivery,
                   str(row["created_at"]), row["due"], float(row["retrying_for_s"] or 0.0))

    @property
    def partition(self) -> tuple[str, int]:
        return self.delivery.topic, self.delivery.partition


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
    reason: str, attempts: int, retry_after_s: float | None = None,
) -> None:
    """Idempotent by (consumer, fingerprint): a redelivery adds no second row.
    ``retry_after_s``: when a ``retrying`` entry is next due."""
    conn.execute(INSERT, (
        consumer, delivery.key, delivery.event_id or None, delivery.event_type or None, status,
        reason, attempts, delivery.topic, delivery.partition, delivery.offset,
        json.dumps(delivery.headers), delivery.value, fingerprint(delivery),
        retry_after_s, status == "retrying",
    ))


def prune(conn: psycopg.Connection[Any], retention_s: float, batch: int = 5000) -> int:
    """Forget entries settled (retried, replayed or discarded) longer ago than ``retention_s``.

    Active entries stay whatever their age: they block their key. Forgetting a settled
    one is safe: what keeps a redelivered copy of a discarded event from being handled is
    its inbox row (``_discard`` claims it), and a replayed event has one as well.
    """
    return conn.execute(PRUNE, (list(SETTLED), retention_s, batch)).rowcount


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


def blocked_keys(conn: psycopg.Connection[Any], consumer: str,
                 among: Collection[str] | None = None) -> set[str]:
    """Keys with an active entry; ``among``: only these (one batch's keys)."""
    query = ("SELECT DISTINCT aggregate_key FROM dead_letters WHERE consumer = %(consumer)s"
             " AND status = ANY(%(active)s)")
    if among is not None:
        query += " AND aggregate_key = ANY(%(among)s)"
    rows = conn.execute(query, {"consumer": consumer, "active": list(ACTIVE),
                                "among": list(among or ())}).fetchall()
    return {row[0] for row in rows}


def keys_to_release(conn: psycopg.Connection[Any], consumer: str,
                    owned: set[tuple[str, int]]) -> list[str]:
    """Keys whose head entry is no longer plainly dead, in partitions this member owns.

    A head that is ``replay`` or ``discard`` was requested; a ``retrying`` head is due
    for its next attempt; a head that is ``parked`` means a release was interrupted (the
    process stopped after the dead letter was replayed, before all that it parked was),
    so it resumes from the table alone. Only the owner of the head's partition acts, so
    a key is released by one member.
    """
    rows = conn.execute(HEADS, (consumer, list(ACTIVE))).fetchall()
    return [key for key, status, topic, partition, due in rows
            if status != "dead" and due and (topic, partition) in owned]


def active_for_key(conn: psycopg.Connection[Any], consumer: str, key: str) -> list[DeadLetter]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {COLUMNS} FROM dead_letters WHERE consumer = %s AND aggregate_key = %s"
            " AND status = ANY(%s) ORDER BY seq", (consumer, key, list(ACTIVE)),
        )
        return [DeadLetter.from_row(row) for row in cur.fetchall()]


def set_status(conn: psycopg.Connection[Any], seq: int, status: str, *,
               reason: str | None = None, attempts: int | None = None,
               retry_after_s: float | None = None) -> None:
    """Also keeps ``retry_since`` while an entry stays ``retrying`` (its window runs on)
    and clears it otherwise (a replay that fails again gets a window of its own)."""
    conn.execute(
        "UPDATE dead_letters SET status = %(status)s, reason = coalesce(%(reason)s, reason),"
        " attempts = coalesce(%(attempts)s, attempts), updated_at = now(),"
        " retry_at = now() + make_interval(secs => %(after)s),"
        " retry_since = CASE WHEN %(status)s = 'retrying' THEN coalesce(retry_since, now()) END"
        " WHERE seq = %(seq)s",
        {"status": status, "reason": reason, "attempts": attempts, "after": retry_after_s,
         "seq": seq},
    )


def list_entries(conn: psycopg.Connection[Any], *, include_done: bool = False
                 ) -> list[DeadLetter]:
    statuses = ACTIVE + (SETTLED if include_done else ())
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {COLUMNS} FROM dead_letters WHERE status = ANY(%s) ORDER BY seq",
                    (list(statuses),))
        return [DeadLetter.from_row(row) for row in cur.fetchall()]


def entries_for_keys(conn: psycopg.Connection[Any], keys: Sequence[str]) -> list[DeadLetter]:
    """Every entry, done or not, of the given aggregate keys, in sequence order."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {COLUMNS} FROM dead_letters WHERE aggregate_key = ANY(%s)"
                    " ORDER BY seq",
                    (list(keys),))
        return [DeadLetter.from_row(row) for row in cur.fetchall()]


def get_entry(conn: psycopg.Connection[Any], seq: int) -> DeadLetter | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {COLUMNS} FROM dead_letters WHERE seq = %s",
                          (seq,)).fetchone()
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
