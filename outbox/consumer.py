"""The idempotent consumer runtime: transport and guarantees, no business logic.

The runtime is the loop: it polls, owns partitions, pauses them, keeps positions, and
composes the parts that do the rest. What happens to a polled batch (decode, dedupe,
one transaction per run, retries, dead letters) is ``outbox.pipeline``; carrying out
``choreo dlq replay|discard`` is ``outbox.release``; the database session that holds the
leases is ``outbox.session``; metrics and spans are ``outbox.instruments``. Positions,
kept in the same database, only ever move past events whose transaction committed, so
a crash anywhere leads to a redelivery that the inbox turns into a no-op.

No broker consumer group: partitions are owned through advisory-lock leases and
positions are read from the consumer's own tables (``outbox.assignment``), so a
restarted process is consuming again within a second, replicas share partitions, and a
broker that lost its log is read again from the start. Errors of the runtime itself
(database restarts, broker outages) are logged and survived: the session is dropped,
its leases go with it, and the loop reconnects with backoff.

A handler that raises ``RetryLater`` (an open circuit breaker: a dependency is down)
fails nothing: the event is rolled back, every owned partition is paused for the time it
asked, with its lease kept and the consumer still polled, and then read again from that
event on.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from choreo.outbox import backlog, deadletter, release
from choreo.outbox.assignment import Assignment
from choreo.outbox.codec import EventCodec
from choreo.outbox.dedupe import DedupeStore
from choreo.outbox.delivery import Delivery
from choreo.outbox.group_offsets import GroupOffsets
from choreo.outbox.instruments import Instruments
from choreo.outbox.kafka import (
    Kafka,
    build_admin,
    build_producer,
    build_unmanaged_consumer,
    ensure_topics,
)
from choreo.outbox.lanes import Lanes
from choreo.outbox.pipeline import (
    Deferred,
    Failure,
    Handler,
    Interrupted,
    Pipeline,
    Postponed,
    RunLock,
    claim_and_handle,
    handle_once,
)
from choreo.outbox.retry import Backoff
from choreo.outbox.session import Session
from choreo.outbox.topics import TopicSettings

__all__ = ["ConsumerRuntime", "Handler", "RunLock", "claim_and_handle", "handle_once"]
"""The handler types and the effectively-once unit live in ``outbox.pipeline``; services
and tests import them from here, with the runtime they are written for."""

log = logging.getLogger(__name__)

POSITION_SAVE_INTERVAL_S = 0.2
"""Positions are saved at most this often (and before any partition is given up, and at
a clean stop), not once per batch: at low load every batch is one event, and a second
commit per event would double the database's work. What a crash loses is read again."""
BACKLOG_INTERVAL_S = 5.0
"""How often the dead-letter and slot-lag gauges are read (outbox.backlog)."""


