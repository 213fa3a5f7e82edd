"""What happens to a polled batch: decode, dedupe, commit runs, retry, dead-letter.

Kept apart from the loop (``outbox.consumer``) so that the guarantees of handling can be
read, and driven without a broker (``outbox.testing``), on their own: the loop only
decides which deliveries come here and how far positions may move afterwards.

For each delivery, in order: missing ids dead-letter it, an unhandled type is ignored,
a key behind a dead letter parks it, Redis skips what is known to be handled, and the
rest is decoded and handled in one transaction with its inbox claim. Runs of such plain
events share one transaction; a run that fails is rolled back and each of its events
is handled alone, with its own retries. A transient failure that outlasts a second of
retries in place leaves the batch: the event is recorded ``retrying``, which blocks its
key only, and ``outbox.release`` tries it again on the key's own schedule. Once the
retries are spent it is dead-lettered, which blocks the key until ``choreo dlq
replay|discard``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import Producer

from choreo.outbox import deadletter, inbox
from choreo.outbox.codec import EventCodec
from choreo.outbox.dedupe import DedupeStore
from choreo.outbox.delivery import Delivery, ReceivedEvent
from choreo.outbox.errors import PermanentError, RetryLater
from choreo.outbox.instruments import Instruments
from choreo.outbox.lanes import Lanes
from choreo.outbox.retry import Backoff, is_permanent
from choreo.outbox.session import Session, SessionLost
from choreo.outbox.wire import (
    HEADER_DATASCHEMA,
    HEADER_SOURCE,
    HEADER_TIME,
    HEADER_TRACEPARENT,
)

log = logging.getLogger(__name__)

Handler = Callable[[ReceivedEvent, psycopg.Connection[Any]], None]
RunLock = Callable[[psycopg.Connection[Any], list[ReceivedEvent]], None]
Run = list[tuple[Delivery, ReceivedEvent]]


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


class Interrupted(Exception):
    """SIGTERM arrived while an event waited for a retry: leave it for redelivery."""


class EventFailed(Exception):
    """A handler of a run raised: which event, so that only its key leaves the run."""

    def __init__(self, event: ReceivedEvent) -> None:
        super().__init__(event.event_id)
        self.event = event


class Deferred(Exception):
    """A handler said ``RetryLater``: ``at`` and everything after it in the batch is
    unhandled (rolled back or not started), everything before it is done."""

    def __init__(self, at: Delivery, signal: RetryLater) -> None:
        super().__init__(str(signal))
        self.at = at
        self.signal = signal
        self.after_s = signal.after_s


@dataclass(frozen=True)
class Failure:
    """An event given up on: what its dead letter records (reason and attempts)."""

    reason: str
    attempts: int


@dataclass(frozen=True)
class Postponed:
    """A transient failure outlasting the retries in place: the event is tried again
    after ``after_s`` on its key's own schedule, while the rest of the batch goes on."""

    reason: str
    attempts: int
    after_s: float


