"""The idempotent consumer runtime: transport and guarantees, no business logic.

For each message it checks the CloudEvents headers, skips what is already handled
(Redis on the fast path, the inbox row as the guarantee), decodes the Avro payload into
the reader schema, and runs the handler registered for the event type inside one
database transaction. Positions, kept in the same database, only ever move past events
whose transaction committed, so a crash anywhere leads to a redelivery that the inbox
turns into a no-op.

No broker consumer group: partitions are owned through advisory-lock leases and
positions are read from the consumer's own tables (``outbox.assignment``), so a
restarted process is consuming again within a second, replicas share partitions, and a
broker that lost its log is read again from the start. Errors of the runtime itself
(database restarts, broker outages) are logged and survived: the session is dropped,
its leases go with it, and the loop reconnects with backoff.

Failures: transient ones are retried with backoff; permanent ones and those that
exhaust the attempts go to the dead-letter topic and block their aggregate key, whose
later events are parked behind them until ``choreo dlq replay|discard``. A handler that
raises ``RetryLater`` (an open circuit breaker: a dependency is down) fails nothing: the
event is rolled back, every owned partition is paused for the time it asked, with its
lease kept and the consumer still polled, and then read again from that event on.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from opentelemetry.context import Context

from outbox import backlog, deadletter, inbox
from outbox.assignment import Assignment
from outbox.codec import EventCodec
from outbox.constants import (
    HEADER_DATASCHEMA,
    HEADER_SOURCE,
    HEADER_TIME,
    HEADER_TRACEPARENT,
)
from outbox.dedupe import DedupeStore
from outbox.delivery import Delivery, ReceivedEvent
from outbox.errors import PermanentError, RetryLater
from outbox.kafka import build_producer, build_unmanaged_consumer, ensure_topics
from outbox.lanes import Lanes
from outbox.metrics import EVENTS, HANDLER_SECONDS, HOP_SECONDS, LAG, PAUSED, PAUSES, RETRIES
from outbox.retry import Backoff, is_permanent
from outbox.tracing import consumed_span, received, trace_id_of

log = logging.getLogger(__name__)

Handler = Callable[[ReceivedEvent, psycopg.Connection[Any]], None]
RunLock = Callable[[psycopg.Connection[Any], list[ReceivedEvent]], None]


def claim_and_handle(conn: psycopg.Connection[Any], consumer: str, handler: Handler,
                     event: ReceivedEvent) -> str:
    """Inside the caller's transaction: the inbox claim, then the handler if it is new.

    Returns "handled", or "duplicate" when this consumer's inbox already has the event.
    """
    if not inbox.claim(conn, consumer, event.event_id):
        return "duplicate"
    handler(event, conn)
    return "handled"


def handle_once(conn: psycopg.Connection[Any], consumer: str, handler: Handler,
                event: ReceivedEvent) -> str:
    """The effectively-once unit: inbox claim and handler commit or roll back together.

    Public so that tests can drive handlers through exactly the runtime's path.
    """
    with conn.transaction():
        return claim_and_handle(conn, consumer, handler, event)


POSITION_SAVE_INTERVAL_S = 0.2
"""Positions are saved at most this often (and before any partition is given up, and at
a clean stop), not once per batch: at low load every batch is one event, and a second
commit per event would double the database's work. What a crash loses is read again."""
BACKLOG_INTERVAL_S = 5.0
"""How often the dead-letter and slot-lag gauges are read (outbox.backlog)."""


class Interrupted(Exception):
    """SIGTERM arrived while an event waited for a retry: leave it for redelivery."""


class Deferred(Exception):
    """A handler said ``RetryLater``: ``at`` and everything after it in the batch is
    unhandled (rolled back or not started), everything before it is done."""

    def __init__(self, at: Delivery, signal: RetryLater) -> None:
        super().__init__(str(signal))
        self.at = at
        self.after_s = signal.after_s


@dataclass(frozen=True)
class Failure:
    reason: str
    attempts: int


