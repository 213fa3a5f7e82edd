"""The polling relay: publish committed outbox rows without CDC, in commit order per key.

One process per service database in polling mode (``CHOREO_RELAY``, ``python -m
outbox.poller``). It reads the rows its position has not covered, publishes them with
the idempotent producer exactly as Debezium's EventRouter would (``outbox.wire.record_of``:
same topic, key, headers, value and partition), waits for every acknowledgement, and only
then moves its position (``outbox_relay``). Rows stay in the table for the retention
window either way (``outbox.writer.prune`` keeps what a relay has not published yet).

The position, and why no row is skipped (docs/outbox.md, "Polling relay"):
``after_seq``, ``in_flight`` and ``running_from``: every row with ``seq <= after_seq`` has
been published, except rows of the transactions in ``in_flight`` and of transactions whose
xid is ``running_from`` or above, which were running when the position was taken. Each round reads,
in one REPEATABLE READ snapshot, the rows of those transactions with ``seq <= after_seq``
that have committed since (late rows) and the next rows with ``seq > after_seq`` (fresh
rows), publishes them in ``seq`` order, and takes ``after_seq = max(seq)``, ``in_flight =
pg_snapshot_xip(snapshot)`` and ``running_from = pg_snapshot_xmax(snapshot)``. A row not visible
in the snapshot whose seq is at most that maximum was drawn before the snapshot was taken,
by a transaction that already had its xid (``outbox_next_seq`` in schema.sql), which was
therefore running: it comes as a late row once it commits. The running list alone is not
enough: a snapshot's ``xmax`` is one past the latest *completed* xid, and a running
transaction at or above it is not listed (its xid came after one that committed first);
the CI's polling rerun lost exactly such rows, the first of their transactions. A naive
``seq > last`` position skips all of them.

Per key, ``seq`` order is commit order (a service writes one aggregate's events under
its row lock, so a later event's seq is drawn after the earlier one committed), and a
later event of a key is never visible without the earlier one: publishing the visible
rows in seq order keeps each key's order. Ordering by xid would not (docs/outbox.md).

Two instances are safe: a session-level advisory lock per database lets one publish; the
other waits for it, and takes over at the position last saved (duplicates, which the
inboxes absorb, never a gap). It wakes on ``LISTEN choreo_outbox`` (a statement trigger
NOTIFYs at commit), polls every ``fallback_s`` in case a notification was missed, and
reads again at once while batches come back full.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from choreo.outbox import config, logs
from choreo.outbox.errors import ConfigError
from choreo.outbox.kafka import Kafka
from choreo.outbox.kafka_connection import KafkaConnection
from choreo.outbox.relay import relay_producer
from choreo.outbox.wire import ROW_COLUMNS, SELECT_ROWS, record_of

log = logging.getLogger(__name__)

RELAY = "relay"
"""The position's name in ``outbox_relay`` (one relay per database)."""
CHANNEL = "choreo_outbox"
LOCK = "SELECT pg_try_advisory_lock(hashtextextended('choreo-outbox-relay', 0))"
LOCK_HOLDERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database
                                                         WHERE datname = current_database())
  AND (classid::bigint << 32 | objid::bigint) = hashtextextended('choreo-outbox-relay', 0)
"""
COLUMNS = SELECT_ROWS.replace(" FROM outbox", ", seq FROM outbox")
LATE = COLUMNS + " WHERE (xid = ANY(%s) OR xid >= %s) AND seq <= %s ORDER BY seq"
FRESH = COLUMNS + " WHERE seq > %s ORDER BY seq LIMIT %s"
RUNNING = """ARRAY(SELECT x::text::bigint
                   FROM pg_snapshot_xip(pg_current_snapshot()) AS x ORDER BY 1),
             pg_snapshot_xmax(pg_current_snapshot())::text::bigint"""
AT_END = f"SELECT coalesce(max(seq), 0), {RUNNING} FROM outbox"
LOAD = "SELECT after_seq, in_flight, running_from FROM outbox_relay WHERE relay = %s"
SAVE = """
INSERT INTO outbox_relay (relay, after_seq, in_flight, running_from) VALUES (%s, %s, %s, %s)
ON CONFLICT (relay) DO UPDATE SET after_seq = excluded.after_seq,
    in_flight = excluded.in_flight, running_from = excluded.running_from, updated_at = now()