@dataclass(eq=False)
class Pipeline:
    """The batch logic of one consumer, on the session its loop keeps (``session``).

    ``producer`` gives the dead-letter topic's producer, built on first use by its owner;
    ``stop_event`` cuts a retry's wait short (``Interrupted``); ``lock_first`` is
    ``ConsumerRuntime``'s (which says why).
    """

    session: Session
    codec: EventCodec
    handlers: dict[str, Handler]
    dedupe: DedupeStore
    backoff: Backoff
    instruments: Instruments
    producer: Callable[[], Producer]
    stop_event: threading.Event
    lock_first: RunLock | None = None
    blocked: set[str] = field(default_factory=set)
    """Keys with an active dead letter: their later events are parked behind it."""
    lanes: Lanes[ReceivedEvent, str] | None = None
    """Set by the loop while it runs with ``key_concurrency`` above 1."""

    @property
    def group_id(self) -> str:
        return self.session.group_id

    def reload_blocked(self) -> None:
        """Read the blocked keys again: dead letters of another replica's partitions may
        have been recorded or released since."""
        self.blocked = deadletter.blocked_keys(self.session.conn, self.group_id)

    def _refresh_blocked(self, keys: set[str]) -> None:
        """What the table says now of one batch's keys. Another replica may have blocked
        a key since this one last looked (a round of ``reload_blocked`` is ~0.5 s apart)
        or released one; an indexed lookup per batch costs next to nothing, handling an
        event of a blocked key would break that key's order."""
        if keys:
            self.blocked = (self.blocked - keys) | deadletter.blocked_keys(
                self.session.conn, self.group_id, among=keys)

    # -- one delivery ------------------------------------------------------------------

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

    def attempt(self, delivery: Delivery, retrying_for_s: float | None = None,
                attempts_before: int = 0) -> str | Failure | Postponed:
        """Decode and run the handler with retries. Returns the outcome, or why it failed,
        or that it is to be tried again later.

        ``retrying_for_s``: for an event already retrying on its key's schedule, how long
        its transient failures have lasted (the window counts them too); such an event is
        tried once per turn, since its retries in place would hold up the loop each turn.
        ``attempts_before``: its attempts so far, which set the next delay.
        """
        try:
            event = self._event(delivery)
        except PermanentError as error:
            return Failure(str(error), 1)
        context = self.instruments.log_context(delivery, event.traceparent)
        started = time.monotonic()
        for attempt in itertools.count(1):
            try:
                conn = self.session.conn
                with conn.transaction():
                    outcome = self._run_in_transaction(conn, event)
            except (SessionLost, RetryLater):
                raise
            except Exception as error:  # noqa: BLE001 - retried, then dead-lettered
                self._raise_if_session_lost(error)
                elapsed = time.monotonic() - started
                attempts = attempts_before + attempt
                if self.backoff.gives_up(error, attempts, (retrying_for_s or 0.0) + elapsed):
                    reason = f"{type(error).__name__}: {error}" if is_permanent(error) \
                        else f"gave up after {attempts} attempts: {error!r}"
                    return Failure(reason, attempt)
                self.instruments.retried(delivery.event_type)
                delay = self.backoff.delay(attempts)
                if retrying_for_s is not None or not self.backoff.retries_in_place(error,
                                                                                   elapsed):
                    log.warning("attempt %d failed, retrying its key in %.3fs: %r", attempts,
                                delay, error, extra=context)
                    return Postponed(f"retrying after {attempts} attempts: {error!r}",
                                     attempt, delay)
                log.warning("attempt %d failed, retrying in %.3fs: %r", attempt, delay, error,
                            extra=context)
                if self.stop_event.wait(delay):
                    raise Interrupted from error
                continue
            self.dedupe.mark(self.group_id, delivery.event_id)
            log.info("%s %s", outcome, delivery.event_type, extra=context)
            return outcome
        raise AssertionError("unreachable: itertools.count never ends")

    def process(self, delivery: Delivery) -> str:
        """Everything that happens to one fresh delivery; returns the outcome's name."""
        if delivery.parsed_event_id() is None or not delivery.event_type:
            outcome = self._dead_letter(delivery, Failure("missing or malformed ce_id/ce_type "
                                                          "headers", 1))
        elif delivery.event_type not in self.handlers:
            outcome = "ignored"
        elif delivery.key in self.blocked:
            outcome = self._park(delivery)
        elif self.dedupe.seen(self.group_id, delivery.event_id):
            outcome = "duplicate"
        else:
            result = self.attempt(delivery)
            if isinstance(result, Failure):
                outcome = self._dead_letter(delivery, result)
            elif isinstance(result, Postponed):
                outcome = self._postpone(delivery, result)
            else:
                outcome = result
        self.instruments.outcome(delivery.event_type, outcome)
        return outcome

    def _park(self, delivery: Delivery) -> str:
        conn = self.session.conn
        with conn.transaction():
            deadletter.record(conn, self.group_id, delivery, status="parked",
                              reason="parked behind a dead letter of the same key", attempts=0)
        return "parked"

    def _postpone(self, delivery: Delivery, postponed: Postponed) -> str:
        conn = self.session.conn
        with conn.transaction():
            deadletter.record(conn, self.group_id, delivery, status="retrying",
                              reason=postponed.reason, attempts=postponed.attempts,
                              retry_after_s=postponed.after_s)
        self.blocked.add(delivery.key)
        return "retrying"

    def announce_dead(self, delivery: Delivery, failure: Failure) -> None:
        """The log line and the record on the dead-letter topic, once per dead letter."""
        log.error("dead-lettered: %s", failure.reason, extra=self.instruments.log_context(
            delivery, delivery.headers.get(HEADER_TRACEPARENT, "")))
        deadletter.publish(self.producer(), self.group_id, delivery, failure.reason,
                           failure.attempts)

    def _dead_letter(self, delivery: Delivery, failure: Failure) -> str:
        self.announce_dead(delivery, failure)
        conn = self.session.conn
        with conn.transaction():
            deadletter.record(conn, self.group_id, delivery, status="dead",
                              reason=failure.reason, attempts=failure.attempts)
        self.blocked.add(delivery.key)
        return "dead_lettered"

    def _raise_if_session_lost(self, error: Exception) -> None:
        """A failure of the session is no failure of the event: nothing is retried or
        dead-lettered for it, the loop starts over without its leases."""
        if not self.session.alive():
            raise SessionLost(f"database session lost: {error!r}") from error

    # -- a batch ------------------------------------------------------------------------

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
        run: Run = []
        self._refresh_blocked({d.key for d in deliveries if d.event_type in self.handlers})
        seen = self.dedupe.seen_many(self.group_id, [d.event_id for d in deliveries
                                                     if d.parsed_event_id() is not None])
        for delivery in deliveries:
            if delivery.event_id in seen and self._batchable(delivery):
                self.instruments.outcome(delivery.event_type, "duplicate")
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

    def _batchable(self, delivery: Delivery) -> bool:
        """Events the plain path would decode and hand to their handler (not yet seen)."""
        return (delivery.parsed_event_id() is not None and delivery.event_type in self.handlers
                and delivery.key not in self.blocked)

    def _decoded_if_batchable(self, delivery: Delivery) -> ReceivedEvent | None:
        if not self._batchable(delivery):
            return None
        try:
            return self._event(delivery)
        except PermanentError:
            return None  # ``process`` will dead-letter it with the reason

    def _process_unless_deferred(self, delivery: Delivery) -> str:
        try:
            return self.process(delivery)
        except RetryLater as signal:
            raise Deferred(delivery, signal) from signal

    def _commit_run(self, run: Run, split: bool = True) -> list[str]:
        """One transaction for the run (a run of one too: it is already decoded and
        checked against Redis, and ``process`` would do both again). ``split``: whether a
        failure may take only the failing key out (once; see ``_after_rollback``)."""
        if not run:
            return []
        events = [event for _, event in run]
        try:
            conn = self.session.conn
            with conn.transaction():
                if self.lock_first is not None:
                    self.lock_first(conn, events)
                outcomes = self._run_all(conn, events)
        except RetryLater as signal:  # the whole run rolled back: none of it is done
            raise Deferred(run[0][0], signal) from signal
        except Exception as error:  # noqa: BLE001 - each event is retried on its own below
            self._raise_if_session_lost(error.__cause__ or error)
            return self._after_rollback(run, error, split)
        self.dedupe.mark_many(self.group_id, [delivery.event_id for delivery, _ in run])
        for (delivery, event), outcome in zip(run, outcomes, strict=True):
            self.instruments.outcome(event.event_type, outcome)
            log.info("%s %s", outcome, event.event_type,
                     extra=self.instruments.log_context(delivery, event.traceparent))
        return outcomes

    def _after_rollback(self, run: Run, error: Exception, split: bool) -> list[str]:
        """The rest of the run is committed again as a run, then the failing event's key
        goes event by event, with its retries and dead letter. Per key the order is kept
        (keys are independent). In this order a ``Deferred`` keeps its promise that all
        before ``at`` is done: one from the rest is moved to the run's first delivery,
        one from the key comes after the rest is committed (taking the key first lost
        the events ahead of it, ``tests/outbox/test_batches_driven.py``). Before, every
        event of the run went alone: with one flaky psp charge in almost every run under
        load, payments fell to a transaction per event just when it had a backlog. The
        rest is tried as a run once: if it fails too (``split`` False), every event goes
        alone, so a run full of failing keys costs one extra try, not one per key (the
        33/s storm re-ran runs of 190 events once for each flaky charge in them)."""
        key = error.event.aggregate_id if split and isinstance(error, EventFailed) else None
        alone = [index for index, (_, event) in enumerate(run)
                 if key is None or event.aggregate_id == key]
        single = set(alone)
        others = [index for index in range(len(run)) if index not in single]
        rest = [run[index] for index in others]
        cause = error.__cause__ if isinstance(error, EventFailed) else error
        log.warning("batch of %d rolled back (%r): handling %s", len(run), cause,
                    f"the {len(alone)} events of {key} one by one, the other {len(rest)}"
                    " again as a run" if key is not None else "one by one",
                    extra=self.instruments.fields)
        try:
            outcomes = dict(zip(others, self._commit_run(rest, split=False), strict=True))
        except Deferred as deferred:  # none of the run is done: it waits from its start
            raise Deferred(run[0][0], deferred.signal) from deferred
        for index in alone:
            outcomes[index] = self._process_unless_deferred(run[index][0])
        return [outcomes[index] for index in range(len(run))]

    def _run_all(self, conn: psycopg.Connection[Any], events: list[ReceivedEvent]
                 ) -> list[str]:
        if self.lanes is None:
            return [self._run_one_of_run(conn, event) for event in events]
        return self.lanes.run([(event.aggregate_id, event) for event in events],
                              lambda event: self._run_one_of_run(conn, event))

    def _run_in_transaction(self, conn: psycopg.Connection[Any], event: ReceivedEvent) -> str:
        with self.instruments.handling(event):
            return claim_and_handle(conn, self.group_id, self.handlers[event.event_type], event)

    def _run_one_of_run(self, conn: psycopg.Connection[Any], event: ReceivedEvent) -> str:
        """``_run_in_transaction``, with a failure naming its event for ``_after_rollback``."""
        try:
            return self._run_in_transaction(conn, event)
        except RetryLater:
            raise
        except Exception as error:
            raise EventFailed(event) from error