class ConsumerRuntime:
    def __init__(
        self,
        *,
        group_id: str,
        bootstrap: str,
        database_url: str,
        codec: EventCodec,
        handlers: dict[str, Handler],
        dedupe: DedupeStore,
        backoff: Backoff = Backoff(),
        batch_size: int = 200,
        request_poll_interval_s: float = 0.5,
        rebalance_interval_s: float = 1.0,
        topics: list[str] | None = None,
        key_concurrency: int = 1,
        producer: Producer | None = None,
        lock_first: RunLock | None = None,
    ) -> None:
        """``topics`` defaults to the topics of the handled event types' aggregates.

        ``key_concurrency`` above 1 runs the handlers of a batch's different keys side
        by side in that many threads (``outbox.lanes``, which says when that is safe).
        ``producer`` (for the dead-letter topic) is built on first use unless given.
        ``lock_first(conn, events)`` runs in each run's transaction before its handlers:
        a service whose events of different keys share rows locks them there, all in
        one order, so that two replicas' runs cannot deadlock (each handler alone locks
        only its own event's rows, in an order that differs from run to run).
        """
        self.group_id = group_id
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.codec = codec
        self.handlers = handlers
        self.dedupe = dedupe
        self.backoff = backoff
        self.batch_size = batch_size
        self.request_poll_interval_s = request_poll_interval_s
        self.rebalance_interval_s = rebalance_interval_s
        self._topics = topics
        self.key_concurrency = key_concurrency
        self.lock_first = lock_first
        self._lanes: Lanes[ReceivedEvent, str] | None = None
        self.stop_event = threading.Event()
        self.blocked: set[str] = set()
        self._conn: psycopg.Connection[Any] | None = None
        self._producer: Producer | None = producer
        self._assignment: Assignment | None = None
        self._assigned_at = 0.0
        self._last_poll = 0.0
        self._lag: dict[tuple[str, int], int] = {}
        self._broker_trouble = threading.Event()
        self._held_until = 0.0
        self._hops: dict[str, Context] = {}
        """The relay span of each delivery of the batch in hand, by origin (``_receive``)."""
        """While in the future, every owned partition is paused (``RetryLater``)."""

    # -- wiring --------------------------------------------------------------------

    @property
    def topics(self) -> list[str]:
        if self._topics is not None:
            return self._topics
        return sorted({self.codec.writer_schema(t).topic for t in self.handlers})

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The session that holds this process's partition leases and runs its handlers.

        A broken session is never silently replaced here: its leases died with it, so
        the loop must notice, let go of every partition and acquire them again.
        """
        if not self._session_alive():
            raise SessionLost("database session lost")
        return self._conn

    def ensure_session(self) -> None:
        """Open the database session if there is none: for callers that drive the batch
        logic without the loop (``outbox.testing.drive``)."""
        if not self._session_alive():
            self._open_session()

    def close(self) -> None:
        """Give up the database session, and with it every lease: for the same callers."""
        self._close_session()

    def _session_alive(self) -> bool:
        return self._conn is not None and not self._conn.closed and not self._conn.broken

    def _open_session(self) -> None:
        self._close_session()
        self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
        inbox.subscribe(self._conn, self.group_id, self.handlers)
        self.blocked = deadletter.blocked_keys(self._conn, self.group_id)

    def _close_session(self) -> None:
        try:
            if self._assignment is not None:
                self._assignment.session_lost()
        finally:
            if self._conn is not None and not self._conn.closed:
                self._conn.close()  # and with it every lease this process held
            self._conn = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = build_producer(self.bootstrap)
        return self._producer

    def health(self) -> dict[str, object]:
        polling = time.monotonic() - self._last_poll < 30
        ok = (polling and self._session_alive() and self._assigned_at > 0
              and not self.stop_event.is_set())
        owned = len(self._assignment.owned) if self._assignment else 0
        return {"status": "ok" if ok else "starting", "consumer": self.group_id,
                "assigned": owned > 0, "partitions": owned, "lag": sum(self._lag.values()),
                "blocked_keys": len(self.blocked), "paused": self._held_until > 0}

    # -- handling one delivery --------------------------------------------------------

    def _event(self, delivery: Delivery) -> ReceivedEvent:
        event_id = delivery.parsed_event_id()
        if event_id is None:
            raise PermanentError("missing or malformed ce_id header")
        payload = self.codec.decode(
            delivery.event_type, delivery.headers.get(HEADER_DATASCHEMA, ""), delivery.value or b""
        )
        return ReceivedEvent(
            event_id=event_id,
            event_type=delivery.event_type,
            aggregate_id=delivery.key,
            payload=payload,
            source=delivery.headers.get(HEADER_SOURCE, ""),
            occurred_at=delivery.headers.get(HEADER_TIME, ""),
            traceparent=delivery.headers.get(HEADER_TRACEPARENT, ""),
            origin=delivery.origin,
        )

    def _run_handler(self, event: ReceivedEvent) -> str:
        """One attempt: inbox claim and handler in a transaction of their own."""
        conn = self.conn
        with conn.transaction():
            return self._run_in_transaction(conn, event)

    def attempt(self, delivery: Delivery) -> str | Failure:
        """Decode and run the handler with retries. Returns the outcome or why it failed."""
        try:
            event = self._event(delivery)
        except PermanentError as error:
            return Failure(str(error), 1)
        context = self._log_context(delivery, event.traceparent)
        started = time.monotonic()
        for attempt in itertools.count(1):
            try:
                outcome = self._run_handler(event)
            except (SessionLost, RetryLater):
                raise
            except Exception as error:  # noqa: BLE001 - retried, then dead-lettered
                if not self._session_alive():
                    raise SessionLost(f"database session lost: {error!r}") from error
                if self.backoff.gives_up(error, attempt, time.monotonic() - started):
                    reason = f"{type(error).__name__}: {error}" if is_permanent(error) \
                        else f"gave up after {attempt} attempts: {error!r}"
                    return Failure(reason, attempt)
                RETRIES.labels(self.group_id, self._type_label(delivery)).inc()
                delay = self.backoff.delay(attempt)
                log.warning("attempt %d failed, retrying in %.3fs: %r", attempt, delay, error,
                            extra=context)
                if self.stop_event.wait(delay):
                    raise Interrupted from error
                continue
            self.dedupe.mark(self.group_id, delivery.event_id)
            log.info("%s %s", outcome, delivery.event_type, extra=context)
            return outcome
        raise AssertionError("unreachable: itertools.count never ends")

    def _type_label(self, delivery: Delivery) -> str:
        """A metric label from a header anyone can write: only known types, or "other"."""
        return delivery.event_type if delivery.event_type in self.handlers else "other"

    def process(self, delivery: Delivery) -> str:
        """Everything that happens to one fresh delivery; returns the outcome's name."""
        if delivery.parsed_event_id() is None or not delivery.event_type:
            outcome = self._dead_letter(delivery, Failure("missing or malformed ce_id/ce_type "
                                                          "headers", 1))
        elif delivery.event_type not in self.handlers:
            outcome = "ignored"
        elif delivery.key in self.blocked:
            with self.conn.transaction():
                deadletter.record(self.conn, self.group_id, delivery, status="parked",
                                  reason="parked behind a dead letter of the same key",
                                  attempts=0)
            outcome = "parked"
        elif self.dedupe.seen(self.group_id, delivery.event_id):
            outcome = "duplicate"
        else:
            result = self.attempt(delivery)
            outcome = self._dead_letter(delivery, result) if isinstance(result, Failure) \
                else result
        EVENTS.labels(self.group_id, self._type_label(delivery), outcome).inc()
        return outcome
    def _batchable(self, delivery: Delivery) -> bool:
        """Events the plain path would decode and hand to their handler (not yet seen)."""
        return (delivery.parsed_event_id() is not None and delivery.event_type in self.handlers
                and delivery.key not in self.blocked)

    def process_batch(self, deliveries: list[Delivery]) -> list[str]:
        """Handle deliveries in order, committing runs of plain events in one transaction.

        One commit (one WAL flush) for a whole run of events is where the throughput
        comes from. Semantics stay those of ``process``: anything unusual (a blocked key,
        a duplicate, a poison message) first commits the run before it, then goes
        through ``process`` alone; and if any event of a run fails, the run is rolled
        back and each of its events goes through ``process`` with its own retries and
        dead letter. ``RetryLater`` from a handler ends the batch with ``Deferred``.
        """
        outcomes: list[str] = []
        run: list[tuple[Delivery, ReceivedEvent]] = []
        seen = self.dedupe.seen_many(self.group_id, [d.event_id for d in deliveries
                                                     if d.parsed_event_id() is not None])
        for delivery in deliveries:
            if delivery.event_id in seen and self._batchable(delivery):
                EVENTS.labels(self.group_id, delivery.event_type, "duplicate").inc()
                outcomes.append("duplicate")
                continue
            event = self._decoded_if_batchable(delivery)
            if event is not None:
                run.append((delivery, event))
                continue
            outcomes += self._commit_run(run)
            run = []
            outcomes.append(self._process_unless_deferred(delivery))
        return outcomes + self._commit_run(run)

    def _process_unless_deferred(self, delivery: Delivery) -> str:
        try:
            return self.process(delivery)
        except RetryLater as signal:
            raise Deferred(delivery, signal) from signal

    def _decoded_if_batchable(self, delivery: Delivery) -> ReceivedEvent | None:
        if not self._batchable(delivery):
            return None
        try:
            return self._event(delivery)
        except PermanentError:
            return None  # ``process`` will dead-letter it with the reason

    def _commit_run(self, run: list[tuple[Delivery, ReceivedEvent]]) -> list[str]:
        """One transaction for the run (a run of one too: it is already decoded and
        checked against Redis, and ``process`` would do both again)."""
        if not run:
            return []
        try:
            conn = self.conn
            with conn.transaction():
                if self.lock_first is not None:
                    self.lock_first(conn, [event for _, event in run])
                outcomes = self._run_all(conn, [event for _, event in run])
        except RetryLater as signal:  # the whole run rolled back: none of it is done
            raise Deferred(run[0][0], signal) from signal
        except Exception as error:  # noqa: BLE001 - each event is retried on its own below
            if not self._session_alive():
                raise SessionLost(f"database session lost: {error!r}") from error
            log.warning("batch of %d rolled back, handling one by one: %r", len(run), error,
                        extra={"consumer": self.group_id})
            return [self._process_unless_deferred(delivery) for delivery, _ in run]
        self.dedupe.mark_many(self.group_id, [delivery.event_id for delivery, _ in run])
        for (delivery, event), outcome in zip(run, outcomes, strict=True):
            EVENTS.labels(self.group_id, event.event_type, outcome).inc()
            log.info("%s %s", outcome, event.event_type,
                     extra=self._log_context(delivery, event.traceparent))
        return outcomes

    def _run_all(self, conn: psycopg.Connection[Any], events: list[ReceivedEvent]
                 ) -> list[str]:
        if self._lanes is None:
            return [self._run_in_transaction(conn, event) for event in events]
        return self._lanes.run([(event.aggregate_id, event) for event in events],
                               lambda event: self._run_in_transaction(conn, event))

    def _log_context(self, delivery: Delivery, traceparent: str = "") -> dict[str, str]:
        """The ids an operator searches the JSON logs by."""
        return {"event_id": delivery.event_id, "event_type": delivery.event_type,
                "order_id": delivery.key, "trace_id": trace_id_of(traceparent),
                "consumer": self.group_id}

    def _run_in_transaction(self, conn: psycopg.Connection[Any], event: ReceivedEvent) -> str:
        with (
            consumed_span(event, self.group_id, self._hops.get(event.origin)),
            HANDLER_SECONDS.labels(self.group_id, event.event_type).time(),
        ):
            return claim_and_handle(conn, self.group_id, self.handlers[event.event_type], event)

    def _dead_letter(self, delivery: Delivery, failure: Failure) -> str:
        log.error("dead-lettered: %s", failure.reason, extra=self._log_context(
            delivery, delivery.headers.get(HEADER_TRACEPARENT, "")))
        deadletter.publish(self.producer, self.group_id, delivery, failure.reason,
                           failure.attempts)
        with self.conn.transaction():
            deadletter.record(self.conn, self.group_id, delivery, status="dead",
                              reason=failure.reason, attempts=failure.attempts)
        self.blocked.add(delivery.key)
        return "dead_lettered"

    # -- replay and discard requests -------------------------------------------------

    def process_requests(self, owned: set[tuple[str, int]]) -> None:
        """Carry out ``choreo dlq replay|discard``: the head first, then what it parked.

        Resumable: each entry's new status is committed as it is done, and a key whose
        head is a ``parked`` entry (a release stopped half-way) is picked up again, also
        after a handler said ``RetryLater``.
        """
        try:
            self._release_requested(owned)
        except RetryLater as signal:
            log.info("dead-letter requests wait: %s", signal, extra={"consumer": self.group_id})

    def _release_requested(self, owned: set[tuple[str, int]]) -> None:
        self.blocked = deadletter.blocked_keys(self.conn, self.group_id)
        for key in deadletter.keys_to_release(self.conn, self.group_id, owned):
            for entry in deadletter.active_for_key(self.conn, self.group_id, key):
                if entry.status == "dead":
                    break
                if entry.status == "discard":
                    self._discard(entry)
                    continue
                result = self.attempt(entry.delivery)
                if isinstance(result, Failure):
                    deadletter.set_status(self.conn, entry.seq, "dead", reason=result.reason,
                                          attempts=entry.attempts + result.attempts)
                    break
                deadletter.set_status(self.conn, entry.seq, "replayed")
                EVENTS.labels(self.group_id, self._type_label(entry.delivery), "replayed").inc()
            if not deadletter.active_for_key(self.conn, self.group_id, key):
                self.blocked.discard(key)

    def _discard(self, entry: deadletter.DeadLetter) -> None:
        """Discarded means never handled, also when the event is read again later (a
        broker that lost its log, say): its inbox row is claimed with the status."""
        event_id = entry.delivery.parsed_event_id()
        with self.conn.transaction():
            if event_id is not None:
                inbox.claim(self.conn, self.group_id, event_id)
            deadletter.set_status(self.conn, entry.seq, "discarded")

    # -- the loop ----------------------------------------------------------------------

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's own errors: a lost broker may come back with an empty log."""
        log.warning("kafka client: %s", error, extra={"consumer": self.group_id})
        self._broker_trouble.set()

    def _poll(self, consumer: Consumer) -> list[Message]:
        """Whatever is buffered at once; if nothing, wait for the first message, then drain.

        Returning on the first message keeps one hop at the broker's latency when load
        is low; draining what is already buffered gives big batches (one commit for
        many events) exactly when load is high.
        """
        messages = consumer.consume(self.batch_size, timeout=0)
        if messages:
            return messages
        first = consumer.poll(0.1)
        if first is None:
            return []
        return [first, *consumer.consume(self.batch_size - 1, timeout=0)]

    def _receive(self, deliveries: list[Delivery]) -> None:
        """Each polled delivery's hop, once: the histogram, and the relay span its handling
        (every attempt of it) continues."""
        self._hops = {}
        for delivery in deliveries:
            hop = received(delivery, self.group_id)
            if hop.seconds is not None:
                HOP_SECONDS.labels(self.group_id, delivery.topic).observe(hop.seconds)
            if hop.context is not None:
                self._hops[delivery.origin] = hop.context

    def _verify_log(self, assignment: Assignment) -> bool:
        """After broker trouble: is it still the same log? If not, it starts over."""
        if not self._broker_trouble.is_set():
            return True
        same, _ = assignment.check_log()
        self._broker_trouble.clear()  # only once the check has succeeded
        return same

    def _step(self, consumer: Consumer, assignment: Assignment, timers: dict[str, float]
              ) -> bool:
        """One round of the loop. Returns whether it was busy (messages, or holding)."""
        now = time.monotonic()
        if self._conn is None:
            self._open_session()
            timers["rebalance"] = 0.0
        if now - timers["rebalance"] > self.rebalance_interval_s:
            assignment.save(self.conn)  # a partition given up leaves with its position
            if assignment.rebalance(self.conn):
                self.blocked = deadletter.blocked_keys(self.conn, self.group_id)
            timers["rebalance"] = now
            self._assigned_at = self._assigned_at or now
        held = self._holding(assignment)
        messages = self._poll(consumer)
        self._last_poll = time.monotonic()
        usable = [m for m in messages if m.error() is None]
        for message in messages:
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error, extra={"consumer": self.group_id})
        if not self._verify_log(assignment):
            return False  # what was polled belonged to the old log's offsets
        if held:
            usable = []  # fetched before the pause took effect: read again at the release
        if usable:
            deliveries = [Delivery.from_message(message) for message in usable]
            self._receive(deliveries)
            try:
                self.process_batch(deliveries)
                assignment.advance(usable)
            except Deferred as deferred:
                done = next(i for i, d in enumerate(deliveries) if d is deferred.at)
                assignment.advance(usable[:done])
                self._hold(assignment, deferred)
        if now - timers["save"] > POSITION_SAVE_INTERVAL_S:
            assignment.save(self.conn)
            timers["save"] = now
        if now - timers["requests"] > self.request_poll_interval_s and not held:
            self.process_requests(assignment.owned)
            timers["requests"] = now
        if now - timers["lag"] > 1.0:
            self._update_lag(assignment)
            timers["lag"] = now
        if now - timers["backlog"] > BACKLOG_INTERVAL_S:
            backlog.refresh(self.conn, self.group_id)
            timers["backlog"] = now
        return held or bool(usable)

    def _hold(self, assignment: Assignment, deferred: Deferred) -> None:
        """Pause every owned partition for ``after_s``: no retries, no dead letters.

        Leases stay (the session is untouched) and the loop goes on polling, saving
        positions and rebalancing; only handling stops.
        """
        self._held_until = time.monotonic() + deferred.after_s
        assignment.hold()
        PAUSED.labels(self.group_id).set(1)
        PAUSES.labels(self.group_id).inc()
        log.warning("pausing %d partitions for %.2fs: %s", len(assignment.owned),
                    deferred.after_s, deferred, extra={"consumer": self.group_id})

    def _holding(self, assignment: Assignment) -> bool:
        """Whether the partitions stay held this round; releases them once it is time."""
        if not self._held_until:
            return False
        if time.monotonic() < self._held_until:
            assignment.hold()  # partitions acquired meanwhile too
            return True
        self._held_until = 0.0
        assignment.release()
        PAUSED.labels(self.group_id).set(0)
        log.info("resuming %d partitions", len(assignment.owned),
                 extra={"consumer": self.group_id})
        return False

    def _update_lag(self, assignment: Assignment) -> None:
        """The gauge covers owned partitions only: a partition given up to a replica
        drops out instead of showing its last lag forever."""
        previous, self._lag = self._lag, assignment.lag()
        for topic, partition in previous.keys() - self._lag.keys():
            LAG.remove(self.group_id, topic, str(partition))
        for (topic, partition), behind in self._lag.items():
            LAG.labels(self.group_id, topic, partition).set(behind)

    def run(self, idle_exit_s: float | None = None) -> None:
        """Consume until stopped (SIGTERM sets ``stop_event``) or, in drain mode, idle.

        ``idle_exit_s`` is the burst mode tests and benchmarks use: return once nothing
        arrived for that long after the partitions were first acquired.
        """
        self._wait_for_topics()
        consumer = build_unmanaged_consumer(self.bootstrap, self.group_id,
                                            error_cb=self._on_client_error)
        assignment = Assignment(self.group_id, consumer, self.topics)
        self._assignment = assignment
        if self.key_concurrency > 1:
            self._lanes = Lanes(self.key_concurrency)
        timers = {"rebalance": 0.0, "requests": 0.0, "lag": 0.0, "save": 0.0, "backlog": 0.0}
        last_message = time.monotonic()
        failures = 0
        try:
            while not self.stop_event.is_set():
                try:
                    if self._step(consumer, assignment, timers):
                        last_message = time.monotonic()
                    failures = 0
                except Interrupted:
                    break  # positions of this batch stay unsaved: it is read again
                except Exception as error:  # noqa: BLE001 - the runtime survives its own errors
                    failures += 1
                    delay = min(5.0, 0.1 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0)
                    log.warning("consumer loop failed (%r); dropping the session, retrying"
                                " in %.2fs", error, delay, extra={"consumer": self.group_id})
                    self._close_session()
                    self.stop_event.wait(delay)
                    continue
                idle_since = max(last_message, self._assigned_at)
                if (idle_exit_s is not None and self._assigned_at
                        and time.monotonic() - idle_since > idle_exit_s):
                    break
        finally:
            self._save_before_leaving(assignment)
            self._close_session()
            consumer.close()
            self._assignment = None
            if self._lanes is not None:
                self._lanes.close()
                self._lanes = None
            if self._producer is not None:
                self._producer.flush(10)
                self._producer = None  # its background thread goes with it

    def _save_before_leaving(self, assignment: Assignment) -> None:
        """A clean stop leaves its exact positions, so a successor reads nothing twice."""
        if not self._session_alive():
            return
        try:
            assignment.save(self._conn)
        except psycopg.Error as error:
            log.warning("positions not saved at stop (%r); they are read again",
                        error, extra={"consumer": self.group_id})

    def _wait_for_topics(self) -> None:
        """Create the topics, waiting out a broker that is not there yet."""
        topics = [*self.topics, deadletter.dead_letter_topic(self.group_id)]
        for attempt in itertools.count(1):
            try:
                ensure_topics(self.bootstrap, topics)
                return
            except (KafkaException, RuntimeError) as error:
                log.warning("topics not ready (%r), attempt %d", error, attempt,
                            extra={"consumer": self.group_id})
                if self.stop_event.wait(min(5.0, 0.2 * attempt)):
                    return


class SessionLost(Exception):
    """The database session broke: its partition leases are gone, so must the batch be."""