class ConsumerRuntime:
    def __init__(
        self,
        *,
        group_id: str,
        kafka: Kafka,
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
        topic_settings: TopicSettings | None = None,
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
        self.kafka = kafka
        self.topic_settings = topic_settings or TopicSettings()
        self.codec = codec
        self.handlers = handlers
        self.batch_size = batch_size
        self.request_poll_interval_s = request_poll_interval_s
        self.rebalance_interval_s = rebalance_interval_s
        self._topics = topics
        self.key_concurrency = key_concurrency
        self.stop_event = threading.Event()
        self._session = Session(database_url, group_id, handlers)
        self._instruments = Instruments(group_id, handlers)
        self._pipeline = Pipeline(session=self._session, codec=codec, handlers=handlers,
                                  dedupe=dedupe, backoff=backoff, instruments=self._instruments,
                                  producer=lambda: self.producer, stop_event=self.stop_event,
                                  lock_first=lock_first)
        self._producer: Producer | None = producer
        self._assignment: Assignment | None = None
        self._assigned_at = 0.0
        self._last_poll = 0.0
        self._broker_trouble = threading.Event()
        self._held_until = 0.0
        """While in the future, every owned partition is paused (``RetryLater``)."""

    # -- wiring --------------------------------------------------------------------

    @property
    def topics(self) -> list[str]:
        if self._topics is not None:
            return self._topics
        return sorted({self.codec.writer_schema(t).topic for t in self.handlers})

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The session that holds this process's partition leases and runs its handlers."""
        return self._session.conn

    @property
    def blocked(self) -> set[str]:
        """Keys with an active dead letter (``Pipeline.blocked``)."""
        return self._pipeline.blocked

    def ensure_session(self) -> None:
        """Open the database session if there is none: for callers that drive the batch
        logic without the loop (``outbox.testing.drive``)."""
        if not self._session.alive():
            self._open_session()

    def close(self) -> None:
        """Give up the database session, and with it every lease: for the same callers."""
        self._close_session()

    def _open_session(self) -> None:
        self._close_session()
        self._session.open()
        self._pipeline.reload_blocked()

    def _close_session(self) -> None:
        try:
            if self._assignment is not None:
                self._assignment.session_lost()
        finally:
            self._session.close()

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = build_producer(self.kafka)
        return self._producer

    def health(self) -> dict[str, object]:
        polling = time.monotonic() - self._last_poll < 30
        ok = (polling and self._session.alive() and self._assigned_at > 0
              and not self.stop_event.is_set())
        owned = len(self._assignment.owned) if self._assignment else 0
        of = self._assignment.partitions_in_topics if self._assignment else 0
        return {"status": "ok" if ok else "starting", "consumer": self.group_id,
                "assigned": owned > 0, "partitions": owned, "partitions_in_topics": of,
                "lag": self._instruments.behind,
                "blocked_keys": len(self.blocked), "paused": self._held_until > 0}

    # -- the parts, for callers that drive them without the loop ------------------------
    # The runtime stays the one object a service builds and a test drives; the logic is
    # in the parts (``outbox.pipeline``, ``outbox.release``).

    def attempt(self, delivery: Delivery) -> str | Failure | Postponed:
        """``Pipeline.attempt``: one delivery's handler with its retries."""
        return self._pipeline.attempt(delivery)

    def process(self, delivery: Delivery) -> str:
        """``Pipeline.process``: everything that happens to one fresh delivery."""
        return self._pipeline.process(delivery)

    def process_batch(self, deliveries: list[Delivery]) -> list[str]:
        """The loop calls it through the instance, so tests and benchmarks may wrap it."""
        return self._pipeline.process_batch(deliveries)

    def process_requests(self, owned: set[tuple[str, int]]) -> None:
        """Carry out ``choreo dlq replay|discard`` for keys of ``owned`` partitions."""
        release.process_requests(self._pipeline, owned)

    # -- the loop ----------------------------------------------------------------------

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's own errors: a lost broker may come back with an empty log."""
        log.warning("kafka client: %s", error, extra=self._instruments.fields)
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
        if not self._session.opened:
            self._open_session()
            timers["rebalance"] = 0.0
        if now - timers["rebalance"] > self.rebalance_interval_s:
            assignment.save(self.conn)  # a partition given up leaves with its position
            if assignment.rebalance(self.conn):
                self._pipeline.reload_blocked()
            timers["rebalance"] = now
            self._assigned_at = self._assigned_at or now
        held = self._holding(assignment)
        messages = self._poll(consumer)
        self._last_poll = time.monotonic()
        usable = [m for m in messages if m.error() is None]
        for message in messages:
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error, extra=self._instruments.fields)
        if not self._verify_log(assignment):
            return False  # what was polled belonged to the old log's offsets
        if held:
            usable = []  # fetched before the pause took effect: read again at the release
        if usable:
            deliveries = [Delivery.from_message(message) for message in usable]
            self._instruments.receive(deliveries)
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
        self._instruments.paused(True)
        log.warning("pausing %d partitions for %.2fs: %s", len(assignment.owned),
                    deferred.after_s, deferred, extra=self._instruments.fields)

    def _holding(self, assignment: Assignment) -> bool:
        """Whether the partitions stay held this round; releases them once it is time."""
        if not self._held_until:
            return False
        if time.monotonic() < self._held_until:
            assignment.hold()  # partitions acquired meanwhile too
            return True
        self._held_until = 0.0
        assignment.release()
        self._instruments.paused(False)
        log.info("resuming %d partitions", len(assignment.owned),
                 extra=self._instruments.fields)
        return False

    def _update_lag(self, assignment: Assignment) -> None:
        self._instruments.lag(assignment.lag())

    def run(self, idle_exit_s: float | None = None) -> None:
        """Consume until stopped (SIGTERM sets ``stop_event``) or, in drain mode, idle.

        ``idle_exit_s`` is the burst mode tests and benchmarks use: return once nothing
        arrived for that long after the partitions were first acquired.
        """
        self._wait_for_topics()
        group_offsets = GroupOffsets(self.group_id)
        consumer = build_unmanaged_consumer(self.kafka, self.group_id,
                                            error_cb=self._on_client_error,
                                            on_commit=group_offsets.committed)
        assignment = Assignment(self.group_id, consumer, self.topics,
                                build_admin(self.kafka), group_offsets)
        self._assignment = assignment
        if self.key_concurrency > 1:
            self._pipeline.lanes = Lanes(self.key_concurrency)
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
                                " in %.2fs", error, delay, extra=self._instruments.fields)
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
            if self._pipeline.lanes is not None:
                self._pipeline.lanes.close()
                self._pipeline.lanes = None
            if self._producer is not None:
                self._producer.flush(10)
                self._producer = None  # its background thread goes with it

    def _save_before_leaving(self, assignment: Assignment) -> None:
        """A clean stop leaves its exact positions, so a successor reads nothing twice."""
        if not self._session.alive():
            return
        try:
            assignment.save(self._session.conn)
        except psycopg.Error as error:
            log.warning("positions not saved at stop (%r); they are read again",
                        error, extra=self._instruments.fields)
            return
        assignment.group_offsets.commit_due(assignment.consumer, now=True)

    def _wait_for_topics(self) -> None:
        """Create the topics, waiting out a broker that is not there yet. A cluster that
        refuses the client, or a provisioned topic that is missing, ends the start
        (``KafkaRefused``, ``MissingTopics``): no wait would cure either."""
        topics = [*self.topics, deadletter.dead_letter_topic(self.group_id)]
        for attempt in itertools.count(1):
            try:
                ensure_topics(self.kafka, topics, self.topic_settings)
                return
            except (KafkaException, RuntimeError) as error:
                log.warning("topics not ready (%r), attempt %d", error, attempt,
                            extra=self._instruments.fields)
                if self.stop_event.wait(min(5.0, 0.2 * attempt)):
                    return