"""
TRIGGER_EXISTS = "SELECT 1 FROM pg_trigger WHERE tgname = 'outbox_notify' AND NOT tgisinternal"
POLLING_ON = (
    # ACCESS EXCLUSIVE: waits for every transaction that inserted with the old default,
    # so no row of a still-running transaction can hold a seq drawn before its xid.
    "ALTER TABLE outbox ALTER COLUMN seq SET DEFAULT outbox_next_seq()",
    "CREATE INDEX IF NOT EXISTS outbox_seq ON outbox (seq)",
    "CREATE INDEX IF NOT EXISTS outbox_xid ON outbox (xid)",
    """CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
       FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()""",
)
"""What the relay needs of the table, installed when it takes a database over; the
trigger last, so that its presence means all of it is there."""
POLLING_OFF = (
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    "ALTER TABLE outbox ALTER COLUMN seq SET DEFAULT nextval('outbox_seq_seq')",
    "DROP INDEX IF EXISTS outbox_seq",
    "DROP INDEX IF EXISTS outbox_xid",
)
"""CDC mode: nobody listens (NOTIFY serialises the commits that send it), and the ordered
seq and its indexes cost every insert."""
POLLING_INSTALLED = """
SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'outbox_notify' AND NOT tgisinternal)
    OR EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'outbox'
               AND indexname IN ('outbox_seq', 'outbox_xid'))
    OR EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'outbox'
               AND column_name = 'seq' AND column_default LIKE 'outbox_next_seq%')
"""

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Position:
    after_seq: int = 0
    in_flight: tuple[int, ...] = ()
    running_from: int = 0
    """Transactions from this xid on were not listed in ``in_flight`` but may have been
    running (a saved position from before the column has 0: its first round publishes
    the retained rows again, which the inboxes absorb)."""


class PublishError(Exception):
    """The broker did not acknowledge every record of a batch; it is read again."""


def begin_snapshot(conn: psycopg.Connection[Any]) -> None:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


def read_batch(conn: psycopg.Connection[Any], position: Position,
               limit: int) -> tuple[list[Row], Position, bool]:
    """The rows to publish next, in seq order, the position after them, and whether the
    fresh rows filled ``limit`` (more are waiting). ``conn`` must be in autocommit mode."""
    begin_snapshot(conn)
    try:
        late = conn.execute(LATE, (list(position.in_flight), position.running_from,
                                   position.after_seq)).fetchall()
        fresh = conn.execute(FRESH, (position.after_seq, limit)).fetchall()
        running, running_from = conn.execute(f"SELECT {RUNNING}").fetchone()  # type: ignore[misc]
    finally:
        conn.execute("COMMIT")
    after = max(position.after_seq, fresh[-1][-1] if fresh else 0)
    return late + fresh, Position(after, tuple(running), running_from), len(fresh) >= limit


def load_position(conn: psycopg.Connection[Any], relay: str = RELAY) -> Position | None:
    row = conn.execute(LOAD, (relay,)).fetchone()
    return Position(row[0], tuple(row[1]), row[2]) if row else None


def save_position(conn: psycopg.Connection[Any], position: Position,
                  relay: str = RELAY) -> None:
    conn.execute(SAVE, (relay, position.after_seq, list(position.in_flight),
                        position.running_from))


def position_at_end(conn: psycopg.Connection[Any]) -> Position:
    """Everything committed so far counts as published (what CDC has just done)."""
    begin_snapshot(conn)
    try:
        after, running, running_from = conn.execute(AT_END).fetchone()  # type: ignore[misc]
    finally:
        conn.execute("COMMIT")
    return Position(after, tuple(running), running_from)


def lock_holders(conn: psycopg.Connection[Any]) -> int:
    """How many sessions hold this database's relay lock (0 or 1)."""
    return int(conn.execute(LOCK_HOLDERS).fetchone()[0])  # type: ignore[index]


def install_polling(conn: psycopg.Connection[Any]) -> None:
    """Give the table what the relay reads by (``POLLING_ON``), unless it has it."""
    if not conn.execute(TRIGGER_EXISTS).fetchone():
        with conn.transaction():
            for statement in POLLING_ON:
                conn.execute(statement)


def remove_polling(conn: psycopg.Connection[Any]) -> None:
    """Back to what CDC mode needs (``POLLING_OFF``), if anything of polling is left."""
    if conn.execute(POLLING_INSTALLED).fetchone()[0]:  # type: ignore[index]
        with conn.transaction():
            for statement in POLLING_OFF:
                conn.execute(statement)


def publish(producer: Producer, rows: Sequence[Row], timeout_s: float = 30.0) -> None:
    """Produce every row and wait until the broker acknowledged each one."""
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)

    for row in rows:
        topic, key, value, headers = record_of(row[:len(ROW_COLUMNS)])
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers,
                                 on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
            except KafkaException as error:  # refused at once (too large, say)
                raise PublishError(f"{topic} refused the record for {key}: {error}") from error
    remaining = producer.flush(timeout_s)
    if remaining or failures:
        raise PublishError(f"{remaining} of {len(rows)} records unacknowledged,"
                           f" {len(failures)} failed: {failures[:1]}")


