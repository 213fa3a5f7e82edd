"""One key whose dependency keeps failing costs the other keys nothing (issue 21, finding 5).

Before, a transient failure was retried in place for the whole transient window (120 s):
the batch, and every partition of the process with it, waited, and every other order
passed its deadline. Now it is retried in place for ``inline_window_s`` only, then
recorded ``retrying``: its key is blocked (later events park behind it), the rest of the
batch goes on, and the release tries it again on the key's own schedule until it works
(``retried``, then what parked behind it) or the window is spent (a dead letter, on the
dead-letter topic once). Driven without a broker (outbox.testing), against PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from choreo.outbox import deadletter
from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime
from choreo.outbox.dedupe import MemoryDedupe
from choreo.outbox.delivery import Delivery, ReceivedEvent
from choreo.outbox.errors import TransientError
from choreo.outbox.retry import Backoff
from choreo.outbox.testing import EventStream, RecordingProducer, drive, release
from choreo.schemas.catalog import SchemaCatalog
from tests.outbox.probe import effects

pytestmark = pytest.mark.postgres

CODEC = EventCodec(SchemaCatalog.load())
BACKOFF = Backoff(base_s=0.01, cap_s=0.05, max_attempts=3, transient_window_s=60.0,
                  inline_window_s=0.2)


class FlakyDependency:
    """A handler whose dependency fails, transiently, for the keys in ``down``."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.down: set[str] = set()
        self.calls: dict[str, int] = {}

    def __call__(self, event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        key = event.aggregate_id
        self.calls[key] = self.calls.get(key, 0) + 1
        if key in self.down:
            raise TransientError(f"dependency answered 500 for {key}")
        conn.execute("INSERT INTO effects (consumer, key, event_id, value)"
                     " VALUES (%s, %s, %s, %s)",
                     (self.consumer, key, event.event_id, event.payload["total_cents"]))


@pytest.fixture
def consumer() -> str:
    return f"keyretry-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def handler(consumer: str) -> FlakyDependency:
    return FlakyDependency(consumer)


@pytest.fixture
def producer() -> RecordingProducer:
    return RecordingProducer()


@pytest.fixture
def runtime(probe_database: str, consumer: str, handler: FlakyDependency,
            producer: RecordingProducer) -> Iterator[ConsumerRuntime]:
    built = ConsumerRuntime(group_id=consumer, kafka="unused.invalid:9092",
                            database_url=probe_database, codec=CODEC,
                            handlers={"OrderConfirmed": handler}, dedupe=MemoryDedupe(),
                            backoff=BACKOFF, producer=producer)
    yield built
    built.close()


def confirmed(stream: EventStream, key: str, total: int, partition: int = 0) -> Delivery:
    return stream.delivery("OrderConfirmed", key, {"order_id": key, "total_cents": total},
                           partition=partition)


def entries(database: str, consumer: str) -> list[deadletter.DeadLetter]:
    with psycopg.connect(database, autocommit=True) as conn:
        return [e for e in deadletter.list_entries(conn, include_done=True)
                if e.consumer == consumer]


def release_until(runtime: ConsumerRuntime, owned: set[tuple[str, int]], database: str,
                  consumer: str, done: str, timeout_s: float = 20.0) -> None:
    """Run the loop's release rounds until the key's head entry has status ``done``."""
    deadline = time.monotonic() + timeout_s
    while entries(database, consumer)[0].status != done:
        assert time.monotonic() < deadline, entries(database, consumer)
        release(runtime, owned)
        time.sleep(0.05)


def test_one_failing_key_leaves_the_batch_and_is_retried_on_its_own(
        probe_database: str, consumer: str, handler: FlakyDependency,
        runtime: ConsumerRuntime, producer: RecordingProducer) -> None:
    stream = EventStream(CODEC)
    bad, good = f"{consumer}-bad", [f"{consumer}-ok{i}" for i in range(10)]
    handler.down.add(bad)
    batch = [confirmed(stream, bad, 1), *(confirmed(stream, key, 1) for key in good),
             confirmed(stream, bad, 2)]

    started = time.monotonic()
    outcomes = drive(runtime, batch)
    took = time.monotonic() - started

    assert outcomes == ["retrying", *["handled"] * 10, "parked"]
    assert took < BACKOFF.inline_window_s + 5, f"the batch waited {took:.1f}s for one key"
    assert runtime.blocked == {bad}
    assert not producer.records, "retrying is no dead letter: nothing on the DLQ topic"
    assert [(e.status, e.event_type) for e in entries(probe_database, consumer)] == [
        ("retrying", "OrderConfirmed"), ("parked", "OrderConfirmed")]
    assert drive(runtime, [confirmed(stream, bad, 3)]) == ["parked"]

    release(runtime, {(batch[0].topic, 0)})  # still down: stays retrying, no dead letter
    assert entries(probe_database, consumer)[0].status == "retrying"

    handler.down.clear()
    release_until(runtime, {(batch[0].topic, 0)}, probe_database, consumer, "retried")
    assert [v for k, v in effects(probe_database, consumer) if k == bad] == [1, 2, 3]
    assert [e.status for e in entries(probe_database, consumer)] == [
        "retried", "replayed", "replayed"]
    assert runtime.blocked == set()
    assert not producer.records


def test_a_key_whose_window_runs_out_is_dead_lettered_once_and_stays_blocked(
        probe_database: str, consumer: str, handler: FlakyDependency,
        runtime: ConsumerRuntime, producer: RecordingProducer) -> None:
    stream = EventStream(CODEC)
    bad = f"{consumer}-bad"
    handler.down.add(bad)
    runtime._pipeline.backoff = Backoff(base_s=0.01, cap_s=0.05, transient_window_s=1.0,  # noqa: SLF001
                                        inline_window_s=0.2)
    first = confirmed(stream, bad, 1)
    assert drive(runtime, [first, confirmed(stream, bad, 2)]) == ["retrying", "parked"]

    release_until(runtime, {(first.topic, 0)}, probe_database, consumer, "dead")
    dead = entries(probe_database, consumer)[0]
    assert dead.reason.startswith(f"gave up after {dead.attempts} attempts")
    assert dead.attempts > 2
    assert handler.calls[bad] == dead.attempts + 1  # and the try of the batch as a run
    assert [(topic, key) for topic, key, _, _ in producer.records] == [
        (deadletter.dead_letter_topic(consumer), bad)]
    assert producer.records[0][3]["dlq_attempts"] == str(dead.attempts)

    release(runtime, {(first.topic, 0)})  # a dead head waits for a person
    assert [e.status for e in entries(probe_database, consumer)] == ["dead", "parked"]
    assert len(producer.records) == 1
    assert runtime.blocked == {bad}


def test_each_entry_of_a_key_is_released_by_its_own_partition_owner(
        probe_database: str, consumer: str, handler: FlakyDependency,
        runtime: ConsumerRuntime) -> None:
    """Finding 6: a key's entries on two partitions (two topics, or two members). The
    owner of the head's partition went on to run the next entry too, while its own
    owner saw it as the new head and ran it as well."""
    stream = EventStream(CODEC)
    key = f"{consumer}-split"
    handler.down.add(key)
    head, behind = confirmed(stream, key, 1, partition=0), confirmed(stream, key, 2,
                                                                     partition=1)
    assert drive(runtime, [head, behind]) == ["retrying", "parked"]
    handler.down.clear()

    release_until(runtime, {(head.topic, 0)}, probe_database, consumer, "retried")
    assert [e.status for e in entries(probe_database, consumer)] == ["retried", "parked"]
    assert [v for k, v in effects(probe_database, consumer) if k == key] == [1]

    release(runtime, {(behind.topic, 1)})
    assert [e.status for e in entries(probe_database, consumer)] == ["retried", "replayed"]
    assert [v for k, v in effects(probe_database, consumer) if k == key] == [1, 2]


def test_a_key_blocked_by_one_replica_is_parked_at_once_by_another(
        probe_database: str, consumer: str, handler: FlakyDependency,
        runtime: ConsumerRuntime, producer: RecordingProducer) -> None:
    """Finding 6: replica B kept the blocked keys it read at its last rebalance or
    release round (up to ~0.5 s old), so an event of a key replica A had just blocked,
    arriving on B's partition, was handled instead of parked behind A's entry."""
    stream = EventStream(CODEC)
    key = f"{consumer}-shared"
    other = ConsumerRuntime(group_id=consumer, kafka="unused.invalid:9092",
                            database_url=probe_database, codec=CODEC,
                            handlers={"OrderConfirmed": handler}, dedupe=MemoryDedupe(),
                            backoff=BACKOFF, producer=producer)
    try:
        assert drive(other, [confirmed(stream, f"{consumer}-warm", 1, partition=1)]) == [
            "handled"]
        handler.down.add(key)
        assert drive(runtime, [confirmed(stream, key, 1, partition=0)]) == ["retrying"]
        handler.down.clear()

        assert drive(other, [confirmed(stream, key, 2, partition=1)]) == ["parked"]
        assert [v for k, v in effects(probe_database, consumer) if k == key] == []
    finally:
        other.close()