@dataclass(frozen=True)
class PollerSettings:
    database_url: str
    kafka: Kafka
    batch_size: int = 500
    fallback_s: float = 1.0
    """Longest wait without a notification before reading anyway."""
    save_every_s: float = 0.2
    """How stale the saved position may be: a takeover or crash publishes that much again."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PollerSettings:
        return cls(
            database_url=config.dsn(env, "CHOREO_DATABASE_URL",
                                    "the outbox database, postgresql://user@host:port/db"),
            kafka=KafkaConnection.from_env(env),
            batch_size=config.integer(env, "CHOREO_RELAY_BATCH_SIZE", cls.batch_size, ge=1),
            fallback_s=config.number(env, "CHOREO_RELAY_FALLBACK_S", cls.fallback_s, gt=0),
        )


class OutboxPoller:
    """One relay for one database; ``run`` until ``stop`` is set."""

    def __init__(self, settings: PollerSettings, producer: Producer | None = None,
                 relay: str = RELAY, start_at_end: bool = False,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.producer = producer or relay_producer(settings.kafka,
                                                   **{"linger.ms": 0})
        self.relay = relay
        self.start_at_end = start_at_end
        self.on_batch = on_batch
        self.stop = threading.Event()
        self.owner = threading.Event()
        """Set while this instance holds the lock and publishes."""
        self.published = 0

    def run(self) -> None:
        backoff = 0.5
        while not self.stop.is_set():
            try:
                self._session()
                backoff = 0.5
            except (psycopg.Error, PublishError) as error:
                log.warning("relay session ended: %s; again in %.1fs", error, backoff)
                self.owner.clear()
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _session(self) -> None:
        with psycopg.connect(self.settings.database_url, autocommit=True,
                             application_name="choreo-relay") as conn:
            conn.execute("SET synchronous_commit = off")
            while not conn.execute(LOCK).fetchone()[0]:  # type: ignore[index]
                if self.stop.wait(self.settings.fallback_s):
                    return
            self.owner.set()
            install_polling(conn)
            conn.execute(f"LISTEN {CHANNEL}")
            position = load_position(conn, self.relay)
            if position is None:
                position = position_at_end(conn) if self.start_at_end else Position()
                save_position(conn, position, self.relay)
            log.info("relay owns the outbox from seq %d", position.after_seq)
            try:
                self._publish_loop(conn, position)
            finally:
                self.owner.clear()

    def _publish_loop(self, conn: psycopg.Connection[Any], position: Position) -> None:
        saved, saved_at = position, time.monotonic()
        while not self.stop.is_set():
            rows, position, more = read_batch(conn, position, self.settings.batch_size)
            if rows:
                publish(self.producer, rows)
                self.published += len(rows)
                if self.on_batch is not None:
                    self.on_batch(len(rows))
            if position != saved and (not more or
                                      time.monotonic() - saved_at >= self.settings.save_every_s):
                save_position(conn, position, self.relay)
                saved, saved_at = position, time.monotonic()
            if more:
                continue
            woke = any(True for _ in conn.notifies(timeout=self.settings.fallback_s,
                                                   stop_after=1))
            if woke:  # what else arrived meanwhile is covered by the next read
                list(conn.notifies(timeout=0.0))
        if position != saved:
            save_position(conn, position, self.relay)


def catch_up(database_url: str, producer: Producer, relay: str = RELAY,
             batch_size: int = 1000) -> int | None:
    """Publish what the relay's position has not covered, then forget the position.

    For handing a database back to CDC: the caller has stopped the relay and created the
    replication slot first (creating a slot waits for the transactions running then), so
    every row is either in the slot or published here (or both: duplicates).
    Returns the rows published, or None when there was no relay position.
    Raises if a relay still holds the lock.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        position = load_position(conn, relay)
        if position is None:
            remove_polling(conn)  # a database never polled, or handed back already
            return None
        if not conn.execute(LOCK).fetchone()[0]:  # type: ignore[index]
            raise RuntimeError("a polling relay still runs on this database")
        # Rows drawn or committed after this snapshot came after the slot: CDC has them.
        end = position_at_end(conn).after_seq
        total, first = 0, True
        while first or position.after_seq < end:
            rows, position, _ = read_batch(conn, position, batch_size)
            if rows:
                publish(producer, rows)
                total += len(rows)
            first = False
        conn.execute("DELETE FROM outbox_relay WHERE relay = %s", (relay,))
        remove_polling(conn)
        return total


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = PollerSettings.from_env(os.environ)
    except ConfigError as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2
    logs.configure("relay")
    poller = OutboxPoller(settings, start_at_end="--from-end" in (argv or sys.argv[1:]))
    signal.signal(signal.SIGTERM, lambda *_: poller.stop.set())
    signal.signal(signal.SIGINT, lambda *_: poller.stop.set())
    log.info("polling relay starting")
    poller.run()
    log.info("stopped after publishing %d events", poller.published)
    return 0


if __name__ == "__main__":
    sys.exit(main())
